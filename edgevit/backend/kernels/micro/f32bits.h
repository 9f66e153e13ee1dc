/* edgevit micro-kernel: exact float constants from their IEEE-754 bits (TVM's C printer writes
 * float literals with 7 significant digits, which is not exact). memcpy folds to a constant. */
#ifndef EV_MICRO_F32BITS_H
#define EV_MICRO_F32BITS_H

static inline float ev_f32_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static inline double ev_f64_bits(uint32_t hi, uint32_t lo) {
  uint64_t bits = ((uint64_t)hi << 32) | lo;
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
}

#endif

/* edgevit micro-kernel: exact integer square root and bit length (docs/integer-semantics.md,
 * "LayerNorm" steps 5-6). Integer only: no libm, no division. */
#ifndef EV_MICRO_ISQRT64_H
#define EV_MICRO_ISQRT64_H

/* Number of significant bits of x (0 -> 0): 64 - clz64(x). */
static inline int32_t ev_bitlen64(uint64_t x) {
  return x ? 64 - __builtin_clzll(x) : 0;
}

/* floor(sqrt(x)) for x < 2^62, binary digit by digit (exactly 32 iterations). */
static inline uint64_t ev_isqrt64(uint64_t x) {
  uint64_t r = 0, bit = (uint64_t)1 << 62;
  while (bit) {
    if (x >= r + bit) {
      x -= r + bit;
      r = (r >> 1) + bit;
    } else {
      r >>= 1;
    }
    bit >>= 2;
  }
  return r;
}

#endif

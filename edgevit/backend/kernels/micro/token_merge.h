/* token_merge.h: micro-kernels of the token_merge kernel's fast schedule (kernels/token_merge.py),
 * called from TVM TIR through T.call_extern.
 *
 * ev_dot_s16(a, b, n): sum_{t<n} a[t] * b[t] of two int16 unit-key rows, exact in int32 (the caller
 * guarantees |partial sums| < 2^31: integer unit keys have length ~2^14, so every partial dot product
 * is below 2^29 by Cauchy-Schwarz). On cores with the DSP extension (__ARM_FEATURE_DSP) two int16
 * pairs are read as one 32-bit word each (memcpy: no alignment or aliasing UB; one LDR on Armv7E-M)
 * and multiplied-accumulated by one SMLAD; elsewhere (the host tests) plain C gives the same value.
 *
 * ev_copy_bytes(dst, src, n): memcpy of one token row (gcc copies words, not bytes).
 */
#ifndef EV_MICRO_TOKEN_MERGE_H
#define EV_MICRO_TOKEN_MERGE_H

static inline int32_t ev_dot_s16(const int16_t *a, const int16_t *b, int32_t n) {
  int32_t acc = 0, t = 0;
#if defined(__ARM_FEATURE_DSP)
  for (; t + 2 <= n; t += 2) {
    uint32_t wa, wb;
    memcpy(&wa, a + t, 4);
    memcpy(&wb, b + t, 4);
    __asm__("smlad %0, %1, %2, %0" : "+r"(acc) : "r"(wa), "r"(wb));
  }
#endif
  for (; t < n; ++t) {
    acc += (int32_t)a[t] * (int32_t)b[t];
  }
  return acc;
}

static inline void ev_copy_bytes(void *dst, const void *src, int32_t n) {
  memcpy(dst, src, (size_t)n);
}

#endif

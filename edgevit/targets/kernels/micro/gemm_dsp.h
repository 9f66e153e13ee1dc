/* gemm_dsp.h: int8 inner-product micro-kernels for the GEMM kernels (linear), called from TVM TIR
 * through T.call_extern (edgevit/targets/kernels/gemm.py, tensor intrinsic "ev_gemm_dsp_RxC").
 *
 * ev_gemm_dsp_RxC(c, sc, a, sa, b, sb) adds to the R x C int32 tile c[i*sc + j] the dot products
 * of 4 int8 values: c[i][j] += sum_{t<4} a[i*sa + t] * b[j*sb + t]. Each row of a and b is read
 * as ONE 32-bit word (memcpy: no strict-aliasing or alignment UB; a single LDR on Armv7E-M, which
 * allows unaligned LDR) and split by SXTB16 into its even bytes (0, 2) and, rotated by 8, its odd
 * bytes (1, 3) as two int16 pairs; SMLAD multiplies both pairs and accumulates. Pairing is the
 * same on both operands, so even*even + odd*odd is the full 4-term dot product. Every loaded word
 * is reused R (or C) times: 2x2 is the main tile (4 LDR + 8 SXTB16 + 8 SMLAD per 16 MACs), 1x2 and
 * 1x1 cover odd row/column edges. Results are exact: |products| <= 2^14, and the int32 accumulator
 * bounds of docs/integer-semantics.md hold.
 *
 * On cores with the DSP extension (__ARM_FEATURE_DSP) the ACLE/inline-assembly instructions are
 * used; elsewhere (the host tests, built with sanitizers) plain C computes the same values.
 */
#ifndef EV_GEMM_DSP_H
#define EV_GEMM_DSP_H

#define EV_INLINE static inline __attribute__((always_inline))

/* Four consecutive int8 as one little-endian word. */
EV_INLINE uint32_t ev_load_s8x4(const int8_t *p) {
  uint32_t w;
  memcpy(&w, p, 4);
  return w;
}

#if defined(__ARM_FEATURE_DSP)

/* Bytes 0 and 2 of x sign-extended to two int16 lanes. */
EV_INLINE uint32_t ev_sxtb16(uint32_t x) {
  uint32_t r;
  __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(x));
  return r;
}

/* Bytes 1 and 3 of x sign-extended to two int16 lanes (SXTB16 with ROR #8, one instruction). */
EV_INLINE uint32_t ev_sxtb16_ror8(uint32_t x) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}

/* acc + lo(a)*lo(b) + hi(a)*hi(b) on the int16 lanes. */
EV_INLINE int32_t ev_smlad(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}

#else /* plain C fallbacks with the same results */

EV_INLINE int32_t ev_s8(uint32_t byte) { return (int32_t)(byte & 0xFFu) - (int32_t)((byte & 0x80u) << 1); }

EV_INLINE int32_t ev_s16(uint32_t half) { return (int32_t)(half & 0xFFFFu) - (int32_t)((half & 0x8000u) << 1); }

EV_INLINE uint32_t ev_sxtb16(uint32_t x) {
  return ((uint32_t)ev_s8(x) & 0xFFFFu) | (((uint32_t)ev_s8(x >> 16) & 0xFFFFu) << 16);
}

EV_INLINE uint32_t ev_sxtb16_ror8(uint32_t x) { return ev_sxtb16((x >> 8) | (x << 24)); }

EV_INLINE int32_t ev_smlad(uint32_t a, uint32_t b, int32_t acc) {
  return acc + ev_s16(a) * ev_s16(b) + ev_s16(a >> 16) * ev_s16(b >> 16);
}

#endif

/* c[0] += dot4(a, b) for one pair of already split words. */
#define EV_DOT4(acc, ae, ao, be, bo) (acc) = ev_smlad((ao), (bo), ev_smlad((ae), (be), (acc)))

EV_INLINE void ev_gemm_dsp_1x1(int32_t *c, int32_t sc, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb) {
  uint32_t a0 = ev_load_s8x4(a), b0 = ev_load_s8x4(b);
  (void)sc, (void)sa, (void)sb;
  EV_DOT4(c[0], ev_sxtb16(a0), ev_sxtb16_ror8(a0), ev_sxtb16(b0), ev_sxtb16_ror8(b0));
}

EV_INLINE void ev_gemm_dsp_1x2(int32_t *c, int32_t sc, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb) {
  uint32_t a0 = ev_load_s8x4(a), b0 = ev_load_s8x4(b), b1 = ev_load_s8x4(b + sb);
  uint32_t a0e = ev_sxtb16(a0), a0o = ev_sxtb16_ror8(a0);
  (void)sc, (void)sa;
  EV_DOT4(c[0], a0e, a0o, ev_sxtb16(b0), ev_sxtb16_ror8(b0));
  EV_DOT4(c[1], a0e, a0o, ev_sxtb16(b1), ev_sxtb16_ror8(b1));
}

EV_INLINE void ev_gemm_dsp_2x2(int32_t *c, int32_t sc, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb) {
  uint32_t a0 = ev_load_s8x4(a), a1 = ev_load_s8x4(a + sa);
  uint32_t b0 = ev_load_s8x4(b), b1 = ev_load_s8x4(b + sb);
  uint32_t a0e = ev_sxtb16(a0), a0o = ev_sxtb16_ror8(a0), a1e = ev_sxtb16(a1), a1o = ev_sxtb16_ror8(a1);
  uint32_t b0e = ev_sxtb16(b0), b0o = ev_sxtb16_ror8(b0), b1e = ev_sxtb16(b1), b1o = ev_sxtb16_ror8(b1);
  EV_DOT4(c[0], a0e, a0o, b0e, b0o);
  EV_DOT4(c[1], a0e, a0o, b1e, b1o);
  EV_DOT4(c[sc], a1e, a1o, b0e, b0o);
  EV_DOT4(c[sc + 1], a1e, a1o, b1e, b1o);
}

#endif /* EV_GEMM_DSP_H */

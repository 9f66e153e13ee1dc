/* gemm_dsp.h: int8 micro-kernels of the GEMM kernels (linear, patch_embed), called from TVM TIR
 * through T.call_extern (edgevit/targets/kernels/gemm.py and linear.py).
 *
 * Dot products. ev_gemm_dsp_RxC(c, sc, a, sa, b, sb, k) adds to the R x C int32 tile c[i*sc + j]
 * the whole K-long dot products c[i][j] += sum_{t<k} a[i*sa + t] * b[j*sb + t] (k % 4 == 0): the
 * tile's reduction loop lives here, with the accumulators in local variables, so that gcc
 * allocates the loop's registers on its own (a 4-value step called from TVM's loop nest got its
 * accumulators and split words spilled to the stack once inlined into the model's driver).
 * Each group of 4 int8 is read as ONE 32-bit word (memcpy: no strict-aliasing or alignment UB;
 * one LDR on Armv7E-M, which allows unaligned LDR) and split by SXTB16 into its even bytes (0, 2)
 * and, rotated by 8, its odd bytes (1, 3) as two int16 pairs; SMLAD multiplies both pairs and
 * accumulates. Pairing is the same on both operands, so even*even + odd*odd is the full 4-term
 * dot product. 2x2 is the main tile (per 4 k: 4 LDR + 8 SXTB16 + 8 SMLAD for 16 MACs, loop
 * unrolled twice), 1x2 and 1x1 cover odd row/column edges. ev_patch_dsp_1x4 / _1x1 do the same for
 * one image patch of patch_embed (im2col read in place). Results are exact: |products| <= 2^14,
 * and the int32 accumulator bounds of docs/integer-semantics.md hold.
 *
 * Requantize steps (exact int32 helpers of the fast requantize, linear.py `requantize_fast`):
 * ev_smmla(a, b, c) = c + floor(a * b / 2^32) (SMMLA), ev_ssat8 / ev_ssat16 clamp to the int8 /
 * int16 range (SSAT; gcc does not find SSAT itself once the loop hoists the bounds).
 *
 * On cores with the DSP extension (__ARM_FEATURE_DSP) / saturation (__ARM_FEATURE_SAT) the
 * instructions are used; elsewhere (the host tests, built with sanitizers) plain C computes the
 * same values.
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

/* c + the high word of the 64-bit product a * b. */
EV_INLINE int32_t ev_smmla(int32_t a, int32_t b, int32_t c) {
  int32_t r;
  __asm__("smmla %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}

/* Keeps gcc from hoisting the next step's loads (and their split words) above this point: the
 * unrolled loop then needs no more registers than one step. */
#define EV_STEP_BARRIER() __asm__ volatile("" ::: "memory")

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

EV_INLINE int32_t ev_smmla(int32_t a, int32_t b, int32_t c) { return c + (int32_t)(((int64_t)a * b) >> 32); }

#define EV_STEP_BARRIER() ((void)0)

#endif

#if defined(__ARM_FEATURE_SAT)

EV_INLINE int32_t ev_ssat8(int32_t x) {
  int32_t r;
  __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(x));
  return r;
}

EV_INLINE int32_t ev_ssat16(int32_t x) {
  int32_t r;
  __asm__("ssat %0, #16, %1" : "=r"(r) : "r"(x));
  return r;
}

#else

EV_INLINE int32_t ev_ssat8(int32_t x) { return x < -128 ? -128 : (x > 127 ? 127 : x); }

EV_INLINE int32_t ev_ssat16(int32_t x) { return x < -32768 ? -32768 : (x > 32767 ? 32767 : x); }

#endif

/* acc += dot4 of one pair of already split words. */
#define EV_DOT4(acc, ae, ao, be, bo) (acc) = ev_smlad((ao), (bo), ev_smlad((ae), (be), (acc)))

/* One 2 x 2 x 4 step: rows a, a + sa against rows b, b + sb. */
EV_INLINE void ev_dsp_step_2x2(int32_t *c00, int32_t *c01, int32_t *c10, int32_t *c11, const int8_t *a, int32_t sa,
                               const int8_t *b, int32_t sb) {
  uint32_t a0 = ev_load_s8x4(a), a1 = ev_load_s8x4(a + sa);
  uint32_t a0e = ev_sxtb16(a0), a0o = ev_sxtb16_ror8(a0), a1e = ev_sxtb16(a1), a1o = ev_sxtb16_ror8(a1);
  uint32_t b0 = ev_load_s8x4(b);
  uint32_t be = ev_sxtb16(b0), bo = ev_sxtb16_ror8(b0);
  EV_DOT4(*c00, a0e, a0o, be, bo);
  EV_DOT4(*c10, a1e, a1o, be, bo);
  b0 = ev_load_s8x4(b + sb);
  be = ev_sxtb16(b0), bo = ev_sxtb16_ror8(b0);
  EV_DOT4(*c01, a0e, a0o, be, bo);
  EV_DOT4(*c11, a1e, a1o, be, bo);
}

/* One 1 x 2 x 4 step: row a against rows b, b + sb. */
EV_INLINE void ev_dsp_step_1x2(int32_t *c00, int32_t *c01, const int8_t *a, const int8_t *b, int32_t sb) {
  uint32_t a0 = ev_load_s8x4(a), b0 = ev_load_s8x4(b);
  uint32_t a0e = ev_sxtb16(a0), a0o = ev_sxtb16_ror8(a0);
  EV_DOT4(*c00, a0e, a0o, ev_sxtb16(b0), ev_sxtb16_ror8(b0));
  b0 = ev_load_s8x4(b + sb);
  EV_DOT4(*c01, a0e, a0o, ev_sxtb16(b0), ev_sxtb16_ror8(b0));
}

/* One 1 x 1 x 4 step. */
EV_INLINE void ev_dsp_step_1x1(int32_t *c00, const int8_t *a, const int8_t *b) {
  uint32_t a0 = ev_load_s8x4(a), b0 = ev_load_s8x4(b);
  EV_DOT4(*c00, ev_sxtb16(a0), ev_sxtb16_ror8(a0), ev_sxtb16(b0), ev_sxtb16_ror8(b0));
}

EV_INLINE void ev_gemm_dsp_2x2(int32_t *c, int32_t sc, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb,
                               int32_t k) {
  int32_t c00 = c[0], c01 = c[1], c10 = c[sc], c11 = c[sc + 1];
  const int8_t *end = a + (k & ~7);
  for (; a != end; a += 8, b += 8) {
    ev_dsp_step_2x2(&c00, &c01, &c10, &c11, a, sa, b, sb);
    EV_STEP_BARRIER();
    ev_dsp_step_2x2(&c00, &c01, &c10, &c11, a + 4, sa, b + 4, sb);
  }
  if (k & 4) ev_dsp_step_2x2(&c00, &c01, &c10, &c11, a, sa, b, sb);
  c[0] = c00, c[1] = c01, c[sc] = c10, c[sc + 1] = c11;
}

EV_INLINE void ev_gemm_dsp_1x2(int32_t *c, int32_t sc, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb,
                               int32_t k) {
  int32_t c00 = c[0], c01 = c[1];
  const int8_t *end = a + (k & ~7);
  (void)sc, (void)sa;
  for (; a != end; a += 8, b += 8) {
    ev_dsp_step_1x2(&c00, &c01, a, b, sb);
    EV_STEP_BARRIER();
    ev_dsp_step_1x2(&c00, &c01, a + 4, b + 4, sb);
  }
  if (k & 4) ev_dsp_step_1x2(&c00, &c01, a, b, sb);
  c[0] = c00, c[1] = c01;
}

EV_INLINE void ev_gemm_dsp_1x1(int32_t *c, int32_t sc, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb,
                               int32_t k) {
  int32_t c00 = c[0];
  const int8_t *end = a + k;
  (void)sc, (void)sa, (void)sb;
  for (; a != end; a += 4, b += 4) ev_dsp_step_1x1(&c00, a, b);
  c[0] = c00;
}

/* One 1 x 4 x 4 step: row a against rows b, b + sb, b + 2 sb, b + 3 sb (one weight row at a time). */
EV_INLINE void ev_dsp_step_1x4(int32_t *c0, int32_t *c1, int32_t *c2, int32_t *c3, const int8_t *a, const int8_t *b,
                               int32_t sb) {
  uint32_t a0 = ev_load_s8x4(a), w = ev_load_s8x4(b);
  uint32_t ae = ev_sxtb16(a0), ao = ev_sxtb16_ror8(a0);
  EV_DOT4(*c0, ae, ao, ev_sxtb16(w), ev_sxtb16_ror8(w));
  EV_STEP_BARRIER();
  w = ev_load_s8x4(b + sb);
  EV_DOT4(*c1, ae, ao, ev_sxtb16(w), ev_sxtb16_ror8(w));
  EV_STEP_BARRIER();
  w = ev_load_s8x4(b + 2 * sb);
  EV_DOT4(*c2, ae, ao, ev_sxtb16(w), ev_sxtb16_ror8(w));
  EV_STEP_BARRIER();
  w = ev_load_s8x4(b + 3 * sb);
  EV_DOT4(*c3, ae, ao, ev_sxtb16(w), ev_sxtb16_ror8(w));
}

/* Patch embedding tiles (patch_embed.py): c[j] += sum_{ch, kh, kw} a[ch*sa_c + kh*sa_h + kw] *
 * b[j*sb + (ch*p + kh)*p + kw], one patch (a: its top-left pixel in the image) against 4 or 1
 * weight rows, p % 4 == 0. Not inlined: inside the kernel's loops over patches gcc spilled the
 * accumulators to keep the column values in registers; as a call (constants propagated into a
 * clone) the reduction gets every register. */
#define EV_PATCH_TILE __attribute__((noinline, unused)) static void

EV_PATCH_TILE ev_patch_dsp_1x4(int32_t *c, int32_t sc, const int8_t *a, int32_t sa_c, int32_t sa_h, const int8_t *b,
                               int32_t sb, int32_t channels, int32_t p) {
  int32_t c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
  (void)sc;
  for (int32_t ch = 0; ch < channels; ch++, a += sa_c) {
    const int8_t *row = a;
    _Pragma("GCC unroll 16") for (int32_t kh = 0; kh < p; kh++, row += sa_h) {
      for (int32_t kw = 0; kw < p; kw += 4, b += 4) ev_dsp_step_1x4(&c0, &c1, &c2, &c3, row + kw, b, sb);
    }
  }
  c[0] = c0, c[1] = c1, c[2] = c2, c[3] = c3;
}

EV_PATCH_TILE ev_patch_dsp_1x1(int32_t *c, int32_t sc, const int8_t *a, int32_t sa_c, int32_t sa_h, const int8_t *b,
                               int32_t sb, int32_t channels, int32_t p) {
  int32_t c0 = c[0];
  (void)sc, (void)sb;
  for (int32_t ch = 0; ch < channels; ch++, a += sa_c) {
    const int8_t *row = a;
    for (int32_t kh = 0; kh < p; kh++, row += sa_h) {
      for (int32_t kw = 0; kw < p; kw += 4, b += 4) ev_dsp_step_1x1(&c0, row + kw, b);
    }
  }
  c[0] = c0;
}

#endif /* EV_GEMM_DSP_H */

/* Fused integer CUBA neuron loop: every chip step of one layer in one call.
 *
 * The arithmetic is Lava 0.10 fixed_pt's CUBA update as documented in
 * rssnn_deploy/sim/simulator.py (the reference, checked array by array against Lava):
 *
 *   u = trunc(u * (4096 - iDecay) / 4096) + (a_in << 6)       int32, wraps mod 2^32
 *   u = u - 2^24 if u > 2^23;  u = u + 2^24 if u <= -2^23      one wrap only
 *   v = clip(trunc(v * (4096 - vDecay) / 4096) + u + (bias << 6), -(2^23-1), 2^23-1)
 *   s = v > (vThMant << 6);  v = 0 where s
 *
 * Every wrap and clip is applied unconditionally: where the reference loop's bounds show that
 * one cannot trigger, applying it is the identity, so the result is the same.
 * Truncating division by 4096 is branch-free: (p + ((p >> 63) & 4095)) >> 12.
 *
 * The module is also a (function-less) CPython extension so that setuptools builds it
 * for the running interpreter at install time; Python calls the kernel through ctypes
 * (rssnn_deploy/sim/fused/kernels.py), which releases the GIL for the duration of the call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuba.h"

/* One copy per vector width, picked at load time (GCC function multi-versioning) on
 * x86-64; elsewhere (aarch64: NEON is the baseline) one copy the compiler vectorises. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

#define U_LIMIT (1 << 23)
#define V_LIMIT ((1 << 23) - 1)
#define BLOCK_NEURONS 4096

static inline int32_t wrap32(int64_t x) { return (int32_t)(uint32_t)(uint64_t)x; }

static inline int64_t tdiv4096(int64_t p) { return (p + ((p >> 63) & 4095)) >> 12; }

/* a_in of one chip step for count samples of f neurons, wrapped to int32 (Lava's int32
 * channel), into x; base = (input row) * n * f + (first sample) * f.
 * Kinds: 1 float32 (exact integers below 2^24), 2 float64, 3 int32 sums of an int8 GEMM
 * with the weights split as 2 hi + lo (hi sums in columns [0, f), lo sums in [f, 2f) of
 * each sample's row), 4 int32 sums and 5 float32 sums (exact integers up to 2^24, so
 * int32 converts them exactly) of the weights divided by 2^shift, to which the weight
 * exponent (shift) still applies: left, or floor right (Lava's) when negative. One loop
 * per kind with no per-element branch, so that each vectorises. */
VECTOR_CLONES
static void load_step(const void *a, int a_kind, int64_t base, int64_t count, int64_t f,
                      int shift, int32_t *restrict x) {
    const int64_t w = count * f;
    const int left = shift > 0 ? shift : 0, right = shift < 0 ? -shift : 0;
    if (a_kind == 1) {
        const float *restrict af = (const float *)a + base;
        for (int64_t i = 0; i < w; i++) x[i] = (int32_t)af[i];
    } else if (a_kind == 5) {
        const float *restrict af = (const float *)a + base;
        for (int64_t i = 0; i < w; i++)
            x[i] = wrap32((int64_t)((uint64_t)(int64_t)(int32_t)af[i] << left) >> right);
    } else if (a_kind == 4) {
        const int32_t *restrict ai = (const int32_t *)a + base;
        for (int64_t i = 0; i < w; i++)
            x[i] = wrap32((int64_t)((uint64_t)(int64_t)ai[i] << left) >> right);
    } else if (a_kind == 3) {   /* the pairs of one sample are 2f apart: a row at a time */
        const int32_t *ai = (const int32_t *)a + 2 * base;
        for (int64_t c = 0; c < count; c++) {
            const int32_t *restrict hi = ai + c * 2 * f, *restrict lo = hi + f;
            int32_t *restrict dst = x + c * f;
            for (int64_t j = 0; j < f; j++) {
                int64_t v = 2 * (int64_t)hi[j] + lo[j];
                dst[j] = wrap32((int64_t)((uint64_t)v << left) >> right);
            }
        }
    } else {                    /* 2: float64, wrapped to int32 */
        const double *restrict ad = (const double *)a + base;
        for (int64_t i = 0; i < w; i++) {
            double v = ad[i];
            v -= 4294967296.0 * floor((v + 2147483648.0) / 4294967296.0);
            x[i] = wrap32((int64_t)v);
        }
    }
}

/* a6 = a_in 64 (wrapped to int32) in place, or with a DLIF gain mantissa g (has_gain):
 * p = a_in g;  a6 = wrap32(sgn(p) (|p| >> e) 64). The sign-magnitude shift is written
 * branch-free (m = p >> 63 is 0 or -1; (p ^ m) - m is |p|, and (q ^ m) - m gives q the
 * sign of p back) so that the loop vectorises; |p| < 2^53 (|a_in| <= 2^31, |g| < 2^22,
 * FusedLayer.problem), and 0 <= e <= 62. */
VECTOR_CLONES
static void scale_step(int64_t w, int32_t *restrict a6, int has_gain, int32_t g, int e) {
    if (!has_gain) {
        for (int64_t i = 0; i < w; i++) a6[i] = (int32_t)((uint32_t)a6[i] << 6);
        return;
    }
    for (int64_t i = 0; i < w; i++) {
        int64_t p = (int64_t)a6[i] * (int64_t)g;
        int64_t m = p >> 63;
        int64_t q = (int64_t)((uint64_t)((p ^ m) - m) >> e);
        a6[i] = (int32_t)((uint32_t)((q ^ m) - m) << 6);
    }
}

/* One step of a block of w neurons (constants tiled to the block). Separate function so
 * the compiler vectorises it. */
VECTOR_CLONES
static void step_block(int64_t w, const int32_t *restrict a6, const int32_t *restrict bias6,
                       const int32_t *restrict cu, const int32_t *restrict cv,
                       const int32_t *restrict theta, int32_t *restrict u,
                       int32_t *restrict v, uint8_t *restrict s) {
    for (int64_t j = 0; j < w; j++) {
        int32_t uu = wrap32(tdiv4096((int64_t)u[j] * cu[j]) + a6[j]);
        uu -= ((uu > U_LIMIT) - (uu <= -U_LIMIT)) * (2 * U_LIMIT);
        int32_t vv = wrap32(tdiv4096((int64_t)v[j] * cv[j]) + (int64_t)uu + bias6[j]);
        vv = vv > V_LIMIT ? V_LIMIT : (vv < -V_LIMIT ? -V_LIMIT : vv);
        int32_t spike = vv > theta[j];
        u[j] = uu;
        v[j] = spike ? 0 : vv;
        s[j] = (uint8_t)spike;
    }
}

/* This thread's scratch memory number `slot` (RSSNN_SCRATCH_SLOTS of them, so that a
 * caller holding one can call a function that uses another), at least `bytes`, kept
 * between calls (a layer of 76,032 neurons otherwise mapped and faulted in 1.3 MB on
 * every call); its old contents are not kept when it grows. NULL when it cannot be
 * allocated. */
void *rssnn_scratch(int slot, size_t bytes) {
    static __thread void *mem[RSSNN_SCRATCH_SLOTS];
    static __thread size_t size[RSSNN_SCRATCH_SLOTS];
    if (bytes > size[slot]) {
        free(mem[slot]);
        mem[slot] = malloc(bytes);
        size[slot] = mem[slot] ? bytes : 0;
    }
    return mem[slot];
}

/* Copy one block's step result into a (steps, n, f) record: in the state's own order,
 * or through perm (state neuron j goes to position perm[j] of the sample's row). */
#define STORE(TYPE, DST, SRC)                                                          \
    do {                                                                               \
        TYPE *d_ = (TYPE *)(DST);                                                      \
        for (int64_t c_ = 0; c_ < count; c_++) {                                       \
            TYPE *dr_ = d_ + c_ * f;                                                   \
            const __typeof__(*(SRC)) *sr_ = (SRC) + c_ * f;                            \
            if (perm)                                                                  \
                for (int64_t j_ = 0; j_ < f; j_++) dr_[perm[j_]] = (TYPE)sr_[j_];      \
            else                                                                       \
                for (int64_t j_ = 0; j_ < f; j_++) dr_[j_] = (TYPE)sr_[j_];            \
        }                                                                              \
    } while (0)

/*
 * Run samples [n0, n1) of one layer for chip steps 1..steps.
 *
 * steps, n, f  : chip steps, samples in the arrays, neurons per sample
 * a, a_kind    : synaptic input rows (a_rows, n, f); a_kind 0 none, 1 float32, 2 float64,
 *                3 int32 hi/lo pairs (a_rows, n, 2f), 4 int32 sums, 5 float32 sums;
 *                row r is what the neurons receive at chip step a_first + r, other steps 0
 * a_shift      : weight exponent for kinds 3, 4 and 5 (left, or floor right when negative)
 * gain         : NULL, or gain_len DLIF gain mantissas; step t uses
 *                gain[clamp(t - hops - 1, 0, gain_len - 1)], a' = sgn(a g)(|a g| >> gain_exp)
 * bias         : NULL, or int16 bias mantissas, (f,) or per sample (n, f)
 * cu, cv       : (f,) 4096 - iDecay, 4096 - vDecay;  theta: (f,) vThMant << 6 (clamped)
 * reset_mask   : (steps + 1,) non-zero at chip steps that zero u and v first
 * s_out, s_kind: (steps, n, f) spikes as 0/1 in uint8 (s_kind 0), float32 (1) or
 *                float64 (2): the dtype the next layer's synapse takes
 * u_rec, v_rec : (steps, n, f) int32 or NULL
 * v_final      : (n, f) int64, v after the last step
 * perm, s_perm : NULL, or (f,) position of state neuron j in the (C, H, W) order of a
 *                sample's row. Conv layers keep their state, a and spikes in channels-last
 *                (H, W, C) order, which their synapses produce and read; records and
 *                v_final always go out in (C, H, W) order, s_out only when s_perm.
 * Returns 0, or -1 when scratch memory could not be allocated.
 */
int rssnn_cuba_run(int64_t steps, int64_t n, int64_t f,
                   const void *a, int a_kind, int64_t a_rows, int64_t a_first, int a_shift,
                   const int32_t *gain, int64_t gain_len, int gain_exp, int64_t hops,
                   const int16_t *bias, int bias_per_sample,
                   const int32_t *cu, const int32_t *cv, const int32_t *theta,
                   const uint8_t *reset_mask, void *s_out, int s_kind, int32_t *u_rec,
                   int32_t *v_rec, int64_t *v_final, const int32_t *perm, int s_perm,
                   int64_t n0, int64_t n1) {
    int64_t block = BLOCK_NEURONS / (f > 0 ? f : 1);
    if (block < 1) block = 1;
    if (block > n1 - n0) block = n1 - n0;
    if (block < 1) return 0;
    int64_t width = block * f;
    /* With several samples to a block, the per-neuron constants are tiled over them, so
     * that a step is one flat loop over count * f neurons (vectorised whatever f is;
     * with f = 10 the per-sample loop ran at a quarter of the speed). A block of one
     * sample uses the constants as they are. */
    int tiled = block > 1;
    int32_t *mem = rssnn_scratch(RSSNN_SCRATCH_KERNEL, (size_t)width * (tiled ? 7 : 4) * sizeof(int32_t) + (size_t)width);
    if (!mem) return -1;
    int32_t *u = mem, *v = u + width, *a6 = v + width, *bias6 = a6 + width;
    int32_t *cu_t = tiled ? bias6 + width : (int32_t *)cu;
    int32_t *cv_t = tiled ? cu_t + width : (int32_t *)cv;
    int32_t *th_t = tiled ? cv_t + width : (int32_t *)theta;
    uint8_t *s = (uint8_t *)(bias6 + width * (tiled ? 4 : 1));
    memset(a6, 0, sizeof(int32_t) * width);
    memset(bias6, 0, sizeof(int32_t) * width);
    for (int64_t c = 0; c < block; c++) {
        if (tiled) {
            memcpy(cu_t + c * f, cu, sizeof(int32_t) * f);
            memcpy(cv_t + c * f, cv, sizeof(int32_t) * f);
            memcpy(th_t + c * f, theta, sizeof(int32_t) * f);
        }
        if (bias && !bias_per_sample)
            for (int64_t j = 0; j < f; j++) bias6[c * f + j] = (int32_t)bias[j] * 64;
    }
    const int64_t row = n * f;
    for (int64_t b0 = n0; b0 < n1; b0 += block) {
        int64_t count = (n1 - b0 < block) ? n1 - b0 : block;
        int64_t w = count * f;
        memset(u, 0, sizeof(int32_t) * w);
        memset(v, 0, sizeof(int32_t) * w);
        if (bias && bias_per_sample)
            for (int64_t i = 0; i < w; i++) bias6[i] = (int32_t)bias[b0 * f + i] * 64;
        for (int64_t t = 1; t <= steps; t++) {
            if (reset_mask[t]) {
                memset(u, 0, sizeof(int32_t) * w);
                memset(v, 0, sizeof(int32_t) * w);
            }
            int64_t r = t - a_first;
            if (a_kind && r >= 0 && r < a_rows) {
                load_step(a, a_kind, r * row + b0 * f, count, f, a_shift, a6);
                int64_t k = t - hops - 1;
                k = k < 0 ? 0 : (k >= gain_len ? gain_len - 1 : k);
                scale_step(w, a6, gain != NULL, gain ? gain[k] : 0, gain_exp);
            } else {
                memset(a6, 0, sizeof(int32_t) * w);
            }
            step_block(w, a6, bias6, cu_t, cv_t, th_t, u, v, s);
            int64_t at = (t - 1) * row + b0 * f;
            if (s_perm && perm) {
                if (s_kind == 0) STORE(uint8_t, (uint8_t *)s_out + at, s);
                else if (s_kind == 1) STORE(float, (float *)s_out + at, s);
                else STORE(double, (double *)s_out + at, s);
            } else if (s_kind == 0) {
                memcpy((uint8_t *)s_out + at, s, (size_t)w);
            } else if (s_kind == 1) {
                float *dst = (float *)s_out + at;
                for (int64_t i = 0; i < w; i++) dst[i] = (float)s[i];
            } else {
                double *dst = (double *)s_out + at;
                for (int64_t i = 0; i < w; i++) dst[i] = (double)s[i];
            }
            if (u_rec) STORE(int32_t, u_rec + at, u);
            if (v_rec) STORE(int32_t, v_rec + at, v);
        }
        STORE(int64_t, v_final + b0 * f, v);
    }
    return 0;
}


/*
 * Spike trains of neurons without synaptic input (an input layer driven by its bias
 * alone), looked up instead of simulated. Such a neuron's u stays 0, so its spikes
 * depend only on its bias, its v decay and threshold and the reset steps; for a layer
 * whose neurons share these, inputs.py runs rssnn_cuba_run once on every bias value
 * in [offset, offset + R) and packs each value's train into `words` 64-bit masks
 * (bit t % 64 of word t / 64 = spike at chip step t + 1), pattern[(value - offset) *
 * words + word]. This writes the trains of count neurons (one sample after another,
 * in the state's order) to out (steps, row) at out + t * row, as 0/1 in uint8 (s_kind
 * 0), float32 (1) or float64 (2). The bias values must lie in [offset, offset + R).
 */
VECTOR_CLONES
void rssnn_pattern_spikes(int64_t steps, int64_t count, const uint64_t *pattern,
                          int64_t words, const int16_t *bias, int32_t offset,
                          void *out, int s_kind, int64_t row) {
    enum { CHUNK = 1024 };
    uint64_t p[CHUNK];
    for (int64_t i0 = 0; i0 < count; i0 += CHUNK) {
        int64_t m = count - i0 < CHUNK ? count - i0 : CHUNK;
        for (int64_t w = 0; w * 64 < steps; w++) {
            for (int64_t i = 0; i < m; i++)
                p[i] = pattern[(int64_t)(bias[i0 + i] - offset) * words + w];
            int64_t t_end = steps - w * 64 < 64 ? steps - w * 64 : 64;
            for (int64_t b = 0; b < t_end; b++) {
                int64_t at = (w * 64 + b) * row + i0;
                if (s_kind == 0) {
                    uint8_t *o = (uint8_t *)out + at;
                    for (int64_t i = 0; i < m; i++) o[i] = (uint8_t)((p[i] >> b) & 1);
                } else if (s_kind == 1) {
                    float *o = (float *)out + at;
                    for (int64_t i = 0; i < m; i++) o[i] = (float)((p[i] >> b) & 1);
                } else {
                    double *o = (double *)out + at;
                    for (int64_t i = 0; i < m; i++) o[i] = (double)((p[i] >> b) & 1);
                }
            }
        }
    }
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cuba",
    "Fused integer CUBA neuron kernel; called through ctypes by rssnn_deploy.sim.fused.engine.",
    -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__cuba(void) { return PyModule_Create(&module); }

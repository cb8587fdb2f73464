/* A whole piece of a spiking network in one call: the input layer's spike trains
 * looked up, then per conv or dense layer an exact u8 x s8 -> s32 GEMM (AVX-512 VNNI) on
 * the previous layer's 0/1 spikes (conv: on their im2col rows, channels-last) and the
 * fused neuron loop (rssnn_cuba_run). Linked into the same extension as cuba.c.
 *
 * Why this exists (rssnn_deploy/sim/fused/piece.py): the same piece run from Python takes
 * Python's lock ~40 times (one torch GEMM and one kernel call per layer, with Python
 * between them). On this 2-core machine two threads doing that each ran a 128-sample
 * piece of 784-128-10 in 1.5-1.7 ms against 1.0 ms alone, while two *processes* kept
 * 1.03 ms each: the lock hand-overs, not the cores, were the limit. Here the piece
 * takes the lock once (ctypes releases it for the whole call). The GEMM is written by
 * hand because torch's (oneDNN) can only be reached through Python; it needs VNNI
 * (rssnn_piece_supported() says whether the CPU has it; without it fastsim.py keeps
 * the torch path).
 *
 * The GEMM: C (M x N) = A (M x K, u8 0/1, row-major) x B (K x N, s8), B packed as
 * (ceil(K/4), Np, 4) with Np = N rounded up to 16 and zeros beyond K and N, so that one
 * vpdpbusd adds 4 k-terms into 16 int32 columns; register tile 4 rows x 64 columns
 * (16 accumulators). Exact: |sum| <= 128 K < 2^31 for K < 2^24 (fastsim_layers.py checks).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuba.h"

/* One conv or dense layer as fastsim_piece.py hands it over (fastsim_piece._CPieceLayer). */
typedef struct {
    int64_t f;                  /* neurons */
    int64_t k;                  /* inputs: the previous layer's neurons */
    const int8_t *w;            /* packed weights (ceil(k/4), np, 4) */
    int64_t np;                 /* GEMM columns (f, or 2f when split) rounded up to 16 */
    int32_t shift;              /* weight exponent applied to the sums (a_shift) */
    int32_t gain_exp;
    int64_t split;              /* weights as 2 hi + lo: GEMM columns hi | lo (a_kind 3) */
    int64_t n_high;             /* input rows with a weight beyond int8: */
    const int64_t *high_rows;   /*   their indices */
    const int8_t *high;         /*   (n_high, f) multiples of 256 */
    const int16_t *bias;        /* (f,) or NULL */
    const int32_t *gain;        /* DLIF gains or NULL */
    int64_t gain_len;
    int64_t hops;
    const int32_t *cu, *cv, *theta;
    const uint8_t *reset_mask;  /* (steps + 1,) */
    /* conv layers (kind 1): k = kh * kw * in_c (im2col rows of channels-last spikes),
     * f = out_h * out_w * out_c in channels-last order, GEMM columns out_c (2 out_c split) */
    int64_t kind;
    int64_t in_h, in_w, in_c, kh, kw, sy, sx, py, px, dy, dx, out_h, out_w;
} rssnn_piece_layer;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_VNNI_CODE 1

int rssnn_piece_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
}

/* Register tile: 4 rows x 4 x 16 columns. 8 x 1, 6 x 2, 8 x 2 and 4 x 2 measured within
 * 5 % of it and of torch._int_mm on 2304 x 784 x 128 (≈ 1.08 ms, one core). */
#define TILE_MR 4
#define TILE_NB 4
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

static inline int32_t load4(const uint8_t *p) {
    int32_t x;
    memcpy(&x, p, 4);
    return x;
}

/* Rows m0..m0+MR-1 (rows past M read from `zero` and are not stored) x columns
 * n0..n0+16*NB of C. MR and NB are compile-time constants where this is inlined. */
VNNI static inline __attribute__((always_inline)) void
tile(int MR, int NB, int64_t m0, int64_t M, int64_t K, int64_t N, int64_t n0,
     const uint8_t *A, const uint8_t *zero, const int8_t *Bp, int64_t Np, int32_t *C) {
    __m512i acc[8][4];
    const uint8_t *row[8];
    for (int i = 0; i < MR; i++) {
        row[i] = m0 + i < M ? A + (m0 + i) * K : zero;
        for (int j = 0; j < NB; j++) acc[i][j] = _mm512_setzero_si512();
    }
    const int64_t k4 = K / 4;
    const int8_t *bp = Bp + n0 * 4;
    for (int64_t k = 0; k < k4; k++, bp += Np * 4) {
        __m512i b[4];
        for (int j = 0; j < NB; j++) b[j] = _mm512_loadu_si512(bp + j * 64);
        for (int i = 0; i < MR; i++) {
            __m512i x = _mm512_set1_epi32(load4(row[i] + 4 * k));
            for (int j = 0; j < NB; j++) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], x, b[j]);
        }
    }
    if (K % 4) {    /* the last 1-3 inputs, read without running past the row */
        __m512i b[4];
        for (int j = 0; j < NB; j++) b[j] = _mm512_loadu_si512(bp + j * 64);
        for (int i = 0; i < MR; i++) {
            uint8_t t[4] = {0, 0, 0, 0};
            memcpy(t, row[i] + 4 * k4, (size_t)(K % 4));
            __m512i x = _mm512_set1_epi32(load4(t));
            for (int j = 0; j < NB; j++) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], x, b[j]);
        }
    }
    for (int i = 0; i < MR && m0 + i < M; i++) {
        int32_t *c = C + (m0 + i) * N;
        for (int j = 0; j < NB; j++) {
            int64_t col = n0 + 16 * j;
            if (col + 16 <= N) {
                _mm512_storeu_si512(c + col, acc[i][j]);
            } else if (col < N) {
                __mmask16 m = (__mmask16)((1u << (N - col)) - 1u);
                _mm512_mask_storeu_epi32(c + col, m, acc[i][j]);
            }
        }
    }
}

VNNI static void gemm_u8s8(int64_t M, int64_t K, int64_t N, const uint8_t *A, const int8_t *Bp,
                           int64_t Np, int32_t *C, const uint8_t *zero) {
    for (int64_t n0 = 0; n0 < Np; n0 += 16 * TILE_NB) {
        int nb = Np - n0 >= 16 * TILE_NB ? TILE_NB : (int)((Np - n0) / 16);
        for (int64_t m0 = 0; m0 < M; m0 += TILE_MR) {
            switch (nb) {
                case 4: tile(TILE_MR, 4, m0, M, K, N, n0, A, zero, Bp, Np, C); break;
                case 3: tile(TILE_MR, 3, m0, M, K, N, n0, A, zero, Bp, Np, C); break;
                case 2: tile(TILE_MR, 2, m0, M, K, N, n0, A, zero, Bp, Np, C); break;
                default: tile(TILE_MR, 1, m0, M, K, N, n0, A, zero, Bp, Np, C); break;
            }
        }
    }
}

#else   /* not x86-64: the piece is not built; fastsim.py keeps its torch path */
int rssnn_piece_supported(void) { return 0; }
static void gemm_u8s8(int64_t M, int64_t K, int64_t N, const uint8_t *A, const int8_t *Bp,
                      int64_t Np, int32_t *C, const uint8_t *zero) {
    (void)M; (void)K; (void)N; (void)A; (void)Bp; (void)Np; (void)C; (void)zero;
}
#endif

/* Test hook: the GEMM alone (tests compare it with an int64 matmul). */
int rssnn_gemm_u8s8(int64_t M, int64_t K, int64_t N, const uint8_t *A, const int8_t *Bp,
                    int64_t Np, int32_t *C) {
    if (!rssnn_piece_supported()) return -2;
    uint8_t *zero = calloc((size_t)K + 4, 1);
    if (!zero) return -1;
    gemm_u8s8(M, K, N, A, Bp, Np, C, zero);
    free(zero);
    return 0;
}

/* im2col of `count` channels-last (in_h, in_w, in_c) spike images: one row of kh * kw *
 * in_c values, in (ky, kx, c) order, per output pixel; zeros where the window leaves the
 * image (padding). */
static void im2col(int64_t count, const rssnn_piece_layer *L, const uint8_t *src,
                   uint8_t *dst) {
    const int64_t H = L->in_h, W = L->in_w, C = L->in_c;
    for (int64_t r = 0; r < count; r++) {
        const uint8_t *img = src + r * H * W * C;
        for (int64_t oy = 0; oy < L->out_h; oy++) {
            for (int64_t ox = 0; ox < L->out_w; ox++) {
                const int64_t ix0 = ox * L->sx - L->px;
                const int inside_x = L->dx == 1 && ix0 >= 0 && ix0 + L->kw <= W;
                for (int64_t ky = 0; ky < L->kh; ky++) {
                    const int64_t iy = oy * L->sy - L->py + ky * L->dy;
                    if (inside_x && iy >= 0 && iy < H) {   /* one run of kw * C bytes */
                        memcpy(dst, img + (iy * W + ix0) * C, (size_t)(L->kw * C));
                        dst += L->kw * C;
                        continue;
                    }
                    for (int64_t kx = 0; kx < L->kw; kx++) {
                        const int64_t ix = ox * L->sx - L->px + kx * L->dx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
                            for (int64_t c = 0; c < C; c++) *dst++ = 0;
                        } else {
                            const uint8_t *p = img + (iy * W + ix) * C;
                            for (int64_t c = 0; c < C; c++) *dst++ = p[c];
                        }
                    }
                }
            }
        }
    }
}

/*
 * One piece of n samples: input biases (n, f0) int16 -> spike trains looked up in
 * pattern (see rssnn_pattern_spikes), or, when spikes_in is given, its (steps, n, f0)
 * 0/1 bytes as the input layer's spikes -> each layer of `layers` in turn. Writes the
 * last layer's spikes (steps, n, f_last) as 0/1 bytes and its final v (n, f_last).
 * Returns 0, -1 without memory, -2 when the CPU lacks VNNI.
 */
int rssnn_net_piece(int64_t steps, int64_t n, int64_t f0, const int16_t *bias_in,
                    const uint64_t *pattern, int64_t words, int32_t offset,
                    const uint8_t *spikes_in, int64_t n_layers,
                    const rssnn_piece_layer *layers, uint8_t *out_spikes, int64_t *out_v) {
    if (!rssnn_piece_supported()) return -2;
    const int64_t rows = steps - 1;   /* synaptic input reaches a layer from step 2 on */
    const int64_t r0 = rows > 0 ? rows : 0;
    int64_t widest = f0, kmax = f0, patch_max = 0;
    for (int64_t l = 0; l < n_layers; l++) {
        const rssnn_piece_layer *L = layers + l;
        if (L->f > widest) widest = L->f;
        if (L->k > kmax) kmax = L->k;
        if (L->kind == 1 && r0 * n * L->out_h * L->out_w * L->k > patch_max)
            patch_max = r0 * n * L->out_h * L->out_w * L->k;
    }
    size_t spikes = (size_t)(steps * n * widest);
    size_t sums = (size_t)(r0 * n * 2 * widest) * sizeof(int32_t);
    size_t vbytes = (size_t)(n * widest) * sizeof(int64_t);
    size_t patches_bytes = ((size_t)patch_max + 63) & ~(size_t)63;
    uint8_t *mem = rssnn_scratch(RSSNN_SCRATCH_PIECE, 2 * spikes + sums + vbytes + patches_bytes + (size_t)kmax + 64);
    if (!mem) return -1;
    uint8_t *s_prev = mem, *s_next = mem + spikes;
    int32_t *a = (int32_t *)(mem + 2 * spikes);
    int64_t *v_tmp = (int64_t *)((uint8_t *)a + sums);
    uint8_t *patches = (uint8_t *)v_tmp + vbytes;
    uint8_t *zero = patches + patches_bytes;
    memset(zero, 0, (size_t)kmax + 4);

    if (spikes_in)
        memcpy(s_prev, spikes_in, (size_t)(steps * n * f0));
    else
        rssnn_pattern_spikes(steps, n * f0, pattern, words, bias_in, offset, s_prev, 0, n * f0);
    for (int64_t l = 0; l < n_layers; l++) {
        const rssnn_piece_layer *L = layers + l;
        int last = l == n_layers - 1;
        const int conv = L->kind == 1;
        const int64_t pixels = conv ? L->out_h * L->out_w : 1;
        const int64_t oc = L->f / pixels;               /* sums per GEMM row */
        const int64_t cols = L->split ? 2 * oc : oc;
        if (rows > 0) {
            const int64_t m = rows * n * pixels;
            const uint8_t *x = s_prev;
            if (conv) {
                im2col(rows * n, L, s_prev, patches);
                x = patches;
            }
            gemm_u8s8(m, L->k, cols, x, L->w, L->np, a, zero);
            for (int64_t h = 0; h < L->n_high; h++) {     /* weights beyond int8 */
                const int64_t col = L->high_rows[h];
                const int8_t *e = L->high + h * oc;       /* (never with split) */
                for (int64_t r = 0; r < m; r++) {
                    if (!x[r * L->k + col]) continue;
                    int32_t *ar = a + r * cols;
                    for (int64_t j = 0; j < oc; j++) ar[j] += 256 * (int32_t)e[j];
                }
            }
            if (conv && L->split)     /* per pixel hi | lo -> 2 hi + lo, in place */
                for (int64_t r = 0; r < m; r++)
                    for (int64_t j = 0; j < oc; j++)
                        a[r * oc + j] = 2 * a[r * cols + j] + a[r * cols + oc + j];
        }
        uint8_t *s_out = last ? out_spikes : s_next;
        int a_kind = rows > 0 ? (L->split && !conv ? 3 : 4) : 0;
        int rc = rssnn_cuba_run(steps, n, L->f, rows > 0 ? a : NULL, a_kind, rows, 2,
                                L->shift, L->gain, L->gain_len, L->gain_exp, L->hops, L->bias, 0,
                                L->cu, L->cv, L->theta, L->reset_mask, s_out, 0, NULL, NULL,
                                last ? out_v : v_tmp, NULL, 0, 0, n);
        if (rc) return rc;
        uint8_t *t = s_prev;
        s_prev = s_next;
        s_next = t;
    }
    return 0;
}

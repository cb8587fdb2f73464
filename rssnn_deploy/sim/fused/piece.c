/* A whole piece of a spiking network in one call: the input layer's spike trains
 * looked up, then per conv or dense layer an exact u8 x s8 -> s32 GEMM on the previous
 * layer's 0/1 spikes (conv: on their im2col rows, channels-last) and the fused neuron
 * loop (rssnn_cuba_run). Linked into the same extension as cuba.c.
 *
 * Why this exists (rssnn_deploy/sim/fused/piece.py): the same piece run from Python takes
 * Python's lock ~40 times (one torch GEMM and one kernel call per layer, with Python
 * between them). On this 2-core machine two threads doing that each ran a 128-sample
 * piece of 784-128-10 in 1.5-1.7 ms against 1.0 ms alone, while two *processes* kept
 * 1.03 ms each: the lock hand-overs, not the cores, were the limit. Here the piece
 * takes the lock once (ctypes releases it for the whole call). The GEMM is written by
 * hand because torch's can only be reached through Python (and on CPUs without AVX-512
 * VNNI torch._int_mm is a scalar loop).
 *
 * The GEMM: C (M x N) = A (M x K, u8 0/1, row-major) x B (K x N, s8), B packed as
 * (ceil(K/4), Np, 4) with Np = N rounded up to 16 and zeros beyond K and N, so that one
 * 4-byte group of A meets 4 k-terms of each column. Three kernels share that layout,
 * chosen per layer (rssnn_piece_layer.gemm, see rssnn_gemm_kernels):
 *   RSSNN_GEMM_VNNI     AVX-512 VNNI: vpdpbusd adds 4 k-terms into 16 int32 columns;
 *   RSSNN_GEMM_AVX_VNNI AVX-VNNI (Intel client CPUs without AVX-512): the same on 8;
 *   RSSNN_GEMM_AVX2     AVX2: vpmaddubsw (u8 x s8 pairs summed into int16, saturating)
 *                       then vpaddw, widened by vpmaddwd every AVX2_QUADS groups;
 *   RSSNN_GEMM_PORTABLE plain C for any CPU (the compiler vectorises it as it can).
 * Exact for 0/1 A (the only A they are given; graded input takes the float path):
 * |sum| <= 128 K < 2^31 for K < 2^24 (layers.py checks K). AVX2: a pair sum
 * a0 w0 + a1 w1 lies in [-256, 254], so vpmaddubsw never saturates, and AVX2_QUADS = 128
 * int16 partial sums of such pairs lie in [-32768, 32512], inside int16, before they are
 * widened (tests/sim/test_fastsim_paths.py checks both bounds with -128 and +127 weights).
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
    int64_t gemm;               /* RSSNN_GEMM_* kernel of this layer's synaptic sums */
} rssnn_piece_layer;

#define RSSNN_GEMM_PORTABLE 0
#define RSSNN_GEMM_AVX2 1
#define RSSNN_GEMM_VNNI 2
#define RSSNN_GEMM_AVX_VNNI 3
#define RSSNN_GEMM_LAST RSSNN_GEMM_AVX_VNNI

static inline int32_t load4(const uint8_t *p) {
    int32_t x;
    memcpy(&x, p, 4);
    return x;
}

/* The portable kernel: per row of A, the weight groups of its non-zero 4-byte groups
 * added into the row of C (a quarter to a half of the groups of a spiking layer's
 * input are all zero). */
static void gemm_portable(int64_t M, int64_t K, int64_t N, const uint8_t *A,
                          const int8_t *Bp, int64_t Np, int32_t *C) {
    const int64_t k4 = (K + 3) / 4;
    for (int64_t m = 0; m < M; m++) {
        const uint8_t *a = A + m * K;
        int32_t *c = C + m * N;
        for (int64_t j = 0; j < N; j++) c[j] = 0;
        for (int64_t q = 0; q < k4; q++) {
            uint8_t t[4] = {0, 0, 0, 0};
            memcpy(t, a + 4 * q, (size_t)(K - 4 * q < 4 ? K - 4 * q : 4));
            if (!(t[0] | t[1] | t[2] | t[3])) continue;
            const int8_t *b = Bp + q * Np * 4;
            const int32_t t0 = t[0], t1 = t[1], t2 = t[2], t3 = t[3];
            for (int64_t j = 0; j < N; j++)
                c[j] += t0 * b[4 * j] + t1 * b[4 * j + 1] + t2 * b[4 * j + 2] + t3 * b[4 * j + 3];
        }
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86_KERNELS 1
/* AVX-VNNI needs gcc 11 or clang 12; older compilers build the other kernels */
#if (defined(__clang__) && __clang_major__ >= 12) || \
    (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11)
#define HAVE_AVX_VNNI 1
#endif

int rssnn_gemm_kernels(void) {
    __builtin_cpu_init();
    int mask = 1 << RSSNN_GEMM_PORTABLE;
    if (__builtin_cpu_supports("avx2")) mask |= 1 << RSSNN_GEMM_AVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        mask |= 1 << RSSNN_GEMM_VNNI;
#ifdef HAVE_AVX_VNNI
    if (__builtin_cpu_supports("avxvnni")) mask |= 1 << RSSNN_GEMM_AVX_VNNI;
#endif
    return mask;
}

/* ---- AVX-512 VNNI. Register tile: 4 rows x 4 x 16 columns. 8 x 1, 6 x 2, 8 x 2 and
 * 4 x 2 measured within 5 % of it and of torch._int_mm on 2304 x 784 x 128 (≈ 1.08 ms,
 * one core). */
#define TILE_MR 4
#define TILE_NB 4
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

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

VNNI static void gemm_vnni(int64_t M, int64_t K, int64_t N, const uint8_t *A, const int8_t *Bp,
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

/* ---- AVX2. Register tile: AVX2_MR rows x 2 x 8 columns of int16 partial sums (8
 * registers) next to 2 weight registers, one broadcast input and the ones for
 * vpmaddwd; the int32 sums are widened into C itself every AVX2_QUADS groups. */
#define AVX2_MR 4
#define AVX2_NB 2
#define AVX2_QUADS 128
#define AVX2 __attribute__((target("avx2")))

AVX2 static inline __attribute__((always_inline)) __m256i quad_avx2(const uint8_t *row,
                                                                    int64_t q, int64_t K) {
    if (4 * q + 4 <= K) return _mm256_set1_epi32(load4(row + 4 * q));
    uint8_t t[4] = {0, 0, 0, 0};    /* the last 1-3 inputs, without running past the row */
    memcpy(t, row + 4 * q, (size_t)(K - 4 * q));
    return _mm256_set1_epi32(load4(t));
}

/* A tile's int32 sums into rows m0.. (below M) and columns n0.. (below N) of C. */
AVX2 static inline __attribute__((always_inline)) void
store_avx2(int MR, int NB, int64_t m0, int64_t M, int64_t N, int64_t n0,
           __m256i acc[AVX2_MR][AVX2_NB], int32_t *C) {
    for (int i = 0; i < MR && m0 + i < M; i++) {
        int32_t *c = C + (m0 + i) * N;
        for (int j = 0; j < NB; j++) {
            int64_t col = n0 + 8 * j;
            if (col + 8 <= N) {
                _mm256_storeu_si256((__m256i *)(c + col), acc[i][j]);
            } else if (col < N) {
                int32_t t[8];
                _mm256_storeu_si256((__m256i *)t, acc[i][j]);
                memcpy(c + col, t, sizeof(int32_t) * (size_t)(N - col));
            }
        }
    }
}

AVX2 static inline __attribute__((always_inline)) void
tile_avx2(int MR, int NB, int64_t m0, int64_t M, int64_t K, int64_t N, int64_t n0,
          const uint8_t *A, const uint8_t *zero, const int8_t *Bp, int64_t Np, int32_t *C) {
    const uint8_t *row[AVX2_MR];
    for (int i = 0; i < MR; i++) row[i] = m0 + i < M ? A + (m0 + i) * K : zero;
    const __m256i ones = _mm256_set1_epi16(1);
    const int64_t k4 = (K + 3) / 4;
    __m256i acc[AVX2_MR][AVX2_NB];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NB; j++) acc[i][j] = _mm256_setzero_si256();
    for (int64_t q0 = 0; q0 < k4; q0 += AVX2_QUADS) {
        const int64_t q1 = q0 + AVX2_QUADS < k4 ? q0 + AVX2_QUADS : k4;
        __m256i s16[AVX2_MR][AVX2_NB];
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NB; j++) s16[i][j] = _mm256_setzero_si256();
        const int8_t *bp = Bp + q0 * Np * 4 + n0 * 4;
        for (int64_t q = q0; q < q1; q++, bp += Np * 4) {
            __m256i b[AVX2_NB];
            for (int j = 0; j < NB; j++) b[j] = _mm256_loadu_si256((const __m256i *)(bp + j * 32));
            for (int i = 0; i < MR; i++) {
                __m256i x = quad_avx2(row[i], q, K);
                for (int j = 0; j < NB; j++)
                    s16[i][j] = _mm256_add_epi16(s16[i][j], _mm256_maddubs_epi16(x, b[j]));
            }
        }
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NB; j++)
                acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(s16[i][j], ones));
    }
    store_avx2(MR, NB, m0, M, N, n0, acc, C);
}

AVX2 static void gemm_avx2(int64_t M, int64_t K, int64_t N, const uint8_t *A, const int8_t *Bp,
                           int64_t Np, int32_t *C, const uint8_t *zero) {
    for (int64_t n0 = 0; n0 < Np; n0 += 8 * AVX2_NB) {
        for (int64_t m0 = 0; m0 < M; m0 += AVX2_MR)
            tile_avx2(AVX2_MR, AVX2_NB, m0, M, K, N, n0, A, zero, Bp, Np, C);
    }
}

#ifdef HAVE_AVX_VNNI
/* ---- AVX-VNNI: the AVX2 tile with vpdpbusd (ymm) in place of the int16 stage. */
#define AVX_VNNI __attribute__((target("avx2,avxvnni")))

AVX_VNNI static inline __attribute__((always_inline)) void
tile_avx_vnni(int MR, int NB, int64_t m0, int64_t M, int64_t K, int64_t N, int64_t n0,
              const uint8_t *A, const uint8_t *zero, const int8_t *Bp, int64_t Np,
              int32_t *C) {
    const uint8_t *row[AVX2_MR];
    for (int i = 0; i < MR; i++) row[i] = m0 + i < M ? A + (m0 + i) * K : zero;
    const int64_t k4 = (K + 3) / 4;
    __m256i acc[AVX2_MR][AVX2_NB];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NB; j++) acc[i][j] = _mm256_setzero_si256();
    const int8_t *bp = Bp + n0 * 4;
    for (int64_t q = 0; q < k4; q++, bp += Np * 4) {
        __m256i b[AVX2_NB];
        for (int j = 0; j < NB; j++) b[j] = _mm256_loadu_si256((const __m256i *)(bp + j * 32));
        for (int i = 0; i < MR; i++) {
            __m256i x = quad_avx2(row[i], q, K);
            for (int j = 0; j < NB; j++) acc[i][j] = _mm256_dpbusd_avx_epi32(acc[i][j], x, b[j]);
        }
    }
    store_avx2(MR, NB, m0, M, N, n0, acc, C);
}

AVX_VNNI static void gemm_avx_vnni(int64_t M, int64_t K, int64_t N, const uint8_t *A,
                                   const int8_t *Bp, int64_t Np, int32_t *C,
                                   const uint8_t *zero) {
    for (int64_t n0 = 0; n0 < Np; n0 += 8 * AVX2_NB) {
        for (int64_t m0 = 0; m0 < M; m0 += AVX2_MR)
            tile_avx_vnni(AVX2_MR, AVX2_NB, m0, M, K, N, n0, A, zero, Bp, Np, C);
    }
}
#endif

#else   /* not x86-64: the portable kernel only */
int rssnn_gemm_kernels(void) { return 1 << RSSNN_GEMM_PORTABLE; }
#endif

/* C = A x B by `kernel` (which the caller has checked the CPU runs); `zero` holds K + 4
 * zero bytes, read in place of the rows past M of a partial tile. */
static void gemm_u8s8(int kernel, int64_t M, int64_t K, int64_t N, const uint8_t *A,
                      const int8_t *Bp, int64_t Np, int32_t *C, const uint8_t *zero) {
#ifdef HAVE_X86_KERNELS
    if (kernel == RSSNN_GEMM_VNNI) {
        gemm_vnni(M, K, N, A, Bp, Np, C, zero);
        return;
    }
    if (kernel == RSSNN_GEMM_AVX2) {
        gemm_avx2(M, K, N, A, Bp, Np, C, zero);
        return;
    }
#ifdef HAVE_AVX_VNNI
    if (kernel == RSSNN_GEMM_AVX_VNNI) {
        gemm_avx_vnni(M, K, N, A, Bp, Np, C, zero);
        return;
    }
#endif
#endif
    (void)kernel;
    (void)zero;
    gemm_portable(M, K, N, A, Bp, Np, C);
}

static int runs_here(int64_t kernel) {
    return kernel >= 0 && kernel <= RSSNN_GEMM_LAST && (rssnn_gemm_kernels() >> kernel) & 1;
}

/* The GEMM alone, for the fused engine's layer-by-layer path and the tests (which
 * compare it with an int64 matmul). Returns 0, -1 without memory, -2 when the CPU
 * cannot run `kernel`. */
int rssnn_gemm_u8s8(int64_t M, int64_t K, int64_t N, const uint8_t *A, const int8_t *Bp,
                    int64_t Np, int32_t *C, int kernel) {
    if (!runs_here(kernel)) return -2;
    uint8_t *zero = calloc((size_t)K + 4, 1);
    if (!zero) return -1;
    gemm_u8s8(kernel, M, K, N, A, Bp, Np, C, zero);
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
 * Returns 0, -1 without memory, -2 when the CPU cannot run a layer's GEMM kernel.
 */
int rssnn_net_piece(int64_t steps, int64_t n, int64_t f0, const int16_t *bias_in,
                    const uint64_t *pattern, int64_t words, int32_t offset,
                    const uint8_t *spikes_in, int64_t n_layers,
                    const rssnn_piece_layer *layers, uint8_t *out_spikes, int64_t *out_v) {
    for (int64_t l = 0; l < n_layers; l++)
        if (!runs_here(layers[l].gemm)) return -2;
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
            gemm_u8s8((int)L->gemm, m, L->k, cols, x, L->w, L->np, a, zero);
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

/* The fused simulator's C entry points shared between cuba.c (the neuron loop,
 * the input lookup) and piece.c (whole pieces of dense networks); see the
 * definitions for what each argument means. */
#ifndef RSSNN_FUSED_CUBA_H
#define RSSNN_FUSED_CUBA_H
#include <stddef.h>
#include <stdint.h>

/* per-thread scratch areas kept between calls: rssnn_cuba_run's, and a whole piece's
 * (which calls rssnn_cuba_run while holding its own) */
#define RSSNN_SCRATCH_KERNEL 0
#define RSSNN_SCRATCH_PIECE 1
#define RSSNN_SCRATCH_SLOTS 2
void *rssnn_scratch(int slot, size_t bytes);

int rssnn_cuba_run(int64_t steps, int64_t n, int64_t f,
                   const void *a, int a_kind, int64_t a_rows, int64_t a_first, int a_shift,
                   const int32_t *gain, int64_t gain_len, int gain_exp, int64_t hops,
                   const int16_t *bias, int bias_per_sample,
                   const int32_t *cu, const int32_t *cv, const int32_t *theta,
                   const uint8_t *reset_mask, void *s_out, int s_kind, int32_t *u_rec,
                   int32_t *v_rec, int64_t *v_final, const int32_t *perm, int s_perm,
                   int64_t n0, int64_t n1);

void rssnn_pattern_spikes(int64_t steps, int64_t count, const uint64_t *pattern,
                          int64_t words, const int16_t *bias, int32_t offset,
                          void *out, int s_kind, int64_t row);

#endif

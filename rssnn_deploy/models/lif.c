/* The training-time LIF/DLIF loop over T steps with the triangle surrogate, forward and
 * backward, one pass over memory each (rssnn_deploy.models.neurons.LIFSequence calls these
 * through ctypes; see its docstring for the equations).
 *
 * Why C: in torch, the backward alone is eight full passes over (T, N, ...) tensors
 * (distance, |x|, γ − |x|, clamp, scale, two products, a difference) plus a multiply-
 * add per step, each allocating; here it is one pass, the state of step t+1 still in
 * cache. No library offers this recursion (it is not a scan torch provides), and
 * torch.compile of the reference loop ran no faster than eager torch after 48 s of
 * compiling (see rssnn_deploy/models/neurons.py).
 *
 * Exactness: the forward does the reference loop's float operations in its order
 * ((λ·v)·(1 − s) + d, then v < Vth), in the tensor's own precision (no FMA: built
 * without -ffast-math and for the generic x86-64 target), so membranes and spikes equal
 * torch's bit for bit; the backward agrees with autograd's up to rounding.
 *
 * Built by setup.py as an optional extension (a Python module with no methods, so that
 * setuptools compiles it for the running interpreter); without it the torch path runs.
 */
#include <Python.h>
#include <stdint.h>

/* One copy per vector width, picked at load time (GCC function multi-versioning);
 * none of the targets enables FMA, so no multiply-add is contracted. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* quiet[t] = 1 − s[t]. Each call does n neurons of every step; consecutive steps lie
 * `row` elements apart in mem/quiet and `dstride` apart in drive (0 for a time-constant
 * input), so callers can split the neurons between threads. */
#define LIF_FORWARD(NAME, REAL)                                                         \
    VECTOR_CLONES int NAME(const REAL *drive, int64_t dstride, REAL *mem, REAL *quiet, int64_t steps, \
             int64_t n, int64_t row, double decay_d, double threshold_d) {              \
        const REAL decay = (REAL)decay_d, threshold = (REAL)threshold_d;                \
        for (int64_t t = 0; t < steps; ++t) {                                           \
            const REAL *d = drive + t * dstride;                                        \
            REAL *v = mem + t * row, *q = quiet + t * row;                              \
            if (t == 0) {                                                               \
                for (int64_t i = 0; i < n; ++i) {                                       \
                    v[i] = d[i];                                                        \
                    q[i] = v[i] < threshold ? (REAL)1 : (REAL)0;                        \
                }                                                                       \
            } else {                                                                    \
                const REAL *vp = v - row, *qp = q - row;                                \
                for (int64_t i = 0; i < n; ++i) {                                       \
                    REAL carried = decay * vp[i];                                       \
                    carried = carried * qp[i];                                          \
                    v[i] = carried + d[i];                                              \
                    q[i] = v[i] < threshold ? (REAL)1 : (REAL)0;                        \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        return 0;                                                                       \
    }

/* grad[t] = ḡv[t] + ḡs[t]·g[t] + λ·((1 − s[t]) − v[t]·g[t])·grad[t+1] (the last term
 * without bptr), g = max(0, γ − |v − Vth|) / γ². gv may be NULL (no gradient reaches
 * the membranes). The four loop bodies differ only in which terms they add, so each
 * stays branch-free and vectorises. */
#define LIF_SLOPE(REAL)                                                                 \
    REAL x = v[i] - threshold;                                                          \
    REAL ax = x < 0 ? -x : x;                                                           \
    REAL slope = gamma - ax;                                                            \
    slope = (slope > 0 ? slope : (REAL)0) * inv_area;

#define LIF_BACKWARD(NAME, REAL)                                                        \
    VECTOR_CLONES int NAME(const REAL *mem, const REAL *quiet, const REAL *gs,          \
                           const REAL *gv, REAL *grad, int64_t steps, int64_t n,        \
                           int64_t row, double decay_d, double threshold_d,             \
                           double gamma_d, int bptr) {                                  \
        const REAL decay = (REAL)decay_d, threshold = (REAL)threshold_d;                \
        const REAL gamma = (REAL)gamma_d, inv_area = (REAL)(1.0 / (gamma_d * gamma_d)); \
        for (int64_t t = steps - 1; t >= 0; --t) {                                      \
            const REAL *restrict v = mem + t * row, *restrict q = quiet + t * row;      \
            const REAL *restrict s_bar = gs + t * row;                                  \
            REAL *restrict out = grad + t * row;                                        \
            const REAL *restrict next = out + row;                                      \
            const int carry = t + 1 < steps && !bptr;                                   \
            if (gv) {                                                                   \
                const REAL *restrict v_bar = gv + t * row;                              \
                if (carry) {                                                            \
                    for (int64_t i = 0; i < n; ++i) {                                   \
                        LIF_SLOPE(REAL)                                                 \
                        out[i] = slope * s_bar[i] + v_bar[i]                            \
                                 + decay * (q[i] - v[i] * slope) * next[i];             \
                    }                                                                   \
                } else {                                                                \
                    for (int64_t i = 0; i < n; ++i) {                                   \
                        LIF_SLOPE(REAL)                                                 \
                        out[i] = slope * s_bar[i] + v_bar[i];                           \
                    }                                                                   \
                }                                                                       \
            } else if (carry) {                                                         \
                for (int64_t i = 0; i < n; ++i) {                                       \
                    LIF_SLOPE(REAL)                                                     \
                    out[i] = slope * s_bar[i] + decay * (q[i] - v[i] * slope) * next[i];\
                }                                                                       \
            } else {                                                                    \
                for (int64_t i = 0; i < n; ++i) {                                       \
                    LIF_SLOPE(REAL)                                                     \
                    out[i] = slope * s_bar[i];                                          \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        return 0;                                                                       \
    }

LIF_FORWARD(rssnn_lif_forward_f32, float)
LIF_FORWARD(rssnn_lif_forward_f64, double)
LIF_BACKWARD(rssnn_lif_backward_triangle_f32, float)
LIF_BACKWARD(rssnn_lif_backward_triangle_f64, double)

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lif",
    "Fused LIF training loop (triangle surrogate); called through ctypes by "
    "rssnn_deploy.models.neurons.",
    -1, NULL,
};

PyMODINIT_FUNC PyInit__lif(void) { return PyModule_Create(&module); }

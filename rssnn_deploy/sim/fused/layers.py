"""What the fused engine (``rssnn_deploy.sim.fused.engine``) holds for each layer: its neuron
constants in the kernel's order and form, and how its synaptic sums are formed.

Synapses. 0/1 spikes times integer weights, summed in int32, is exact while the sum
stays below 2³¹, so dense and conv layers with binary input use an int8 × int8 → int32
GEMM (which one ``dispatch`` decides: ``torch._int_mm``, oneDNN, on CPUs with
AVX-512 VNNI; else a C kernel of ``piece.c``, ``c_gemm``; or the float32 GEMM
below): the weights as ``2^k · m`` with int8 ``m``
(Lava's 8-bit mixed-sign mantissas are even, so ``k = 1``), or as the int8 residue
modulo 256 plus 256 × a small GEMM over the few input rows holding a weight beyond int8
(784-128-10 with N(0, 30) weights: 2 such rows of 784, 7.0 instead of 10.5 µs a sample
for both layers), else ``2·hi + lo`` (hi int8, lo ∈ {0, 1}, two GEMM halves); conv
layers as im2col (a strided view of the channels-last spikes, copied into (pixels,
kH·kW·C) rows) times the (kH·kW·C, OC) weights, block-diagonal over groups, used while
the sums stay below Lava's 24-bit wrap and the rows are long enough (below).
Dense layers the int8 GEMM does not take (graded input, larger weights, or a machine
whose product is ``fp32``) use a float32 GEMM of their integer weights where
``dispatch``'s bound makes it exact, handing the kernel float32 sums with the
weight exponent still to apply; conv layers, larger sums and delays keep the
reference's synapses (float32 where provably exact, float64 otherwise; channels-last
conv output).
Measured on this 2-core AVX-512 machine (CPU time of one warm thread per frame, 20 %
of the inputs spiking): im2col + int8 GEMM against torch's float32 channels-last conv,
PilotNet-LIF conv 2–5 (rows kH·kW·C = 216–576): 90 / 33 / 15 / 18 µs against 205 / 72 /
30 / 33 µs; but with short rows the float conv wins: PilotNet conv 1 (27) 129 against
84 µs, 1×28×28-8c3 (9) 40 against 25 µs, 8c3-16c3s2 (72) 11 against 6 µs; hence int8
from rows of ``IM2COL_MIN_K`` = 128 on in the Python-driven piece (the whole-piece C
path, ``piece``, runs its own im2col and int8 GEMM on every row length:
``piece_w``). An event-driven C synapse (adding the weight rows of the inputs that
spiked, as Loihi does) was slower than both on conv layers
(PilotNet conv 2: 315 µs at 10 % density) and beat the int8 GEMM on 784-128 dense rows
only below ≈ 10 % input density (2.2 against 2.4 ms for 2,304 rows at 10 %, 5.3
against 2.3 ms at 30 %; the benchmark's input layer spikes at ≈ 25 %), so it was not
kept.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

from rssnn_deploy.sim.fused import dispatch, kernels
from rssnn_deploy.sim.ops import F32_EXACT
from rssnn_deploy.spec import DECAY_ONE, STATE_SHIFT

__all__ = ["IM2COL_MIN_K", "Take", "chw_order", "Int8Weights", "pack_weights", "c_gemm",
           "int8_weights", "FusedLayer", "im2col_weights", "row_major"]

#: shortest im2col row (kH·kW·C) for which conv layers use the int8 GEMM; shorter
#: ones use torch's float32 channels-last conv (see the module notes)
IM2COL_MIN_K = 128

#: ``take(shape, dtype)`` → an uninitialised tensor (the engine's per-thread workspace)
Take = Callable[[Tuple[int, ...], torch.dtype], torch.Tensor]


def chw_order(shape: Tuple[int, ...]) -> Optional[np.ndarray]:
    """For a (C, H, W) layer: the (C, H, W) index of each position of the channels-last
    (H, W, C) order its state, spikes and synaptic sums are kept in; else ``None``."""
    if len(shape) != 3:
        return None
    c, h, w = shape
    return np.ascontiguousarray(np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0)
                                .reshape(-1), dtype=np.int32)


class Int8Weights:
    """Exact int8 GEMM weights for integer weights ``w`` (K, N), one of three forms:

    * ``w = 2^shift · m`` with int8 ``m``: ``main`` = m (K, N), one GEMM (Lava's 8-bit
      mixed-sign mantissas are even, so shift = 1 makes them int8);
    * ``w / 2^shift = m + 256·e`` with ``m`` the int8 residue and ``e`` ∈ {−1, 0, 1}
      non-zero only on the few input rows ``rows`` holding a weight beyond int8: the
      GEMM with ``main`` = m plus 256 × a small GEMM of those input columns with
      ``high`` = e (K', N), chosen while K' ≤ K / 4;
    * else, for ``w`` in [−256, 255], ``w = 2·hi + lo`` (hi int8, lo ∈ {0, 1}):
      ``main`` = hi | lo (K, 2N), ``split``.
    """

    def __init__(self, main: torch.Tensor, shift: int, split: bool = False,
                 rows: Optional[torch.Tensor] = None, high: Optional[torch.Tensor] = None):
        self.main, self.shift, self.split, self.rows, self.high = main, shift, split, rows, high
        self._packed: Dict[str, Tuple[np.ndarray, int]] = {}

    def packed(self, part: str = "main") -> Tuple[np.ndarray, int]:
        """``main`` or ``high`` in the C GEMM's layout (``pack_weights``), made once."""
        if part not in self._packed:
            self._packed[part] = pack_weights(getattr(self, part).numpy())
        return self._packed[part]

    def matmul(self, x: torch.Tensor, out: Optional[torch.Tensor] = None,
               take: Optional[Take] = None, gemm: str = "int_mm") -> torch.Tensor:
        """x (M, K) int8 0/1 → (M, N) int32 sums of ``w / 2^shift`` (or (M, 2N) hi | lo),
        into ``out`` when given (scratch for the high rows from ``take``), by
        ``torch._int_mm`` (``gemm`` = "int_mm") or the C kernel named ``gemm``."""
        if gemm == "int_mm":
            a = torch._int_mm(x, self.main) if out is None else \
                torch._int_mm(x, self.main, out=out)
        else:
            a = c_gemm(x, *self.packed(), self.main.shape[1], gemm, out)
        if self.rows is not None:
            xh = row_major(x.index_select(1, self.rows), take)
            a.add_(torch._int_mm(xh, self.high) if gemm == "int_mm" else
                   c_gemm(xh, *self.packed("high"), self.high.shape[1], gemm), alpha=256)
        return a


def pack_weights(w: np.ndarray) -> Tuple[np.ndarray, int]:
    """int8 weights (K, N) → the C GEMM's layout (ceil(K/4), Np, 4) with Np = N rounded
    up to 16, zeros beyond K and N; and Np."""
    k, n = w.shape
    kp, n_pad = -(-k // 4) * 4, -(-n // 16) * 16
    full = np.zeros((kp, n_pad), dtype=np.int8)
    full[:k, :n] = w
    return np.ascontiguousarray(full.reshape(kp // 4, 4, n_pad).transpose(0, 2, 1)), n_pad


def c_gemm(x: torch.Tensor, packed: np.ndarray, n_pad: int, n: int, kernel: str,
           out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x (M, K) row-major 0/1 bytes × packed int8 weights (``pack_weights``) → (M, n)
    int32, by the C kernel ``kernel`` (into ``out`` when given). ctypes releases
    Python's lock for the call."""
    m, k = x.shape
    out = torch.empty((m, n), dtype=torch.int32) if out is None else out
    rc = kernels.GEMM(m, k, n, x.data_ptr(), packed.ctypes.data, n_pad, out.data_ptr(),
                      kernels.GEMM_IDS[kernel])
    if rc:
        raise MemoryError(f"rssnn_gemm_u8s8 ({kernel}) failed: {rc}")
    return out


def int8_weights(w: np.ndarray) -> Optional[Int8Weights]:
    """The cheapest exact int8 form of ``w`` (K, N) (see ``Int8Weights``), or ``None``."""
    if not w.size:
        return None
    shift = 0
    while shift < 8 and not np.any(w & ((2 << shift) - 1)):
        shift += 1
    m = w >> shift
    if -128 <= m.min() and m.max() <= 127:
        return Int8Weights(row_major(torch.as_tensor(m, dtype=torch.int8)), shift)
    low = ((m + 128) & 255) - 128                 # m modulo 256, in [−128, 127]
    e = (m - low) >> 8
    rows = np.flatnonzero(np.any(e != 0, axis=1))
    if np.abs(e).max() <= 1 and len(rows) <= w.shape[0] // 4:
        return Int8Weights(row_major(torch.as_tensor(low, dtype=torch.int8)), shift,
                            rows=torch.as_tensor(rows, dtype=torch.int64),
                            high=row_major(torch.as_tensor(e[rows], dtype=torch.int8)))
    if -256 <= w.min() and w.max() <= 255:
        hi = np.floor_divide(w, 2)
        return Int8Weights(row_major(torch.as_tensor(np.concatenate([hi, w - 2 * hi], axis=1),
                                                       dtype=torch.int8)), 0, split=True)
    return None


class FusedLayer:
    """One neuron layer's constants as the kernel takes them (contiguous numpy), in the
    order of its state: channels-last (H, W, C) for (C, H, W) layers.

    ``mode`` says how its synaptic sums are formed: ``"int8"`` (an exact int8 GEMM on
    0/1 spikes, im2col for conv; see the module notes), ``"fp32"`` (a dense layer's
    float32 GEMM of its integer weights, exact by the bound ``dispatch``
    checks), ``"torch"`` (the reference's synapse: float32 GEMM/conv where exact,
    float64 otherwise) or ``"delays"`` (the reference's delay slots); ``None`` for the
    input layer. ``product`` names it as ``dispatch`` does, for the machine's
    product ``machine`` (``"vnni"``, ``"avx2"``, …, ``"fp32"``, ``"fp64"``, ``"delays"``).
    """

    def __init__(self, st, in_shape: Tuple[int, ...], input_max: float = 1.0,
                 machine: str = "fp32") -> None:
        f = int(np.prod(st.shape))
        n = st.neuron
        self.order = chw_order(tuple(st.shape))
        order = self.order

        def per_neuron(value, fn) -> np.ndarray:
            arr = np.broadcast_to(np.asarray(value).astype(np.int64), st.shape).reshape(f)
            return fn(arr if order is None else arr[order])

        self.f = f
        self.cu = per_neuron(n.i_decay, lambda d: DECAY_ONE - d)
        self.cv = per_neuron(n.v_decay, lambda d: DECAY_ONE - d)
        theta = per_neuron(n.vth_mant, lambda m: m << STATE_SHIFT)
        # v stays within ±(2²³ − 1): clamping θ to ±2³⁰ keeps every comparison v > θ
        self.theta = np.ascontiguousarray(np.clip(theta, -(1 << 30), 1 << 30), dtype=np.int32)
        # neurons sharing v decay and threshold: without synaptic input their spike
        # trains depend on the bias alone (see _input_patterns)
        self.shared_v = bool(f and np.all(self.cv == self.cv[0])
                             and np.all(self.theta == self.theta[0]))
        self.bias = None
        if st.bias is not None:   # the reference holds wrap16(b) << 6 as float64
            b = (torch.broadcast_to(st.bias, st.shape).reshape(f) / float(1 << 6)).cpu().numpy()
            self.bias = np.ascontiguousarray((b if order is None else b[order]).astype(np.int16))
        self.gains = None
        self.gain_exp = 0
        if st.gains is not None:
            self.gains = np.ascontiguousarray(st.gains.cpu().numpy().astype(np.int32))
            self.gain_exp = int(st.neuron.gain_exp)
        self.hops = int(st.timing.hops)
        self.input_max = input_max                     # largest input value (graded > 1)
        self.mode: Optional[str] = None
        self.product: Optional[str] = None
        self.shift = 0                                 # added to the sums' exponent
        self.int_w: Optional[Int8Weights] = None      # int8 GEMM weights
        self.gemm = "int_mm"                           # which int8 GEMM: torch or a C kernel
        self.split = False                             # int_w holds hi | lo halves
        self.w32: Optional[torch.Tensor] = None        # (K, N) float32 weights ("fp32")
        self.conv: Optional[Tuple[int, ...]] = None    # conv: kH, kW, stride, padding, dilation
        # the exact int8 form whatever the im2col row length, for whole pieces in C
        # (piece.py): its weights, and the exponent its sums take
        self.piece_w: Optional[Int8Weights] = None
        self.piece_shift = 0
        syn = st.synapse
        if syn is None:
            return
        in_order = chw_order(tuple(in_shape))         # input rows arrive channels-last
        w = np.asarray(syn.w_eff, dtype=np.int64)
        if st.kind == "dense" and syn.delays != [0]:
            self.mode = self.product = "delays"
            return
        short_rows = False
        if st.kind == "dense":
            if in_order is not None:
                w = w[:, in_order]
            if input_max == 1.0 and w.shape[1] < (1 << 23):    # |Σ| ≤ 256·K < 2³¹
                self.piece_w = int8_weights(w.T)
            base_shift = int(syn.exp)
            # every partial sum an integer of at most Σ|w|·input max: exact in float32
            fp32_exact = float(np.abs(w).sum(axis=1).max(initial=0)) * input_max \
                <= F32_EXACT
        else:   # conv (OC, C/g, kH, kW); rows of the im2col matrix are (kH, kW, C)
            oc, cg, kh, kw = w.shape
            g = syn.groups
            bound = float(np.abs(w).reshape(oc, -1).sum(axis=1).max(initial=0))
            # below Lava's 24-bit wrap; torch's GEMM only with rows long enough to win
            self.conv = (kh, kw, *syn.stride, *syn.padding, *syn.dilation)
            if input_max == 1.0 and bound < (1 << 23):
                self.piece_w = int8_weights(im2col_weights(w, g))
                short_rows = kh * kw * cg * g < IM2COL_MIN_K
            base_shift = 0
            fp32_exact = syn.dtype == torch.float32     # the reference conv's own bound
        if self.piece_w is not None:
            self.piece_shift = base_shift + self.piece_w.shift
        self.product = dispatch.layer_product(machine, int8=self.piece_w is not None,
                                              fp32_exact=fp32_exact, short_rows=short_rows)
        if self.product in dispatch.INT8_PRODUCTS:
            self.mode, self.int_w, self.split = "int8", self.piece_w, self.piece_w.split
            self.shift = base_shift + self.piece_w.shift
            # layer by layer, VNNI machines keep torch._int_mm (oneDNN)
            self.gemm = "int_mm" if self.product == "vnni" and dispatch.INT_MM \
                else self.product
        elif self.product == "fp32" and st.kind == "dense":
            self.mode, self.shift = "fp32", base_shift
            self.w32 = torch.as_tensor(w.T, dtype=torch.float32).contiguous()
        else:
            self.mode = "torch"

    def problem(self, st) -> Optional[str]:
        for name, arr in (("i_decay", self.cu), ("v_decay", self.cv)):
            if arr.size and np.abs(arr).max() >= (1 << 31):
                return f"layer {st.spec_index}: {name} outside int32"
        self.cu = np.ascontiguousarray(self.cu, dtype=np.int32)
        self.cv = np.ascontiguousarray(self.cv, dtype=np.int32)
        if self.gains is not None:
            g = np.asarray(st.gains.cpu().numpy())
            if not 0 <= self.gain_exp <= 62 or np.abs(g).max() >= (1 << 22):
                return (f"layer {st.spec_index}: gain_exp {self.gain_exp} or gains beyond "
                        "2²² (the reference's float64 product would not be exact)")
        return None


def im2col_weights(w: np.ndarray, groups: int) -> np.ndarray:
    """Conv weights (OC, C/g, kH, kW) → the (kH·kW·C, OC) matrix that multiplies im2col
    rows of channels-last input ((kH, kW, C) order), block-diagonal over the groups."""
    oc, cg, kh, kw = w.shape
    full = np.zeros((kh, kw, cg * groups, oc), dtype=np.int64)
    per = oc // groups
    for k in range(groups):
        full[:, :, k * cg:(k + 1) * cg, k * per:(k + 1) * per] = \
            w[k * per:(k + 1) * per].transpose(2, 3, 1, 0)
    return full.reshape(kh * kw * cg * groups, oc)


def row_major(x: torch.Tensor, take: Optional[Take] = None) -> torch.Tensor:
    """x with strides (K, 1): torch._int_mm reads garbage from a size-1 dimension
    whose stride is not the row-major one (torch 2.13 CPU), which .contiguous() keeps.
    A copy goes to fresh memory, or to ``take``'s scratch."""
    if x.stride() == (x.shape[1], 1):
        return x
    out = torch.empty(x.shape, dtype=x.dtype) if take is None else take(tuple(x.shape), x.dtype)
    return out.copy_(x)

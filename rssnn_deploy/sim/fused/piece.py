"""Whole pieces of a network in one C call (``rssnn_net_piece`` in ``piece.c``),
for the fused engine (``rssnn_deploy.sim.fused.engine``).

Which networks: an input layer whose spike trains are looked up by bias value
(``inputs``) or given as binary spike input, followed by conv and dense layers
whose synaptic sums an exact int8 GEMM forms (``FusedLayer.piece_w``: weights as
2^k·int8, as the int8 residue plus a few rows beyond int8, or as 2·hi + lo; conv layers
on im2col rows of channels-last spikes, whatever the row length), ending in a dense
layer, where the machine's product (``dispatch``) has a C kernel (AVX-512 VNNI,
AVX2, or the portable one when forced), in runs that record nothing and transform no
spikes. Everything else (a conv output layer, delays, records, graded input, the
``fp32`` product) keeps the engine's Python-driven piece, which computes the same
integers.

Measured (one core, PilotNet-LIF, 64 samples × 17 steps): 3,344–3,409 against
2,568–2,591 sample-steps/s for the Python-driven piece (torch's float conv for the
27-value rows of the first layer, int8 GEMMs after); with two threads 6,364–6,409
against 4,667–4,697. On 784-128-10 it is as fast as the Python-driven piece on one
thread and is what lets two threads run two pieces at full speed each.

Why: see ``piece.c``. The Python-driven piece takes Python's lock between every
torch GEMM and kernel call, which kept two threads of one process from running two
pieces at the speed two processes did; this call releases the lock once for the whole
piece. Its GEMM is exact for the same reason torch's int8 GEMM is (0/1 × int8 summed in
int32, |Σ| ≤ 128·K), and tests compare it with an int64 matmul.
"""
from __future__ import annotations

import ctypes
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from rssnn_deploy.sim.fused import dispatch, kernels
from rssnn_deploy.sim.fused.layers import FusedLayer, pack_weights

__all__ = ["available", "gemm", "PiecePlan", "plan_for"]

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_I32 = ctypes.c_int32


#: a conv layer's geometry, as ``rssnn_piece_layer`` holds it after ``kind``
_CONV_FIELDS = ("in_h", "in_w", "in_c", "kh", "kw", "sy", "sx", "py", "px", "dy", "dx",
                "out_h", "out_w")


class _CPieceLayer(ctypes.Structure):
    """``rssnn_piece_layer`` of ``piece.c``, field by field."""
    _fields_ = [("f", _I64), ("k", _I64), ("w", _P), ("np", _I64), ("shift", _I32),
                ("gain_exp", _I32), ("split", _I64), ("n_high", _I64), ("high_rows", _P),
                ("high", _P), ("bias", _P), ("gain", _P), ("gain_len", _I64), ("hops", _I64),
                ("cu", _P), ("cv", _P), ("theta", _P), ("reset_mask", _P), ("kind", _I64)] \
        + [(name, _I64) for name in _CONV_FIELDS] + [("gemm", _I64)]


def available() -> bool:
    """True when whole pieces run here: the extension has them and the machine's product
    (``dispatch``, as ``RSSNN_SIM_KERNEL`` or ``auto`` picks it) has a C kernel."""
    return dispatch.piece_kernel(dispatch.machine_product(dispatch.requested())) is not None


def gemm(a: np.ndarray, w: np.ndarray, kernel: str) -> np.ndarray:
    """``a`` (M, K) uint8 0/1 × ``w`` (K, N) int8 → int32, by the piece's GEMM ``kernel``
    (tests)."""
    if kernels.GEMM is None or kernel not in kernels.CPU_GEMMS:
        raise RuntimeError(f"the {kernel} GEMM kernel is not available on this machine")
    a = np.ascontiguousarray(a, dtype=np.uint8)
    packed, n_pad = pack_weights(np.asarray(w, dtype=np.int8))
    out = np.empty((a.shape[0], w.shape[1]), dtype=np.int32)
    if kernels.GEMM(a.shape[0], a.shape[1], w.shape[1], a.ctypes.data, packed.ctypes.data,
                    n_pad, out.ctypes.data, kernels.GEMM_IDS[kernel]):
        raise MemoryError("rssnn_gemm_u8s8 failed")
    return out


class PiecePlan:
    """A network's synaptic layers in the form ``rssnn_net_piece`` takes, every GEMM by
    the C kernel ``kernel`` (arrays kept alive here; the reset masks, which depend on
    the run, are filled in per run)."""

    def __init__(self, stages: Sequence, layers: Sequence[FusedLayer], in_shape: Tuple[int, ...],
                 kernel: str):
        self.stages = list(stages)
        self.kernel = kernel
        self.f0 = int(np.prod(in_shape))
        self.f_last = layers[-1].f
        self._keep: List[object] = []
        self._base: List[Dict[str, object]] = []
        k, shape = self.f0, tuple(in_shape)
        for st, layer in zip(stages, layers):
            iw = layer.piece_w
            packed, n_pad = iw.packed()
            geometry = dict.fromkeys(_CONV_FIELDS, 0)
            if st.kind == "conv":
                kh, kw, sy, sx, py, px, dy, dx = layer.conv
                c, h, w = shape
                geometry = dict(in_h=h, in_w=w, in_c=c, kh=kh, kw=kw, sy=sy, sx=sx, py=py,
                                px=px, dy=dy, dx=dx, out_h=st.shape[1], out_w=st.shape[2])
                k = kh * kw * c
            rows = None if iw.rows is None else \
                np.ascontiguousarray(iw.rows.numpy(), dtype=np.int64)
            high = None if iw.high is None else np.ascontiguousarray(iw.high.numpy())
            gains = layer.gains
            fields = dict(f=layer.f, k=k, w=packed, np=n_pad, shift=layer.piece_shift,
                          gain_exp=layer.gain_exp, split=int(iw.split),
                          n_high=0 if rows is None else len(rows),
                          high_rows=rows, high=high, bias=layer.bias, gain=gains,
                          gain_len=0 if gains is None else gains.size, hops=layer.hops,
                          cu=layer.cu, cv=layer.cv, theta=layer.theta,
                          kind=int(st.kind == "conv"), gemm=kernels.GEMM_IDS[kernel],
                          **geometry)
            self._keep += [v for v in fields.values() if isinstance(v, np.ndarray)]
            self._base.append(fields)
            k, shape = layer.f, tuple(st.shape)
        self._structs: Dict[Tuple[int, ...], Tuple[ctypes.Array, tuple]] = {}

    def _layers(self, masks: Sequence[np.ndarray]) -> ctypes.Array:
        key = tuple(m.ctypes.data for m in masks)
        entry = self._structs.get(key)
        if entry is None:
            arr = (_CPieceLayer * len(self._base))()
            for c, fields, mask in zip(arr, self._base, masks):
                for name, value in fields.items():
                    setattr(c, name, value.ctypes.data if isinstance(value, np.ndarray)
                            else value)
                c.reset_mask = mask.ctypes.data
            if len(self._structs) >= 64:
                self._structs.clear()
            entry = self._structs[key] = (arr, tuple(masks))   # the masks stay alive
        return entry[0]

    def run(self, bias16: Optional[torch.Tensor], steps: int, bits: Optional[np.ndarray],
            words: int, offset: int, masks: Sequence[np.ndarray],
            spikes_in: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """One piece: ``bias16`` (n, f0) contiguous int16 whose trains ``bits`` holds, or
        ``spikes_in`` (steps, n, f0) contiguous 0/1 uint8 → (last layer's spikes
        (steps, n, f_last) bool, its final v (n, f_last) int64)."""
        n = (bias16 if spikes_in is None else spikes_in[0]).shape[0]
        spikes = torch.empty((steps, n, self.f_last), dtype=torch.bool)
        v = torch.empty((n, self.f_last), dtype=torch.int64)
        rc = kernels.PIECE(steps, n, self.f0, None if bias16 is None else bias16.data_ptr(),
                           None if bits is None else bits.ctypes.data, words, offset,
                           None if spikes_in is None else spikes_in.data_ptr(),
                           len(self._base), self._layers(masks), spikes.data_ptr(),
                           v.data_ptr())
        if rc:
            raise MemoryError("rssnn_net_piece: could not allocate its scratch memory"
                              if rc == -1 else f"rssnn_net_piece: the CPU cannot run the "
                              f"{self.kernel} kernel")
        return spikes, v


def plan_for(sim, layers: Dict[int, FusedLayer], machine: str) -> Optional[PiecePlan]:
    """The whole-piece plan of ``sim`` (its fused layers ``layers``) for the machine's
    product ``machine``, or ``None`` when that product has no C kernel or the network is
    not an input layer followed by conv and dense layers whose sums the int8 GEMM forms
    exactly, ending in a dense layer."""
    kernel = dispatch.piece_kernel(machine)
    stages = sim.stages[1:] if sim.stages[0].kind == "input" else sim.stages
    # (bias input also needs the lookup, spike input to be binary: engine.run checks)
    if kernel is None or not stages or stages[-1].kind != "dense":
        return None
    synaptic = [layers[st.spec_index] for st in stages]
    for st, layer in zip(stages, synaptic):
        if st.kind not in ("dense", "conv") or layer.piece_w is None or layer.mode == "delays":
            return None
        if st.kind == "dense" and layer.order is not None:
            return None
    return PiecePlan(stages, synaptic, tuple(sim.input_shape), kernel)

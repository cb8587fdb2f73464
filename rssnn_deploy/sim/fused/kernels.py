"""The fused engine's compiled kernels (``cuba.c``, ``piece.c``), loaded
through ctypes, and the small helpers that shape their arguments.

Why a C file and not something else: the loop is a dozen integer operations per
neuron-step, which no library provides fused (torch has no integer neuron op).
``torch.compile`` of the time loop measured 2× *slower* than the eager reference on
this CPU; Numba would add a large LLVM dependency (and its own threading layer next to
torch's OpenMP) for 60 lines of C. The C file is built by setuptools at install time
(``setup.py``, part of ``pip install -e .`` in ``make env``) as a function-less CPython
extension, so it is compiled for the running interpreter; the kernel is then called
through ``ctypes``, which releases the GIL, so several Python threads run disjoint
sample ranges in parallel. ``target_clones`` compiles AVX-512, AVX2 and baseline
versions and picks one at load time, so the build stays portable.
"""
from __future__ import annotations

import ctypes
import functools
from typing import Optional

import numpy as np
import torch

from rssnn_deploy.native import load_library
from rssnn_deploy.sim.network import reset_steps

__all__ = ["KERNEL", "LOOKUP", "PIECE", "GEMM", "GEMM_IDS", "CPU_GEMMS", "S_KIND", "ptr", "reset_mask",
           "wrap16_input"]

_I32 = ctypes.c_int32
_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_INT = ctypes.c_int


def _load():
    """({name: C function}, where the extension is or why it cannot be used)."""
    signatures = {
        "cuba_run": (_INT, [_I64, _I64, _I64, _P, _INT, _I64, _I64, _INT, _P, _I64, _INT, _I64,
                            _P, _INT, _P, _P, _P, _P, _P, _INT, _P, _P, _P, _P, _INT, _I64,
                            _I64]),
        "pattern_spikes": (None, [_I64, _I64, _P, _I64, _P, _I32, _P, _INT, _I64]),
        "net_piece": (_INT, [_I64, _I64, _I64, _P, _P, _I64, _I32, _P, _I64, _P, _P, _P]),
        "gemm_u8s8": (_INT, [_I64, _I64, _I64, _P, _P, _I64, _P, _INT]),
        "gemm_kernels": (_INT, []),
    }
    return load_library("rssnn_deploy.sim.fused._cuba", signatures)


_FNS, WHERE = _load()
#: the neuron loop of one layer (``rssnn_cuba_run``), or ``None`` without the extension
KERNEL = _FNS.get("cuba_run")
#: the input layer's trains copied from a table by bias value (``rssnn_pattern_spikes``)
LOOKUP = _FNS.get("pattern_spikes")
#: the C GEMM kernels (u8 0/1 × s8 → s32, ``piece.c``) by name and their
#: ``RSSNN_GEMM_*`` numbers, and those this CPU runs (``rssnn_gemm_kernels``)
GEMM_IDS = {"scalar": 0, "avx2": 1, "vnni": 2, "avx_vnni": 3}
CPU_GEMMS = frozenset(name for name, i in GEMM_IDS.items()
                      if _FNS and (_FNS["gemm_kernels"]() >> i) & 1)
#: a whole piece of a network (``rssnn_net_piece``) and its GEMM alone
PIECE = _FNS.get("net_piece")
GEMM = _FNS.get("gemm_u8s8")

#: the kernel's code for the dtype of the spikes it writes
S_KIND = {torch.bool: 0, torch.uint8: 0, torch.int8: 0, torch.float32: 1, torch.float64: 2}


def ptr(x) -> Optional[int]:
    """The address ctypes passes for a numpy array or tensor (``None`` stays NULL)."""
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        return x.ctypes.data
    return x.data_ptr()


def reset_mask(st, steps: int, reset: str, reset_interval: Optional[int]) -> np.ndarray:
    """(steps + 1,) uint8, non-zero at the chip steps where the layer zeroes u and v
    (read-only, shared between runs)."""
    return _mask(st.timing.block_index + 1, steps, reset, reset_interval)


@functools.lru_cache(maxsize=256)
def _mask(phase: int, steps: int, reset: str, reset_interval: Optional[int]) -> np.ndarray:
    mask = np.zeros(steps + 1, dtype=np.uint8)
    for t in reset_steps(phase, steps, reset, reset_interval):
        if t <= steps:
            mask[t] = 1
    mask.flags.writeable = False
    return mask


def wrap16_input(b: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Lava stores the input neuron's bias in int16: wrap modulo 2¹⁶ (a cast for
    integers), into ``out`` (contiguous int16 of b's shape) when given."""
    if b.is_floating_point():   # integers held in floats (checked by the simulator)
        b = torch.remainder(b.to(torch.float64) + 32768.0, 65536.0) - 32768.0
    if out is None:
        return b.to(torch.int16).contiguous()   # two's-complement truncation = the wrap
    return out.copy_(b)                          # the same truncating cast

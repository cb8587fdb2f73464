"""The C kernel of the fused training neuron (``lif.c``): loading and calling.

:class:`rssnn_deploy.models.neurons.LIFSequence` runs its forward here for CPU float32/float64
tensors, and its backward for the triangle surrogate (the paper's); anything else (other
devices, dtypes or surrogates, or no compiled extension) takes its torch path, which
computes the same values. The kernel is called through ``ctypes``, which releases the
GIL, so with several torch threads the neurons are split between Python threads the
same way the fused simulator splits its batch.
"""
from __future__ import annotations

import ctypes
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from rssnn_deploy.native import Signature, load_library

__all__ = ["available", "forward", "backward_triangle", "kernel_path"]

_P, _I64, _F64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
#: below this many neurons per thread, splitting costs more than it saves
_MIN_PER_THREAD = 16384


def _load() -> Tuple[Dict[str, Any], str]:
    signatures: Dict[str, Signature] = {}
    for suffix in _SUFFIX.values():
        signatures[f"lif_forward_{suffix}"] = (_INT, [_P, _I64, _P, _P, _I64, _I64, _I64, _F64,
                                                      _F64])
        signatures[f"lif_backward_triangle_{suffix}"] = (
            _INT, [_P, _P, _P, _P, _P, _I64, _I64, _I64, _F64, _F64, _F64, _INT])
    loaded, where = load_library("rssnn_deploy.models._lif", signatures)
    if not loaded:
        return {}, where.replace("extension not built", "not built")
    functions = {}
    for suffix in _SUFFIX.values():
        functions[f"forward_{suffix}"] = loaded[f"lif_forward_{suffix}"]
        functions[f"backward_{suffix}"] = loaded[f"lif_backward_triangle_{suffix}"]
    return functions, where


_FUNCTIONS, kernel_path = _load()
_pool: Optional[ThreadPoolExecutor] = None


def available(*tensors: Tensor) -> bool:
    """Whether the kernel can run on these tensors (CPU, float32/float64, one dtype)."""
    if not _FUNCTIONS:
        return False
    dtype = tensors[0].dtype
    return all(t.device.type == "cpu" and t.dtype == dtype for t in tensors) \
        and dtype in _SUFFIX


def _ptr(t: Optional[Tensor], offset: int) -> Optional[int]:
    return None if t is None else t.data_ptr() + offset * t.element_size()


def _run(call, row: int) -> None:
    """``call(start, count)`` over the neurons of a step, split between threads."""
    global _pool
    threads = min(torch.get_num_threads(), max(1, row // _MIN_PER_THREAD))
    if threads == 1:
        call(0, row)
        return
    if _pool is None or _pool._max_workers < threads:
        _pool = ThreadPoolExecutor(max_workers=threads)
    bounds = [row * k // threads for k in range(threads + 1)]
    futures: List[Any] = [_pool.submit(call, a, b - a) for a, b in zip(bounds, bounds[1:])]
    for future in futures:
        future.result()


def forward(drive: Tensor, decay: float, threshold: float) -> Tuple[Tensor, Tensor]:
    """``(membranes, quiet)`` of the reference loop, ``quiet = 1 − spikes``."""
    steps = drive.shape[0]
    if not drive[0].is_contiguous() or drive.stride(0) not in (0, drive[0].numel()):
        drive = drive.contiguous()
    membranes = torch.empty(drive.shape, dtype=drive.dtype)
    quiet = torch.empty_like(membranes)
    row = membranes[0].numel() if steps else 0
    fn = _FUNCTIONS[f"forward_{_SUFFIX[drive.dtype]}"]
    dstride = drive.stride(0) if steps > 1 else row

    def call(start: int, count: int) -> None:
        fn(_ptr(drive, start), dstride, _ptr(membranes, start), _ptr(quiet, start), steps,
           count, row, decay, threshold)

    if steps and row:
        _run(call, row)
    return membranes, quiet


def backward_triangle(membranes: Tensor, quiet: Tensor, grad_spikes: Optional[Tensor],
                      grad_membranes: Optional[Tensor], decay: float, threshold: float,
                      gamma: float, bptr: bool) -> Tensor:
    """The gradient with respect to the drive (see ``LIFSequence``), triangle surrogate."""
    gs = torch.zeros_like(membranes) if grad_spikes is None else grad_spikes.contiguous()
    gv = None if grad_membranes is None else grad_membranes.contiguous()
    grad = torch.empty_like(membranes)
    steps = membranes.shape[0]
    row = membranes[0].numel() if steps else 0
    fn = _FUNCTIONS[f"backward_{_SUFFIX[membranes.dtype]}"]

    def call(start: int, count: int) -> None:
        fn(_ptr(membranes, start), _ptr(quiet, start), _ptr(gs, start), _ptr(gv, start),
           _ptr(grad, start), steps, count, row, decay, threshold, gamma, int(bptr))

    if steps and row:
        _run(call, row)
    return grad

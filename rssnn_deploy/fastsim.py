"""The fused CPU engine of ``rssnn_deploy.sim``: same results, integer state, one call per layer.

``sim.Simulator`` stays the reference (float64 state, one torch op per rule and step,
differentiable). On CPU, outside the differentiable mode, ``Simulator.run`` hands the
work to :func:`run` here, which keeps the reference's synapses (float32 GEMM/conv where
provably exact, float64 otherwise; Lava's effective weights, delays, channel wraps) and
replaces the neuron loop by ``rssnn_cuba_run`` in ``_fused_cuba.c``:

* int32 ``u`` and ``v`` (4 bytes a neuron instead of float64's 8), every chip step of
  a layer in one call, the sample range cut into blocks of ≈ 4096 neurons whose state
  stays in L1/L2 while the block runs through all steps; per neuron-step the kernel
  reads the synaptic sum (4 bytes) and writes the spike (1 byte), where the reference's
  8–10 float64 torch ops move ≈ 120 bytes;
* truncating division by 4096 without a branch, ``(p + ((p >> 63) & 4095)) >> 12``;
  the int32 wraps, Lava's single 24-bit wrap of ``u`` and the ±(2²³ − 1) clip of ``v``
  are applied on every step (the identity where sim.py's bounds show they cannot fire,
  so the result is the same as the reference's planned checks);
* DLIF gains ``sgn(a·g)(|a·g| >> e)`` and the int16 wrap of biases and bias input in
  the kernel (an int16 cast, no int64 ``%``); per-neuron decays and thresholds as
  arrays; staggered resets as a per-step mask.

Why a C file and not something else: the loop is a dozen integer operations per
neuron-step, which no library provides fused (torch has no integer neuron op).
``torch.compile`` of the time loop measured 2× *slower* than the eager reference on
this CPU; Numba would add a large LLVM dependency (and its own threading layer next to
torch's OpenMP) for 60 lines of C. The C file is built by setuptools at install time
(``setup.py``, part of ``pip install -e .`` in ``make env``) as a function-less CPython
extension, so it is compiled for the running interpreter; the kernel is then called
through ``ctypes``, which releases the GIL, so several Python threads run disjoint
sample ranges in parallel. ``target_clones`` compiles an AVX2 and a baseline version
and picks one at load time, so the build stays portable.

Threads that cannot collapse: the batch is cut into pieces and each worker thread runs
whole pieces through every layer (GEMM with torch single-threaded, then the kernel), so
no thread ever waits for another inside a run; only the final join does. OpenMP's
barriers (one per torch op and step, spinning while a core is taken by another
process) are what made the reference, and torch's own multi-threaded GEMMs, 3–100×
slower on a loaded machine. The number of worker threads is ``threads`` given to
:func:`set_threads` / the CLI's ``--threads``, or by default the cores this process may
use (``os.sched_getaffinity``) minus the 1-minute load of the others
(``os.getloadavg``), at least one. A single sample is one piece, so batch 1 runs on
one core.

When the extension is missing (no compiler at install time) the reference path runs;
``engine_status()`` (shown by ``rssnn-deploy info``) says which engine is active.
"""
from __future__ import annotations

import ctypes
import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Set, Tuple

import numpy as np
import torch

from rssnn_deploy.spec import DECAY_ONE, STATE_SHIFT

__all__ = ["available", "engine_status", "set_threads", "auto_threads", "unsupported", "run",
           "MEMORY_BUDGET"]

#: bytes of per-chunk intermediates (spike trains, synaptic sums, records) the fused
#: engine aims for when it cuts a batch into chunks
MEMORY_BUDGET = 48 << 20

_I32 = ctypes.c_int32
_P = ctypes.c_void_p
_I64 = ctypes.c_int64


def _load() -> Tuple[Optional[ctypes._CFuncPtr], str]:
    try:
        from rssnn_deploy import _fused_cuba
    except ImportError as err:
        return None, f"extension not built ({err}); reinstall with a C compiler: pip install -e ."
    try:
        lib = ctypes.CDLL(_fused_cuba.__file__)
        fn = lib.rssnn_cuba_run
    except (OSError, AttributeError) as err:
        return None, f"extension {_fused_cuba.__file__} unusable: {err}"
    fn.restype = ctypes.c_int
    fn.argtypes = [_I64, _I64, _I64, _P, ctypes.c_int, _I64, _I64, ctypes.c_int, _P, _I64, ctypes.c_int, _I64,
                   _P, ctypes.c_int, _P, _P, _P, _P, _P, ctypes.c_int, _P, _P, _P, _P, _P,
                   _I64, _I64]
    return fn, _fused_cuba.__file__


_KERNEL, _WHERE = _load()


def _has_int_mm() -> bool:
    """torch's int8 × int8 → int32 GEMM (oneDNN; VNNI where the CPU has it)."""
    try:
        x = torch.ones((17, 8), dtype=torch.int8)
        return bool(torch._int_mm(x, x.t().contiguous()).eq(8).all())
    except (AttributeError, RuntimeError):
        return False


_INT_MM = _has_int_mm()
_THREADS: Optional[int] = None


def available() -> bool:
    """True when the compiled kernel could be loaded."""
    return _KERNEL is not None


def engine_status() -> str:
    """One line: which CPU engine ``Simulator`` uses, and why."""
    if _KERNEL is None:
        return f"reference torch loop (fused kernel unavailable: {_WHERE})"
    return f"fused C kernel ({os.path.basename(_WHERE)}), threads {_describe_threads()}"


def set_threads(threads: Optional[int]) -> None:
    """Worker threads for fused runs (see the module notes); ``None`` = automatic."""
    global _THREADS
    if threads is not None and int(threads) < 1:
        raise ValueError("threads must be at least 1")
    _THREADS = None if threads is None else int(threads)


def auto_threads() -> int:
    """Cores this process may use minus the others' 1-minute load, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = 0.0
    return max(1, min(cores, int(math.floor(cores - load + 0.5))))


def _describe_threads() -> str:
    return (f"{_THREADS} (set)" if _THREADS is not None
            else f"automatic, now {auto_threads()} of {len(os.sched_getaffinity(0))} cores")


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != old:
            torch.set_num_threads(old)


# ----------------------------------------------------------------------------------
# What the fused engine accepts (everything else runs on the reference path)
# ----------------------------------------------------------------------------------

class _Layer:
    """One neuron layer's constants as the kernel takes them (contiguous numpy)."""

    def __init__(self, st, graded_input: bool = False) -> None:
        f = int(np.prod(st.shape))
        n = st.neuron

        def per_neuron(value, fn) -> np.ndarray:
            arr = np.broadcast_to(np.asarray(value).astype(np.int64), st.shape).reshape(f)
            return fn(arr)

        self.f = f
        self.cu = per_neuron(n.i_decay, lambda d: DECAY_ONE - d)
        self.cv = per_neuron(n.v_decay, lambda d: DECAY_ONE - d)
        theta = per_neuron(n.vth_mant, lambda m: m << STATE_SHIFT)
        # v stays within ±(2²³ − 1): clamping θ to ±2³⁰ keeps every comparison v > θ
        self.theta = np.ascontiguousarray(np.clip(theta, -(1 << 30), 1 << 30), dtype=np.int32)
        self.bias = None
        if st.bias is not None:   # the reference holds wrap16(b) << 6 as float64
            b = torch.broadcast_to(st.bias, st.shape).reshape(f) / float(1 << 6)
            self.bias = np.ascontiguousarray(b.cpu().numpy().astype(np.int16))
        self.gains = None
        self.gain_exp = 0
        if st.gains is not None:
            self.gains = np.ascontiguousarray(st.gains.cpu().numpy().astype(np.int32))
            self.gain_exp = int(st.neuron.gain_exp)
        self.hops = int(st.timing.hops)
        # position of neuron (c, h, w) in a channels-last (h, w, c) row, for conv layouts
        self.hwc = None
        if len(st.shape) == 3:
            c, h, w = st.shape
            self.hwc = np.ascontiguousarray(
                np.arange(f).reshape(h, w, c).transpose(2, 0, 1).reshape(f), dtype=np.int32)
        self.int_w: Optional[torch.Tensor] = None    # int8 GEMM weights (K, 2N): hi | lo
        self.shift = 0
        syn = st.synapse
        # the int8 GEMM takes 0/1 spikes; graded input values go through the float GEMM
        if st.kind == "dense" and syn.delays == [0] and _INT_MM and not graded_input:
            w = np.asarray(syn.w_eff, dtype=np.int64)           # (out, in)
            if w.size and -256 <= w.min() and w.max() <= 255 and w.shape[1] < (1 << 23):
                # Lava's 8-bit mantissas span [−256, 254]: w = 2·hi + lo, hi int8, lo ∈ {0, 1}
                hi = np.floor_divide(w, 2)
                w = np.concatenate([hi, w - 2 * hi], axis=0)
                self.int_w = _row_major(torch.as_tensor(w.T, dtype=torch.int8))
                self.shift = int(syn.exp)

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


def unsupported(sim) -> Optional[str]:
    """Why ``sim`` cannot use the fused engine, or ``None`` when it can."""
    from rssnn_deploy.sim import _ConvSynapse, _DenseSynapse
    if _KERNEL is None:
        return f"fused kernel unavailable: {_WHERE}"
    if sim.differentiable:
        return "differentiable mode (the reference computes the gradients)"
    if sim.device.type != "cpu":
        return f"device {sim.device.type} (the fused kernel is CPU code)"
    layers = sim.__dict__.get("_fused_layers")
    if layers is not None:
        return layers if isinstance(layers, str) else None
    out: Dict[int, _Layer] = {}
    for st in sim.stages:
        if st.kind not in ("input", "dense", "conv"):
            reason = f"layer {st.spec_index}: kind {st.kind!r}"
            break
        if st.kind != "input" and type(st.synapse) not in (_DenseSynapse, _ConvSynapse):
            reason = f"layer {st.spec_index}: synapse {type(st.synapse).__name__}"
            break
        if getattr(st.synapse, "recurrent", None) is not None:   # needs s[t−1] inside the loop
            reason = f"layer {st.spec_index}: recurrent (dense_rec)"
            break
        first_synaptic = st.synapse is not None and not any(
            s.synapse is not None for s in sim.stages[:sim.stages.index(st)])
        layer = _Layer(st, bool(getattr(sim, "input_message_bits", 0)) and first_synaptic)
        reason = layer.problem(st)
        if reason:
            break
        out[st.spec_index] = layer
    else:
        reason = None
    sim._fused_layers = reason if reason else out
    return reason


# ----------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------

def _ptr(x) -> Optional[int]:
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        return x.ctypes.data
    return x.data_ptr()


def _chunk_size(sim, steps: int, record_map: Dict[int, Set[str]]) -> int:
    """Samples per chunk so that one chunk's intermediates stay near MEMORY_BUDGET."""
    per_sample = 0
    in_width = int(np.prod(sim.input_shape))
    for st in sim.stages:
        f = int(np.prod(st.shape))
        a_bytes = 0 if st.synapse is None else (8 if st.synapse.dtype == torch.float64 else 4)
        per_sample = max(per_sample, in_width * 4 + f * (a_bytes + 2))
        in_width = f
    per_sample *= steps
    per_sample += steps * sum(int(np.prod(st.shape)) * 4 * len(record_map.get(st.spec_index, ()))
                              for st in sim.stages)
    return max(1, MEMORY_BUDGET // max(per_sample, 1))


def run(sim, bias_input: Optional[torch.Tensor], spikes: Optional[torch.Tensor], steps: int,
        record_map: Dict[int, Set[str]], reset: str, reset_interval: Optional[int],
        batch_size: Optional[int]):
    """``Simulator.run``'s work on the fused engine (inputs already checked by ``sim``).

    The batch is cut into pieces (``batch_size``, else by MEMORY_BUDGET shared by the
    threads, and at most n / threads samples so every thread gets work); each worker
    thread takes whole pieces through every layer, torch running single-threaded in it.
    """
    from rssnn_deploy.sim import _concat_results
    threads = _THREADS or auto_threads()
    if sim.spike_transform is not None:
        threads = 1       # a transform may hold state (a fault's random generator)
    n = (bias_input if bias_input is not None else spikes).shape[0]
    chunk = batch_size or max(1, min(_chunk_size(sim, steps, record_map) // threads,
                                     -(-n // threads)))
    ranges = [(lo, min(n, lo + chunk)) for lo in range(0, max(n, 1), chunk)]

    def piece(bounds: Tuple[int, int]):
        lo, hi = bounds
        torch.set_num_threads(1)       # per thread: OpenMP's thread count is thread-local
        with torch.inference_mode():
            return _run_chunk(sim, None if bias_input is None else bias_input[lo:hi],
                              None if spikes is None else spikes[lo:hi], steps, record_map,
                              reset, reset_interval)

    with _torch_threads(1):
        if threads == 1 or len(ranges) == 1:
            parts = [piece(r) for r in ranges]
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                parts = list(pool.map(piece, ranges))
    return parts[0] if len(parts) == 1 else _concat_results(parts)


def _wrap16_input(b: torch.Tensor) -> torch.Tensor:
    """Lava stores the input neuron's bias in int16: wrap modulo 2¹⁶ (a cast for integers)."""
    if b.is_floating_point():   # integers held in floats (checked by the simulator)
        b = torch.remainder(b.to(torch.float64) + 32768.0, 65536.0) - 32768.0
        return b.to(torch.int16).contiguous()
    return b.to(torch.int16).contiguous()   # two's-complement truncation = the wrap


def _synaptic(sim, st, layer: _Layer, prev: torch.Tensor, steps: int):
    """(a, a_kind, a_rows, a_first): synaptic sums, rows from chip step ``a_first`` on."""
    syn = st.synapse
    n = prev.shape[1]
    if steps < 2:
        return None, 0, 0, 0
    if st.kind == "dense" and syn.delays != [0]:
        a = sim._synaptic_input(st, prev.to(syn.dtype), steps, False)  # chip steps 1..steps
        return a.contiguous(), _KIND[a.dtype], steps, 1
    if layer.int_w is not None:    # exact: 0/1 × int8 summed in int32 (|Σ| < 2³¹)
        x = prev[:steps - 1].reshape((steps - 1) * n, layer.int_w.shape[0])
        x = _row_major(x if x.dtype == torch.int8 else (x != 0).to(torch.int8))
        a = torch._int_mm(x, layer.int_w)
        return a, 3, steps - 1, 2
    prev = prev if prev.dtype == syn.dtype else prev.to(syn.dtype)   # 0/1 or graded values
    x = prev[:steps - 1]
    if st.flatten_input or st.kind == "dense":
        x = x.reshape((steps - 1) * n, int(np.prod(x.shape[2:])))
    else:
        x = x.reshape(((steps - 1) * n,) + tuple(x.shape[2:]))
    a = syn(x, False)
    if st.kind == "dense" and syn.needs_wrap32 and a.dtype != torch.float64:
        a = a.to(torch.float64)                             # the kernel wraps float64 input
    if st.kind == "conv":         # a channels-last conv output is read in place
        a = a.squeeze(1)
        if not (a.is_contiguous() or a.is_contiguous(memory_format=torch.channels_last)):
            a = a.contiguous()
        return a, _KIND[a.dtype], steps - 1, 2
    return a.contiguous(), _KIND[a.dtype], steps - 1, 2


_KIND = {torch.float32: 1, torch.float64: 2}


def _row_major(x: torch.Tensor) -> torch.Tensor:
    """x with strides (K, 1): torch._int_mm reads garbage from a size-1 dimension
    whose stride is not the row-major one (torch 2.13 CPU), which .contiguous() keeps."""
    if x.stride() == (x.shape[1], 1):
        return x
    return torch.empty(x.shape, dtype=x.dtype).copy_(x)


def _run_chunk(sim, bias_input, spikes, steps, record_map, reset, reset_interval):
    from rssnn_deploy.sim import SimResult, _reset_steps
    layers: Dict[int, _Layer] = sim._fused_layers
    states: Dict[int, Dict[str, torch.Tensor]] = {}
    prev = None
    if not sim.has_input_neuron or spikes is not None:
        prev = sim._spike_train(spikes, steps)
    v_final = None
    stages = sim.stages
    for pos, st in enumerate(stages):
        names = record_map.get(st.spec_index, set())
        layer = layers[st.spec_index]
        bias, per_sample = layer.bias, 0
        a, a_kind, a_rows, a_first = None, 0, 0, 0
        if st.kind == "input":
            if spikes is not None:
                if names:
                    states[st.spec_index] = sim._input_records(prev, names)
                continue
            bias, per_sample = _wrap16_input(bias_input), 1
            n = bias_input.shape[0]
        else:
            n = prev.shape[1]
            if sim.spike_transform is not None:
                prev = sim.spike_transform(st.spec_index, prev) != 0
            a, a_kind, a_rows, a_first = _synaptic(sim, st, layer, prev, steps)
        nxt = stages[pos + 1] if pos + 1 < len(stages) else None
        # spikes in the dtype the next GEMM takes (bool for the output or a transform)
        s_dtype = (torch.bool if nxt is None or sim.spike_transform is not None
                   else torch.int8 if layers[nxt.spec_index].int_w is not None
                   else nxt.synapse.dtype)
        # spikes for a following conv in channels-last order (torch's fastest conv layout)
        hwc = (nxt is not None and nxt.kind == "conv" and layer.hwc is not None
               and sim.spike_transform is None)
        prev, rec, v_final = _neuron_layer(layer, st, (a, a_kind, a_rows, a_first), bias,
                                           per_sample, n, steps, names, reset, reset_interval,
                                           s_dtype, hwc)
        if rec:
            states[st.spec_index] = rec
    out = sim.stages[-1]
    window = out.timing.block_index + 1 if reset == "staggered" else 1
    counts = prev[window - 1:].sum(dim=0, dtype=torch.int64)
    return SimResult(output_spikes=prev, output_v=v_final, spike_counts=counts, steps=steps,
                     window_start=window, states=states)


def _neuron_layer(layer: _Layer, st, synaptic, bias, per_sample, n, steps, names, reset,
                  reset_interval, s_dtype: torch.dtype, hwc: bool = False):
    from rssnn_deploy.sim import _reset_steps
    shape = (steps, n) + tuple(st.shape)
    if hwc:     # (steps, n, C, H, W) view of channels-last memory
        c, h, w = st.shape
        s = torch.empty((steps, n, h, w, c), dtype=s_dtype).permute(0, 1, 4, 2, 3)
    else:
        s = torch.empty(shape, dtype=s_dtype)
    s_kind = {torch.bool: 0, torch.int8: 0, torch.float32: 1, torch.float64: 2}[s_dtype]
    rec = {k: torch.empty(shape, dtype=torch.int32) for k in ("u", "v") if k in names}
    v_final = torch.empty((n,) + tuple(st.shape), dtype=torch.int64)
    mask = np.zeros(steps + 1, dtype=np.uint8)
    for t in _reset_steps(st.timing.block_index + 1, steps, reset, reset_interval):
        if t <= steps:
            mask[t] = 1
    a, a_kind, a_rows, a_first = synaptic
    shift = layer.shift if a_kind >= 3 else 0
    a_perm = None
    if a is not None and not a.is_contiguous():      # channels-last conv output
        a_perm = layer.hwc
    gains = layer.gains if a is not None else None
    args = (steps, n, layer.f, _ptr(a), a_kind, a_rows, a_first, shift,
            _ptr(gains), 0 if gains is None else gains.size, layer.gain_exp, layer.hops,
            _ptr(bias), per_sample, _ptr(layer.cu), _ptr(layer.cv), _ptr(layer.theta),
            _ptr(mask), _ptr(s), s_kind, _ptr(rec.get("u")), _ptr(rec.get("v")), _ptr(v_final),
            _ptr(a_perm), _ptr(layer.hwc if hwc else None))
    if _KERNEL(*args, 0, n):
        raise MemoryError("fused neuron kernel: could not allocate its scratch state")
    if "s" in names:
        rec["s"] = torch.empty(shape, dtype=torch.bool).copy_(s)   # (C, H, W) order
    return s, rec, v_final

"""The fused CPU engine of ``rssnn_deploy.sim``: same results, integer state, one call per layer.

``sim.Simulator`` stays the reference (float64 state, one torch op per rule and step,
differentiable). On CPU, outside the differentiable mode, ``Simulator.run`` hands the
work to :func:`run` here: exact integer synapses (below) and, instead of the neuron
loop, ``rssnn_cuba_run`` in ``_fused_cuba.c``:

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
* (C, H, W) layers keep state, synaptic sums and spikes in channels-last (H, W, C)
  order, the order the im2col GEMM produces and reads, with their per-neuron constants
  permuted to match; records and the final v are written back in (C, H, W) order, and a
  dense layer after a flatten takes its weight columns in channels-last order. (Reading
  the sums through a permutation instead cost ≈ 3× the kernel time on PilotNet's
  first conv layer.)

Synapses. 0/1 spikes times integer weights, summed in int32, is exact while the sum
stays below 2³¹, so dense and conv layers with binary input use torch's int8 × int8 →
int32 GEMM (``torch._int_mm``, oneDNN/VNNI): the weights as ``2^k · m`` with int8 ``m``
(Lava's 8-bit mixed-sign mantissas are even, so ``k = 1``), or as the int8 residue
modulo 256 plus 256 × a small GEMM over the few input rows holding a weight beyond int8
(784-128-10 with N(0, 30) weights: 2 such rows of 784, 7.0 instead of 10.5 µs a sample
for both layers), else ``2·hi + lo`` (hi int8, lo ∈ {0, 1}, two GEMM halves); conv layers as im2col (a strided view of the
channels-last spikes, copied into (pixels, kH·kW·C) rows) times the (kH·kW·C, OC)
weights, block-diagonal over groups, used while the sums stay below Lava's 24-bit wrap
and the rows are long enough (below).
Graded (multi-bit) input, larger weights or sums, and delays keep the reference's
synapses (float32 where provably exact, float64 otherwise; channels-last conv output).
Measured on this 2-core AVX-512 machine (CPU time of one warm thread per frame, 20 %
of the inputs spiking): im2col + int8 GEMM against torch's float32 channels-last conv,
PilotNet-LIF conv 2–5 (rows kH·kW·C = 216–576): 90 / 33 / 15 / 18 µs against 205 / 72 /
30 / 33 µs; but with short rows the float conv wins: PilotNet conv 1 (27) 129 against
84 µs, 1×28×28-8c3 (9) 40 against 25 µs, 8c3-16c3s2 (72) 11 against 6 µs; hence int8
from rows of ``IM2COL_MIN_K`` = 128 on. An event-driven C synapse (adding the weight
rows of the inputs that spiked, as Loihi does) was slower than both on conv layers
(PilotNet conv 2: 315 µs at 10 % density) and beat the int8 GEMM on 784-128 dense rows
only below ≈ 10 % input density (2.2 against 2.4 ms for 2,304 rows at 10 %, 5.3
against 2.3 ms at 30 %; the benchmark's input layer spikes at ≈ 25 %), so it was not
kept.

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

Pieces and threads that cannot collapse: the batch is cut into pieces sized so that
one layer's intermediates of a piece stay near ``CACHE_BUDGET`` (twice a core's L2;
larger pieces were slower per sample once they left the caches, smaller ones pay the
per-piece Python work), and worker threads pull whole pieces from one queue and take
each through every layer (torch single-threaded in them), so no thread waits for
another inside a run, and one slowed by another process takes fewer pieces. OpenMP's
barriers (one per torch op and step, spinning while a core is taken by another
process) are what made the reference, and torch's own multi-threaded GEMMs, 3–100×
slower on a loaded machine. The number of worker threads is ``threads`` given to
:func:`set_threads` / the CLI's ``--threads``, or by default the free cores: the cores
this process may use (``os.sched_getaffinity``) minus the other threads ready to run at
that moment (``/proc/loadavg``'s running count, not the 1-minute load, which lags and
counts this process's own earlier runs; read at most every half second), at least one.
On a machine whose cores are all busy, one thread measured faster than two (threads waiting for the GIL between
pieces while the other holds it, descheduled). Batches up to ``MIN_PIECE`` samples
run on one thread.

When the extension is missing (no compiler at install time) the reference path runs;
``engine_status()`` (shown by ``rssnn-deploy info``) says which engine is active.
"""
from __future__ import annotations

import ctypes
import functools
import itertools
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from rssnn_deploy.spec import DECAY_ONE, STATE_SHIFT

__all__ = ["available", "engine_status", "set_threads", "auto_threads", "unsupported", "run",
           "MEMORY_BUDGET"]

#: bytes of per-chunk intermediates (spike trains, synaptic sums, records) the fused
#: engine aims for when it cuts a batch into chunks
MEMORY_BUDGET = 48 << 20

_I32 = ctypes.c_int32
_P = ctypes.c_void_p
_I64 = ctypes.c_int64


def _load() -> Tuple[Optional[Tuple[ctypes._CFuncPtr, ctypes._CFuncPtr]], str]:
    try:
        from rssnn_deploy import _fused_cuba
    except ImportError as err:
        return None, f"extension not built ({err}); reinstall with a C compiler: pip install -e ."
    try:
        lib = ctypes.CDLL(_fused_cuba.__file__)
        fn = lib.rssnn_cuba_run
        lib.rssnn_pattern_spikes
    except (OSError, AttributeError) as err:
        return None, f"extension {_fused_cuba.__file__} unusable: {err}"
    fn.restype = ctypes.c_int
    fn.argtypes = [_I64, _I64, _I64, _P, ctypes.c_int, _I64, _I64, ctypes.c_int, _P, _I64, ctypes.c_int, _I64,
                   _P, ctypes.c_int, _P, _P, _P, _P, _P, ctypes.c_int, _P, _P, _P, _P,
                   ctypes.c_int, _I64, _I64]
    lookup = lib.rssnn_pattern_spikes
    lookup.restype = None
    lookup.argtypes = [_I64, _I64, _P, _I64, _P, _I32, _P, ctypes.c_int, _I64]
    return (fn, lookup), _fused_cuba.__file__


_KERNELS, _WHERE = _load()
_KERNEL, _LOOKUP = _KERNELS if _KERNELS is not None else (None, None)


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


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_OTHERS_TTL_S = 0.5
_others_cache: Tuple[float, int] = (-1.0, 0)


def _runnable_others() -> int:
    """Threads ready to run now besides the one asking: the median of five reads of
    /proc/loadavg's running count, 1 ms apart (0 where unavailable); remembered for half
    a second, so back-to-back runs do not pay the 4 ms of reads each. This process's own
    OpenMP workers count too: they keep spinning on a core for a while after a torch op,
    and a second worker thread started then measured slower than one."""
    global _others_cache
    now = time.monotonic()
    if 0.0 <= now - _others_cache[0] < _OTHERS_TTL_S:
        return _others_cache[1]
    counts = []
    for k in range(5):
        try:
            with open("/proc/loadavg") as fh:
                running = int(fh.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(running - 1)
        if k < 4:
            time.sleep(0.001)
    others = max(0, sorted(counts)[2])
    _others_cache = (time.monotonic(), others)
    return others


def auto_threads() -> int:
    """Worker threads by default: the free cores, i.e. the cores this process may use
    minus the threads of other processes ready to run now, at least 1."""
    cores = _cores()
    return max(1, min(cores, cores - _runnable_others()))


def _describe_threads() -> str:
    return (f"{_THREADS} (set)" if _THREADS is not None
            else f"automatic, now {auto_threads()} of {_cores()} cores")


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

def _chw_order(shape: Tuple[int, ...]) -> Optional[np.ndarray]:
    """For a (C, H, W) layer: the (C, H, W) index of each position of the channels-last
    (H, W, C) order its state, spikes and synaptic sums are kept in; else ``None``."""
    if len(shape) != 3:
        return None
    c, h, w = shape
    return np.ascontiguousarray(np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0)
                                .reshape(-1), dtype=np.int32)


class _Int8Weights:
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

    def matmul(self, x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (M, K) int8 0/1 → (M, N) int32 sums of ``w / 2^shift`` (or (M, 2N) hi | lo),
        into ``out`` when given."""
        a = torch._int_mm(x, self.main) if out is None else torch._int_mm(x, self.main, out=out)
        if self.rows is not None:
            a.add_(torch._int_mm(_row_major(x.index_select(1, self.rows), "high_rows"), self.high),
                   alpha=256)
        return a


def _int8_weights(w: np.ndarray) -> Optional[_Int8Weights]:
    """The cheapest exact int8 form of ``w`` (K, N) (see ``_Int8Weights``), or ``None``."""
    if not _INT_MM or not w.size:
        return None
    shift = 0
    while shift < 8 and not np.any(w & ((2 << shift) - 1)):
        shift += 1
    m = w >> shift
    if -128 <= m.min() and m.max() <= 127:
        return _Int8Weights(_row_major(torch.as_tensor(m, dtype=torch.int8)), shift)
    low = ((m + 128) & 255) - 128                 # m modulo 256, in [−128, 127]
    e = (m - low) >> 8
    rows = np.flatnonzero(np.any(e != 0, axis=1))
    if np.abs(e).max() <= 1 and len(rows) <= w.shape[0] // 4:
        return _Int8Weights(_row_major(torch.as_tensor(low, dtype=torch.int8)), shift,
                            rows=torch.as_tensor(rows, dtype=torch.int64),
                            high=_row_major(torch.as_tensor(e[rows], dtype=torch.int8)))
    if -256 <= w.min() and w.max() <= 255:
        hi = np.floor_divide(w, 2)
        return _Int8Weights(_row_major(torch.as_tensor(np.concatenate([hi, w - 2 * hi], axis=1),
                                                       dtype=torch.int8)), 0, split=True)
    return None


class _Layer:
    """One neuron layer's constants as the kernel takes them (contiguous numpy), in the
    order of its state: channels-last (H, W, C) for (C, H, W) layers.

    ``mode`` says how its synaptic sums are formed: ``"int8"`` (torch's exact int8 GEMM
    on 0/1 spikes, im2col for conv; see the module notes), ``"torch"`` (float32
    GEMM/conv where exact, float64 otherwise) or ``"delays"`` (the reference's delay
    slots); ``None`` for the input layer.
    """

    def __init__(self, st, in_shape: Tuple[int, ...], input_max: float = 1.0) -> None:
        f = int(np.prod(st.shape))
        n = st.neuron
        self.order = _chw_order(tuple(st.shape))
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
        self.mode: Optional[str] = None
        self.shift = 0                                 # added to the sums' exponent
        self.int_w: Optional[_Int8Weights] = None      # int8 GEMM weights
        self.split = False                             # int_w holds hi | lo halves
        self.conv: Optional[Tuple[int, ...]] = None    # kH, kW, stride, padding, dilation
        syn = st.synapse
        if syn is None:
            return
        in_order = _chw_order(tuple(in_shape))         # input rows arrive channels-last
        w = np.asarray(syn.w_eff, dtype=np.int64)
        int8 = None
        if st.kind == "dense" and syn.delays != [0]:
            self.mode = "delays"
            return
        if st.kind == "dense":
            if in_order is not None:
                w = w[:, in_order]
            if input_max == 1.0 and w.shape[1] < (1 << 23):    # |Σ| ≤ 256·K < 2³¹
                int8 = _int8_weights(w.T)
            base_shift = int(syn.exp)
        else:   # conv (OC, C/g, kH, kW); rows of the im2col matrix are (kH, kW, C)
            oc, cg, kh, kw = w.shape
            g = syn.groups
            bound = float(np.abs(w).reshape(oc, -1).sum(axis=1).max(initial=0))
            # below Lava's 24-bit wrap, and with rows long enough for the int8 GEMM to win
            if input_max == 1.0 and bound < (1 << 23) and kh * kw * cg * g >= IM2COL_MIN_K:
                full = np.zeros((kh, kw, cg * g, oc), dtype=np.int64)
                for k in range(g):      # block-diagonal over the groups
                    blk = w[k * (oc // g):(k + 1) * (oc // g)]
                    full[:, :, k * cg:(k + 1) * cg, k * (oc // g):(k + 1) * (oc // g)] = \
                        blk.transpose(2, 3, 1, 0)
                int8 = _int8_weights(full.reshape(kh * kw * cg * g, oc))
                self.conv = (kh, kw, *syn.stride, *syn.padding, *syn.dilation)
            base_shift = 0
        if int8 is None:
            self.mode = "torch"
            return
        self.int_w, self.split = int8, int8.split
        self.shift = base_shift + int8.shift
        self.mode = "int8"

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
    from rssnn_deploy.sim_layers import _ConvSynapse, _DenseSynapse
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
    in_shape = tuple(sim.input_shape)
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
        layer = _Layer(st, in_shape, sim._input_max(first_synaptic))
        in_shape = tuple(st.shape)
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


def _cache_bytes() -> int:
    """Per-core cache a chunk's intermediates should fit: the L2 size (sysfs), else 1 MiB."""
    try:
        base = "/sys/devices/system/cpu/cpu0/cache"
        for entry in sorted(os.listdir(base)):
            with open(f"{base}/{entry}/level") as fh:
                if fh.read().strip() != "2":
                    continue
            with open(f"{base}/{entry}/size") as fh:
                text = fh.read().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
            return int(text.rstrip("KM")) * mult
    except (OSError, ValueError):
        pass
    return 1 << 20


#: bytes of one piece's per-layer intermediates (input spikes, im2col patches, synaptic
#: sums, output spikes) the fused engine aims for: twice a core's L2 (measured fastest
#: on 784-128-10: 64–512 samples a piece ≈ 450 k sample-steps/s of CPU time, 2048 a
#: piece 355 k as the intermediates leave the caches, 8 a piece 260 k as the
#: per-piece Python work no longer amortises)
CACHE_BUDGET = 2 * _cache_bytes()

#: shortest im2col row (kH·kW·C) for which conv layers use the int8 GEMM; shorter
#: ones use torch's float32 channels-last conv (see the module notes)
IM2COL_MIN_K = 128

#: pieces per worker thread at least (when the batch allows), so that a thread slowed
#: by another process hands its share to the others instead of holding up the join
PIECES_PER_THREAD = 4

#: smallest piece when the batch is cut for the threads' sake
MIN_PIECE = 16

#: least work, in seconds of one thread, that pays for one more thread when the count is
#: automatic. A helper thread whose core has been idle runs its first millisecond or so
#: at about half speed (784-128-10, a 128-sample piece: 1.1 ms back to back, 2.0 ms
#: after a 3 ms pause), and each extra piece costs ≈ 0.1 ms of Python, so a run shorter
#: than a few milliseconds is fastest on the calling thread alone (dense batch 256:
#: 2.4 ms alone, 3.1 ms on two threads).
MIN_THREAD_WORK_S = 0.004


def _chunk_size(sim, steps: int, record_map: Dict[int, Set[str]]) -> int:
    """Samples per chunk so that one layer's intermediates stay near CACHE_BUDGET and
    one chunk's records near MEMORY_BUDGET."""
    layers = sim._fused_layers
    per_sample = 0
    in_width = math.prod(sim.input_shape)
    for st in sim.stages:
        f = math.prod(st.shape)
        layer = layers[st.spec_index]
        a_bytes = {None: 0, "int8": 4 * (2 if layer.split else 1)}.get(layer.mode, 8)
        patches = 0 if layer.int_w is None or layer.conv is None else \
            layer.int_w.main.shape[0] * f // layer.int_w.main.shape[1] * (2 if layer.split else 1)
        per_sample = max(per_sample, (in_width + patches + f * (a_bytes + 1)) * steps)
        in_width = f
    records = steps * sum(math.prod(st.shape) * 4 * len(record_map.get(st.spec_index, ()))
                          for st in sim.stages)
    return max(1, min(CACHE_BUDGET // max(per_sample, 1),
                      MEMORY_BUDGET // max(records, 1)))


def run(sim, bias_input: Optional[torch.Tensor], spikes: Optional[torch.Tensor], steps: int,
        record_map: Dict[int, Set[str]], reset: str, reset_interval: Optional[int],
        batch_size: Optional[int]):
    """``Simulator.run``'s work on the fused engine (inputs already checked by ``sim``).

    The batch is cut into cache-sized pieces (``batch_size``, else ``_chunk_size``; with
    several threads at most n / (threads · PIECES_PER_THREAD) samples but not below
    MIN_PIECE); the calling thread and helper threads pull pieces from one counter and
    take each through every layer, torch single-threaded in them, so a thread slowed by
    another process takes fewer pieces. The automatic thread count (``_thread_count``)
    also weighs the run's expected work, from this simulator's earlier runs.
    """
    from rssnn_deploy.sim import _concat_results
    n = (bias_input if bias_input is not None else spikes).shape[0]
    threads = 1 if sim.spike_transform is not None else _thread_count(sim, n, steps)
    # (a spike transform may hold state, such as a fault's random generator)
    chunk = _chunk_size(sim, steps, record_map)
    if threads > 1:
        chunk = min(chunk, max(MIN_PIECE, -(-n // (threads * PIECES_PER_THREAD))))
    chunk = batch_size or chunk
    ranges = [(lo, min(n, lo + chunk)) for lo in range(0, max(n, 1), chunk)]
    patterns = _input_patterns(sim, bias_input, steps, record_map, reset, reset_interval)
    spent = [0.0] * len(ranges)

    def piece(i: int):
        lo, hi = ranges[i]
        torch.set_num_threads(1)       # per thread: OpenMP's thread count is thread-local
        start = time.perf_counter()
        with torch.inference_mode():
            out = _run_chunk(sim, None if bias_input is None else bias_input[lo:hi],
                             None if spikes is None else spikes[lo:hi], steps, record_map,
                             reset, reset_interval, patterns)
        spent[i] = time.perf_counter() - start
        return out

    with _torch_threads(1):
        parts = _shared(piece, len(ranges), threads)
        result = parts[0] if len(parts) == 1 else _concat_results(parts)
    if n:
        sim.__dict__.setdefault("_fused_cost", {})[steps] = sum(spent) / n
    return result


def _thread_count(sim, n: int, steps: int) -> int:
    """Threads for a run of n samples: the set count, or the free cores (auto_threads),
    but only as many as the run has ``MIN_THREAD_WORK_S`` of work for, judged by the
    seconds per sample this simulator's last run at these steps took on its threads (a
    first run uses the free cores)."""
    if _THREADS is not None:
        return _THREADS
    if n <= MIN_PIECE:
        return 1
    cost = sim.__dict__.get("_fused_cost", {}).get(steps)
    worth = _cores() if cost is None else int(n * cost / MIN_THREAD_WORK_S)
    return max(1, min(auto_threads(), worth))


_POOL: Optional[ThreadPoolExecutor] = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The helper threads of fused runs: one per core this process may use, started on
    first use (a run asks for at most ``threads − 1`` of them)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, _cores() - 1),
                                       thread_name_prefix="rssnn-fused")
        return _POOL


def _shared(piece: Callable[[int], object], count: int, threads: int) -> List:
    """``[piece(i) for i in range(count)]``, the calling thread and up to ``threads − 1``
    helpers of a kept pool each taking the next index as it finishes one.

    The caller works too, so a helper that starts late (an idle core waking up, or one
    taken by another process) costs nothing beyond the pieces it did not take; the
    helpers live as long as the process, so a run does not pay thread start-up."""
    parts: List = [None] * count
    order = itertools.count()

    def drain() -> None:
        for i in iter(order.__next__, None):   # next() on a count is atomic in CPython
            if i >= count:
                return
            parts[i] = piece(i)

    helpers = [] if threads < 2 or count < 2 else \
        [_pool().submit(drain) for _ in range(min(threads, count) - 1)]
    try:
        drain()
    finally:
        for h in helpers:       # wait for every helper, then raise the first error
            h.result()
    return parts


class _Patterns:
    """The spike trains of an input layer's neurons for every bias value in
    [offset, offset + R): ``bits`` (R, words) uint64, bit t % 64 of word t // 64 set when
    the neuron spikes at chip step t + 1 (the layout ``rssnn_pattern_spikes`` reads)."""

    def __init__(self, bits: np.ndarray, offset: int):
        self.bits, self.offset, self.words = bits, offset, bits.shape[1]


def _input_patterns(sim, bias_input: Optional[torch.Tensor], steps: int,
                    record_map: Dict[int, Set[str]], reset: str,
                    reset_interval: Optional[int]) -> Optional[_Patterns]:
    """The input layer's spike trains by bias value, when it can be looked up instead
    of simulated, else ``None``.

    An input neuron receives no synaptic input, so its u stays 0 and its spikes depend
    only on its bias, v decay, threshold and reset steps. Where all input neurons share
    the decay and threshold, the kernel runs once on every bias value between the
    batch's smallest and largest (R values, one pseudo-sample) and each sample's trains
    are copied from that table, exact by construction. Used while R is at most a
    quarter of the batch's input neurons (784-pixel images with biases 0–40: 41 of
    ≥ 784), not for a layer whose u or v is recorded, that is the network's last, or
    whose spikes a spike transform sees in (C, H, W) order.
    """
    if bias_input is None or _LOOKUP is None or len(sim.stages) < 2:
        return None
    st = sim.stages[0]
    layer: _Layer = sim._fused_layers[st.spec_index]
    if (st.kind != "input" or not layer.shared_v or record_map.get(st.spec_index, set()) - {"s"}
            or (sim.spike_transform is not None and layer.order is not None)):
        return None
    if not bias_input.numel() or bias_input.dtype == torch.bool:
        return None
    lo, hi = (int(x) for x in torch.aminmax(bias_input))
    if lo < -(1 << 15) or hi >= (1 << 15):     # the int16 wrap is not the identity
        lo, hi = (int(x) for x in torch.aminmax(_wrap16_input(bias_input)))
    r = hi - lo + 1
    if 4 * r > bias_input.numel():
        return None
    cache = sim.__dict__.setdefault("_fused_patterns", {})
    key = (lo, hi, steps, reset, reset_interval)
    if key not in cache:
        if len(cache) >= 16:
            cache.clear()
        cache[key] = _pattern_table(layer, st, lo, hi, steps, reset, reset_interval)
    return cache[key]


def _pattern_table(layer: _Layer, st, lo: int, hi: int, steps: int, reset: str,
                   reset_interval: Optional[int]) -> _Patterns:
    """Run the kernel on the bias values lo..hi as one pseudo-sample; pack the trains."""
    r = hi - lo + 1
    values = np.arange(lo, hi + 1, dtype=np.int16)
    s = np.empty((steps, 1, r), dtype=np.uint8)
    v_final = np.empty((1, r), dtype=np.int64)
    const = {k: np.full(r, getattr(layer, k)[0], dtype=np.int32) for k in ("cu", "cv", "theta")}
    mask = _reset_mask(st, steps, reset, reset_interval)
    if _KERNEL(steps, 1, r, None, 0, 0, 0, 0, None, 0, 0, layer.hops, values.ctypes.data, 1,
               const["cu"].ctypes.data, const["cv"].ctypes.data, const["theta"].ctypes.data,
               mask.ctypes.data, s.ctypes.data, 0, None, None, v_final.ctypes.data, None, 0,
               0, 1):
        raise MemoryError("fused neuron kernel: could not allocate its scratch state")
    words = -(-steps // 64)
    padded = np.zeros((words * 64, r), dtype=np.uint64)
    padded[:steps] = s[:, 0]
    bits = (padded.reshape(words, 64, r) << np.arange(64, dtype=np.uint64)[None, :, None]
            ).sum(axis=1, dtype=np.uint64)
    return _Patterns(np.ascontiguousarray(bits.T), lo)


def _reset_mask(st, steps: int, reset: str, reset_interval: Optional[int]) -> np.ndarray:
    """(steps + 1,) uint8, non-zero at the chip steps where the layer zeroes u and v
    (read-only, shared between runs)."""
    return _mask(st.timing.block_index + 1, steps, reset, reset_interval)


@functools.lru_cache(maxsize=256)
def _mask(phase: int, steps: int, reset: str, reset_interval: Optional[int]) -> np.ndarray:
    from rssnn_deploy.sim import _reset_steps
    mask = np.zeros(steps + 1, dtype=np.uint8)
    for t in _reset_steps(phase, steps, reset, reset_interval):
        if t <= steps:
            mask[t] = 1
    mask.flags.writeable = False
    return mask


def _wrap16_input(b: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Lava stores the input neuron's bias in int16: wrap modulo 2¹⁶ (a cast for
    integers), into ``out`` (contiguous int16 of b's shape) when given."""
    if b.is_floating_point():   # integers held in floats (checked by the simulator)
        b = torch.remainder(b.to(torch.float64) + 32768.0, 65536.0) - 32768.0
    if out is None:
        return b.to(torch.int16).contiguous()   # two's-complement truncation = the wrap
    return out.copy_(b)                          # the same truncating cast


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """(rows, N, C, H, W) → contiguous (rows, N, H, W, C): no copy when the memory
    already is channels-last (as the kernel writes a conv layer's spikes)."""
    return x.permute(0, 1, 3, 4, 2).contiguous() if x.dim() == 5 else x.contiguous()


def _synaptic(sim, st, layer: _Layer, prev: torch.Tensor, steps: int):
    """(a, a_kind, a_rows, a_first): synaptic sums in the layer's state order, rows from
    chip step ``a_first`` on."""
    syn = st.synapse
    n = prev.shape[1]
    if steps < 2:
        return None, 0, 0, 0
    if layer.mode == "delays":
        a = sim._synaptic_input(st, prev.to(syn.dtype), steps, False)  # chip steps 1..steps
        return a.contiguous(), _KIND[a.dtype], steps, 1
    rows = steps - 1
    if layer.mode == "int8":    # exact: 0/1 × int8 summed in int32
        x = _channels_last(prev[:rows])
        x = x.view(torch.int8) if x.dtype in (torch.int8, torch.uint8, torch.bool) \
            else (x != 0).to(torch.int8)
        if layer.conv is None:
            x = x.reshape(rows * n, layer.int_w.main.shape[0])
        else:
            x = _im2col(x.reshape((rows * n,) + tuple(x.shape[2:])), layer.conv)
        x = _row_major(x, "gemm_in")
        a = layer.int_w.matmul(x, _WS.take(f"a{st.spec_index}",
                                           (x.shape[0], layer.int_w.main.shape[1]), torch.int32))
        if layer.conv is None:
            return a, 3 if layer.split else 4, rows, 2
        if layer.split:     # per pixel hi | lo: combine here (the kernel pairs per sample)
            half = layer.int_w.main.shape[1] // 2
            a = torch.add(a[:, half:], a[:, :half], alpha=2)
        return a, 4, rows, 2
    prev = prev if prev.dtype == syn.dtype else prev.to(syn.dtype)   # 0/1 or graded values
    x = prev[:rows]
    if st.flatten_input or st.kind == "dense":
        x = x.reshape(rows * n, int(np.prod(x.shape[2:])))           # (C, H, W) order
    else:
        x = x.reshape((rows * n,) + tuple(x.shape[2:]))
    a = syn(x, False)
    if st.kind == "dense" and syn.needs_wrap32 and a.dtype != torch.float64:
        a = a.to(torch.float64)                             # the kernel wraps float64 input
    if st.kind == "conv":         # the state order is channels-last
        a = a.squeeze(1).contiguous(memory_format=torch.channels_last)
    else:
        a = a.contiguous()
    return a, _KIND[a.dtype], rows, 2


_KIND = {torch.float32: 1, torch.float64: 2}


def _im2col(x: torch.Tensor, conv: Tuple[int, ...]) -> torch.Tensor:
    """(M, H, W, C) int8 → (M·OH·OW, kH·kW·C) patches, rows in channels-last order."""
    kh, kw, sy, sx, py, px, dy, dx = conv
    if py or px:
        m, h, w, c = x.shape
        padded = _WS.take("padded", (m, h + 2 * py, w + 2 * px, c), x.dtype)
        padded.zero_()[:, py:py + h, px:px + w].copy_(x)
        x = padded
    m, h, w, c = x.shape
    oh = (h - dy * (kh - 1) - 1) // sy + 1
    ow = (w - dx * (kw - 1) - 1) // sx + 1
    s = x.stride()
    p = x.as_strided((m, oh, ow, kh, kw, c), (s[0], s[1] * sy, s[2] * sx, s[1] * dy,
                                               s[2] * dx, s[3]))
    return _WS.take("patches", (m, oh, ow, kh, kw, c), x.dtype).copy_(p).view(
        m * oh * ow, kh * kw * c)


class _Workspace(threading.local):
    """Each thread's scratch tensors for a piece's intermediates (the input biases in
    int16, hidden layers' spikes and final v, synaptic sums, im2col patches), kept
    between pieces and runs.

    Fresh tensors of a few MiB cost more than the work on them: glibc serves them with
    mmap, so every run faults their pages in again (measured on 784-128-10 at batch
    256: ~1,000 page faults and 4.4 ms a run against 2.4 ms with reused memory, the
    count depending on glibc's adaptive threshold, so timings also wandered by 2×).
    What a run returns (the last layer's spikes and v, records) is never taken from
    here. Buffers above ``WORKSPACE_MAX_BYTES`` are not kept.
    """

    def __init__(self) -> None:
        self.buffers: Dict[str, torch.Tensor] = {}

    def take(self, key: str, shape: Tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised ``shape`` tensor of ``dtype``, reusing the memory that
        ``key`` had last time (the caller's earlier tensor under ``key`` is overwritten)."""
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > WORKSPACE_MAX_BYTES:
            return torch.empty(shape, dtype=dtype)
        buf = self.buffers.get(key)
        if buf is None or buf.numel() < nbytes:
            buf = self.buffers[key] = torch.empty(max(nbytes, 1), dtype=torch.uint8)
        return buf[:nbytes].view(dtype).view(shape)


#: largest intermediate a thread keeps between runs (pieces are cut to stay near
#: CACHE_BUDGET, so only unusual layers or records exceed it)
WORKSPACE_MAX_BYTES = 64 << 20

_WS = _Workspace()


def _row_major(x: torch.Tensor, scratch: Optional[str] = None) -> torch.Tensor:
    """x with strides (K, 1): torch._int_mm reads garbage from a size-1 dimension
    whose stride is not the row-major one (torch 2.13 CPU), which .contiguous() keeps.
    A copy goes to fresh memory, or to the workspace under ``scratch``."""
    if x.stride() == (x.shape[1], 1):
        return x
    out = torch.empty(x.shape, dtype=x.dtype) if scratch is None else \
        _WS.take(scratch, tuple(x.shape), x.dtype)
    return out.copy_(x)


def _run_chunk(sim, bias_input, spikes, steps, record_map, reset, reset_interval,
               patterns: Optional[_Patterns] = None):
    from rssnn_deploy.sim import SimResult
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
            b = bias_input.permute(0, 2, 3, 1) if bias_input.dim() == 4 else bias_input
            bias, per_sample = _wrap16_input(b, _WS.take("bias16", tuple(b.shape), torch.int16)), 1
            n = bias_input.shape[0]
        else:
            n = prev.shape[1]
            if sim.spike_transform is not None:
                prev = sim.spike_transform(st.spec_index, prev) != 0
            a, a_kind, a_rows, a_first = _synaptic(sim, st, layer, prev, steps)
        nxt = layers[stages[pos + 1].spec_index] if pos + 1 < len(stages) else None
        if nxt is None or sim.spike_transform is not None:
            s_dtype = torch.bool
        elif nxt.mode == "int8":
            s_dtype = torch.int8
        else:
            s_dtype = stages[pos + 1].synapse.dtype
        # the last layer's spikes (and those a transform sees) go out in (C, H, W) order;
        # the others stay in this thread's workspace
        chw = nxt is None or sim.spike_transform is not None
        s = _spike_buffer(layer, st, steps, n, s_dtype, chw,
                          None if nxt is None else f"s{pos}")
        if per_sample and patterns is not None:   # the input layer, not the last
            rec = _looked_up_layer(layer, st, patterns, bias, n, steps, names, s)
        else:
            rec, v_final = _neuron_layer(
                layer, st, (a, a_kind, a_rows, a_first), bias, per_sample, n, steps, names,
                reset, reset_interval, s, chw, None if nxt is None else f"v{pos}")
        prev = s
        if rec:
            states[st.spec_index] = rec
    out = sim.stages[-1]
    window = out.timing.block_index + 1 if reset == "staggered" else 1
    counts = prev[window - 1:].sum(dim=0, dtype=torch.int64)
    return SimResult(output_spikes=prev, output_v=v_final, spike_counts=counts, steps=steps,
                     window_start=window, states=states)


_S_KIND = {torch.bool: 0, torch.uint8: 0, torch.int8: 0, torch.float32: 1, torch.float64: 2}


def _spike_buffer(layer: _Layer, st, steps: int, n: int, s_dtype: torch.dtype,
                  chw: bool, key: Optional[str]) -> torch.Tensor:
    """(steps, n, *shape) spikes, fresh or from the workspace under ``key``; for a
    (C, H, W) layer whose spikes stay inside the engine, a (C, H, W) view of
    channels-last (H, W, C) memory."""
    channels_last = layer.order is not None and not chw
    if channels_last:
        c, h, w = st.shape
        shape = (steps, n, h, w, c)
    else:
        shape = (steps, n) + tuple(st.shape)
    s = torch.empty(shape, dtype=s_dtype) if key is None else _WS.take(key, shape, s_dtype)
    return s.permute(0, 1, 4, 2, 3) if channels_last else s


def _looked_up_layer(layer: _Layer, st, patterns: _Patterns, bias: torch.Tensor, n: int,
                     steps: int, names: Set[str], s: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Write an input layer's spikes into ``s`` from its trains by bias value (``bias``
    int16 in the state's order; see _input_patterns); return its records."""
    _LOOKUP(steps, n * layer.f, patterns.bits.ctypes.data, patterns.words, _ptr(bias),
            patterns.offset, _ptr(s), _S_KIND[s.dtype], n * layer.f)
    return {"s": torch.empty(s.shape, dtype=torch.bool).copy_(s)} if "s" in names else {}


def _neuron_layer(layer: _Layer, st, synaptic, bias, per_sample, n, steps, names, reset,
                  reset_interval, s: torch.Tensor, chw: bool, v_key: Optional[str]):
    """Run one layer's neurons through every step into ``s``; return (records, final v),
    the final v in the workspace under ``v_key`` unless that is ``None``."""
    shape = (steps, n) + tuple(st.shape)
    s_kind = _S_KIND[s.dtype]
    rec = {k: torch.empty(shape, dtype=torch.int32) for k in ("u", "v") if k in names}
    v_shape = (n,) + tuple(st.shape)
    v_final = torch.empty(v_shape, dtype=torch.int64) if v_key is None else \
        _WS.take(v_key, v_shape, torch.int64)
    mask = _reset_mask(st, steps, reset, reset_interval)
    a, a_kind, a_rows, a_first = synaptic
    shift = layer.shift if a_kind >= 3 else 0
    gains = layer.gains if a is not None else None
    args = (steps, n, layer.f, _ptr(a), a_kind, a_rows, a_first, shift,
            _ptr(gains), 0 if gains is None else gains.size, layer.gain_exp, layer.hops,
            _ptr(bias), per_sample, _ptr(layer.cu), _ptr(layer.cv), _ptr(layer.theta),
            _ptr(mask), _ptr(s), s_kind, _ptr(rec.get("u")), _ptr(rec.get("v")), _ptr(v_final),
            _ptr(layer.order), int(chw))
    if _KERNEL(*args, 0, n):
        raise MemoryError("fused neuron kernel: could not allocate its scratch state")
    if "s" in names:
        rec["s"] = torch.empty(shape, dtype=torch.bool).copy_(s)   # (C, H, W) order
    return rec, v_final

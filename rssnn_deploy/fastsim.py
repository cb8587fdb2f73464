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
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Set, Tuple

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
                   _P, ctypes.c_int, _P, _P, _P, _P, _P, ctypes.c_int, _P, _P, _P, _P,
                   ctypes.c_int, _I64, _I64]
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

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x (M, K) int8 0/1 → (M, N) int32 sums of ``w / 2^shift`` (or (M, 2N) hi | lo)."""
        a = torch._int_mm(x, self.main)
        if self.rows is not None:
            a.add_(torch._int_mm(_row_major(x.index_select(1, self.rows)), self.high),
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


def _chunk_size(sim, steps: int, record_map: Dict[int, Set[str]]) -> int:
    """Samples per chunk so that one layer's intermediates stay near CACHE_BUDGET and
    one chunk's records near MEMORY_BUDGET."""
    layers = sim._fused_layers
    per_sample = 0
    in_width = int(np.prod(sim.input_shape))
    for st in sim.stages:
        f = int(np.prod(st.shape))
        layer = layers[st.spec_index]
        a_bytes = {None: 0, "int8": 4 * (2 if layer.split else 1)}.get(layer.mode, 8)
        patches = 0 if layer.int_w is None or layer.conv is None else \
            layer.int_w.main.shape[0] * f // layer.int_w.main.shape[1] * (2 if layer.split else 1)
        per_sample = max(per_sample, (in_width + patches + f * (a_bytes + 1)) * steps)
        in_width = f
    records = steps * sum(int(np.prod(st.shape)) * 4 * len(record_map.get(st.spec_index, ()))
                          for st in sim.stages)
    return max(1, min(CACHE_BUDGET // max(per_sample, 1),
                      MEMORY_BUDGET // max(records, 1)))


def run(sim, bias_input: Optional[torch.Tensor], spikes: Optional[torch.Tensor], steps: int,
        record_map: Dict[int, Set[str]], reset: str, reset_interval: Optional[int],
        batch_size: Optional[int]):
    """``Simulator.run``'s work on the fused engine (inputs already checked by ``sim``).

    The batch is cut into cache-sized pieces (``batch_size``, else ``_chunk_size``, and
    at most n / (threads · PIECES_PER_THREAD) samples but not below MIN_PIECE); worker
    threads pull pieces from one queue and take each through every layer, torch
    single-threaded in them, so a thread slowed by another process takes fewer pieces.
    """
    from rssnn_deploy.sim import _concat_results
    n = (bias_input if bias_input is not None else spikes).shape[0]
    threads = _THREADS or (auto_threads() if n > MIN_PIECE else 1)
    if sim.spike_transform is not None:
        threads = 1       # a transform may hold state (a fault's random generator)
    chunk = batch_size or min(_chunk_size(sim, steps, record_map),
                              max(MIN_PIECE, -(-n // (threads * PIECES_PER_THREAD))))
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
            with ThreadPoolExecutor(max_workers=min(threads, len(ranges))) as pool:
                parts = list(pool.map(piece, ranges))
    return parts[0] if len(parts) == 1 else _concat_results(parts)


def _wrap16_input(b: torch.Tensor) -> torch.Tensor:
    """Lava stores the input neuron's bias in int16: wrap modulo 2¹⁶ (a cast for integers)."""
    if b.is_floating_point():   # integers held in floats (checked by the simulator)
        b = torch.remainder(b.to(torch.float64) + 32768.0, 65536.0) - 32768.0
    return b.to(torch.int16).contiguous()   # two's-complement truncation = the wrap


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
        a = layer.int_w.matmul(_row_major(x))
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
        x = F.pad(x, (0, 0, px, px, py, py))
    m, h, w, c = x.shape
    oh = (h - dy * (kh - 1) - 1) // sy + 1
    ow = (w - dx * (kw - 1) - 1) // sx + 1
    s = x.stride()
    p = x.as_strided((m, oh, ow, kh, kw, c), (s[0], s[1] * sy, s[2] * sx, s[1] * dy,
                                               s[2] * dx, s[3]))
    return p.reshape(m * oh * ow, kh * kw * c)


def _row_major(x: torch.Tensor) -> torch.Tensor:
    """x with strides (K, 1): torch._int_mm reads garbage from a size-1 dimension
    whose stride is not the row-major one (torch 2.13 CPU), which .contiguous() keeps."""
    if x.stride() == (x.shape[1], 1):
        return x
    return torch.empty(x.shape, dtype=x.dtype).copy_(x)


def _run_chunk(sim, bias_input, spikes, steps, record_map, reset, reset_interval):
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
            bias, per_sample = _wrap16_input(b), 1
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
        # the last layer's spikes (and those a transform sees) go out in (C, H, W) order
        prev, rec, v_final = _neuron_layer(layer, st, (a, a_kind, a_rows, a_first), bias,
                                           per_sample, n, steps, names, reset, reset_interval,
                                           s_dtype, chw=nxt is None or sim.spike_transform is not None)
        if rec:
            states[st.spec_index] = rec
    out = sim.stages[-1]
    window = out.timing.block_index + 1 if reset == "staggered" else 1
    counts = prev[window - 1:].sum(dim=0, dtype=torch.int64)
    return SimResult(output_spikes=prev, output_v=v_final, spike_counts=counts, steps=steps,
                     window_start=window, states=states)


def _neuron_layer(layer: _Layer, st, synaptic, bias, per_sample, n, steps, names, reset,
                  reset_interval, s_dtype: torch.dtype, chw: bool):
    from rssnn_deploy.sim import _reset_steps
    shape = (steps, n) + tuple(st.shape)
    if layer.order is not None and not chw:   # (steps, n, C, H, W) view of (H, W, C) memory
        c, h, w = st.shape
        s = torch.empty((steps, n, h, w, c), dtype=s_dtype).permute(0, 1, 4, 2, 3)
    else:
        s = torch.empty(shape, dtype=s_dtype)
    s_kind = {torch.bool: 0, torch.uint8: 0, torch.int8: 0, torch.float32: 1,
              torch.float64: 2}[s_dtype]
    rec = {k: torch.empty(shape, dtype=torch.int32) for k in ("u", "v") if k in names}
    v_final = torch.empty((n,) + tuple(st.shape), dtype=torch.int64)
    mask = np.zeros(steps + 1, dtype=np.uint8)
    for t in _reset_steps(st.timing.block_index + 1, steps, reset, reset_interval):
        if t <= steps:
            mask[t] = 1
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
    return s, rec, v_final

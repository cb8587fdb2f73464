"""The fused engine's driver: the same integers as the reference loop, with integer
state, one C call per layer (or per whole piece of a network) and threads over the batch.

``Simulator.run`` hands CPU work outside the differentiable mode to :func:`run` here;
other devices go to the device-generic torch path (``torch_ops``). How the kernels are
laid out and why, with measurements, is in ``rssnn_deploy/sim/README.md``
("The fused engine").
"""
from __future__ import annotations

import functools
import math
import os
import threading
import time
from typing import Dict, Optional, Set, Tuple

import numpy as np
import torch

from rssnn_deploy.sim.fused import dispatch, kernels, torch_ops
from rssnn_deploy.sim.fused import piece as fastsim_piece
from rssnn_deploy.sim.fused.inputs import Patterns, input_patterns, looked_up_layer
from rssnn_deploy.sim.fused.kernels import S_KIND, ptr, reset_mask, wrap16_input
from rssnn_deploy.sim.fused.layers import FusedLayer, row_major
from rssnn_deploy.sim.fused.state import FusedState
from rssnn_deploy.sim.fused.threads import (
    MIN_PIECE,
    PIECES_PER_THREAD,
    auto_threads,
    describe_threads,
    set_threads,
    shared,
    thread_count,
    torch_threads,
)
from rssnn_deploy.sim.layers import ConvSynapse, DenseSynapse, SimulationError
from rssnn_deploy.sim.result import SimResult, concat_results

__all__ = ["available", "engine_status", "set_threads", "auto_threads", "unsupported", "run",
           "use_kernel", "engine_path", "MEMORY_BUDGET"]

#: bytes of per-chunk intermediates (spike trains, synaptic sums, records) the fused
#: engine aims for when it cuts a batch into chunks
MEMORY_BUDGET = 48 << 20

def available() -> bool:
    """True when the compiled kernel could be loaded."""
    return kernels.KERNEL is not None


def engine_status() -> str:
    """One line: which CPU engine ``Simulator`` uses, and why."""
    if kernels.KERNEL is None:
        return f"reference torch loop (fused kernel unavailable: {kernels.WHERE})"
    try:
        kernel = dispatch.piece_kernel(dispatch.machine_product(dispatch.requested()))
    except SimulationError:
        kernel = None
    piece = f"on ({kernel} GEMM)" if kernel else "off (the synaptic product has no C kernel)"
    return (f"fused C kernel ({os.path.basename(kernels.WHERE)}), synaptic product "
            f"{dispatch.describe()}, whole pieces in C {piece}, threads {describe_threads()}")


def use_kernel(sim, product: Optional[str]) -> None:
    """Make ``sim``'s fused runs use the synaptic product ``product`` (a name of
    ``dispatch.PRODUCTS``, or ``None``/``"auto"`` for the environment's or the
    automatic choice), as ``RSSNN_SIM_KERNEL`` does for every simulator; where the
    machine cannot run it, the next in the fallback order runs."""
    if product is not None:
        dispatch.check(product, "product")
    sim.fused_state = FusedState(request=None if product in (None, "auto") else product)


def engine_path(sim) -> str:
    """Short name of the path ``sim``'s last run took: ``reference``, ``C pieces
    (<kernel>)``, or ``layers (<product per synaptic layer>)`` (the benchmark's rows)."""
    return sim.fused_state.last_path


# ----------------------------------------------------------------------------------
# What the fused engine accepts (everything else runs on the reference path)
# ----------------------------------------------------------------------------------

def unsupported(sim) -> Optional[str]:
    """Why ``sim`` cannot use the fused engine, or ``None`` when it can."""
    if kernels.KERNEL is None and sim.device.type == "cpu":
        return f"fused kernel unavailable: {kernels.WHERE}"
    if sim.differentiable:
        return "differentiable mode (the reference computes the gradients)"
    layers = sim.fused_state.layers
    if layers is not None:
        return layers if isinstance(layers, str) else None
    request = sim.fused_state.request or dispatch.requested()
    machine = sim.fused_state.machine = dispatch.machine_product(request)
    out: Dict[int, FusedLayer] = {}
    in_shape = tuple(sim.input_shape)
    for st in sim.stages:
        if st.kind not in ("input", "dense", "conv"):
            reason = f"layer {st.spec_index}: kind {st.kind!r}"
            break
        if st.kind != "input" and type(st.synapse) not in (DenseSynapse, ConvSynapse):
            reason = f"layer {st.spec_index}: synapse {type(st.synapse).__name__}"
            break
        if getattr(st.synapse, "recurrent", None) is not None:   # needs s[t−1] inside the loop
            reason = f"layer {st.spec_index}: recurrent (dense_rec)"
            break
        first_synaptic = st.synapse is not None and not any(
            s.synapse is not None for s in sim.stages[:sim.stages.index(st)])
        layer = FusedLayer(st, in_shape, sim.input_max(first_synaptic), machine)
        in_shape = tuple(st.shape)
        reason = layer.problem(st)
        if reason:
            break
        out[st.spec_index] = layer
    else:
        reason = None
    sim.fused_state.layers = reason if reason else out
    return reason


# ----------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------

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


def _chunk_size(sim, steps: int, record_map: Dict[int, Set[str]]) -> int:
    """Samples per chunk so that one layer's intermediates stay near CACHE_BUDGET and
    one chunk's records near MEMORY_BUDGET."""
    layers = sim.fused_state.layers
    per_sample = 0
    in_width = math.prod(sim.input_shape)
    for st in sim.stages:
        f = math.prod(st.shape)
        layer = layers[st.spec_index]
        a_bytes = {None: 0, "int8": 4 * (2 if layer.split else 1), "fp32": 4}.get(layer.mode, 8)
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
    another process takes fewer pieces. The automatic thread count (``thread_count``)
    also weighs the run's expected work, from this simulator's earlier runs.
    """
    if sim.device.type != "cpu":       # CUDA and other devices: torch ops (torch_ops)
        return run_torch_ops(sim, bias_input, spikes, steps, record_map, reset, reset_interval,
                             batch_size)
    n = (bias_input if bias_input is not None else spikes).shape[0]
    cost = sim.fused_state.cost.get(steps)
    threads = 1 if sim.spike_transform is not None else thread_count(n, cost)
    # (a spike transform may hold state, such as a fault's random generator)
    chunk = _chunk_size(sim, steps, record_map)
    if threads > 1:
        chunk = min(chunk, max(MIN_PIECE, -(-n // (threads * PIECES_PER_THREAD))))
    chunk = batch_size or chunk
    ranges = [(lo, min(n, lo + chunk)) for lo in range(0, max(n, 1), chunk)]
    patterns = input_patterns(sim, bias_input, steps, record_map, reset, reset_interval)
    binary_spikes = spikes is not None and not sim.input_message_bits
    plan = _piece_plan(sim) if (patterns is not None or binary_spikes) \
        and not any(record_map.values()) and sim.spike_transform is None else None
    spent = [0.0] * len(ranges)

    def piece(i: int):
        lo, hi = ranges[i]
        torch.set_num_threads(1)       # per thread: OpenMP's thread count is thread-local
        start = time.perf_counter()
        with torch.inference_mode():
            if plan is not None:       # the whole piece in one C call (piece.py)
                out = _whole_piece(sim, plan, None if bias_input is None else bias_input[lo:hi],
                                   None if spikes is None else spikes[lo:hi], steps, reset,
                                   reset_interval, patterns)
            else:
                out = _run_chunk(sim, None if bias_input is None else bias_input[lo:hi],
                                 None if spikes is None else spikes[lo:hi], steps, record_map,
                                 reset, reset_interval, patterns)
        spent[i] = time.perf_counter() - start
        return out

    with torch_threads(1), dispatch.exact_products():
        parts = shared(piece, len(ranges), threads)
        result = parts[0] if len(parts) == 1 else concat_results(parts)
    if n >= 4 * MIN_PIECE:    # smaller runs' fixed costs would inflate the per-sample cost
        sim.fused_state.cost[steps] = sum(spent) / n
    sim.fused_state.last_threads = min(threads, len(ranges))    # shown by the benchmark
    sim.fused_state.last_path = f"C pieces ({plan.kernel})" if plan is not None else \
        "layers (" + ", ".join(layer.product for layer in sim.fused_state.layers.values()
                               if layer.product) + ")"
    return result


def run_torch_ops(sim, bias_input: Optional[torch.Tensor], spikes: Optional[torch.Tensor],
                  steps: int, record_map: Dict[int, Set[str]], reset: str,
                  reset_interval: Optional[int], batch_size: Optional[int]):
    """``run`` on the device-generic path (``torch_ops``), whatever the device: what
    CUDA simulators take, and what the tests run on CPU tensors to check that code
    where no GPU is."""
    parts = [_result(sim, s, v, steps, reset, states) for s, v, states in torch_ops.run(
        sim, bias_input, spikes, steps, record_map, reset, reset_interval, batch_size)]
    return parts[0] if len(parts) == 1 else concat_results(parts)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """(rows, N, C, H, W) → contiguous (rows, N, H, W, C): no copy when the memory
    already is channels-last (as the kernel writes a conv layer's spikes)."""
    return x.permute(0, 1, 3, 4, 2).contiguous() if x.dim() == 5 else x.contiguous()


def _synaptic(sim, st, layer: FusedLayer, prev: torch.Tensor, steps: int, static: int = 0):
    """(a, a_kind, a_rows, a_first): synaptic sums in the layer's state order, rows from
    chip step ``a_first`` on (later steps receive 0). ``static``: ``static_rows`` of
    ``prev``, whose product is then computed on its first row and repeated."""
    syn = st.synapse
    n = prev.shape[1]
    if steps < 2:
        return None, 0, 0, 0
    if layer.mode == "delays":
        a = sim.synaptic_input(st, prev.to(syn.dtype), steps, False, static=static)
        return a.contiguous(), _KIND[a.dtype], steps, 1       # chip steps 1..steps
    rows = steps - 1
    same = min(static, rows)
    m = 1 if same > 1 else rows          # rows of prev the product needs
    if layer.mode == "fp32":    # exact: every partial sum an integer ≤ 2²⁴ (FusedLayer)
        x = _channels_last(prev[:m])
        x = x.reshape(m * n, layer.w32.shape[0])
        if x.dtype != torch.float32:      # (the previous layer writes float32 spikes)
            x = x.to(torch.float32)
        a = torch.mm(x, layer.w32, out=_WS.take(f"a{st.spec_index}",
                                                (x.shape[0], layer.w32.shape[1]),
                                                torch.float32))
        if same > 1:
            a = _repeat_rows(a, same, f"r{st.spec_index}")
        return a, 5, same or rows, 2
    if layer.mode == "int8":    # exact: 0/1 × int8 summed in int32
        x = _channels_last(prev[:rows])
        x = x.view(torch.int8) if x.dtype in (torch.int8, torch.uint8, torch.bool) \
            else (x != 0).to(torch.int8)
        if layer.conv is None:
            x = x.reshape(rows * n, layer.int_w.main.shape[0])
        else:
            x = _im2col(x.reshape((rows * n,) + tuple(x.shape[2:])), layer.conv)
        x = row_major(x, functools.partial(_WS.take, "gemm_in"))
        a = layer.int_w.matmul(x, _WS.take(f"a{st.spec_index}",
                                           (x.shape[0], layer.int_w.main.shape[1]), torch.int32),
                               functools.partial(_WS.take, "high_rows"), layer.gemm)
        if layer.conv is None:
            return a, 3 if layer.split else 4, rows, 2
        if layer.split:     # per pixel hi | lo: combine here (the kernel pairs per sample)
            half = layer.int_w.main.shape[1] // 2
            a = torch.add(a[:, half:], a[:, :half], alpha=2)
        return a, 4, rows, 2
    prev = prev if prev.dtype == syn.dtype else prev.to(syn.dtype)   # 0/1 or graded values
    x = prev[:m]
    if st.flatten_input or st.kind == "dense":
        x = x.reshape(m * n, int(np.prod(x.shape[2:])))              # (C, H, W) order
    else:
        x = x.reshape((m * n,) + tuple(x.shape[2:]))
    a = syn(x, False)
    if st.kind == "dense" and syn.needs_wrap32 and a.dtype != torch.float64:
        a = a.to(torch.float64)                             # the kernel wraps float64 input
    if st.kind == "conv":         # the state order is channels-last
        a = a.squeeze(1).contiguous(memory_format=torch.channels_last)
    else:
        a = a.contiguous()
    if same > 1:
        a = _repeat_rows(a, same)
    return a, _KIND[a.dtype], same or rows, 2


def _repeat_rows(a: torch.Tensor, rows: int, key: Optional[str] = None) -> torch.Tensor:
    """``a`` (one step's sums, samples first) as ``rows`` steps of them, one after
    another in memory as the neuron kernel reads them (in the workspace under ``key``);
    a conv layer's sums in their channels-last memory order."""
    a = a.permute(0, 2, 3, 1) if a.dim() == 4 else a
    shape = (rows,) + tuple(a.shape)
    out = torch.empty(shape, dtype=a.dtype) if key is None else _WS.take(key, shape, a.dtype)
    out.copy_(a.unsqueeze(0).expand(shape))
    return out


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
    here. Only buffers between ``WORKSPACE_MIN_BYTES`` and ``WORKSPACE_MAX_BYTES`` are
    kept.
    """

    def __init__(self) -> None:
        self.buffers: Dict[str, torch.Tensor] = {}

    def take(self, key: str, shape: Tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised ``shape`` tensor of ``dtype``, reusing the memory that
        ``key`` had last time (the caller's earlier tensor under ``key`` is overwritten)."""
        nbytes = math.prod(shape) * dtype.itemsize
        if not WORKSPACE_MIN_BYTES <= nbytes <= WORKSPACE_MAX_BYTES:
            return torch.empty(shape, dtype=dtype)
        buf = self.buffers.get(key)
        if buf is None or buf.numel() < nbytes:
            buf = self.buffers[key] = torch.empty(max(nbytes, 1), dtype=torch.uint8)
        return buf[:nbytes].view(dtype).view(shape)


#: largest intermediate a thread keeps between runs (pieces are cut to stay near
#: CACHE_BUDGET, so only unusual layers or records exceed it)
WORKSPACE_MAX_BYTES = 64 << 20

#: smallest one it keeps: smaller tensors come from malloc's heap without page faults,
#: and keeping them there for good pinned freed memory below them (PilotNet-LIF, 256
#: samples in 1-sample pieces: resident set +270–360 MiB with every size kept, +7 MiB
#: with this floor)
WORKSPACE_MIN_BYTES = 256 << 10

_WS = _Workspace()


def _piece_plan(sim) -> Optional[fastsim_piece.PiecePlan]:
    """``sim``'s whole-piece plan (built once), or ``None`` where it has none."""
    state = sim.fused_state
    if not state.piece_planned:
        state.piece_plan = fastsim_piece.plan_for(sim, state.layers, state.machine)
        state.piece_planned = True
    return state.piece_plan


def _whole_piece(sim, plan: fastsim_piece.PiecePlan, bias_input: Optional[torch.Tensor],
                 spike_input: Optional[torch.Tensor], steps: int, reset: str,
                 reset_interval: Optional[int], patterns: Optional[Patterns]):
    """One piece of an input + conv/dense network in one C call (same integers as
    ``_run_chunk``): bias input through the lookup ``patterns``, or binary spike input
    (N, T_in, *input shape), cut or zero-padded to ``steps`` like ``Simulator._spike_train``."""
    masks = [reset_mask(st, steps, reset, reset_interval) for st in plan.stages]
    if spike_input is not None:    # the simulator's own cut/pad to steps, as 0/1 bytes
        train = _channels_last(sim.spike_train(spike_input, steps))
        n = train.shape[1]
        as_bytes = _WS.take("spike_input", tuple(train.shape), torch.uint8)
        as_bytes.copy_(train != 0)
        spikes, v = plan.run(None, steps, None, 0, 0, masks,
                             spikes_in=as_bytes.view(steps, n, -1))
    else:
        b16 = _bias16(bias_input)
        spikes, v = plan.run(b16.view(b16.shape[0], -1), steps, patterns.bits, patterns.words,
                             patterns.offset, masks)
    out_shape = tuple(sim.stages[-1].shape)
    return _result(sim, spikes.view((steps, spikes.shape[1]) + out_shape),
                   v.view((v.shape[0],) + out_shape), steps, reset, {})


def _bias16(bias_input: torch.Tensor) -> torch.Tensor:
    """The input layer's biases wrapped to int16, in its state order (channels-last for a
    (C, H, W) input), in this thread's workspace."""
    b = bias_input.permute(0, 2, 3, 1) if bias_input.dim() == 4 else bias_input
    return wrap16_input(b, _WS.take("bias16", tuple(b.shape), torch.int16))


def _result(sim, spikes: torch.Tensor, v: Optional[torch.Tensor], steps: int, reset: str,
            states: Dict[int, Dict[str, torch.Tensor]]):
    """A piece's ``SimResult``: the output layer's spike counts from its first step
    after the reset on (netx's staggered resets)."""
    window = sim.stages[-1].timing.block_index + 1 if reset == "staggered" else 1
    return SimResult(output_spikes=spikes, output_v=v,
                     spike_counts=spikes[window - 1:].sum(dim=0, dtype=torch.int64),
                     steps=steps, window_start=window, states=states)


def _run_chunk(sim, bias_input, spikes, steps, record_map, reset, reset_interval,
               patterns: Optional[Patterns] = None):
    layers: Dict[int, FusedLayer] = sim.fused_state.layers
    states: Dict[int, Dict[str, torch.Tensor]] = {}
    prev, static = None, 0
    if not sim.has_input_neuron or spikes is not None:
        prev, static = sim.first_train(spikes, steps)
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
                    states[st.spec_index] = sim.input_records(prev, names)
                continue
            bias, per_sample = _bias16(bias_input), 1
            n = bias_input.shape[0]
        else:
            n = prev.shape[1]
            if sim.spike_transform is not None:
                prev = sim.transform_spikes(st, prev)
            a, a_kind, a_rows, a_first = _synaptic(sim, st, layer, prev, steps, static)
            static = 0
        nxt = layers[stages[pos + 1].spec_index] if pos + 1 < len(stages) else None
        if nxt is None or sim.spike_transform is not None:
            s_dtype = torch.bool
        elif nxt.mode == "int8":
            s_dtype = torch.int8
        elif nxt.mode == "fp32":
            s_dtype = torch.float32
        else:
            s_dtype = stages[pos + 1].synapse.dtype
        # the last layer's spikes (and those a transform sees) go out in (C, H, W) order;
        # the others stay in this thread's workspace
        chw = nxt is None or sim.spike_transform is not None
        s = _spike_buffer(layer, st, steps, n, s_dtype, chw,
                          None if nxt is None else f"s{pos}")
        if per_sample and patterns is not None:   # the input layer, not the last
            rec = looked_up_layer(layer, st, patterns, bias, n, steps, names, s)
        else:
            rec, v_final = _neuron_layer(
                layer, st, (a, a_kind, a_rows, a_first), bias, per_sample, n, steps, names,
                reset, reset_interval, s, chw, None if nxt is None else f"v{pos}")
        prev = s
        if rec:
            states[st.spec_index] = rec
    return _result(sim, prev, v_final, steps, reset, states)


def _spike_buffer(layer: FusedLayer, st, steps: int, n: int, s_dtype: torch.dtype,
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


def _neuron_layer(layer: FusedLayer, st, synaptic, bias, per_sample, n, steps, names, reset,
                  reset_interval, s: torch.Tensor, chw: bool, v_key: Optional[str]):
    """Run one layer's neurons through every step into ``s``; return (records, final v),
    the final v in the workspace under ``v_key`` unless that is ``None``."""
    shape = (steps, n) + tuple(st.shape)
    s_kind = S_KIND[s.dtype]
    rec = {k: torch.empty(shape, dtype=torch.int32) for k in ("u", "v") if k in names}
    v_shape = (n,) + tuple(st.shape)
    v_final = torch.empty(v_shape, dtype=torch.int64) if v_key is None else \
        _WS.take(v_key, v_shape, torch.int64)
    mask = reset_mask(st, steps, reset, reset_interval)
    a, a_kind, a_rows, a_first = synaptic
    shift = layer.shift if a_kind >= 3 else 0
    gains = layer.gains if a is not None else None
    args = (steps, n, layer.f, ptr(a), a_kind, a_rows, a_first, shift,
            ptr(gains), 0 if gains is None else gains.size, layer.gain_exp, layer.hops,
            ptr(bias), per_sample, ptr(layer.cu), ptr(layer.cv), ptr(layer.theta),
            ptr(mask), ptr(s), s_kind, ptr(rec.get("u")), ptr(rec.get("v")), ptr(v_final),
            ptr(layer.order), int(chw))
    if kernels.KERNEL(*args, 0, n):
        raise MemoryError("fused neuron kernel: could not allocate its scratch state")
    if "s" in names:
        rec["s"] = torch.empty(shape, dtype=torch.bool).copy_(s)   # (C, H, W) order
    return rec, v_final

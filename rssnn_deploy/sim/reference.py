"""The reference loop: every layer's neurons stepped in torch, exactly as Lava's
fixed-point CUBA model (the equations are in ``rssnn_deploy/sim/README.md``).

It is the definition the fused engine is tested against, and the only path with
gradients (``differentiable=True``: straight-through estimators around every rounding,
wrap and clip, a triangle surrogate for the spike). Neuron state lives in float64, where
every value is an exact integer; overflow handling runs only where a bound shows it can
trigger (``_plan_checks``).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Set

import numpy as np
import torch

from rssnn_deploy.sim.layers import NeuronConstant, Stage, is_constant, neuron_constant
from rssnn_deploy.sim.network import NO_PATH, CompiledNetwork, StraightThrough, reset_steps
from rssnn_deploy.sim.ops import (
    TWO31,
    U_LIMIT,
    V_LIMIT,
    Clip,
    Spike,
    no_tf32,
    spike_surrogate,
    trunc,
    wrap,
    wrap16,
    wrap_u_once,
    zero_with_grad,
)
from rssnn_deploy.sim.result import SimResult, concat_results
from rssnn_deploy.spec import BIAS_EXP, DECAY_ONE, STATE_SHIFT

__all__ = ["run_reference", "auto_batch"]


def run_reference(net: CompiledNetwork, bias_input: Optional[torch.Tensor],
                  spikes: Optional[torch.Tensor], steps: int, record_map: Dict[int, Set[str]],
                  reset: str, reset_interval: Optional[int], batch_size: Optional[int],
                  paths: Mapping[int, StraightThrough]) -> SimResult:
    """``Simulator.run`` on the reference loop (inputs already checked), in chunks of
    ``batch_size`` samples (default :func:`auto_batch`)."""
    n = (bias_input if bias_input is not None else spikes).shape[0]
    if batch_size is None:
        batch_size = auto_batch(net, steps, record_map)
    ctx = contextlib.nullcontext() if net.differentiable else torch.inference_mode()
    with ctx, no_tf32():
        parts = []
        for lo in range(0, max(n, 1), max(batch_size, 1)):
            hi = min(n, lo + batch_size)
            parts.append(_run_batch(
                net, None if bias_input is None else bias_input[lo:hi],
                None if spikes is None else spikes[lo:hi], steps, record_map, reset,
                reset_interval, paths))
    return parts[0] if len(parts) == 1 else concat_results(parts)


def auto_batch(net: CompiledNetwork, steps: int, record_map) -> int:
    """Samples per chunk: the neuron loop is memory-bound, so on CPU a chunk's largest
    state tensor should stay cache-sized (≈ 2 MiB of float64, measured fastest on 2
    cores); on CUDA only the memory cap applies."""
    largest = max(max(int(np.prod(st.shape)) for st in net.stages),
                  int(np.prod(net.input_shape)))
    per_sample = steps * (largest * 3
                          + sum(int(np.prod(st.shape)) * len(record_map.get(st.spec_index, ()))
                                for st in net.stages))
    cap = int((1 << 25) // max(per_sample, 1))
    if net.device.type == "cpu" and not net.differentiable:
        cap = min(cap, (1 << 18) // largest)
    return max(1, cap)

def _run_batch(net: CompiledNetwork, bias_input, spikes, steps, record_map, reset,
               reset_interval=None, paths: Optional[Mapping[int, StraightThrough]] = None
               ) -> SimResult:
    grad = net.differentiable
    paths = paths or {}
    states: Dict[int, Dict[str, torch.Tensor]] = {}
    states_float: Dict[int, Dict[str, torch.Tensor]] = {}
    prev = None  # (steps, N, *shape) float spikes of the previous neuron layer
    stages = net.stages
    static = 0     # leading rows of the first synaptic layer's input known equal
    if not net.has_input_neuron or spikes is not None:
        prev, static = net.first_train(spikes, steps)
    for st in stages:
        path = paths.get(st.spec_index, NO_PATH)
        if st.kind == "input":
            if spikes is not None:   # spikes replace the input neuron's own output
                if st.spec_index in record_map:
                    states[st.spec_index] = net.input_records(prev, record_map[st.spec_index])
                continue
            n = bias_input.shape[0]
            bias = wrap16(bias_input.to(torch.float64), grad) * float(1 << BIAS_EXP)
            a_in = None
        else:
            n = prev.shape[1]
            if net.spike_transform is not None:
                prev = net.transform_spikes(st, prev)
            a_in = net.synaptic_input(st, prev, steps, grad, path.weight, static)
            static = 0
            bias = st.bias
        prev, rec, v_final, rec_float = _neuron_loop(net, 
            st, a_in, bias, n, steps, record_map.get(st.spec_index, set()), reset,
            reset_interval, path.gains)
        if rec:
            states[st.spec_index] = rec
        if rec_float:
            states_float[st.spec_index] = rec_float
    out = stages[-1]
    window = out.timing.block_index + 1 if reset == "staggered" else 1
    out_spikes = prev.detach() != 0
    counts = out_spikes[window - 1:].sum(dim=0).to(torch.int64)
    return SimResult(output_spikes=out_spikes, output_v=v_final.detach().to(torch.int64),
                     spike_counts=counts, steps=steps, window_start=window, states=states,
                     output_v_float=v_final if grad else None, states_float=states_float)


def _neuron_loop(net, st: Stage, a_in, bias, n: int, steps: int, names: Set[str],
                 reset: str, reset_interval: Optional[int] = None,
                 gains_path: Optional[torch.Tensor] = None):
    """Run one layer's neurons over all steps.

    Returns (spikes, records, final v, records in the autograd graph); the last is
    empty outside the differentiable mode.
    """
    grad = net.differentiable
    neuron = st.neuron
    shape = (n,) + st.shape
    dev = net.device
    cu = neuron_constant(neuron.i_decay, lambda d: (DECAY_ONE - d) / DECAY_ONE, st.shape, dev)
    cv = neuron_constant(neuron.v_decay, lambda d: (DECAY_ONE - d) / DECAY_ONE, st.shape, dev)
    theta = neuron_constant(neuron.vth_mant, lambda m: m << STATE_SHIFT, st.shape, dev)
    resets = reset_steps(st.timing.block_index + 1, steps, reset, reset_interval)
    if a_in is not None and st.gains is not None:
        k = (torch.arange(1, steps + 1, device=dev) - st.timing.hops - 1).clamp(
            0, st.gains.numel() - 1)
        gains = st.gains if gains_path is None else st.gains + zero_with_grad(gains_path)
        g = gains[k].reshape((steps,) + (1,) * len(shape))
        a_in = trunc(a_in * g * st.gain_scale, grad)
    recurrent = getattr(st.synapse, "recurrent", None)
    if a_in is None and recurrent is not None:   # no feed-forward input yet
        a_in = torch.zeros((steps,) + shape, dtype=torch.float64, device=dev)
    a6 = None
    if a_in is not None:   # << 6: a power-of-two scaling, exact in float32 as well
        a6 = a_in * 64.0 if grad else a_in.mul_(64.0)
    static_a = 0.0 if a_in is None else 64.0 * _static_bound(st)
    plan = _plan_checks(st.exact_wraps, a6, bias, cu, cv, static_a)
    if plan.wrap32 and a6 is not None:
        a6 = wrap(a6.to(torch.float64), 32, grad)
    if grad and (names or recurrent is not None or not FAST_GRADIENTS):
        return _loop_grad(net, a6, bias, shape, steps, cu, cv, theta, resets, plan,
                          names, recurrent)
    if grad:
        s_all, v = _LayerLoop.apply(a6, bias, _LoopArgs(net, shape, steps, cu, cv, theta,
                                                         resets, plan))
        return s_all, {}, v, {}
    return (*_loop_exact(net, a6, bias, shape, steps, cu, cv, theta, resets, plan,
                              names, recurrent), {})

#: the differentiable mode's layers without records or recurrence run as one autograd
#: Function (``_LayerLoop``); ``False`` builds the graph op by op (``_loop_grad``), which
#: the tests compare it with
FAST_GRADIENTS = True


@dataclass(frozen=True)
class _LoopArgs:
    """What ``_LayerLoop`` needs besides its two differentiable inputs."""

    net: CompiledNetwork
    shape: tuple
    steps: int
    cu: NeuronConstant
    cv: NeuronConstant
    theta: NeuronConstant
    resets: Set[int]
    plan: "_Checks"


class _LayerLoop(torch.autograd.Function):
    """A layer's every step as one autograd node: the forward is the exact in-place loop
    (``_loop_exact``, keeping v before each reset), the backward the loop's gradient
    written out, step by step in reverse. Every rounding, wrap and clip is straight-
    through in ``_loop_grad``, so its gradient is that of

        u_t = cu·u_{t-1} + a6_t,   v'_t = cv·v_{t-1} + u_t + bias,
        s_t = H(v'_t − θ) (triangle surrogate),   v_t = v'_t·(1 − s_t),

    with u and v cut to 0 at a reset step. Built op by op, that graph had ~15 nodes per
    step and layer, and attacks on the chip model spent most of their time building and
    walking it (784-256-256-10 with exact gains, batch 64: forward and backward 22 ms).
    Inputs: a6 (steps, n, *shape) or None, bias or None (either may need gradients);
    outputs: spikes (steps, n, *shape) as float64 0/1 and the final v.
    """

    @staticmethod
    def forward(ctx, a6, bias, args: _LoopArgs):
        pre_v = torch.empty((args.steps,) + args.shape, dtype=torch.float64,
                            device=args.net.device)
        s_all, _, v = _loop_exact(args.net, None if a6 is None else a6.detach(),
                                  None if bias is None else bias.detach(), args.shape,
                                  args.steps, args.cu, args.cv, args.theta, args.resets,
                                  args.plan, set(), pre_v=pre_v)
        ctx.save_for_backward(s_all, pre_v)
        ctx.args = args
        ctx.bias_shape = None if bias is None else bias.shape
        return s_all.to(torch.float64), v

    @staticmethod
    def backward(ctx, g_s, g_v):
        s_all, pre_v = ctx.saved_tensors
        args: _LoopArgs = ctx.args
        need_a, need_b = ctx.needs_input_grad[:2]
        dv = torch.zeros(args.shape, dtype=torch.float64, device=pre_v.device) \
            if g_v is None else g_v.to(torch.float64)
        du = torch.zeros_like(dv)
        da = torch.empty_like(pre_v) if need_a else None
        db = torch.zeros_like(dv) if need_b else None
        for t in range(args.steps, 0, -1):
            pv, s = pre_v[t - 1], s_all[t - 1]
            g = -dv * pv if g_s is None else g_s[t - 1] - dv * pv    # d loss / d s_t
            dpre = dv.masked_fill(s, 0.0) + g * spike_surrogate(pv, args.theta)
            du = du + dpre                                           # d loss / d u_t
            if da is not None:
                da[t - 1] = du
            if db is not None:
                db += dpre
            if t in args.resets:          # u and v were zeroed before step t used them
                dv, du = torch.zeros_like(dv), torch.zeros_like(du)
            else:
                dv, du = dpre * args.cv, du * args.cu
        if db is not None:
            db = db.sum_to_size(ctx.bias_shape)
        return da, db, None


def _loop_exact(net, a6, bias, shape, steps, cu, cv, theta, resets, plan, names,
                recurrent=None, pre_v: Optional[torch.Tensor] = None):
    """In-place integer dynamics on float64 (no autograd); spikes as bool.

    ``recurrent`` (a ``dense_rec`` layer): ``a_in`` of step t also gets the layer's
    own spikes of step t − 1 through ``recurrent``. ``pre_v`` (steps, *shape): receives
    each step's v before the spike test and reset (the surrogate's argument).
    """
    dev = net.device
    u = torch.zeros(shape, dtype=torch.float64, device=dev)
    v = torch.zeros(shape, dtype=torch.float64, device=dev)
    s_all = torch.empty((steps,) + shape, dtype=torch.bool, device=dev)
    rec = {k: torch.empty((steps,) + shape, dtype=torch.bool if k == "s" else torch.int32,
                          device=dev) for k in names}
    # iDecay 4096 (the paper's LIF): u forgets everything, so u = a_in << 6 exactly
    u_is_input = is_constant(cu, 0.0) and a6 is not None and not plan.wrap32 and not plan.wrap_u
    for t in range(1, steps + 1):
        if t in resets:
            if not u_is_input:   # (then u is a row of a6, replaced just below)
                u.zero_()
            v.zero_()
        if u_is_input:
            u = a6[t - 1]
        elif a6 is not None or not is_constant(cu, 1.0):  # u = trunc(u·cu) + (a_in << 6)
            if is_constant(cu, 0.0):
                u.zero_()
            elif not is_constant(cu, 1.0):
                u.mul_(cu).trunc_()
            if a6 is not None:
                u.add_(a6[t - 1])
            if recurrent is not None and t > 1:
                u.add_(recurrent(s_all[t - 2], False), alpha=64.0)
            if plan.wrap32:
                u = wrap(u, 32, False)
            if plan.wrap_u:
                u = wrap_u_once(u, False)
        if is_constant(cv, 0.0):                       # v = trunc(v·cv) + u + bias
            v.copy_(u)
        else:
            if not is_constant(cv, 1.0):
                v.mul_(cv).trunc_()
            v.add_(u)
        if bias is not None:
            v.add_(bias)
        if plan.wrap32:
            v = wrap(v, 32, False)
        if plan.clamp_v:
            v.clamp_(-V_LIMIT, V_LIMIT)
        if pre_v is not None:
            pre_v[t - 1].copy_(v)
        s = s_all[t - 1]
        torch.gt(v, theta, out=s)
        v.masked_fill_(s, 0.0)
        if "u" in rec:
            rec["u"][t - 1].copy_(u)
        if "v" in rec:
            rec["v"][t - 1].copy_(v)
        if "s" in rec:
            rec["s"][t - 1].copy_(s)
    return s_all, rec, v

def _loop_grad(net, a6, bias, shape, steps, cu, cv, theta, resets, plan, names,
               recurrent=None):
    """Same dynamics, out of place, with straight-through and surrogate gradients."""
    dev = net.device
    u = torch.zeros(shape, dtype=torch.float64, device=dev)
    v = torch.zeros(shape, dtype=torch.float64, device=dev)
    spikes, rec = [], {k: [] for k in names}
    for t in range(1, steps + 1):
        if t in resets:
            u, v = u * 0.0, v * 0.0
        u = u * 0.0 if is_constant(cu, 0.0) else (
            u if is_constant(cu, 1.0) else trunc(u * cu, True))
        if a6 is not None:
            u = u + a6[t - 1]
        if recurrent is not None and spikes:
            u = u + 64.0 * recurrent(spikes[-1], True)
        if plan.wrap32:
            u = wrap(u, 32, True)
        if plan.wrap_u:
            u = wrap_u_once(u, True)
        v = (v * 0.0 if is_constant(cv, 0.0) else (
            v if is_constant(cv, 1.0) else trunc(v * cv, True))) + u
        if bias is not None:
            v = v + bias
        if plan.wrap32:
            v = wrap(v, 32, True)
        if plan.clamp_v:
            v = Clip.apply(v, -V_LIMIT, V_LIMIT)
        s = Spike.apply(v, theta)
        v = v * (1.0 - s)
        spikes.append(s)
        for k, val in (("u", u), ("v", v), ("s", s)):
            if k in rec:
                rec[k].append(val)
    floats = {k: torch.stack(x) for k, x in rec.items()}
    out = {k: (x.detach() > 0.5) if k == "s" else x.detach().to(torch.int32)
           for k, x in floats.items()}
    return torch.stack(spikes), out, v, floats




@dataclass(frozen=True)
class _Checks:
    wrap32: bool    # emulate int32 overflow of a_in << 6, u and v
    wrap_u: bool    # Lava's single 24-bit wrap of u can trigger
    clamp_v: bool   # v can reach the ±(2²³ − 1) saturation


def _static_bound(st: Stage) -> float:
    """Largest |a_in| the layer can receive, from its weights (and gains)."""
    a = min(st.synapse.max_abs, TWO31)
    if st.kind == "dense" and st.synapse.delays != [0]:
        a = min(a * len(st.synapse.delays), TWO31)
    if st.gains is not None:
        a = a * float(st.gains.abs().max()) * st.gain_scale
    return a


def _plan_checks(exact_wraps: bool, a6, bias, cu: NeuronConstant, cv: NeuronConstant,
                 static_a: float = math.inf) -> _Checks:
    """Skip overflow handling that provably cannot trigger for this input (bounds below).

    |u| ≤ A/(1 − cu) with A = max|a_in << 6| (|trunc(x)| ≤ |x|); |v| ≤ (U + B)/(1 − cv)
    with U the bound on |u| after its wrap and B = max|bias << 6|. Spike resets only
    shrink v. Per-neuron decays bound with their extremes. The bound from the weights
    (``static_a``) is tried first; only if it allows an overflow is the actual input
    measured. When ``exact_wraps`` is set (int32 overflow possible), everything is on.
    """
    if exact_wraps:
        return _Checks(True, True, True)
    b = 0.0 if bias is None else float(bias.detach().abs().max()) if bias.numel() else 0.0

    def geometric(x: float, c: NeuronConstant) -> float:
        if x == 0.0:
            return 0.0
        lo, hi = (float(c.min()), float(c.max())) if torch.is_tensor(c) else (c, c)
        return x / (1.0 - hi) if 0.0 <= lo and hi < 1.0 else math.inf

    def checks(a: float) -> _Checks:
        u_bound = geometric(a, cu)
        v_bound = geometric(min(u_bound, U_LIMIT) + b, cv)
        return _Checks(False, u_bound >= U_LIMIT, v_bound > V_LIMIT)

    plan = checks(static_a if a6 is not None else 0.0)
    if (plan.wrap_u or plan.clamp_v) and a6 is not None and a6.numel():
        plan = checks(float(a6.detach().abs().max()))    # the actual input may be smaller
    return plan


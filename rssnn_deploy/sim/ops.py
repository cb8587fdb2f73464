"""Exact integer arithmetic on float64 tensors, with straight-through gradients.

The simulator (``rssnn_deploy.sim.simulator``) holds integer states in float64 (exact below 2⁵³)
so one code path serves both the exact mode and the differentiable one: each rounding,
wrap and clip here is the plain torch op without gradients, or an autograd Function
whose backward passes the gradient through unchanged (the spike uses a triangle
surrogate instead). Also Lava's fixed-point limits the simulator's layers share.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

__all__ = ["U_LIMIT", "V_LIMIT", "TWO31", "F32_EXACT", "zero_with_grad", "Floor", "Round", "Clip",
           "Spike", "spike_surrogate", "trunc", "floor", "wrap", "wrap_u_once", "wrap16", "no_tf32"]

U_LIMIT = 1 << 23            # Lava wraps u once around ±2²³
V_LIMIT = (1 << 23) - 1      # Lava clips v to ±(2²³ − 1)
_TWO32 = float(1 << 32)
TWO31 = float(1 << 31)
F32_EXACT = 1 << 24


def zero_with_grad(p: torch.Tensor) -> torch.Tensor:
    """``p − sg(p)`` in float64: exactly 0 in value, the identity for the gradient."""
    p = p.to(torch.float64)
    return p - p.detach()


def _straight_through(op: Callable[[torch.Tensor], torch.Tensor]) -> type:
    """An autograd Function that applies ``op`` forward and passes gradients unchanged."""
    def forward(ctx, x):
        return op(x)

    def backward(ctx, g):
        return g
    return type(f"_StraightThrough_{op.__name__}", (torch.autograd.Function,),
                {"forward": staticmethod(forward), "backward": staticmethod(backward)})


_Trunc = _straight_through(torch.trunc)


Floor = _straight_through(torch.floor)


Round = _straight_through(torch.round)


class _Wrap(torch.autograd.Function):
    """x ↦ signed wrap modulo 2**bits (identity gradient)."""

    @staticmethod
    def forward(ctx, x, bits):
        m = float(1 << bits)
        return x - m * torch.floor((x + m / 2) / m)

    @staticmethod
    def backward(ctx, g):
        return g, None


class Clip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        return torch.clamp(x, lo, hi)

    @staticmethod
    def backward(ctx, g):
        return g, None, None


class Spike(torch.autograd.Function):
    """Heaviside ``v > θ`` forward, triangle surrogate backward (width θ)."""

    @staticmethod
    def forward(ctx, v, theta):
        ctx.save_for_backward(v)
        ctx.theta = theta
        return (v > theta).to(v.dtype)

    @staticmethod
    def backward(ctx, g):
        (v,) = ctx.saved_tensors
        return g * spike_surrogate(v, ctx.theta), None


def spike_surrogate(v: torch.Tensor, theta) -> torch.Tensor:
    """d spike / d v of the triangle surrogate: peak 1/w at θ, zero beyond θ ± w, with
    w = max(θ, 1)."""
    width = theta.clamp(min=1.0) if torch.is_tensor(theta) else max(float(theta), 1.0)
    return torch.clamp(1.0 - (v - theta).abs() / width, min=0.0) / width


def trunc(x, grad):
    return _Trunc.apply(x) if grad else torch.trunc(x)


def floor(x, grad):
    return Floor.apply(x) if grad else torch.floor(x)


def wrap(x, bits, grad):
    if grad:
        return _Wrap.apply(x, bits)
    m = float(1 << bits)
    return x - m * torch.floor((x + m / 2) / m)


def wrap_u_once(u, grad):
    """Lava's single asymmetric 24-bit wrap of u (identity gradient)."""
    if grad:
        return _WrapOnce.apply(u)
    u = torch.where(u > U_LIMIT, u - 2 * U_LIMIT, u)
    return torch.where(u <= -U_LIMIT, u + 2 * U_LIMIT, u)


class _WrapOnce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u):
        u = torch.where(u > U_LIMIT, u - 2 * U_LIMIT, u)
        return torch.where(u <= -U_LIMIT, u + 2 * U_LIMIT, u)

    @staticmethod
    def backward(ctx, g):
        return g


def wrap16(b, grad):
    return wrap(b, 16, grad)


@contextlib.contextmanager
def no_tf32():
    """TF32 would round integer sums on CUDA; make sure it is off while simulating."""
    if not torch.cuda.is_available():
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old

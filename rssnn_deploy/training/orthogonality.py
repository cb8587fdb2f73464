"""The Parseval-style orthogonality retraction applied after each optimiser update."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["orthogonality_step"]


@torch.no_grad()
def orthogonality_step(model: nn.Module, beta: float) -> None:
    r"""Parseval retraction towards orthonormal rows, for every synapse:

    .. math:: W \leftarrow (1 + \beta)\,W - \beta\, W W^\top W

    (convolutions on their ``(out, in·kH·kW)`` matrix). Keeping ``‖W‖₂ ≈ 1`` keeps the
    per-layer L2 gain bound ``sqrt(1/(1−λ))·‖W‖₂`` small.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            w = module.weight.view(module.weight.shape[0], -1)
            w.copy_((1.0 + beta) * w - beta * (w @ w.t() @ w))

"""The Parseval-style orthogonality retraction applied after each optimiser update."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["orthogonality_step", "PAPER_ROW_FRACTION", "PAPER_MIN_ROWS"]

#: the paper code (``regularize.snn_rat_reg1``) retracts a random 30 % of the rows of a
#: Linear layer with at least 200 outputs, and every row of smaller Linear layers and
#: of every convolution.
PAPER_ROW_FRACTION = 0.3
PAPER_MIN_ROWS = 200


@torch.no_grad()
def orthogonality_step(model: nn.Module, beta: float, rows: str = "all") -> None:
    r"""Parseval retraction towards orthonormal rows, for every synapse:

    .. math:: W_R \leftarrow (1 + \beta)\,W_R - \beta\, W_R W_R^\top W_R

    on the rows ``R`` of each weight (convolutions on their ``(out, in·kH·kW)`` matrix).
    ``rows="all"`` retracts every row; ``rows="paper"`` draws, for Linear layers with at
    least ``PAPER_MIN_ROWS`` outputs, a fresh random ``PAPER_ROW_FRACTION`` of the rows
    each step (from torch's global generator, so a seeded run repeats), as the paper's
    code does. Keeping ``‖W‖₂ ≈ 1`` keeps the per-layer L2 gain bound
    ``sqrt(1/(1−λ))·‖W‖₂`` small.
    """
    if rows not in ("all", "paper"):
        raise ValueError(f"rows must be 'all' or 'paper', not {rows!r}")
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        w = module.weight.view(module.weight.shape[0], -1)
        out = w.shape[0]
        if rows == "paper" and isinstance(module, nn.Linear) and out >= PAPER_MIN_ROWS:
            chosen = torch.randperm(out, device=w.device)[:int(out * PAPER_ROW_FRACTION)]
            part = w[chosen]
            w[chosen] = (1.0 + beta) * part - beta * (part @ part.t() @ part)
        else:
            w.copy_((1.0 + beta) * w - beta * (w @ w.t() @ w))

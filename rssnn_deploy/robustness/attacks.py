"""L∞ evasion attacks from torchattacks, and the SNN-specific ways to get their gradients.

The attacks are torchattacks' own (FGSM, PGD, APGD with the CE or DLR loss), run
unchanged on any ``nn.Module`` that maps pixels in [0, 1] to logits: the float SNN, a
surrogate ensemble of it, or the deployed integer model through the simulator's
differentiable mode (``chip_model.ChipModel``).

Why gradient sources matter for SNNs: the spike is a step function, so every gradient
is a surrogate's. One surrogate can make a model look robust simply because its
gradient points the wrong way (gradient obfuscation), so the evaluation offers

* ``bptt``: the model's own surrogate, back-propagated through time (the paper's);
* ``bptr``: back-propagation *rather* than through time (state carried between steps is
  detached), which the sparse-gradient paper found to give stronger attacks;
* ``ensemble-mean``: triangle, sigmoid and atan surrogates at once. Their forward passes
  are identical (the Heaviside step), so averaging their logits gives exactly the mean of
  their loss gradients;
* ``ensemble-worst``: attack each surrogate separately and keep, per sample, the
  example with the lowest true-class margin (the worst case for the defender).

Step sizes follow the usual conventions: PGD uses α = 2.5·ε/steps with a random start
(Madry et al.; the RSSNN evaluation), APGD adapts its own step (Croce & Hein).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ["ATTACKS", "GRADIENTS", "ENSEMBLE_SURROGATES", "AttackSpec", "parse_attack",
           "make_attack", "craft", "craft_with_gradient", "surrogate_variant",
           "SurrogateEnsemble", "margins", "worst_case", "check_budget"]

#: the attacks an evaluation runs by default, weakest first within the PGD family.
ATTACKS: Tuple[str, ...] = ("FGSM", "PGD-7", "PGD-10", "PGD-20", "PGD-40", "APGD-CE",
                            "APGD-DLR")
GRADIENTS: Tuple[str, ...] = ("bptt", "bptr", "ensemble-mean", "ensemble-worst")
ENSEMBLE_SURROGATES: Tuple[str, ...] = ("triangle", "sigmoid", "atan")

_PGD = re.compile(r"^PGD-(\d+)$")


@dataclass(frozen=True)
class AttackSpec:
    """One attack at one budget. ``eps`` is the L∞ radius on [0, 1] pixels."""

    name: str
    eps: float
    apgd_steps: int = 20
    pgd_alpha_factor: float = 2.5     # α = factor·ε/steps
    seed: int = 0

    def __post_init__(self) -> None:
        parse_attack(self.name)
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"ε must lie in [0, 1] (pixel units), got {self.eps}")


def parse_attack(name: str) -> Tuple[str, int]:
    """``"PGD-10"`` → ``("PGD", 10)``; ``"FGSM"`` → ``("FGSM", 1)``; APGD names as is."""
    if name == "FGSM":
        return "FGSM", 1
    match = _PGD.match(name)
    if match and int(match.group(1)) >= 1:
        return "PGD", int(match.group(1))
    if name in ("APGD-CE", "APGD-DLR"):
        return name, 0
    raise ValueError(f"unknown attack {name!r}; use FGSM, PGD-<steps>, APGD-CE or APGD-DLR")


def make_attack(model: nn.Module, spec: AttackSpec):
    """The torchattacks object for ``spec`` on ``model``."""
    import torchattacks
    kind, steps = parse_attack(spec.name)
    if kind == "FGSM":
        return torchattacks.FGSM(model, eps=spec.eps)
    if kind == "PGD":
        alpha = spec.pgd_alpha_factor * spec.eps / steps
        return torchattacks.PGD(model, eps=spec.eps, alpha=alpha, steps=steps, random_start=True)
    loss = "ce" if kind == "APGD-CE" else "dlr"
    return torchattacks.APGD(model, norm="Linf", eps=spec.eps, steps=spec.apgd_steps,
                             n_restarts=1, seed=spec.seed, loss=loss)


def craft(model: nn.Module, x: Tensor, y: Tensor, spec: AttackSpec, batch_size: int = 256
          ) -> Tensor:
    """Adversarial examples for ``spec`` against ``model``, batch by batch, detached.

    The global torch seed is set to ``spec.seed`` first, so PGD's random start (and so
    every number downstream) is reproducible for a given batch size.
    """
    if spec.eps == 0.0:
        return x.detach().clone()
    was_training = model.training
    model.eval()
    attack = make_attack(model, spec)
    torch.manual_seed(spec.seed)
    try:
        out = [attack(x[i:i + batch_size], y[i:i + batch_size]).detach()
               for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else x.detach().clone()


def check_budget(x: Tensor, x_adv: Tensor, eps: float, atol: float = 1e-6) -> Dict[str, float]:
    """The largest L∞ distance and the pixel range of ``x_adv``; used to catch broken attacks."""
    dist = float((x_adv - x).abs().max()) if len(x) else 0.0
    return {"linf": dist, "min": float(x_adv.min()) if len(x) else 0.0,
            "max": float(x_adv.max()) if len(x) else 0.0,
            "within_budget": bool(dist <= eps + atol) and (not len(x) or (
                float(x_adv.min()) >= -atol and float(x_adv.max()) <= 1.0 + atol))}


# --------------------------------------------------------------------- gradient sources

def surrogate_variant(model: nn.Module, surrogate: Optional[str] = None,
                      bptr: Optional[bool] = None) -> nn.Module:
    """The same trained SNN rebuilt with another surrogate and/or BPTR; forward unchanged.

    A non-default surrogate takes its own default shape parameter, since the scales of
    different surrogates are not comparable.
    """
    from rssnn_deploy.models import build_model
    describe = getattr(model, "describe", None)
    if describe is None:
        raise TypeError(f"{type(model).__name__} cannot be rebuilt with another surrogate; "
                        "surrogate ensembles and BPTR need an rssnn_deploy SNN")
    config = describe()
    if surrogate is not None and surrogate != config["surrogate"]:
        config.update(surrogate=surrogate, surrogate_scale=None)
    if bptr is not None:
        config["bptr"] = bool(bptr)
    variant = build_model(config)
    variant.load_state_dict(model.state_dict())
    return variant.eval()


class SurrogateEnsemble(nn.Module):
    """Mean of the logits of surrogate variants of one SNN.

    All variants compute the same forward pass, so the output equals the model's logits
    while the gradient of any loss of it is the mean of the variants' gradients.
    """

    def __init__(self, variants: Sequence[nn.Module]) -> None:
        super().__init__()
        if not variants:
            raise ValueError("a surrogate ensemble needs at least one model")
        self.variants = nn.ModuleList(variants)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([m(x) for m in self.variants]).mean(dim=0)


def margins(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> Tensor:
    """logit of the true class minus the best other logit, per sample (< 0: misclassified)."""
    model.eval()
    out: List[Tensor] = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(x[i:i + batch_size]).double()
            yb = y[i:i + batch_size]
            true = logits.gather(1, yb[:, None]).squeeze(1)
            other = logits.scatter(1, yb[:, None], float("-inf")).max(dim=1).values
            out.append(true - other)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def worst_case(reference: nn.Module, x: Tensor, y: Tensor, candidates: Sequence[Tensor],
               batch_size: int = 512) -> Tensor:
    """Per sample, the candidate with the lowest true-class margin under ``reference``."""
    scores = torch.stack([margins(reference, c, y, batch_size) for c in candidates])
    best = scores.argmin(dim=0)
    stacked = torch.stack(list(candidates))
    return stacked[best, torch.arange(len(x))]


def _gradient_models(model: nn.Module, gradient: str) -> List[nn.Module]:
    if gradient == "bptt":
        return [model]
    if gradient == "bptr":
        return [surrogate_variant(model, bptr=True)]
    if gradient in ("ensemble-mean", "ensemble-worst"):
        return [surrogate_variant(model, surrogate=s) for s in ENSEMBLE_SURROGATES]
    raise ValueError(f"unknown gradient source {gradient!r}; choose one of {', '.join(GRADIENTS)}")


def craft_with_gradient(model: nn.Module, x: Tensor, y: Tensor, spec: AttackSpec,
                        gradient: str = "bptt", batch_size: int = 256) -> Tensor:
    """Adversarial examples against the float ``model`` with gradients from ``gradient``."""
    models = _gradient_models(model, gradient)
    if gradient == "ensemble-mean":
        return craft(SurrogateEnsemble(models), x, y, spec, batch_size)
    if gradient == "ensemble-worst":
        candidates = [craft(m, x, y, spec, batch_size) for m in models]
        return worst_case(model, x, y, candidates)
    return craft(models[0], x, y, spec, batch_size)


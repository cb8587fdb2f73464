"""L∞ evasion attacks from torchattacks, and the SNN-specific ways to get their gradients.

The attacks are torchattacks' own, run unchanged on any ``nn.Module`` that maps pixels
in [0, 1] to logits: the float SNN, a surrogate variant or ensemble of it, or the
deployed integer model (``chip_model.ChipModel``: its differentiable mode for gradients,
its integer forward for queries):

* ``FGSM``; ``PGD-<steps>`` and ``PGD-<steps>x<restarts>`` (each restart a new random
  start; per sample the restart with the lowest true-class margin is kept);
* ``APGD-CE``, ``APGD-DLR``, ``APGD-T`` (targeted DLR, 9 target classes) and ``FAB-T``
  (targeted FAB, 9 targets): step counts from ``apgd_steps``;
* ``Square``: gradient-free, score-based (margin loss), ``square_queries`` queries; on
  the chip model every query is a batched run of the integer simulator;
* ``AutoAttack``: the standard version (APGD-CE, APGD-T, FAB-T, Square run in turn,
  each on the samples the previous ones left standing) through torchattacks'
  ``MultiAttack``. torchattacks' own ``AutoAttack`` class is not used because it keeps
  its sub-attacks' defaults (10 APGD steps, 10 FAB steps), not the 100 iterations of
  Croce & Hein's standard version; here ``apgd_steps`` (100 in the ``autoattack``
  protocol) and ``square_queries`` (5,000) set them. An evaluation does not call it:
  ``robustness.cells`` runs the same cascade member by member, so each member's batches
  are checkpointed and APGD-CE is shared with its own column (equal per sample on one
  batch, which a test checks).

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
  example with the lowest true-class margin (the worst case for the defender);
* ``sweep``: the adaptive attacker's choice: every surrogate of ``neurons.SURROGATES``
  at ½, 1 and 2 times its default shape parameter, each attacked separately, and per
  sample the strongest (lowest true-class margin) kept.

Stochastic models (a forward pass that differs between two identical calls, e.g. a
noise defence) are attacked with expectation over transformation: every gradient is
averaged over ``eot_samples`` forward passes (torchattacks' EOT-PGD and APGD's
``eot_iter``). The project's own SNNs and the chip model are deterministic, which
``is_stochastic`` verifies rather than assumes.

Step sizes follow the usual conventions: PGD uses α = 2.5·ε/steps with a random start
(Madry et al.; the RSSNN evaluation), APGD adapts its own step (Croce & Hein).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from rssnn_deploy.epsilon import eps_text
from rssnn_deploy.robustness.choices import (
    ATTACKS,
    AUTOATTACK,
    GRADIENT_FREE,
    GRADIENTS,
    is_gradient_free,
    parse_attack,
    restarts_of,
)

__all__ = ["ATTACKS", "AUTOATTACK", "GRADIENTS", "GRADIENT_FREE", "ENSEMBLE_SURROGATES",
           "SWEEP_SCALES", "AttackSpec", "parse_attack", "restarts_of", "is_gradient_free",
           "make_attack", "describe_attack", "craft", "craft_with_gradient", "surrogate_variant",
           "sweep_variants", "SurrogateEnsemble", "margins", "worst_case", "check_budget",
           "is_stochastic"]

ENSEMBLE_SURROGATES: Tuple[str, ...] = ("triangle", "sigmoid", "atan")
#: multiples of each surrogate's default shape parameter the ``sweep`` source tries.
SWEEP_SCALES: Tuple[float, ...] = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class AttackSpec:
    """One attack at one budget. ``eps`` is the L∞ radius on [0, 1] pixels."""

    name: str
    eps: float
    apgd_steps: int = 20
    pgd_alpha_factor: float = 2.5     # α = factor·ε/steps
    seed: int = 0
    square_queries: int = 5000
    n_classes: int = 10
    eot_iter: int = 1                 # > 1: expectation over transformation

    def __post_init__(self) -> None:
        parse_attack(self.name)
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"ε must lie in [0, 1] (pixel units), got {self.eps}")


def describe_attack(name: str, eps: float, apgd_steps: int, square_queries: int,
                    alpha_factor: float = 2.5, classes: int = 10) -> str:
    """One line of ``name``'s parameters as :func:`make_attack` sets them (ε in pixels)."""
    kind, steps = parse_attack(name)
    targets = f"{classes - 1} target classes"
    if kind == "FGSM":
        return "torchattacks.FGSM: one signed-gradient step of size ε"
    if kind == "PGD":
        restarts = restarts_of(name)
        return (f"torchattacks.PGD: {steps} steps, α = {alpha_factor:.3g}·ε/{steps} = "
                f"{eps_text(alpha_factor * eps / steps)} at ε = {eps_text(eps)}, random start"
                + (f", {restarts} restarts (per sample the lowest margin kept)"
                   if restarts > 1 else ""))
    if kind in ("APGD-CE", "APGD-DLR"):
        return (f"torchattacks.APGD: {kind[5:]} loss, {apgd_steps} steps, 1 restart, "
                "adaptive step (ρ = 0.75)")
    if kind == "APGD-T":
        return f"torchattacks.APGDT: targeted DLR loss, {apgd_steps} steps per target, {targets}"
    if kind == "FAB-T":
        return f"torchattacks.FAB: multi-targeted, {apgd_steps} steps per target, {targets}"
    if kind == "Square":
        return (f"torchattacks.Square: {square_queries:,} queries, margin loss, p_init = 0.8, "
                "1 restart; gradient-free (on the chip: the integer readout membrane)")
    return ("AutoAttack standard: APGD-CE, APGD-T, FAB-T and Square with the parameters "
            "above, each on the samples the earlier ones left standing (as torchattacks' "
            "MultiAttack and the reference implementation run them)")


def make_attack(model: nn.Module, spec: AttackSpec):
    """The torchattacks object for ``spec`` on ``model``."""
    from rssnn_deploy.dependencies import require_torchattacks
    torchattacks = require_torchattacks(f"the {spec.name} attack")
    kind, steps = parse_attack(spec.name)
    if kind == "FGSM":
        return torchattacks.FGSM(model, eps=spec.eps)
    if kind == "PGD":
        alpha = spec.pgd_alpha_factor * spec.eps / steps
        if spec.eot_iter > 1:
            return torchattacks.EOTPGD(model, eps=spec.eps, alpha=alpha, steps=steps,
                                       eot_iter=spec.eot_iter, random_start=True)
        return torchattacks.PGD(model, eps=spec.eps, alpha=alpha, steps=steps, random_start=True)
    if kind in ("APGD-CE", "APGD-DLR"):
        return torchattacks.APGD(model, norm="Linf", eps=spec.eps, steps=spec.apgd_steps,
                                 n_restarts=1, seed=spec.seed, loss=kind[5:].lower(),
                                 eot_iter=spec.eot_iter)
    if kind == "APGD-T":
        return torchattacks.APGDT(model, norm="Linf", eps=spec.eps, steps=spec.apgd_steps,
                                  n_restarts=1, seed=spec.seed, eot_iter=spec.eot_iter,
                                  n_classes=spec.n_classes)
    if kind == "FAB-T":
        return torchattacks.FAB(model, norm="Linf", eps=spec.eps, steps=spec.apgd_steps,
                                n_restarts=1, seed=spec.seed, multi_targeted=True,
                                n_classes=spec.n_classes)
    if kind == "Square":
        return torchattacks.Square(model, norm="Linf", eps=spec.eps, n_queries=spec.square_queries,
                                   n_restarts=1, seed=spec.seed, loss="margin")
    members = [make_attack(model, replace(spec, name=name)) for name in AUTOATTACK]
    return torchattacks.MultiAttack(members)


def craft(model: nn.Module, x: Tensor, y: Tensor, spec: AttackSpec, batch_size: int = 256
          ) -> Tensor:
    """Adversarial examples for ``spec`` against ``model``, batch by batch, detached.

    The global torch seed is set to ``spec.seed`` first, so PGD's random start (and so
    every number downstream) is reproducible for a given batch size.
    """
    if spec.eps == 0.0:
        return x.detach().clone()
    restarts = restarts_of(spec.name)
    if restarts > 1:
        single = spec.name.split("x")[0]
        candidates = [craft(model, x, y, replace(spec, name=single, seed=spec.seed + r),
                            batch_size) for r in range(restarts)]
        return worst_case(model, x, y, candidates, batch_size)
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


def is_stochastic(model: nn.Module, x: Tensor) -> bool:
    """Whether two identical eval-mode forward passes differ (then attacks need EOT)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return not torch.equal(model(x), model(x))
    finally:
        model.train(was_training)


def check_budget(x: Tensor, x_adv: Tensor, eps: float, atol: float = 1e-6) -> Dict[str, float]:
    """The largest L∞ distance and the pixel range of ``x_adv``; used to catch broken attacks."""
    dist = float((x_adv - x).abs().max()) if len(x) else 0.0
    return {"linf": dist, "min": float(x_adv.min()) if len(x) else 0.0,
            "max": float(x_adv.max()) if len(x) else 0.0,
            "within_budget": bool(dist <= eps + atol) and (not len(x) or (
                float(x_adv.min()) >= -atol and float(x_adv.max()) <= 1.0 + atol))}


# --------------------------------------------------------------------- gradient sources

def surrogate_variant(model: nn.Module, surrogate: Optional[str] = None,
                      bptr: Optional[bool] = None, scale: Optional[float] = None
                      ) -> nn.Module:
    """The same trained SNN rebuilt with another surrogate and/or BPTR; forward unchanged.

    A non-default surrogate takes its own default shape parameter (the scales of
    different surrogates are not comparable) unless ``scale`` sets it.
    """
    from rssnn_deploy.models.zoo import build_model
    describe = getattr(model, "describe", None)
    if describe is None:
        raise TypeError(f"{type(model).__name__} cannot be rebuilt with another surrogate; "
                        "surrogate ensembles and BPTR need an rssnn_deploy SNN")
    config = describe()
    if surrogate is not None and surrogate != config["surrogate"]:
        config.update(surrogate=surrogate, surrogate_scale=None)
    if scale is not None:
        config["surrogate_scale"] = float(scale)
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


def sweep_variants(model: nn.Module, factors: Sequence[float] = SWEEP_SCALES
                   ) -> List[nn.Module]:
    """Every surrogate of ``neurons.SURROGATES`` at ``factors`` × its default scale."""
    from rssnn_deploy.models.neurons import SURROGATES
    return [surrogate_variant(model, surrogate=name, scale=f * cls.default_scale)
            for name, cls in SURROGATES.items() for f in factors]


def _gradient_models(model: nn.Module, gradient: str) -> List[nn.Module]:
    if gradient == "bptt":
        return [model]
    if gradient == "bptr":
        return [surrogate_variant(model, bptr=True)]
    if gradient in ("ensemble-mean", "ensemble-worst"):
        return [surrogate_variant(model, surrogate=s) for s in ENSEMBLE_SURROGATES]
    if gradient == "sweep":
        return sweep_variants(model)
    raise ValueError(f"unknown gradient source {gradient!r}; choose one of {', '.join(GRADIENTS)}")


def craft_with_gradient(model: nn.Module, x: Tensor, y: Tensor, spec: AttackSpec,
                        gradient: str = "bptt", batch_size: int = 256) -> Tensor:
    """Adversarial examples against the float ``model`` with gradients from ``gradient``.

    Gradient-free attacks (Square) query ``model`` itself: every gradient source shares
    its forward pass.
    """
    if is_gradient_free(spec.name):
        return craft(model, x, y, spec, batch_size)
    models = _gradient_models(model, gradient)
    if gradient == "ensemble-mean":
        return craft(SurrogateEnsemble(models), x, y, spec, batch_size)
    if gradient in ("ensemble-worst", "sweep"):
        candidates = [craft(m, x, y, spec, batch_size) for m in models]
        return worst_case(model, x, y, candidates)
    return craft(models[0], x, y, spec, batch_size)


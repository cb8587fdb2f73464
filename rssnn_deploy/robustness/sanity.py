"""Checks that catch a broken or obfuscated attack, reported next to every result.

A robustness number is only as good as the attack behind it. Spiking networks are prone
to gradient obfuscation (zero surrogate gradients, quantized inputs, dead neurons), and
an evaluation bug can look exactly like robustness. These are the standard symptoms
(Athalye et al. 2018; Carlini et al., "On Evaluating Adversarial Robustness", 2019):

* **budget**: every adversarial example lies within its L∞ ball and in [0, 1];
* **monotone in ε**: accuracy does not rise as the budget grows (within a tolerance);
* **near zero at a large ε**: an unbounded-enough attack must win; at ε = 0.5 (127.5/255) every
  image can be moved to the same grey image, so a white-box attack that leaves
  accuracy high is not following a useful gradient;
* **strength order**: on the same samples, more iterations never make an attack weaker
  (PGD-40 ≤ PGD-20 ≤ PGD-10 ≤ PGD-7 ≤ FGSM accuracy, within a tolerance);
* **beats noise**: a gradient attack at budget ε does at least as well as random
  uniform noise of the same size.

Advisory (reported, not part of the verdict): at every ε, white-box attacks on the
integer model should be at least as strong as transferring the float model's examples
to it (per-sample worst cases compared); where they are not, the simulator's
straight-through gradients are the weak link, and the transfer number is the one to quote.

Every check returns :class:`SanityCheck` with pass/fail and the numbers behind it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from rssnn_deploy.epsilon import eps_text

__all__ = ["SanityCheck", "STRENGTH_ORDER", "check_budget", "check_monotone_in_eps",
           "check_near_zero", "check_strength_order", "check_beats_noise",
           "check_whitebox_not_weaker", "verdict"]

#: weakest → strongest; each attack must do at least as well as every one before it.
STRENGTH_ORDER = ("FGSM", "PGD-7", "PGD-10", "PGD-20", "PGD-40")

#: one threat model's results: attack → ε (pixel units) → accuracy
Curves = Mapping[str, Mapping[float, float]]


@dataclass(frozen=True)
class SanityCheck:
    """One check's outcome; ``detail`` is a sentence with the numbers that decided it."""

    name: str
    scope: str
    passed: bool
    detail: str
    numbers: Dict[str, Any] = field(default_factory=dict)
    advisory: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def check_budget(scope: str, budgets: Mapping[str, Mapping[str, Any]]) -> SanityCheck:
    """Every attack's examples stay within ε and [0, 1] (``attacks.check_budget`` output)."""
    broken = {k: v for k, v in budgets.items() if not v.get("within_budget", False)}
    detail = ("all examples within their L∞ ball and [0, 1]" if not broken else
              "outside budget: " + ", ".join(f"{k} (L∞ {v['linf']:.4g})"
                                             for k, v in broken.items()))
    return SanityCheck("budget respected", scope, not broken, detail,
                       {"cells": len(budgets), "violations": sorted(broken)})


def check_monotone_in_eps(scope: str, curves: Curves, clean: Optional[float],
                          tolerance: float) -> SanityCheck:
    """Accuracy never rises by more than ``tolerance`` from one ε to the next."""
    rises: List[str] = []
    for attack, curve in curves.items():
        points = sorted(curve.items())
        if clean is not None:
            points = [(0.0, clean)] + [p for p in points if p[0] > 0]
        for (e0, a0), (e1, a1) in zip(points, points[1:]):
            if a1 > a0 + tolerance:
                rises.append(f"{attack}: {_pct(a0)} at ε = {eps_text(e0)} → {_pct(a1)} "
                             f"at ε = {eps_text(e1)}")
    detail = "accuracy falls (or holds) as ε grows" if not rises else "; ".join(rises)
    return SanityCheck("accuracy falls as ε grows", scope, not rises, detail,
                       {"tolerance": tolerance, "violations": rises})


def check_near_zero(scope: str, curves: Curves, large_eps: float, threshold: float
                    ) -> SanityCheck:
    """The best attack at ``large_eps`` leaves at most ``threshold`` accuracy."""
    at_large = {a: c[large_eps] for a, c in curves.items() if large_eps in c}
    if not at_large:
        return SanityCheck("near zero at large ε", scope, False,
                           f"no attack was run at ε = {eps_text(large_eps)}",
                           {"large_eps": large_eps})
    best = min(at_large, key=at_large.get)
    passed = at_large[best] <= threshold
    detail = (f"best attack {best} leaves {_pct(at_large[best])} at ε = {eps_text(large_eps)} "
              f"(must be ≤ {_pct(threshold)})")
    return SanityCheck("near zero at large ε", scope, passed, detail,
                       {"large_eps": large_eps, "threshold": threshold, "accuracy": at_large})


def check_strength_order(scope: str, accuracies: Mapping[str, float], eps: float,
                         tolerance: float, order: Sequence[str] = STRENGTH_ORDER
                         ) -> SanityCheck:
    """On the same samples, a stronger attack is never weaker by more than ``tolerance``."""
    present = [a for a in order if a in accuracies]
    bad = [f"{strong} {_pct(accuracies[strong])} > {weak} {_pct(accuracies[weak])}"
           for i, weak in enumerate(present) for strong in present[i + 1:]
           if accuracies[strong] > accuracies[weak] + tolerance]
    chain = ", ".join(f"{a} {_pct(accuracies[a])}" for a in present)
    detail = (f"{chain} (none more than {100 * tolerance:.1f} pp above a weaker one)"
              if not bad else "; ".join(bad))
    return SanityCheck("stronger attack never weaker", scope, not bad and len(present) >= 2,
                       detail if len(present) >= 2 else "fewer than two ordered attacks run",
                       {"eps": eps, "tolerance": tolerance,
                        "accuracy": {a: accuracies[a] for a in present}, "violations": bad})


def check_beats_noise(scope: str, curves: Curves, noise: Mapping[float, float],
                      tolerance: float) -> SanityCheck:
    """At every ε with a uniform-noise baseline, the best attack is at least as strong."""
    worse = []
    compared = 0
    for eps, noise_acc in sorted(noise.items()):
        at_eps = [c[eps] for c in curves.values() if eps in c]
        if not at_eps:
            continue
        compared += 1
        if min(at_eps) > noise_acc + tolerance:
            worse.append(f"ε = {eps_text(eps)}: best attack {_pct(min(at_eps))} vs uniform "
                         f"noise {_pct(noise_acc)}")
    detail = (f"best attack ≤ uniform noise at all {compared} budgets" if not worse
              else "; ".join(worse))
    return SanityCheck("attack beats random noise", scope, not worse and compared > 0, detail,
                       {"tolerance": tolerance, "violations": worse, "compared": compared})


def check_whitebox_not_weaker(scope: str, whitebox: Mapping[float, float],
                              transfer: Mapping[float, float], tolerance: float
                              ) -> SanityCheck:
    """Advisory: per ε, white-box attacks on the chip beat transferring float examples.

    Both arguments map ε to the per-sample worst case over all attacks run.
    """
    common = sorted(set(whitebox) & set(transfer))
    worse = [f"ε = {eps_text(e)}: white-box {_pct(whitebox[e])} vs transfer "
             f"{_pct(transfer[e])}"
             for e in common if whitebox[e] > transfer[e] + tolerance]
    detail = (f"white-box ≤ transfer at all {len(common)} budgets" if not worse
              else "; ".join(worse))
    return SanityCheck("white-box on chip not weaker than transfer", scope,
                       not worse and bool(common), detail,
                       {"tolerance": tolerance, "violations": worse}, advisory=True)


def check_ensemble_not_weaker(scope: str, accuracies: Mapping[str, float], ensemble: str,
                              members: Sequence[str], tolerance: float) -> SanityCheck:
    """An ensemble (AutoAttack) leaves no more accuracy than any member run alone."""
    present = [m for m in members if m in accuracies]
    bad = [f"{ensemble} {_pct(accuracies[ensemble])} > {m} {_pct(accuracies[m])}"
           for m in present if accuracies[ensemble] > accuracies[m] + tolerance]
    detail = (f"{ensemble} {_pct(accuracies[ensemble])} ≤ "
              + ", ".join(f"{m} {_pct(accuracies[m])}" for m in present)
              if not bad else "; ".join(bad))
    return SanityCheck("ensemble never weaker than its members", scope, not bad, detail,
                       {"tolerance": tolerance, "violations": bad})


def check_gradient_free_not_stronger(scope: str, gradient: Mapping[float, float],
                                     gradient_free: Mapping[float, float], tolerance: float
                                     ) -> SanityCheck:
    """Per ε, the best gradient attack is at least as strong as the gradient-free one.

    Both arguments map ε to the lowest accuracy over the attacks of that kind. A
    score-based attack (Square) that needs no gradient beating every gradient attack
    by more than ``tolerance`` is the classic sign of gradient masking: the gradients
    point nowhere useful, not the model is robust (Athalye et al. 2018; Croce & Hein 2020).
    """
    common = sorted(set(gradient) & set(gradient_free))
    worse = [f"ε = {eps_text(e)}: gradient-free {_pct(gradient_free[e])} < best gradient "
             f"attack {_pct(gradient[e])}" for e in common
             if gradient_free[e] < gradient[e] - tolerance - 1e-6]   # float32 accuracies
    detail = (f"best gradient attack ≤ gradient-free at all {len(common)} budgets"
              if not worse else "; ".join(worse) + " (gradient masking suspected)")
    return SanityCheck("gradient attacks not beaten by gradient-free", scope,
                       not worse and bool(common), detail,
                       {"tolerance": tolerance, "violations": worse,
                        "gradient": dict(gradient), "gradient_free": dict(gradient_free)})


def verdict(checks: Iterable[SanityCheck]) -> bool:
    """True when every non-advisory check passed."""
    return all(c.passed for c in checks if not c.advisory)

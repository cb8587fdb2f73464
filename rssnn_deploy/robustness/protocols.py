"""Named evaluation protocols: the attack set, budgets and step counts a claim is made under.

A robustness number means little without the protocol behind it, so ``evaluate
--protocol NAME`` starts from one of these presets (options given explicitly still
override them) and the report states the protocol, the test-set size and every
attack's parameters.

* ``quick``: the project's everyday run: FGSM, PGD-7/10/20/40, APGD-CE/DLR (20 steps,
  1 restart), each swept over the ε grid.
* ``paper``: the RSSNN evaluation as the authors' ``standard.json`` runs it
  (DingJianhao/stable-snn): ε = 8/255; FGSM; PGD-7/10/20/40 with α = 2.55/255, 2/255,
  1/255 and 0.5/255; APGD-CE and APGD-DLR with 10 steps. Swept over the grid only to feed
  the sanity checks (the large-ε check needs FGSM and PGD-10 there).
* ``autoattack``: RobustBench's convention: AutoAttack standard (APGD-CE, APGD-T,
  FAB-T with 100 iterations, Square with 5,000 queries; 1 restart each) at one ε on the
  whole test set, plus APGD-CE at the large ε for the sanity check. The members are
  not run again on their own: the report gives the accuracy left after each of them
  within AutoAttack (each runs on the samples the earlier ones left standing), and
  AutoAttack's APGD-CE is the APGD-CE column.
* ``mnist``: ε = 0.1 and 0.3 (the MNIST literature's budgets), the paper's attacks
  plus APGD-T and Square.

Budgets are in pixel units, like every ε of the API (``rssnn_deploy.epsilon``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Tuple

from rssnn_deploy.epsilon import LARGE_EPS, NATURAL_EPS, eps_text
from rssnn_deploy.robustness.config import EvaluateConfig

__all__ = ["Protocol", "PROTOCOLS", "protocol_settings", "config_for_protocol"]

_PAPER_ATTACKS = ("FGSM", "PGD-7", "PGD-10", "PGD-20", "PGD-40", "APGD-CE", "APGD-DLR")
#: the MNIST literature's budgets, 0.1 and 0.3 (pixel units)
_MNIST_EPS = (0.1, 0.3)


@dataclass(frozen=True)
class Protocol:
    """A named set of ``EvaluateConfig`` settings and what it stands for."""

    name: str
    description: str
    settings: Mapping[str, Any] = field(default_factory=dict)


PROTOCOLS: Dict[str, Protocol] = {
    "quick": Protocol(
        "quick", "the project's everyday run: the paper's attack set with 20 APGD steps, "
        "each attack swept over the ε grid", {}),
    "paper": Protocol(
        "paper", "the RSSNN evaluation (authors' standard.json): ε = "
        f"{eps_text(NATURAL_EPS)}; FGSM, PGD-7/10/20/40 (α = 2.55/255, 2/255, 1/255, "
        "0.5/255), APGD-CE/DLR with 10 steps",
        {"eps": NATURAL_EPS, "attacks": _PAPER_ATTACKS, "grid_attacks": ("FGSM", "PGD-10"),
         # α·steps/ε: PGD-7's α is 2.55/255 at ε = 8/255; the others have 2.5
         "apgd_steps": 10, "pgd_alpha_factor": {"PGD-7": 2.55 * 7 / 8.0}}),
    "autoattack": Protocol(
        "autoattack", "RobustBench: AutoAttack standard (APGD-CE, APGD-T, FAB-T: 100 "
        "iterations; Square: 5,000 queries; 1 restart each) at one ε on the whole test set",
        {"attacks": ("APGD-CE", "AutoAttack"),
         "grid_attacks": ("APGD-CE",), "apgd_steps": 100, "square_queries": 5000,
         "eps_grid_factors": (1.0,)}),
    "mnist": Protocol(
        "mnist", f"the MNIST budgets ε = {' and '.join(map(eps_text, _MNIST_EPS))}: the "
        "paper's attacks plus APGD-T and Square",
        {"eps": _MNIST_EPS[1], "eps_grid": (*_MNIST_EPS, LARGE_EPS),
         "attacks": _PAPER_ATTACKS + ("APGD-T", "Square"), "apgd_steps": 100}),
}


def protocol_settings(name: str) -> Tuple[Protocol, Dict[str, Any]]:
    """The protocol called ``name`` and a copy of its settings."""
    try:
        protocol = PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of "
                         f"{', '.join(PROTOCOLS)}") from None
    return protocol, dict(protocol.settings)


def config_for_protocol(name: str, **overrides: Any) -> EvaluateConfig:
    """An :class:`EvaluateConfig` with protocol ``name``'s settings, then ``overrides``."""
    _, settings = protocol_settings(name)
    return EvaluateConfig(**{**settings, **overrides, "protocol": name})

"""The names and default levels an evaluation chooses from, free of torch.

Attack names and how they parse, gradient sources, the noise and fault kinds with their
default levels, the sparse attack's flip budgets: the command line's parser offers them
as choices and defaults in ``evaluate --help``, which must not wait for torch (about a
second to import). The modules that run the attacks, noises and faults import them
from here, so each is defined once.
"""
from __future__ import annotations

import re
from typing import Dict, Tuple

__all__ = ["ATTACKS", "AUTOATTACK", "GRADIENT_FREE", "GRADIENTS", "parse_attack",
           "restarts_of", "is_gradient_free", "FAULTS", "DEFAULT_FAULT_LEVELS",
           "DEFAULT_NOISE_LEVELS", "FLIP_BUDGETS"]

#: the attacks an evaluation runs by default, weakest first within the PGD family.
ATTACKS: Tuple[str, ...] = ("FGSM", "PGD-7", "PGD-10", "PGD-20", "PGD-40", "APGD-CE",
                            "APGD-DLR")
#: AutoAttack standard's four members, in the order AutoAttack runs them.
AUTOATTACK: Tuple[str, ...] = ("APGD-CE", "APGD-T", "FAB-T", "Square")
#: attacks that only query the model's outputs (never its gradients).
GRADIENT_FREE: Tuple[str, ...] = ("Square",)
#: where a float-model attack takes its gradients (``attacks`` explains each).
GRADIENTS: Tuple[str, ...] = ("bptt", "bptr", "ensemble-mean", "ensemble-worst", "sweep")

_PGD = re.compile(r"^PGD-(\d+)(?:x(\d+))?$")
_NAMED = ("APGD-CE", "APGD-DLR", "APGD-T", "FAB-T", "Square", "AutoAttack")


def parse_attack(name: str) -> Tuple[str, int]:
    """``"PGD-10"`` → ``("PGD", 10)``; ``"FGSM"`` → ``("FGSM", 1)``; other names as is.

    ``"PGD-100x5"`` (100 steps, 5 restarts) → ``("PGD", 100)``; see :func:`restarts_of`.
    """
    if name == "FGSM":
        return "FGSM", 1
    match = _PGD.match(name)
    if match and int(match.group(1)) >= 1 and int(match.group(2) or 1) >= 1:
        return "PGD", int(match.group(1))
    if name in _NAMED:
        return name, 0
    raise ValueError(f"unknown attack {name!r}; use FGSM, PGD-<steps>, PGD-<steps>x<restarts>, "
                     + ", ".join(_NAMED))


def restarts_of(name: str) -> int:
    """Random restarts of a PGD name (``PGD-100x5`` → 5); 1 for every other attack."""
    match = _PGD.match(name)
    return int(match.group(2) or 1) if match else 1


def is_gradient_free(name: str) -> bool:
    """True for attacks that only query outputs (their gradient source is irrelevant)."""
    return parse_attack(name)[0] in GRADIENT_FREE


#: fault name → what its level means; the names the CLI and the report use.
FAULTS: Dict[str, str] = {
    "bitflip": "probability per stored weight bit",
    "vth": "relative σ of per-neuron thresholds",
    "decay": "relative σ of per-neuron leak (1 − λ)",
    "drop": "probability a spike is lost in transit",
}

DEFAULT_FAULT_LEVELS: Dict[str, Tuple[float, ...]] = {
    "bitflip": (1e-4, 1e-3, 3e-3, 1e-2, 3e-2),
    "vth": (0.02, 0.05, 0.1, 0.2, 0.3),
    "decay": (0.25, 0.5, 1.0, 2.0),
    "drop": (0.01, 0.05, 0.1, 0.2, 0.3),
}

#: default sweep levels per noise (σ, fraction of pixels, half-width), all on [0, 1].
DEFAULT_NOISE_LEVELS: Dict[str, Tuple[float, ...]] = {
    "gaussian": (0.05, 0.1, 0.2, 0.3, 0.5),
    "salt_pepper": (0.02, 0.05, 0.1, 0.2, 0.3),
    "uniform": (0.1, 0.2, 0.3, 0.5),
}

#: events added or removed per sample by the sparse (L0) attack on event data.
FLIP_BUDGETS: Tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200)

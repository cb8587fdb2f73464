"""The options of ``rssnn-deploy evaluate`` and the configuration they make.

Budgets (ε) are in pixel units, written ``8/255`` or ``0.0314`` (``types.budget``).
Option types validate each value where it is parsed, so a bad list or level ends in one
argparse error line naming the option.
"""
from __future__ import annotations

import argparse
from typing import Dict, Mapping, Optional, Sequence, Tuple

from rssnn_deploy.cli import types as ct
from rssnn_deploy.epsilon import LARGE_EPS, NATURAL_EPS, SMALL_IMAGE_EPS, eps_text
from rssnn_deploy.errors import OptionError
from rssnn_deploy.robustness.certify import SIGMAS, CertifyConfig
from rssnn_deploy.robustness.choices import (
    ATTACKS,
    DEFAULT_FAULT_LEVELS,
    DEFAULT_NOISE_LEVELS,
    FLIP_BUDGETS,
    GRADIENTS,
    parse_attack,
)
from rssnn_deploy.robustness.config import THREATS, EvaluateConfig
from rssnn_deploy.robustness.protocols import PROTOCOLS, protocol_settings

__all__ = ["add_evaluate_arguments", "add_certify_arguments", "config_from_args",
           "certify_config_from_args", "parse_levels", "check_event_options"]


def _csv(text: str) -> Tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _choices(allowed: Sequence[str]):
    """An argparse type: a comma list whose items must be in ``allowed``."""
    def parse(text: str) -> Tuple[str, ...]:
        items = _csv(text)
        bad = [i for i in items if i not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; choose from "
                                             f"{', '.join(allowed)}")
        return items
    return parse


def _attack_list(text: str) -> Tuple[str, ...]:
    items = _csv(text)
    for name in items:
        try:
            parse_attack(name)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return items


def _attack_name(text: str) -> str:
    (name,) = _attack_list(text) or ("",)
    return name


def parse_levels(items: Optional[Sequence[Tuple[str, Tuple[float, ...]]]],
                 defaults: Mapping[str, Tuple[float, ...]]) -> Dict[str, Tuple[float, ...]]:
    """Defaults with ``(kind, levels)`` overrides applied; ``("none", ())`` clears all."""
    levels = dict(defaults)
    for kind, values in items or ():
        if kind == "none":
            levels = {}
        else:
            levels[kind] = tuple(values)
    return {k: v for k, v in levels.items() if v}


#: the range of each noise and fault level (``--noise KIND=…``, ``--faults KIND=…``):
#: σ and half-widths are non-negative, fractions and probabilities lie in [0, 1].
NOISE_RANGES = {"gaussian": ct.nonnegative_float, "salt_pepper": ct.probability,
                "uniform": ct.nonnegative_float}
FAULT_RANGES = {"bitflip": ct.probability, "vth": ct.nonnegative_float,
                "decay": ct.nonnegative_float, "drop": ct.probability}


def _flip_budgets(text: str) -> Tuple[int, ...]:
    """Comma list of positive integers, or 'none'."""
    if text.strip().lower() == "none":
        return ()
    return ct.float_list(ct.positive_int)(text)


def add_evaluate_arguments(parser) -> None:
    """The options of ``rssnn-deploy evaluate`` (budgets ε in pixel units)."""
    parser.add_argument("checkpoint", help="checkpoint.pt written by `train`")
    parser.add_argument("net", help="the netx file `export` wrote from it")
    parser.add_argument("--dataset", default=None,
                        help="test data (default: the dataset the checkpoint records, "
                             "else digits for 8×8 models)")
    parser.add_argument("--out", default="runs/evaluate", help="report directory")
    parser.add_argument("--samples", type=ct.positive_int, default=None, help="first N test samples (all)")
    parser.add_argument("--eps", type=ct.eps, default=None, metavar="EPS",
                        help="default L∞ budget ε in pixel units [0, 1], written as a "
                             f"fraction or a pixel value: 8/255 or 0.0314 (default: "
                             f"{eps_text(NATURAL_EPS)}; {eps_text(SMALL_IMAGE_EPS)} for "
                             "inputs of ≤ 16×16 pixels)")
    parser.add_argument("--eps-grid", type=ct.float_list(ct.eps), default=None,
                        metavar="EPS,EPS,…",
                        help="budgets to sweep, as --eps "
                             "(default: ε·{¼,½,1,2,4} and --large-eps)")
    parser.add_argument("--large-eps", type=ct.eps, default=None, metavar="EPS",
                        help="budget at which a white-box attack must reach ~0 %% (sanity "
                             f"check; default: {eps_text(LARGE_EPS)})")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="quick",
                        help="preset attack set, budgets and steps; options given explicitly "
                             "override it. " + "; ".join(f"{p.name}: {p.description}"
                                                         for p in PROTOCOLS.values()))
    parser.add_argument("--attacks", type=_attack_list, default=None,
                        help="comma list (quick default: " + ",".join(ATTACKS) + "; also "
                             "APGD-T, FAB-T, Square, AutoAttack, PGD-<steps>x<restarts>)")
    parser.add_argument("--grid-attacks", type=_attack_list, default=None,
                        help="attacks swept over the whole ε grid (quick default: all)")
    parser.add_argument("--threat-models", type=_choices(tuple(THREATS)), default=tuple(THREATS),
                        help="float (white-box), transfer (float → chip), chip (white-box "
                             "through the simulator)")
    parser.add_argument("--gradients", type=_choices(GRADIENTS), default=("bptt",),
                        help="float-model gradients: " + ", ".join(GRADIENTS))
    parser.add_argument("--apgd-steps", type=ct.positive_int, default=None,
                        help="APGD/APGD-T/FAB-T iterations (quick 20, paper 10, autoattack 100)")
    parser.add_argument("--square-queries", type=ct.positive_int, default=None,
                        help="query budget of the gradient-free Square attack (5000)")
    parser.add_argument("--adaptive", nargs="?", const="PGD-100x5", default=None,
                        type=_attack_name, metavar="ATTACK",
                        help="also run an adaptive attack at ε (default PGD-100x5: 100 steps, "
                             "5 restarts) with the float model's own surrogate, with every "
                             "surrogate × scale of a sweep (strongest per sample) and on the "
                             "chip; worst case per sample over every attack")
    parser.add_argument("--eot-samples", type=ct.positive_int, default=20,
                        help="forward passes averaged per gradient when a model is stochastic")
    add_certify_arguments(parser, optional=True)
    parser.add_argument("--noise", action="append", metavar="KIND=L1,L2",
                        type=ct.level_item(NOISE_RANGES),
                        help=f"noise levels ({', '.join(NOISE_RANGES)}); 'none' for no noise")
    parser.add_argument("--faults", action="append", metavar="KIND=L1,L2",
                        type=ct.level_item(FAULT_RANGES),
                        help=f"fault levels ({', '.join(FAULT_RANGES)}); 'none' for no faults")
    parser.add_argument("--fault-repeats", type=ct.positive_int, default=3, help="seeds per fault level")
    parser.add_argument("--event-flips", type=_flip_budgets, default=FLIP_BUDGETS,
                        metavar="B1,B2,…",
                        help="event data: sparse-attack budgets, events added or removed per "
                             "sample ('none' to skip; default "
                             + ",".join(map(str, FLIP_BUDGETS)) + ")")
    parser.add_argument("--event-flips-per-step", type=ct.positive_int, default=None,
                        help="event data: flips per gradient step of the sparse attack "
                             "(default: a tenth of the gap between budgets, at least 1)")
    parser.add_argument("--lava-samples", type=ct.nonnegative_int, default=64,
                        help="attacked inputs re-run on Lava to cross-check the simulator "
                             "(0: none)")
    parser.add_argument("--tolerance", type=ct.probability, default=0.02,
                        help="slack of the sanity checks (absolute accuracy; at least 2 samples)")
    parser.add_argument("--zero-tolerance", type=ct.probability, default=0.05,
                        help="largest accuracy that counts as 'near zero' at --large-eps")
    parser.add_argument("--batch-size", type=ct.positive_int, default=256)
    parser.add_argument("--seed", type=ct.seed, default=0)
    parser.add_argument("--device", type=ct.device, default="cpu")
    parser.add_argument("--no-resume", action="store_true", help="ignore cached cells")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="evaluate even when the netx file records the hash of another "
                             "checkpoint than the one given")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a sanity check fails (not only on a Lava mismatch)")


def add_certify_arguments(parser, optional: bool = False) -> None:
    """Randomized-smoothing options (``certify``; ``evaluate --certify``)."""
    if optional:
        parser.add_argument("--certify", action="store_true",
                            help="also certify by randomized smoothing (see `certify`)")
    parser.add_argument("--sigmas", type=ct.float_list(ct.positive_float), default=SIGMAS,
                        help="smoothing noise levels σ (pixels in [0, 1]; default "
                             + ",".join(f"{s:g}" for s in SIGMAS) + ")")
    parser.add_argument("--certify-n", type=ct.positive_int, default=10_000,
                        help="noise samples per image for the estimate (n)")
    parser.add_argument("--certify-n0", type=ct.positive_int, default=100,
                        help="noise samples per image for the selection (n0)")
    parser.add_argument("--alpha", type=ct.float_range(0.0, 0.5, low_open=True, high_open=True),
                        default=0.001,
                        help="failure probability of each certificate")
    parser.add_argument("--certify-samples", type=ct.positive_int, default=100,
                        help="test images certified (the first N)")
    parser.add_argument("--certify-batch", type=ct.positive_int, default=2000,
                        help="noise samples per simulator batch")


def certify_config_from_args(args) -> CertifyConfig:
    """A :class:`CertifyConfig` from the options of :func:`add_certify_arguments`."""
    return CertifyConfig(sigmas=tuple(args.sigmas), n0=args.certify_n0, n=args.certify_n,
                         alpha=args.alpha, batch_size=args.certify_batch, seed=args.seed)


def config_from_args(args) -> EvaluateConfig:
    """An :class:`EvaluateConfig` from the options of :func:`add_evaluate_arguments`.

    The protocol's settings first, then every option the user gave explicitly.
    """
    _, settings = protocol_settings(args.protocol)
    explicit = {"eps": args.eps, "eps_grid": args.eps_grid, "large_eps": args.large_eps,
                "attacks": tuple(args.attacks) if args.attacks else None,
                "grid_attacks": args.grid_attacks, "apgd_steps": args.apgd_steps,
                "square_queries": args.square_queries}
    settings.update({k: v for k, v in explicit.items() if v is not None})
    return EvaluateConfig(
        **settings, protocol=args.protocol,
        threat_models=tuple(args.threat_models), gradients=tuple(args.gradients),
        eot_samples=args.eot_samples, adaptive=args.adaptive,
        certify=certify_config_from_args(args) if args.certify else None,
        certify_samples=args.certify_samples,
        noise=parse_levels(args.noise, DEFAULT_NOISE_LEVELS),
        faults=parse_levels(args.faults, DEFAULT_FAULT_LEVELS),
        fault_repeats=args.fault_repeats, samples=args.samples, batch_size=args.batch_size,
        lava_samples=args.lava_samples, tolerance=args.tolerance,
        zero_tolerance=args.zero_tolerance, seed=args.seed, resume=not args.no_resume,
        progress=not args.no_progress, device=args.device)


#: ``evaluate`` options of the image evaluation (L∞ attacks, pixel noise, hardware
#: faults, randomized smoothing) that the event-data evaluation does not run.
IMAGE_ONLY_OPTIONS: Dict[str, str] = {
    "attacks": "--attacks", "grid_attacks": "--grid-attacks", "eps": "--eps",
    "eps_grid": "--eps-grid", "large_eps": "--large-eps", "adaptive": "--adaptive",
    "apgd_steps": "--apgd-steps",
    "square_queries": "--square-queries", "noise": "--noise", "faults": "--faults",
    "certify": "--certify"}


def check_event_options(args) -> None:
    """Refuse, in one line, image-evaluation options given for an event-data model.

    A model of event data is evaluated under event drop, timing jitter and the sparse
    (L0) flip attack (``robustness.event_evaluation``); L∞ attacks, pixel noise, hardware
    faults and randomized smoothing act on pixels or on the image evaluation only, and
    were ignored without a word. ``--noise none`` and ``--faults none`` ask for nothing
    and pass.
    """
    given = [flag for dest, flag in IMAGE_ONLY_OPTIONS.items()
             if _asks_for_something(dest, getattr(args, dest, None))]
    if given:
        raise OptionError(f"{args.checkpoint}: a model of event data (spike trains); "
                          f"{', '.join(given)} belong{'s' * (len(given) == 1)} to the "
                          f"evaluation of images and {'is' if len(given) == 1 else 'are'} "
                          f"not run on spike trains: evaluate runs event drop, jitter and "
                          f"the sparse flip attack (--event-flips)")


def _asks_for_something(dest: str, value) -> bool:
    if dest in ("noise", "faults"):
        return bool(parse_levels(value, {}))
    return value not in (None, False, ())

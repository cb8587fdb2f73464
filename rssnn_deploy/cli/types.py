"""Typed, range-checked ``argparse`` types: every option is checked when it is parsed.

A value out of its range is refused by argparse before any work starts (a training run,
an attack sweep), with one line naming the option, the value and the limit, and exit
status 2. ``argparse`` has no numeric ranges, NaN/∞ checks or per-kind level lists of
its own, hence this small module; each function is an ordinary ``type=`` callable, so a
parser, a config file loader or a test can use the same checks.

The limits here are the *meaning* of an option (a probability lies in [0, 1], a count is
at least 1); limits that depend on a file (a network's steps, a profile's bit widths)
are checked by the reader of that file.
"""
from __future__ import annotations

import argparse
import difflib
import math
from typing import Callable, Iterable, Mapping, NoReturn, Optional, Sequence, Tuple

from rssnn_deploy.epsilon import parse_eps

__all__ = ["finite_float", "float_range", "positive_float", "nonnegative_float",
           "probability", "int_range", "positive_int", "nonnegative_int", "seed",
           "device", "state_list", "level_item", "float_list", "budget", "eps",
           "is_budget", "OneLineParser", "did_you_mean"]

#: seeds go through ``seed * 1000 + repeat`` and numpy's ``default_rng``: keep them small.
SEED_MAX = 2 ** 31 - 1


def did_you_mean(word: str, candidates: Iterable[str]) -> Optional[str]:
    """The candidate closest to a mistyped ``word`` (``difflib``), or None."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return close[0] if close else None


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (and exit status 2).

    Stock argparse prints the whole usage block first; the project's promise is one
    line per user error, with ``--help`` for the rest. A mistyped option, choice or
    command gets the closest valid one suggested, and an unknown option is reported by
    the subcommand it was given to (its own options, its own ``--help``).
    """

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            owner = _chosen_subparser(self, namespace)
            owner.error(f"unrecognized arguments: {' '.join(extras)}"
                        f"{_option_hints(extras, owner)}")
        return namespace

    def _check_value(self, action: argparse.Action, value: object) -> None:
        """argparse's choice check, with the closest choice suggested (a subcommand's
        name is a choice of the subparsers action)."""
        if action.choices is None or value in action.choices:
            return
        names = [str(c) for c in action.choices]
        close = did_you_mean(str(value), names)
        hint = f"did you mean {close}? " if close else ""
        if isinstance(action, argparse._SubParsersAction):
            raise argparse.ArgumentError(None, f"unknown command {value!r} ({hint}commands: "
                                               f"{', '.join(names)})")
        raise argparse.ArgumentError(action, f"invalid choice: {value!r} ({hint}choose "
                                             f"from {', '.join(names)})")


def _chosen_subparser(parser: argparse.ArgumentParser, namespace: argparse.Namespace
                      ) -> argparse.ArgumentParser:
    """The subcommand's parser that ``namespace`` was parsed by (else ``parser``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(namespace, action.dest, None)
            if chosen in action.choices:
                return _chosen_subparser(action.choices[chosen], namespace)
    return parser


def _option_hints(extras: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """`` (did you mean --samples?)`` for the unknown options among ``extras``."""
    known = [o for a in parser._actions for o in a.option_strings]
    pairs = []
    for token in extras:
        name = token.split("=", 1)[0]
        if name.startswith("--"):
            close = did_you_mean(name, [o for o in known if o.startswith("--")])
            if close:
                pairs.append((name, close))
    if len(pairs) == 1:
        return f" (did you mean {pairs[0][1]}?)"
    if pairs:
        return " (did you mean " + ", ".join(f"{c} for {n}" for n, c in pairs) + "?)"
    return ""


def _number(text: str, kind: Callable[[str], float], what: str) -> float:
    try:
        return kind(text.strip())
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def finite_float(text: str) -> float:
    """A float that is neither NaN nor infinite."""
    value = _number(text, float, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def float_range(low: Optional[float] = None, high: Optional[float] = None,
                low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """A finite float in [low, high] (either end open or absent)."""
    def parse(text: str) -> float:
        value = finite_float(text)
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above:
            raise argparse.ArgumentTypeError(
                f"{value:g} is outside {_interval(low, high, low_open, high_open)}")
        return value
    parse.__name__ = f"float in {_interval(low, high, low_open, high_open)}"
    return parse


def _interval(low: Optional[float], high: Optional[float], low_open: bool,
              high_open: bool) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{left}{lo}, {hi}{right}"


positive_float = float_range(0.0, low_open=True)
nonnegative_float = float_range(0.0)
probability = float_range(0.0, 1.0)


def budget(positive: bool = False) -> Callable[[str], float]:
    """An L∞ budget ε in pixel units: ``8/255`` or ``0.0314`` (``epsilon.parse_eps``);
    ``8`` is refused with "did you mean 8/255 (0.0314)?". The one type of every ε
    option (``train``, ``evaluate``), so ``--config`` values pass the same check."""
    def parse(text: str) -> float:
        try:
            return parse_eps(text, positive)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    parse.__name__ = "ε"
    parse.budget = True  # type: ignore[attr-defined]
    return parse


def is_budget(kind: object) -> bool:
    """Whether an option's ``type`` is :func:`budget`'s (its values print as ε)."""
    return bool(getattr(kind, "budget", False))


eps = budget()


def int_range(low: Optional[int] = None, high: Optional[int] = None) -> Callable[[str], int]:
    """An integer in [low, high]; ``1e3`` is refused (write ``1000``)."""
    def parse(text: str) -> int:
        value = int(_number(text, int, "an integer"))
        if high is None and low is not None and value < low:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum {low}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{value} is outside [{low if low is not None else '-inf'}, {high}]")
        return value
    parse.__name__ = "integer"
    return parse


positive_int = int_range(1)
nonnegative_int = int_range(0)
seed = int_range(0, SEED_MAX)


def device(text: str) -> str:
    """A torch device this build can use: ``cpu``, ``cuda``/``cuda:N`` with CUDA present."""
    name = text.strip()
    if name == "cpu":   # the default: no need to load torch (a second) to accept it
        return name
    import torch
    try:
        parsed = torch.device(name)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device "
                                         f"(use cpu, cuda or cuda:N)") from None
    if parsed.type == "cpu":
        return name
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{name}: this torch build has no usable CUDA "
                                             f"device (torch {torch.__version__}); use cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise argparse.ArgumentTypeError(f"{name}: only {count} CUDA device(s)")
        return name
    raise argparse.ArgumentTypeError(f"{name}: device type {parsed.type!r} is not "
                                     f"supported (use cpu or cuda)")


def state_list(allowed: Sequence[str]) -> Callable[[str], Tuple[str, ...]]:
    """A comma list of names from ``allowed`` (empty string: none)."""
    def parse(text: str) -> Tuple[str, ...]:
        items = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
        bad = [i for i in items if i not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(map(repr, bad))}; "
                                             f"choose from {', '.join(allowed)}")
        return items
    parse.__name__ = "list"
    return parse


def float_list(item: Callable[[str], float] = finite_float) -> Callable[[str], Tuple[float, ...]]:
    """A comma list of floats, each checked by ``item``."""
    def parse(text: str) -> Tuple[float, ...]:
        values = tuple(item(s) for s in text.split(",") if s.strip())
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r}: expected at least one number")
        return values
    parse.__name__ = "list"
    return parse


def level_item(ranges: Mapping[str, Callable[[str], float]]
               ) -> Callable[[str], Tuple[str, Tuple[float, ...]]]:
    """``KIND=L1,L2,…`` with each level checked by ``ranges[KIND]``; ``none`` clears all.

    ``KIND=`` (no levels) drops that kind from the defaults.
    """
    def parse(text: str) -> Tuple[str, Tuple[float, ...]]:
        if text.strip().lower() == "none":
            return ("none", ())
        kind, sep, values = text.partition("=")
        kind = kind.strip()
        if not sep or kind not in ranges:
            raise argparse.ArgumentTypeError(f"expected KIND=L1,L2,… with KIND in "
                                             f"{', '.join(ranges)}, or 'none'; got {text!r}")
        check = ranges[kind]
        levels = []
        for item in (s for s in values.split(",") if s.strip()):
            try:
                levels.append(check(item))
            except argparse.ArgumentTypeError as err:
                raise argparse.ArgumentTypeError(f"{kind} level {err}") from None
        return kind, tuple(levels)
    parse.__name__ = "levels"
    return parse


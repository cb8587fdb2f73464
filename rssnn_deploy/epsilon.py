"""L∞ budgets (ε): one unit, one parser, one printed form, one cache-key form.

ε is in **pixel units** everywhere in the Python API: images lie in [0, 1], so an ε of
1 lets an attack move any pixel anywhere; ``train``, torchattacks and ``EvaluateConfig``
all take these values. People write budgets two ways (the literature's 8/255, the MNIST
literature's 0.1), hence one place that reads and writes them:

* :func:`parse_eps` (every ε option of every command, ``--config`` files, and the checks
  of ``EvaluateConfig``) accepts a fraction ``a/b`` (``8/255``) or a pixel value in
  [0, 1] (``0.0314``). A plain number above 1 cannot be a pixel value that is meant (it
  moves every pixel anywhere), so it is refused with what was probably meant:
  ``8`` → "did you mean 8/255 (0.0314)?".
* :func:`eps_text` prints both forms wherever a person reads ε (tables, JSON, plots, log
  lines): ``8/255 (0.0314)`` for a whole number of 1/255 steps, else ``0.1 (25.5/255)``.
* :func:`eps_key` is ε in cell-cache keys (``…|eps=25.5``): the 1/255 numerator with six
  significant digits, the text caches held before ε became pixel units everywhere, so a
  cache written then keeps its finished cells (``robustness.sweep.Cell``).

``evaluate``'s defaults live here as well, torch-free so ``--help`` can print them:
8/255 for natural images (the RSSNN paper's CIFAR setting), but 0.1 = 25.5/255 for inputs
of at most 16×16 pixels: scikit-learn's 8×8 digits have 17 grey levels 16/255 apart, so
8/255 would be half a grey level, smaller than any change the data itself can show. The
sweep is ε·{¼, ½, 1, 2, 4} plus the large ε 0.5 = 127.5/255, at which every image can be
moved to uniform grey (the "near zero" sanity check).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence, Tuple, Union

__all__ = ["LEVELS", "UNIT", "NATURAL_EPS", "SMALL_IMAGE_EPS", "SMALL_IMAGE_PIXELS",
           "LARGE_EPS", "GRID_FACTORS", "parse_eps", "check_eps", "eps_text", "eps_key",
           "default_eps", "eps_grid", "unique_budgets"]

#: grey levels of an 8-bit image minus one: 1/255 is the step budgets are counted in.
LEVELS = 255
#: the unit of every ε in the API and in ``report.json`` (``"1/255"`` in older reports).
UNIT = "pixel"
NATURAL_EPS = 8 / LEVELS
SMALL_IMAGE_EPS = 25.5 / LEVELS          # = 0.1
SMALL_IMAGE_PIXELS = 16 * 16
LARGE_EPS = 127.5 / LEVELS               # = 0.5
GRID_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)

_FORMS = "a pixel value in [0, 1] such as 0.0314 or a fraction such as 8/255"


def _number(part: str, text: str) -> float:
    try:
        value = float(part)
    except ValueError:
        raise ValueError(f"{text!r} is not a number; write ε as {_FORMS}") from None
    if not math.isfinite(value):
        raise ValueError(f"{text}: ε must be finite; write it as {_FORMS}")
    return value


def parse_eps(value: Union[str, float, int], positive: bool = False) -> float:
    """ε in pixel units from ``8/255``, ``0.0314`` (or a number); ``ValueError`` with a
    one-line reason otherwise: above 1, negative, NaN, infinite, ``a/0``, not a number,
    or zero when ``positive``."""
    text = str(value).strip()
    numerator, slash, denominator = text.partition("/")
    if slash:
        top, bottom = _number(numerator, text), _number(denominator, text)
        if bottom == 0:
            raise ValueError(f"{text}: division by zero; write ε as {_FORMS}")
        if top < 0 or bottom < 0:
            raise ValueError(f"{text}: ε must be ≥ 0")
        eps = top / bottom
        if eps > 1:
            raise ValueError(f"{text} = {eps:.4g}: ε is in pixel units [0, 1] (1 already "
                             "moves any pixel anywhere)")
    else:
        eps = _number(text, text)
        if eps < 0:
            raise ValueError(f"{text}: ε must be ≥ 0")
        if eps > LEVELS:
            raise ValueError(f"{text}: ε is in pixel units [0, 1]; write it as {_FORMS}")
        if eps > 1:
            raise ValueError(f"{text}: ε is in pixel units [0, 1]; did you mean "
                             f"{eps:.4g}/{LEVELS} ({eps / LEVELS:.3g})?")
    if positive and eps == 0:
        raise ValueError(f"{text}: must be > 0")
    return eps


def check_eps(value: float, name: str) -> float:
    """``value`` if it is a valid ε in pixel units, else ``ValueError`` naming ``name``
    (the Python API's refusal of a budget written in 1/255 units, such as ``eps=8``)."""
    try:
        return parse_eps(value)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None


def eps_text(eps: float) -> str:
    """ε for people, both forms: ``8/255 (0.0314)``, ``0.1 (25.5/255)``, ``0``."""
    if eps == 0:
        return "0"
    steps = eps * LEVELS
    if abs(steps - round(steps)) <= 1e-9 * max(1.0, steps):   # a whole number of 1/255
        return f"{round(steps)}/{LEVELS} ({eps:.3g})"
    return f"{eps:.4g} ({steps:.4g}/{LEVELS})"


def eps_key(eps: float) -> str:
    """ε in a cell-cache key: its 1/255 numerator, six significant digits (``25.5``)."""
    return format(eps * LEVELS, ".6g")


def unique_budgets(values: Iterable[float]) -> Tuple[float, ...]:
    """``values`` sorted, one per cache key (the first given wins): ``0.1`` and
    ``25.5/255`` may differ in the last bit but are one budget and one cell."""
    kept = {}
    for value in values:
        kept.setdefault(eps_key(value), float(value))
    return tuple(sorted(kept.values()))


def default_eps(in_shape: Sequence[int]) -> float:
    """8/255 for natural images, 0.1 = 25.5/255 for inputs of ≤ 16×16 pixels."""
    pixels = math.prod(in_shape[-2:]) if len(in_shape) >= 2 else int(in_shape[0])
    return SMALL_IMAGE_EPS if pixels <= SMALL_IMAGE_PIXELS else NATURAL_EPS


def eps_grid(eps: float, large: float = LARGE_EPS,
             factors: Sequence[float] = GRID_FACTORS) -> Tuple[float, ...]:
    """ε·{¼, ½, 1, 2, 4} (or ε·``factors``) and ``large``, capped at 1, sorted."""
    return unique_budgets([min(1.0, eps * f) for f in factors] + [large])

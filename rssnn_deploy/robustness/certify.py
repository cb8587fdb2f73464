"""Certified L2 robustness of the deployed integer model by randomized smoothing.

Cohen, Rosenfeld & Kolter (2019), "Certified adversarial robustness via randomized
smoothing", ``CERTIFY``: the smoothed classifier ``g(x) = argmax_c P(f(x + δ) = c)``,
``δ ~ N(0, σ²I)``, is certified at ``x`` with L2 radius ``σ·Φ⁻¹(p_A)`` where ``p_A`` is
a one-sided (1 − α) Clopper–Pearson lower bound on the top class's probability:

1. draw ``n0`` noise samples, take the most frequent class ``c_A`` (selection);
2. draw ``n`` fresh samples, count ``k`` hits of ``c_A``;
3. ``p_A = Beta⁻¹(α; k, n − k + 1)`` (``scipy.stats.beta``); if ``p_A < ½`` abstain,
   else return ``c_A`` with radius ``σ·Φ⁻¹(p_A)``.

With probability ≥ 1 − α over the noise, a returned class is ``g(x)`` and ``g`` is
constant on the L2 ball of that radius. Certified accuracy at radius r is the share of
test images whose returned class is correct with radius ≥ r (abstentions count as
wrong); at r = 0 it is the smoothed classifier's clean accuracy.

**The sample count caps the radius.** Even when all ``n`` samples agree (k = n), the
Clopper–Pearson bound is ``p_A = α^(1/n)`` < 1, so no image can be certified beyond
``σ·Φ⁻¹(α^(1/n))`` (:func:`max_certifiable_radius`; n = 1,000, α = 0.001: 0.30 at σ =
0.12, 0.62 at σ = 0.25): certified accuracy drops to 0 there whatever the model does.
Reports and plots mark that limit; :func:`samples_for_radius` inverts it.

**The base classifier ``f`` is the deployed integer model**: noisy images go through
the chip's own input encoding and the bit-exact simulator (``ChipPredictor``), the
noise samples of one image forming one batch. The float model runs on the *same* noise
draws side by side. Noise is drawn in [0, 1]-pixel space, before the chip's input
encoding; since the chip accepts only pixels in [0, 1], ``f(z) = chip(clip(z, 0, 1))``
(and likewise for the float model). Clipping is part of the deterministic base
classifier, so the certificate holds for ``g`` as defined, with radii in pixel units.

No library ships ``CERTIFY`` for an arbitrary batched predictor without also pulling
in torchvision, so the twenty lines of the procedure are written here; the statistics
come from scipy.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:   # CertifyConfig and SIGMAS serve the parser: torch loads where CERTIFY runs
    import torch
    from torch import Tensor

__all__ = ["CertifyConfig", "SIGMAS", "RADII", "lower_confidence_bound", "certify_one",
           "certify", "certified_accuracy", "summarise", "max_certifiable_radius",
           "samples_for_radius", "recorded_limit"]

#: noise levels of Cohen et al.'s CIFAR-10 tables, the issue's comparison points.
SIGMAS: Tuple[float, ...] = (0.12, 0.25, 0.5)
#: L2 radii at which certified accuracy is reported (pixel units).
RADII: Tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)

Classifier = Callable[["Tensor"], "Tensor"]      # pixels in [0, 1] → class indices


@dataclass(frozen=True)
class CertifyConfig:
    """``CERTIFY``'s parameters (defaults: Cohen et al.'s)."""

    sigmas: Tuple[float, ...] = SIGMAS
    n0: int = 100
    n: int = 10_000
    alpha: float = 0.001
    batch_size: int = 2_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n0 < 1 or self.n < 1 or self.batch_size < 1:
            raise ValueError("n0, n and batch_size must be >= 1")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"alpha must lie in (0, 0.5), got {self.alpha}")
        if not self.sigmas or min(self.sigmas) <= 0:
            raise ValueError(f"sigmas must be positive, got {self.sigmas}")

    def to_dict(self) -> Dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def lower_confidence_bound(k: int, n: int, alpha: float) -> float:
    """One-sided (1 − α) Clopper–Pearson lower bound of a binomial proportion k/n."""
    from scipy.stats import beta
    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


def recorded_limit(entry: Mapping[str, Any], parameters: Mapping[str, Any]) -> float:
    """The largest certifiable radius of one σ of a certification record; computed from
    its n and α for a record written before the limit was stored."""
    limit = entry.get("largest_certifiable_radius")
    if limit is None:
        limit = max_certifiable_radius(entry["sigma"], parameters["n"], parameters["alpha"])
    return float(limit)


def max_certifiable_radius(sigma: float, n: int, alpha: float) -> float:
    """The largest radius ``CERTIFY`` can return with ``n`` samples at confidence 1 − α:
    ``σ·Φ⁻¹`` of the lower bound at k = n (all samples agree), a property of the sample
    count, not of the model. 0 when even unanimous samples make ``CERTIFY`` abstain
    (α^(1/n) < ½: n < log₂(1/α), fewer than 10 samples at α = 0.001).

    Examples
    --------
    >>> round(max_certifiable_radius(0.25, 1_000, 0.001), 3)
    0.616
    """
    from scipy.stats import norm
    # α^(1/n) = lower_confidence_bound(n, n, α); Φ⁻¹ of it as the upper quantile of
    # 1 − α^(1/n) = −expm1(ln α / n), which stays exact where α^(1/n) rounds to 1
    return max(0.0, float(sigma * norm.isf(-math.expm1(math.log(alpha) / n))))


def samples_for_radius(radius: float, sigma: float, alpha: float = 0.001) -> int:
    """The fewest samples ``n`` for which :func:`max_certifiable_radius` reaches ``radius``
    at ``sigma`` and ``alpha``: what a run must draw per image (besides ``n0``) before an
    image can be certified that far, even by a model that never changes its answer.

    At k = n the bound is α^(1/n), so n = ⌈ln α / ln Φ(r/σ)⌉; below 10⁹ the neighbours
    are checked against :func:`max_certifiable_radius` so that rounding cannot put n one
    off (beyond, float64 cannot tell n from n ± 1, nor does it matter).

    Examples
    --------
    >>> samples_for_radius(0.5, 0.25)
    301
    >>> max_certifiable_radius(0.25, 300, 0.001) < 0.5 <= max_certifiable_radius(0.25, 301, 0.001)
    True
    """
    from scipy.stats import norm
    if radius <= 0 or sigma <= 0 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need radius > 0, sigma > 0 and 0 < alpha < 1, got {radius}, "
                         f"{sigma}, {alpha}")
    n = max(1, math.ceil(math.log(alpha) / float(norm.logcdf(radius / sigma))))
    if n < 10 ** 9:
        while max_certifiable_radius(sigma, n, alpha) < radius:
            n += 1
        while n > 1 and max_certifiable_radius(sigma, n - 1, alpha) >= radius:
            n -= 1
    return n


def _counts(classifiers: Mapping[str, Classifier], x: Tensor, count: int, sigma: float,
            classes: int, batch_size: int, generator: torch.Generator,
            seconds: Dict[str, float]) -> Dict[str, np.ndarray]:
    """Class histograms of every classifier on the same ``count`` noisy copies of ``x``."""
    import torch
    out = {name: np.zeros(classes, dtype=np.int64) for name in classifiers}
    done = 0
    while done < count:
        size = min(batch_size, count - done)
        noise = torch.randn((size, *x.shape), generator=generator, dtype=x.dtype)
        batch = (x.unsqueeze(0) + sigma * noise).clamp_(0.0, 1.0)
        for name, classify in classifiers.items():
            start = time.perf_counter()
            pred = classify(batch).cpu().numpy()
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            out[name] += np.bincount(pred, minlength=classes)[:classes]
        done += size
    return out


def certify_one(classifiers: Mapping[str, Classifier], x: Tensor, sigma: float,
                config: CertifyConfig, classes: int, seed: int,
                seconds: Dict[str, float]) -> Dict[str, Dict[str, Any]]:
    """``CERTIFY`` of one image for every classifier (shared noise draws)."""
    import torch
    from scipy.stats import norm
    generator = torch.Generator().manual_seed(seed)
    selection = _counts(classifiers, x, config.n0, sigma, classes, config.batch_size,
                        generator, seconds)
    estimate = _counts(classifiers, x, config.n, sigma, classes, config.batch_size,
                       generator, seconds)
    result = {}
    for name in classifiers:
        top = int(selection[name].argmax())
        k = int(estimate[name][top])
        p_lower = lower_confidence_bound(k, config.n, config.alpha)
        abstain = p_lower < 0.5
        result[name] = {"prediction": -1 if abstain else top, "count": k,
                        "p_lower": p_lower,
                        "radius": 0.0 if abstain else float(sigma * norm.ppf(p_lower))}
    return result


def certify(classifiers: Mapping[str, Classifier], x: Tensor, y: Tensor, sigma: float,
            config: CertifyConfig, classes: int, progress: bool = True
            ) -> Dict[str, Any]:
    """``CERTIFY`` of every image at one σ; per model, per image and summary numbers.

    The noise of image i is seeded by ``(config.seed, σ, i)``, so a resumed or sharded
    run draws the same samples.
    """
    from rssnn_deploy.progress import progress_bar
    seconds: Dict[str, float] = {}
    per_image: Dict[str, List[Dict[str, Any]]] = {name: [] for name in classifiers}
    start = time.perf_counter()
    for i in progress_bar(range(len(x)), desc=f"certify σ={sigma:g}", progress=progress,
                          leave=False):
        seed = int(np.random.SeedSequence([config.seed, round(sigma * 1e6), i])
                   .generate_state(1)[0])
        one = certify_one(classifiers, x[i], sigma, config, classes, seed, seconds)
        for name, r in one.items():
            per_image[name].append({**r, "label": int(y[i]),
                                    "correct": r["prediction"] == int(y[i])})
    return {"sigma": sigma, "images": int(len(x)), "wall_seconds": time.perf_counter() - start,
            "classifier_seconds": seconds,
            "models": {name: summarise(rows) for name, rows in per_image.items()},
            "per_image": per_image}


def certified_accuracy(rows: Sequence[Mapping[str, Any]], radius: float) -> float:
    """Share of images predicted correctly with certified radius ≥ ``radius``."""
    if not rows:
        return float("nan")
    return float(np.mean([r["correct"] and r["radius"] >= radius for r in rows]))


def summarise(rows: Sequence[Mapping[str, Any]], radii: Sequence[float] = RADII
              ) -> Dict[str, Any]:
    """Certified accuracy at ``radii``, the abstention rate and the median radius."""
    radius = [r["radius"] for r in rows if r["correct"]]
    return {"certified_accuracy": {f"{r:g}": certified_accuracy(rows, r) for r in radii},
            "abstain": float(np.mean([r["prediction"] < 0 for r in rows])) if rows else 0.0,
            "median_radius_correct": float(np.median(radius)) if radius else 0.0}

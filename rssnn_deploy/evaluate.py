"""``rssnn-deploy evaluate``: how robust is the model that actually runs on the chip?

One evaluation measures a float checkpoint and its deployed integer network (the netx
file, run by the bit-exact simulator) side by side:

* clean accuracy;
* input noise: Gaussian, salt-and-pepper and uniform, each over a range of levels;
* L∞ attacks (FGSM, PGD-7/10/20/40, APGD-CE, APGD-DLR) over a range of ε, under three
  threat models: ``float`` (white-box on the float model), ``transfer`` (those examples
  run on the integer model) and ``chip`` (white-box on the integer model itself, via the
  simulator's straight-through gradients); float-model gradients by BPTT, BPTR or a
  surrogate ensemble;
* hardware non-idealities on the integer model: weight bit flips, threshold and decay
  mismatch, dropped spikes, each over a range and repeated over seeds;
* sanity checks that fail loudly on a broken or gradient-masked attack;
* a cross-check that re-runs a sample of the attacked inputs on Lava's own fixed-point
  model and counts prediction mismatches with the simulator (should be 0).

**Budgets** are given in 1/255 units, the convention of the literature. The default is
8/255 for natural images (the RSSNN paper's CIFAR setting), but inputs of at most 16×16
pixels default to 25.5/255 = 0.1: scikit-learn's 8×8 digits have 17 grey levels, one
level is 1/16 ≈ 16/255, so 8/255 would be half a grey level, smaller than any change the
data itself can show; 0.1 (≈ 1.6 levels) is the project's long-standing digits budget.
The ε sweep is ε·{¼, ½, 1, 2, 4} plus a large ε (127.5/255 = 0.5, at which every image
can be moved to uniform grey) for the "near zero" sanity check.

Everything is cut into cells (``robustness.sweep``), cached in ``OUT/cells.json`` as
they finish (a rerun resumes) and shardable with ``torchrun --nproc_per_node N``.
Rank 0 writes ``report.json``, ``report.md`` and the PNG plots.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from rssnn_deploy.robustness import faults as fault_lib
from rssnn_deploy.robustness.attacks import (ATTACKS, GRADIENTS, AttackSpec, check_budget,
                                             craft, craft_with_gradient, parse_attack)
from rssnn_deploy.robustness.chip_model import ChipModel, ChipPredictor, readout_logit_scale
from rssnn_deploy.robustness.checks import Predictor, float_predictor
from rssnn_deploy.robustness.noise import DEFAULT_NOISE_LEVELS, apply_noise
from rssnn_deploy.robustness.sweep import (Cell, CellCache, dist_info, file_digest, fingerprint,
                                           run_cells)
from rssnn_deploy.spec import NetworkSpec, encode_input

__all__ = ["EvaluateConfig", "Subject", "THREATS", "default_eps_255", "eps_grid_255",
           "evaluate", "evaluate_subject", "distributed_from_env"]

#: threat model → how the report names it.
THREATS: Dict[str, str] = {"float": "float white-box", "transfer": "transfer → chip",
                           "chip": "chip white-box"}
NATURAL_EPS_255 = 8.0
SMALL_IMAGE_EPS_255 = 25.5
SMALL_IMAGE_PIXELS = 16 * 16
LARGE_EPS_255 = 127.5
GRID_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


def default_eps_255(in_shape: Sequence[int]) -> float:
    """8/255 for natural images, 25.5/255 (= 0.1) for inputs of ≤ 16×16 pixels."""
    pixels = int(np.prod(in_shape[-2:])) if len(in_shape) >= 2 else int(in_shape[0])
    return SMALL_IMAGE_EPS_255 if pixels <= SMALL_IMAGE_PIXELS else NATURAL_EPS_255


def eps_grid_255(eps: float, large: float = LARGE_EPS_255) -> Tuple[float, ...]:
    """ε·{¼, ½, 1, 2, 4} and ``large``, capped at 255, sorted."""
    return tuple(sorted({min(255.0, round(eps * f, 6)) for f in GRID_FACTORS} | {large}))


@dataclass(frozen=True)
class EvaluateConfig:
    """Everything ``evaluate`` can vary. Budgets (``eps*``) are in 1/255 units."""

    eps: Optional[float] = None
    eps_grid: Optional[Tuple[float, ...]] = None
    large_eps: float = LARGE_EPS_255
    attacks: Tuple[str, ...] = ATTACKS
    grid_attacks: Optional[Tuple[str, ...]] = None     # swept over the grid; None: all
    threat_models: Tuple[str, ...] = tuple(THREATS)
    gradients: Tuple[str, ...] = ("bptt",)
    apgd_steps: int = 20
    noise: Mapping[str, Tuple[float, ...]] = field(
        default_factory=lambda: dict(DEFAULT_NOISE_LEVELS))
    faults: Mapping[str, Tuple[float, ...]] = field(
        default_factory=lambda: dict(fault_lib.DEFAULT_FAULT_LEVELS))
    fault_repeats: int = 3
    samples: Optional[int] = None                      # first N test samples; None: all
    batch_size: int = 256
    lava_samples: int = 64
    adversarial_pool: int = 32                         # kept per attack cell for Lava
    tolerance: float = 0.02
    zero_tolerance: float = 0.05
    seed: int = 0
    resume: bool = True
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in self.attacks + (self.grid_attacks or ()):
            parse_attack(name)
        unknown = set(self.threat_models) - set(THREATS)
        if unknown:
            raise ValueError(f"unknown threat model(s) {sorted(unknown)}; "
                             f"use {', '.join(THREATS)}")
        bad = set(self.gradients) - set(GRADIENTS)
        if bad:
            raise ValueError(f"unknown gradient source(s) {sorted(bad)}; "
                             f"use {', '.join(GRADIENTS)}")
        if self.fault_repeats < 1 or self.batch_size < 1:
            raise ValueError("fault_repeats and batch_size must be >= 1")


@dataclass
class Subject:
    """What is evaluated: a float model, its deployed network, and labelled test data."""

    model: nn.Module
    spec: NetworkSpec
    net_path: Path
    x: Tensor
    y: Tensor
    stability: Optional[Dict[str, Any]] = None
    identity: Dict[str, Any] = field(default_factory=dict)   # digests for the cache


# ------------------------------------------------------------------------ bit helpers

def _pack(correct: Tensor) -> str:
    """Per-sample correctness as hex (one bit per sample), for worst-case aggregation."""
    return np.packbits(correct.cpu().numpy().astype(bool)).tobytes().hex()


def _unpack(bits: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(bits), dtype=np.uint8))[:n].astype(bool)


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", key)


# ----------------------------------------------------------------------------- engine

class _Evaluator:
    """Builds the cells of one evaluation and computes any of them."""

    def __init__(self, subject: Subject, config: EvaluateConfig, out: Path) -> None:
        self.subject = subject
        self.config = config
        self.out = Path(out)
        self.eps = config.eps if config.eps is not None else default_eps_255(subject.x.shape[1:])
        grid = config.eps_grid or eps_grid_255(self.eps, config.large_eps)
        self.grid = tuple(sorted(set(grid) | {self.eps}))
        self.float_predict: Predictor = float_predictor(subject.model, config.batch_size)
        self.chip_predict = ChipPredictor(subject.spec, device=config.device)
        self._chip_model: Optional[ChipModel] = None

    # -- cells ------------------------------------------------------------------------
    def cells(self) -> List[Cell]:
        """Attack cells first (the expensive ones), then faults, noise and clean.

        The Lava cross-check reads the attacked inputs these cells save, so it runs in
        a second phase (``lava_cells``) once every shard has finished.
        """
        return (self.attack_cells() + self.fault_cells() + self.noise_cells()
                + [Cell.make("clean")])

    def attack_cells(self) -> List[Cell]:
        sources: List[Tuple[str, str]] = []
        if {"float", "transfer"} & set(self.config.threat_models):
            sources += [("float", g) for g in self.config.gradients]
        if "chip" in self.config.threat_models:
            sources.append(("chip", "ste"))
        grid_attacks = (self.config.attacks if self.config.grid_attacks is None
                        else self.config.grid_attacks)
        cells = []
        for source, gradient in sources:
            for attack in self.config.attacks:
                budgets = self.grid if attack in grid_attacks else (self.eps,)
                cells += [Cell.make("attack", source=source, gradient=gradient, attack=attack,
                                    eps=float(e)) for e in budgets]
        return cells

    def noise_cells(self) -> List[Cell]:
        cells = [Cell.make("noise", kind=k, level=float(v))
                 for k, levels in self.config.noise.items() for v in levels]
        # the random baseline of the "attack beats noise" check, one per attack budget
        cells += [Cell.make("noise", kind="uniform", level=e / 255.0) for e in self.grid]
        return cells

    def fault_cells(self) -> List[Cell]:
        return [Cell.make("fault", kind=k, level=float(v), repeat=r)
                for k, levels in self.config.faults.items() for v in levels
                for r in range(self.config.fault_repeats)]

    def lava_cells(self) -> List[Cell]:
        samples = self.config.lava_samples
        return [Cell.make("lava", samples=samples)] if samples > 0 else []

    # -- computing ------------------------------------------------------------------------
    def compute(self, cell: Cell) -> Dict[str, Any]:
        start = time.perf_counter()
        result = getattr(self, f"_compute_{cell.group}")(cell)
        result["seconds"] = time.perf_counter() - start
        return result

    def _score(self, x: Tensor) -> Dict[str, Any]:
        y = self.subject.y
        float_ok = self.float_predict(x).cpu() == y
        chip_pred = self.chip_predict(x)
        chip_ok = chip_pred == y
        return {"float": float(float_ok.float().mean()), "chip": float(chip_ok.float().mean()),
                "float_bits": _pack(float_ok), "chip_bits": _pack(chip_ok),
                "_chip_pred": chip_pred}

    def _compute_clean(self, cell: Cell) -> Dict[str, Any]:
        score = self._score(self.subject.x)
        score.pop("_chip_pred")
        return score

    def _compute_noise(self, cell: Cell) -> Dict[str, Any]:
        x = apply_noise(cell["kind"], self.subject.x, cell["level"], self.config.seed)
        score = self._score(x)
        score.pop("_chip_pred")
        return score

    def _compute_attack(self, cell: Cell) -> Dict[str, Any]:
        eps = cell["eps"] / 255.0
        spec = AttackSpec(cell["attack"], eps, apgd_steps=self.config.apgd_steps,
                          seed=self.config.seed)
        x, y = self.subject.x, self.subject.y
        if cell["source"] == "chip":
            x_adv = craft(self.chip_model, x, y, spec, self.config.batch_size)
        else:
            x_adv = craft_with_gradient(self.subject.model, x, y, spec, cell["gradient"],
                                        self.config.batch_size)
        score = self._score(x_adv)
        self._keep_for_lava(cell, x_adv, score.pop("_chip_pred"))
        return {**score, **check_budget(x, x_adv, eps)}

    def _compute_fault(self, cell: Cell) -> Dict[str, Any]:
        seed = self.config.seed * 1000 + int(cell["repeat"])
        injection = fault_lib.inject(self.subject.spec, cell["kind"], cell["level"], seed)
        predict = ChipPredictor(injection.spec, device=self.config.device,
                                spike_transform=injection.spike_transform)
        correct = predict(self.subject.x) == self.subject.y
        stats = dict(injection.stats)
        dropper = injection.spike_transform
        if isinstance(dropper, fault_lib.SpikeDropper):
            stats.update(dropped_spikes=dropper.dropped, spikes=dropper.seen)
        return {"chip": float(correct.float().mean()), "stats": stats}

    def _compute_lava(self, cell: Cell) -> Dict[str, Any]:
        pool = [self._pool_path(c) for c in self.attack_cells()]
        return lava_cross_check(self.subject.net_path, self.subject.spec,
                                [p for p in pool if p.is_file()], int(cell["samples"]),
                                self.config.seed, self.config.device,
                                progress=self.config.progress)

    def _pool_path(self, cell: Cell) -> Path:
        return self.out / "adversarial" / f"{_safe_name(cell.key)}.npz"

    @property
    def chip_model(self) -> ChipModel:
        if self._chip_model is None:
            subject = self.subject
            scale = readout_logit_scale(subject.spec, subject.model, subject.stability)
            self._chip_model = ChipModel(self.subject.spec, scale, device=self.config.device)
        return self._chip_model

    def _keep_for_lava(self, cell: Cell, x_adv: Tensor, chip_pred: Tensor) -> None:
        """Save the first few attacked inputs and the simulator's predictions for Lava."""
        k = min(self.config.adversarial_pool, len(x_adv))
        if k == 0:
            return
        from rssnn_deploy.report import write_npz
        write_npz(self._pool_path(cell),
                  {"x": x_adv[:k].cpu().numpy().astype(np.float32),
                   "sim_pred": chip_pred[:k].numpy(), "y": self.subject.y[:k].cpu().numpy()})


def lava_cross_check(net_path: Path, spec: NetworkSpec, files: Sequence[Path], samples: int,
                     seed: int = 0, device: str = "cpu", progress: bool = True
                     ) -> Dict[str, Any]:
    """Re-run ``samples`` saved attacked inputs on Lava; count predictions ≠ the simulator's.

    Inputs are drawn (seeded) from the ``.npz`` pool ``files`` the attack cells wrote;
    the simulator's predictions are recomputed here and also compared with those saved
    at attack time.
    """
    from rssnn_deploy.backends import BackendError, get_backend
    if not files:
        return {"skipped": "no attacked inputs were saved", "passed": None}
    xs, saved = [], []
    for path in files:
        with np.load(path) as data:
            xs.append(data["x"])
            saved.append(data["sim_pred"])
    x_all, saved_all = np.concatenate(xs), np.concatenate(saved)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(x_all), size=min(samples, len(x_all)), replace=False))
    x = torch.as_tensor(x_all[pick])
    sim_pred = ChipPredictor(spec, device=device)(x).numpy()
    backend = get_backend("lava", progress=progress)
    if not backend.available():
        return {"skipped": "Lava cannot be imported", "passed": None}
    try:
        lava_pred = np.asarray(backend.predict(net_path, encode_input(spec, x.numpy())))
    except BackendError as err:
        return {"skipped": f"Lava could not run the network: {err}", "passed": None}
    mismatches = int((lava_pred != sim_pred).sum())
    stale = int((saved_all[pick] != sim_pred).sum())
    return {"samples": int(len(pick)), "pool": int(len(x_all)), "pool_files": len(files),
            "mismatches": mismatches, "sim_vs_saved_mismatches": stale,
            "runner": getattr(backend, "last_builder", "netx"),
            "passed": mismatches == 0 and stale == 0}


# --------------------------------------------------------------------------- assembly

def _attack_rows(ev: _Evaluator, results: Mapping[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    rows = []
    for cell in ev.attack_cells():
        r = results[cell.key]
        threats = ["chip"] if cell["source"] == "chip" else \
            [t for t in ("float", "transfer") if t in ev.config.threat_models]
        for threat in threats:
            acc = r["chip"] if threat in ("chip", "transfer") else r["float"]
            bits = r["chip_bits"] if threat in ("chip", "transfer") else r["float_bits"]
            rows.append({"threat": threat, "gradient": cell["gradient"], "attack": cell["attack"],
                         "eps": cell["eps"], "accuracy": acc, "linf": r["linf"],
                         "within_budget": r["within_budget"], "seconds": r["seconds"],
                         "_bits": bits})
    return rows


def _worst_case(rows: Sequence[Dict[str, Any]], n: int, per_gradient: bool = True
                ) -> List[Dict[str, Any]]:
    """Accuracy on the samples that survive *every* attack run, per threat model and ε.

    ``per_gradient``: one entry per gradient source (``gradient`` set), else one per
    threat model over all gradient sources (``gradient = "all"``), the number a robust
    evaluation should quote.
    """
    groups: Dict[Tuple[str, str, float], List[Dict[str, Any]]] = {}
    for row in rows:
        gradient = row["gradient"] if per_gradient else "all"
        groups.setdefault((row["threat"], gradient, row["eps"]), []).append(row)
    out = []
    for (threat, gradient, eps), members in sorted(groups.items()):
        alive = np.ones(n, dtype=bool)
        for row in members:
            alive &= _unpack(row["_bits"], n)
        out.append({"threat": threat, "gradient": gradient, "eps": eps,
                    "accuracy": float(alive.mean()) if n else float("nan"),
                    "attacks": sorted({r["attack"] for r in members}),
                    "gradients": sorted({r["gradient"] for r in members})})
    return out


def _noise_rows(ev: _Evaluator, results: Mapping[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    rows = []
    for cell in ev.noise_cells():
        r = results[cell.key]
        row = {"kind": cell["kind"], "level": cell["level"], "float": r["float"],
               "chip": r["chip"]}
        if row not in rows:
            rows.append(row)
    return sorted(rows, key=lambda r: (r["kind"], r["level"]))


def _fault_rows(ev: _Evaluator, results: Mapping[str, Dict[str, Any]],
                clean_chip: float) -> List[Dict[str, Any]]:
    rows = []
    for kind, levels in ev.config.faults.items():
        rows.append({"kind": kind, "level": 0.0, "mean": clean_chip, "std": 0.0,
                     "min": clean_chip, "max": clean_chip, "runs": [clean_chip], "stats": []})
        for level in levels:
            runs = [results[Cell.make("fault", kind=kind, level=float(level), repeat=r).key]
                    for r in range(ev.config.fault_repeats)]
            accs = np.array([r["chip"] for r in runs])
            rows.append({"kind": kind, "level": float(level), "mean": float(accs.mean()),
                         "std": float(accs.std()), "min": float(accs.min()),
                         "max": float(accs.max()), "runs": accs.tolist(),
                         "stats": [r["stats"] for r in runs]})
    return rows


def _sanity(ev: _Evaluator, rows: Sequence[Dict[str, Any]], noise: Sequence[Dict[str, Any]],
            clean: Mapping[str, float]) -> List[Any]:
    from rssnn_deploy.robustness import sanity
    # at least two samples' worth: in a small evaluation one sample flipping by chance
    # (PGD's random start, a one-step attack "repairing" a sample) is not a broken attack
    tol = max(ev.config.tolerance, 2.0 / max(len(ev.subject.y), 1))
    uniform = {r["level"]: r for r in noise if r["kind"] == "uniform"}
    checks = []
    order = list(GRADIENTS) + ["ste"]
    scopes = sorted({(r["threat"], r["gradient"]) for r in rows},
                    key=lambda s: (list(THREATS).index(s[0]), order.index(s[1])))
    for threat, gradient in scopes:
        mine = [r for r in rows if r["threat"] == threat and r["gradient"] == gradient]
        scope = f"{THREATS[threat]} ({gradient})"
        curves: Dict[str, Dict[float, float]] = {}
        for r in mine:
            curves.setdefault(r["attack"], {})[r["eps"]] = r["accuracy"]
        model = "float" if threat == "float" else "chip"
        budgets = {f"{r['attack']} ε={r['eps']:g}": r for r in mine}
        checks.append(sanity.check_budget(scope, budgets))
        checks.append(sanity.check_monotone_in_eps(scope, curves, clean[model], tol))
        if threat == "transfer":
            continue
        checks.append(sanity.check_near_zero(scope, curves, ev.config.large_eps,
                                             ev.config.zero_tolerance))
        at_eps = {a: c[ev.eps] for a, c in curves.items() if ev.eps in c}
        checks.append(sanity.check_strength_order(scope, at_eps, ev.eps, tol))
        baseline = {e: uniform[e / 255.0][model] for e in ev.grid if e / 255.0 in uniform}
        checks.append(sanity.check_beats_noise(scope, curves, baseline, tol))
    overall = _worst_case(rows, len(ev.subject.y), per_gradient=False)
    chip_wb = {w["eps"]: w["accuracy"] for w in overall if w["threat"] == "chip"}
    transfer = {w["eps"]: w["accuracy"] for w in overall if w["threat"] == "transfer"}
    if chip_wb and transfer:
        checks.append(sanity.check_whitebox_not_weaker(f"{THREATS['chip']} (ste)", chip_wb,
                                                       transfer, tol))
    return checks


def _record(ev: _Evaluator, results: Mapping[str, Dict[str, Any]]) -> Dict[str, Any]:
    from rssnn_deploy.robustness.sanity import verdict
    n = len(ev.subject.y)
    clean = {k: results[Cell.make("clean").key][k] for k in ("float", "chip")}
    rows = _attack_rows(ev, results)
    worst = _worst_case(rows, n)
    noise = _noise_rows(ev, results)
    checks = _sanity(ev, rows, noise, clean)
    lava = (results[ev.lava_cells()[0].key] if ev.lava_cells()
            else {"skipped": "lava_samples = 0", "passed": None})
    seconds: Dict[str, float] = {}
    for key, value in results.items():
        group = key.split("|")[0]
        seconds[f"{group}_s"] = seconds.get(f"{group}_s", 0.0) + float(value.get("seconds", 0.0))
    return {
        "samples": n,
        "eps": {"unit": "1/255", "default": ev.eps, "grid": list(ev.grid),
                "large": ev.config.large_eps, "default_pixels": ev.eps / 255.0},
        "clean": clean,
        "attacks": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        "worst_case": worst,
        "worst_case_all_gradients": _worst_case(rows, n, per_gradient=False),
        "noise": noise,
        "faults": _fault_rows(ev, results, clean["chip"]),
        "sanity": {"passed": verdict(checks), "checks": [c.to_dict() for c in checks]},
        "lava_cross_check": {k: v for k, v in lava.items() if k != "seconds"},
        "stability": ev.subject.stability or {"layers": [], "warnings": []},
        "compute_seconds": seconds,
    }


# ------------------------------------------------------------------------- entry points

@contextlib.contextmanager
def distributed_from_env() -> Iterator[Tuple[int, int]]:
    """Initialise torch.distributed (gloo) when launched by torchrun; yields (rank, world).

    CPU threads are split between the local processes so shards do not oversubscribe.
    """
    import torch.distributed as dist
    world = int(os.environ.get("WORLD_SIZE", "1"))
    created = False
    if world > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("gloo")
        created = True
    if world > 1:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    try:
        yield dist_info()
    finally:
        if created:
            dist.barrier()
            dist.destroy_process_group()


def _cache_identity(subject: Subject, config: EvaluateConfig) -> str:
    """Fingerprint of everything a cell's numbers depend on besides its own key."""
    data = hashlib.sha256(subject.x.detach().cpu().contiguous().numpy().tobytes())
    data.update(subject.y.detach().cpu().numpy().astype(np.int64).tobytes())
    return fingerprint({**subject.identity, "data": data.hexdigest(), "n": len(subject.y),
                        "seed": config.seed, "batch_size": config.batch_size,
                        "apgd_steps": config.apgd_steps, "device": config.device})


def evaluate_subject(subject: Subject, config: EvaluateConfig, out: Path,
                     provenance: Optional[Mapping[str, Any]] = None) -> Optional[Dict[str, Any]]:
    """Run (or resume) every cell, then on rank 0 write the report; other ranks get None."""
    from rssnn_deploy.report import with_provenance
    from rssnn_deploy.robustness.tables import write_report
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ev = _Evaluator(subject, config, out)
    cache = CellCache(out, _cache_identity(subject, config), enabled=config.resume)
    results = run_cells(ev.cells(), ev.compute, cache, progress=config.progress,
                        desc="evaluate")
    results.update(run_cells(ev.lava_cells(), ev.compute, cache, progress=False,
                             desc="Lava cross-check"))
    rank, _ = dist_info()
    if rank != 0:
        return None
    record = _record(ev, results)
    record["wall_seconds"] = time.perf_counter() - start
    record = with_provenance(record, {**(provenance or {}), **_config_dict(config)})
    record["plots"] = write_report(out, record)
    return record


def _config_dict(config: EvaluateConfig) -> Dict[str, Any]:
    values = asdict(config)
    values["noise"] = {k: list(v) for k, v in config.noise.items()}
    values["faults"] = {k: list(v) for k, v in config.faults.items()}
    return values


def evaluate(checkpoint: Path, net_path: Path, dataset: str = "digits",
             out: Path = Path("runs/evaluate"), config: EvaluateConfig = EvaluateConfig()
             ) -> Optional[Dict[str, Any]]:
    """``rssnn-deploy evaluate``: a checkpoint and its exported netx file on a test set.

    The stability report ``NET.stability.json`` (written by ``export``) is picked up
    when present. Returns the record on rank 0, None on other ranks.
    """
    from rssnn_deploy.data import load_dataset
    from rssnn_deploy.netx_io import read_netx
    from rssnn_deploy.train import load_checkpoint
    checkpoint, net_path = Path(checkpoint), Path(net_path)
    model = load_checkpoint(checkpoint)
    spec = read_netx(net_path)
    data = load_dataset(dataset)
    n = len(data.y_test) if config.samples is None else min(config.samples, len(data.y_test))
    stability_path = net_path.with_suffix(".stability.json")
    stability = json.loads(stability_path.read_text()) if stability_path.is_file() else None
    subject = Subject(model, spec, net_path, data.x_test[:n], data.y_test[:n], stability,
                      identity={"checkpoint": file_digest(_checkpoint_file(checkpoint)),
                                "net": file_digest(net_path), "dataset": str(dataset)})
    provenance = {"checkpoint": str(checkpoint), "net_file": str(net_path),
                  "dataset": str(dataset)}
    with distributed_from_env():
        return evaluate_subject(subject, config, out, provenance)


def _checkpoint_file(path: Path) -> Path:
    return path / "checkpoint.pt" if path.is_dir() else path


# --------------------------------------------------------------------------------- CLI

def _csv(text: str) -> Tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _floats(text: str) -> Tuple[float, ...]:
    return tuple(float(s) for s in _csv(text))


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


def _level_item(allowed: Sequence[str]):
    """An argparse type for ``KIND=L1,L2,…`` (``KIND=`` drops a kind) or ``none``."""
    def parse(text: str) -> Tuple[str, Tuple[float, ...]]:
        if text.strip().lower() == "none":
            return ("none", ())
        kind, sep, values = text.partition("=")
        if not sep or kind.strip() not in allowed:
            raise argparse.ArgumentTypeError(f"expected KIND=L1,L2,… with KIND in "
                                             f"{', '.join(allowed)}, or 'none'; got {text!r}")
        try:
            return kind.strip(), _floats(values)
        except ValueError:
            raise argparse.ArgumentTypeError(f"levels must be numbers: {text!r}") from None
    return parse


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


def add_evaluate_arguments(parser) -> None:
    """The options of ``rssnn-deploy evaluate`` (budgets in 1/255 units)."""
    from rssnn_deploy.robustness.faults import FAULTS
    from rssnn_deploy.robustness.noise import NOISES
    parser.add_argument("checkpoint", help="checkpoint.pt written by `train`")
    parser.add_argument("net", help="the netx file `export` wrote from it")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--out", default="runs/evaluate", help="report directory")
    parser.add_argument("--samples", type=int, default=None, help="first N test samples (all)")
    parser.add_argument("--eps", type=float, default=None,
                        help="default L∞ budget in 1/255 units "
                             "(8; 25.5 = 0.1 for inputs of ≤ 16×16 pixels)")
    parser.add_argument("--eps-grid", type=_floats, default=None,
                        help="budgets to sweep, 1/255 units "
                             "(default: ε·{¼,½,1,2,4} and --large-eps)")
    parser.add_argument("--large-eps", type=float, default=LARGE_EPS_255,
                        help="budget at which a white-box attack must reach ~0 %% (sanity check)")
    parser.add_argument("--attacks", type=_attack_list, default=ATTACKS,
                        help="comma list (default: " + ",".join(ATTACKS) + ")")
    parser.add_argument("--grid-attacks", type=_attack_list, default=None,
                        help="attacks swept over the whole ε grid (default: all)")
    parser.add_argument("--threat-models", type=_choices(tuple(THREATS)), default=tuple(THREATS),
                        help="float (white-box), transfer (float → chip), chip (white-box "
                             "through the simulator)")
    parser.add_argument("--gradients", type=_choices(GRADIENTS), default=("bptt",),
                        help="float-model gradients: " + ", ".join(GRADIENTS))
    parser.add_argument("--apgd-steps", type=int, default=20)
    parser.add_argument("--noise", action="append", metavar="KIND=L1,L2",
                        type=_level_item(tuple(NOISES)),
                        help=f"noise levels ({', '.join(NOISES)}); 'none' for no noise")
    parser.add_argument("--faults", action="append", metavar="KIND=L1,L2",
                        type=_level_item(tuple(FAULTS)),
                        help=f"fault levels ({', '.join(FAULTS)}); 'none' for no faults")
    parser.add_argument("--fault-repeats", type=int, default=3, help="seeds per fault level")
    parser.add_argument("--lava-samples", type=int, default=64,
                        help="attacked inputs re-run on Lava to cross-check the simulator "
                             "(0: none)")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="slack of the sanity checks (absolute accuracy; at least 2 samples)")
    parser.add_argument("--zero-tolerance", type=float, default=0.05,
                        help="largest accuracy that counts as 'near zero' at --large-eps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-resume", action="store_true", help="ignore cached cells")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a sanity check fails (not only on a Lava mismatch)")


def config_from_args(args) -> EvaluateConfig:
    """An :class:`EvaluateConfig` from the options of :func:`add_evaluate_arguments`."""
    from rssnn_deploy.robustness.faults import DEFAULT_FAULT_LEVELS
    return EvaluateConfig(
        eps=args.eps, eps_grid=args.eps_grid, large_eps=args.large_eps,
        attacks=tuple(args.attacks), grid_attacks=args.grid_attacks,
        threat_models=tuple(args.threat_models), gradients=tuple(args.gradients),
        apgd_steps=args.apgd_steps,
        noise=parse_levels(args.noise, DEFAULT_NOISE_LEVELS),
        faults=parse_levels(args.faults, DEFAULT_FAULT_LEVELS),
        fault_repeats=args.fault_repeats, samples=args.samples, batch_size=args.batch_size,
        lava_samples=args.lava_samples, tolerance=args.tolerance,
        zero_tolerance=args.zero_tolerance, seed=args.seed, resume=not args.no_resume,
        progress=not args.no_progress, device=args.device)


def exit_status(record: Mapping[str, Any], strict: bool = False) -> int:
    """1 when Lava disagrees with the simulator (or, if strict, a sanity check failed)."""
    lava = record["lava_cross_check"]
    if lava.get("passed") is False:
        return 1
    if strict and not record["sanity"]["passed"]:
        return 1
    return 0

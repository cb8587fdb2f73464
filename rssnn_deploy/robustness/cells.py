"""The cells of one evaluation and how each is computed.

An evaluation is cut into independent cells (``robustness.sweep.Cell``): one attack at
one budget from one gradient source, one noise level, one fault level and seed, the
clean run, and the Lava cross-check. :class:`Evaluator` lists them and computes any
one of them from the subject and the configuration alone, so cells can be cached,
resumed and sharded. Per-sample correctness is kept as packed bits for the worst case.

An attack cell over more samples than one batch is computed batch by batch, each batch
seeded on its own (``attacks.craft`` seeds torch at every call; torchattacks' APGD,
FAB and Square reseed at every call anyway), and each finished batch is stored in the
cell cache as a part (``sweep.part_key``): AutoAttack on a whole test set can run for
hours, and a kill inside it then loses one batch, not the cell. The result does not
depend on which batches were restored, so a resumed cell equals an uninterrupted one.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from rssnn_deploy.epsilon import default_eps, eps_grid, eps_key, unique_budgets
from rssnn_deploy.report import write_npz
from rssnn_deploy.robustness import faults as fault_lib
from rssnn_deploy.robustness.attacks import (AUTOATTACK, AttackSpec, check_budget, craft,
                                             craft_with_gradient, is_gradient_free,
                                             is_stochastic)
from rssnn_deploy.robustness.certify import certify
from rssnn_deploy.robustness.checks import Predictor, float_predictor
from rssnn_deploy.robustness.chip_model import ChipModel, ChipPredictor, readout_logit_scale
from rssnn_deploy.robustness.config import EvaluateConfig, Subject
from rssnn_deploy.robustness.noise import apply_noise
from rssnn_deploy.robustness.sweep import (
    Cell,
    CellCache,
    dealing,
    dealt,
    dist_info,
    gathered,
    part_key,
)
from rssnn_deploy.spec import NetworkSpec, encode_input

__all__ = ["Evaluator", "lava_cross_check", "pack_bits", "unpack_bits"]


# ------------------------------------------------------------------------ bit helpers

def pack_bits(correct: Tensor) -> str:
    """Per-sample correctness as hex (one bit per sample), for worst-case aggregation."""
    return np.packbits(correct.cpu().numpy().astype(bool)).tobytes().hex()


def unpack_bits(bits: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(bits), dtype=np.uint8))[:n].astype(bool)


def _scores(float_ok: Tensor, chip_ok: Tensor) -> Dict[str, Any]:
    """Accuracies and per-sample bits of the float and the integer model."""
    return {"float": float(float_ok.float().mean()), "chip": float(chip_ok.float().mean()),
            "float_bits": pack_bits(float_ok), "chip_bits": pack_bits(chip_ok)}


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", key)


# ----------------------------------------------------------------------------- engine

class Evaluator:
    """Builds the cells of one evaluation and computes any of them.

    ``checkpoints`` is the cell cache a long attack cell stores its finished batches in
    (and finds those an interrupted run stored); None computes every cell whole.
    """

    def __init__(self, subject: Subject, config: EvaluateConfig, out: Path,
                 checkpoints: Optional[CellCache] = None) -> None:
        self.subject = subject
        self.config = config
        self.out = Path(out)
        self.checkpoints = checkpoints
        self.eps = config.eps if config.eps is not None else default_eps(subject.x.shape[1:])
        grid = config.eps_grid or eps_grid(self.eps, config.large_eps, config.eps_grid_factors)
        self.grid = unique_budgets((self.eps, *grid))         # budgets in pixel units
        #: the large ε as the grid holds it (one budget per cache key)
        self.large_eps = {eps_key(e): e for e in self.grid}.get(eps_key(config.large_eps),
                                                                config.large_eps)
        self.float_predict: Predictor = float_predictor(subject.model, config.batch_size)
        self.chip_predict = ChipPredictor(subject.spec, device=config.device)
        self._chip_model: Optional[ChipModel] = None
        self._stochastic: Dict[str, bool] = {}
        #: whole cells computed as a step of another (AutoAttack's APGD-CE and clean)
        self._products: Dict[str, Dict[str, Any]] = {}

    # -- cells ------------------------------------------------------------------------
    def cells(self) -> List[Cell]:
        """Attack cells first (the expensive ones), then faults, noise and clean.

        The Lava cross-check reads the attacked inputs these cells save, so it runs in
        a second phase (``lava_cells``) once every shard has finished.
        """
        return (self.attack_cells() + self.certify_cells() + self.fault_cells()
                + self.noise_cells() + [Cell.make("clean")])

    def attack_cells(self) -> List[Cell]:
        sources: List[Tuple[str, str]] = []
        if {"float", "transfer"} & set(self.config.threat_models):
            sources += [("float", g) for g in self.config.gradients]
        if "chip" in self.config.threat_models:
            sources.append(("chip", "ste"))
        grid_attacks = (self.config.attacks if self.config.grid_attacks is None
                        else self.config.grid_attacks)
        # a gradient-free attack runs once per model: its gradient source is "queries"
        query_sources = list(dict.fromkeys((s, "queries") for s, _ in sources))
        cells = []
        for attack in self.config.attacks:
            budgets = self.grid if attack in grid_attacks else (self.eps,)
            for source, gradient in (query_sources if is_gradient_free(attack) else sources):
                cells += [Cell.make("attack", source=source, gradient=gradient, attack=attack,
                                    eps=float(e)) for e in budgets]
        return cells + self.adaptive_cells(sources)

    def adaptive_cells(self, sources: List[Tuple[str, str]]) -> List[Cell]:
        """The adaptive attack at ε: on the float model with its own surrogate and with the
        strongest surrogate and scale per sample (``sweep``); on the chip through ste."""
        attack = self.config.adaptive
        if not attack:
            return []
        wanted = list(dict.fromkeys(
            [(s, g) for s, g in sources if s == "chip" or g == "bptt"]
            + ([("float", "sweep")] if any(s == "float" for s, _ in sources) else [])))
        return [Cell.make("attack", source=s, gradient=g, attack=attack, eps=float(self.eps))
                for s, g in wanted
                if not (attack in self.config.attacks and g in self.config.gradients + ("ste",))]

    def noise_cells(self) -> List[Cell]:
        cells = [Cell.make("noise", kind=k, level=float(v))
                 for k, levels in self.config.noise.items() for v in levels]
        # the random baseline of the "attack beats noise" check, one per attack budget
        cells += [Cell.make("noise", kind="uniform", level=e) for e in self.grid]
        return cells

    def fault_cells(self) -> List[Cell]:
        return [Cell.make("fault", kind=k, level=float(v), repeat=r)
                for k, levels in self.config.faults.items() for v in levels
                for r in range(self.config.fault_repeats)]

    def certify_cells(self) -> List[Cell]:
        certify = self.config.certify
        return [Cell.make("certify", sigma=float(s)) for s in certify.sigmas] if certify else []

    def lava_cells(self) -> List[Cell]:
        samples = self.config.lava_samples
        return [Cell.make("lava", samples=samples)] if samples > 0 else []

    # -- computing ------------------------------------------------------------------------
    def compute(self, cell: Cell) -> Dict[str, Any]:
        """One cell's result; a cell another one computed on the way (AutoAttack's
        first member, the clean predictions) is not computed again."""
        earlier = self._earlier(cell.key)
        if earlier is not None:     # its time is counted in the cell that computed it
            return {**earlier, "seconds": 0.0}
        start = time.perf_counter()
        result = getattr(self, f"_compute_{cell.group}")(cell)
        # parts restored from an interrupted run count with the time they took then
        result["seconds"] = time.perf_counter() - start + result.pop("restored_seconds", 0.0)
        return result

    def _score(self, x: Tensor) -> Dict[str, Any]:
        y = self.subject.y
        return _scores(self.float_predict(x).cpu() == y, self.chip_predict(x) == y)

    def _compute_clean(self, cell: Cell) -> Dict[str, Any]:
        return self._score(self.subject.x)

    def _compute_noise(self, cell: Cell) -> Dict[str, Any]:
        x = apply_noise(cell["kind"], self.subject.x, cell["level"], self.config.seed)
        return self._score(x)

    def _attack_spec(self, cell: Cell, attack: Optional[str] = None) -> AttackSpec:
        """The attack of ``cell`` (or its member ``attack``) at the cell's budget."""
        name = attack or cell["attack"]
        eot = self.config.eot_samples if self.stochastic(cell["source"]) else 1
        return AttackSpec(name, cell["eps"], apgd_steps=self.config.apgd_steps,
                          seed=self.config.seed, square_queries=self.config.square_queries,
                          n_classes=self.classes, eot_iter=eot,
                          pgd_alpha_factor=self.config.pgd_alpha_factor.get(name, 2.5))

    def _compute_attack(self, cell: Cell) -> Dict[str, Any]:
        """The attack batch by batch (see the module docstring), then the batches'
        per-sample results and budget checks joined into the cell's."""
        if cell["attack"] == "AutoAttack":
            return self._compute_autoattack(cell)
        index = np.arange(len(self.subject.y))
        return self._attack_samples(cell, self._attack_spec(cell), index)

    def _attack_samples(self, cell: Cell, spec: AttackSpec, index: np.ndarray,
                        stage: Optional[str] = None) -> Dict[str, Any]:
        """``spec`` on the samples ``index``, in batches; per-sample bits over ``index``.

        A whole cell (``stage`` None) cut into several batches stores each as a part and
        keeps its attacked inputs for the Lava pool; a stage of a cell stores every batch
        as a part (the cell has several stages) and keeps no pool.
        """
        n, step = len(index), self.config.batch_size
        ranges = [(a, min(a + step, n)) for a in range(0, max(n, 1), step)]
        whole = stage is None and len(ranges) == 1
        # under torchrun a cell's batches are dealt across the ranks (sweep.dealt); every
        # rank then holds every batch's result
        done = gathered({i: self._attack_part(cell, spec, index, *ranges[i], whole, stage)
                         for i in dealt(len(ranges))})
        parts, restored = zip(*(done[i] for i in range(len(ranges))))
        if stage is None and len(ranges) > 1 and (not dealing() or dist_info()[0] == 0):
            self._join_pool(cell, ranges)       # one writer (its pieces are all on disk)
        float_ok = torch.from_numpy(np.concatenate(
            [unpack_bits(p["float_bits"], b - a) for p, (a, b) in zip(parts, ranges)]))
        chip_ok = torch.from_numpy(np.concatenate(
            [unpack_bits(p["chip_bits"], b - a) for p, (a, b) in zip(parts, ranges)]))
        return {**_scores(float_ok, chip_ok), "linf": max(p["linf"] for p in parts),
                "min": min(p["min"] for p in parts), "max": max(p["max"] for p in parts),
                "within_budget": all(p["within_budget"] for p in parts),
                "restored_seconds": sum(p["seconds"] for p, old in zip(parts, restored) if old)}

    def _attack_part(self, cell: Cell, spec: AttackSpec, index: np.ndarray, start: int,
                     stop: int, whole: bool, stage: Optional[str] = None
                     ) -> Tuple[Dict[str, Any], bool]:
        """Samples ``index[start:stop]`` of an attack cell and whether they came from the
        cache.

        A part of a cell cut into several is looked up in, and stored to, the cell
        cache; one whose attacked inputs belong in the Lava pool is reused only if its
        piece of the pool is on disk too.
        """
        key = part_key(cell.key, start, stop, stage)
        pool = self._pool_path(cell.key if whole else key)
        in_pool = stage is None and start < min(self.config.adversarial_pool, stop)
        if not whole and self.checkpoints is not None:
            found = self.checkpoints.get(key)
            if found is not None and (not in_pool or pool.is_file()):
                return found, True
        began = time.perf_counter()
        pick = torch.from_numpy(index[start:stop])
        x, y = self.subject.x[pick], self.subject.y[pick]
        if cell["source"] == "chip":
            x_adv = craft(self.chip_model, x, y, spec, self.config.batch_size)
        else:
            x_adv = craft_with_gradient(self.subject.model, x, y, spec, cell["gradient"],
                                        self.config.batch_size)
        float_ok = self.float_predict(x_adv).cpu() == y
        chip_pred = self.chip_predict(x_adv)
        if in_pool:
            k = self.config.adversarial_pool - start
            write_npz(pool, {"x": x_adv[:k].cpu().numpy().astype(np.float32),
                             "sim_pred": chip_pred[:k].numpy(), "y": y[:k].cpu().numpy()})
        part = {**_scores(float_ok, chip_pred == y), **check_budget(x, x_adv, spec.eps),
                "seconds": time.perf_counter() - began}
        if not whole and self.checkpoints is not None:
            self.checkpoints.put(key, part)
        return part, False

    def _compute_autoattack(self, cell: Cell) -> Dict[str, Any]:
        """AutoAttack standard as its reference implementation runs it, without work
        done twice: each member attacks only the samples the previous members left
        standing on the attacked model (the chip for chip white-box, else the float
        model); a sample keeps the first example that fooled that model, a sample no
        member fooled keeps its clean image. The first member, APGD-CE on every sample,
        is the APGD-CE cell of the same source and budget, and the clean image's
        predictions are the clean cell's: each taken from the cache, or computed once
        and stored there for the cell itself (``_shared``).
        """
        n = len(self.subject.y)
        attacked = "chip" if cell["source"] == "chip" else "float"
        clean, _ = self._shared(Cell.make("clean"))        # what a standing sample keeps
        final = {m: unpack_bits(clean[f"{m}_bits"], n) for m in ("float", "chip")}
        alive = np.ones(n, dtype=bool)
        stages: List[Dict[str, Any]] = []
        budget: List[Dict[str, Any]] = []
        restored = 0.0
        for member in AUTOATTACK:
            index = np.flatnonzero(alive)      # every sample for the first member
            began = time.perf_counter()
            reused, result, restored_here = False, None, 0.0
            if member == AUTOATTACK[0]:
                result, reused = self._shared(Cell.make(
                    "attack", source=cell["source"], gradient=cell["gradient"],
                    attack=member, eps=cell["eps"]))
            elif len(index):
                result = self._attack_samples(cell, self._attack_spec(cell, member), index,
                                              stage=member)
                restored_here = result.pop("restored_seconds")
                restored += restored_here
            bits = {m: (unpack_bits(result[f"{m}_bits"], len(index)) if result is not None
                        else np.zeros(0, dtype=bool)) for m in final}
            fooled = index[~bits[attacked]]
            for m in final:
                final[m][fooled] = bits[m][~bits[attacked]]
            alive[fooled] = False
            if result is not None:
                budget.append(result)
            stages.append({"attack": member, "samples": int(len(index)),
                           "float": float(final["float"].mean()) if n else float("nan"),
                           "chip": float(final["chip"].mean()) if n else float("nan"),
                           "seconds": (0.0 if reused else
                                       time.perf_counter() - began + restored_here),
                           "reused": reused})
        out = _scores(torch.from_numpy(final["float"]), torch.from_numpy(final["chip"]))
        return {**out, "linf": max((r["linf"] for r in budget), default=0.0),
                "min": min((r["min"] for r in budget), default=0.0),
                "max": max((r["max"] for r in budget), default=0.0),
                "within_budget": all(r["within_budget"] for r in budget),
                "stages": stages, "restored_seconds": restored}

    def _shared(self, cell: Cell) -> Tuple[Dict[str, Any], bool]:
        """The result of a whole cell another one needs (AutoAttack: its first member
        alone at the same source and budget, and the clean predictions), and whether an
        earlier computation supplied it; computed here it is kept, and stored in the
        cache, so the cell itself is not computed again when the evaluation lists it."""
        earlier = self._earlier(cell.key)
        if earlier is not None:
            return earlier, True
        result = self.compute(cell)
        self._products[cell.key] = result
        if self.checkpoints is not None:
            self.checkpoints.put(cell.key, result)
        return result, False

    def _earlier(self, key: str) -> Optional[Dict[str, Any]]:
        """A whole cell computed earlier in this run (as part of another) or cached."""
        found = self._products.get(key)
        if found is None and self.checkpoints is not None:
            found = self.checkpoints.get(key)
        return None if found is None else dict(found)

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

    def _compute_certify(self, cell: Cell) -> Dict[str, Any]:
        """Randomized smoothing of the float and the integer model on shared noise draws."""
        n = min(self.config.certify_samples, len(self.subject.y))
        classifiers = {"float": float_predictor(self.subject.model, self.config.certify.batch_size),
                       "chip": ChipPredictor(self.subject.spec, device=self.config.device)}
        return certify(classifiers, self.subject.x[:n], self.subject.y[:n], cell["sigma"],
                       self.config.certify, self.classes, progress=self.config.progress)

    def _compute_lava(self, cell: Cell) -> Dict[str, Any]:
        pool = [self._pool_path(c) for c in self.attack_cells()]
        return lava_cross_check(self.subject.net_path, self.subject.spec,
                                [p for p in pool if p.is_file()], int(cell["samples"]),
                                self.config.seed, self.config.device,
                                progress=self.config.progress)

    def _pool_path(self, cell: Union[Cell, str]) -> Path:
        """The Lava pool file of a cell (or of one part of it, by key)."""
        key = cell if isinstance(cell, str) else cell.key
        return self.out / "adversarial" / f"{_safe_name(key)}.npz"

    @property
    def classes(self) -> int:
        return int(np.prod(self.subject.spec.output_layer.shape))

    def stochastic(self, source: str) -> bool:
        """Whether the attacked model's forward pass is random (then attacks use EOT)."""
        if source not in self._stochastic:
            model = self.chip_model if source == "chip" else self.subject.model
            self._stochastic[source] = is_stochastic(model, self.subject.x[:8])
        return self._stochastic[source]

    @property
    def chip_model(self) -> ChipModel:
        if self._chip_model is None:
            subject = self.subject
            scale = readout_logit_scale(subject.spec, subject.model, subject.stability)
            self._chip_model = ChipModel(self.subject.spec, scale, device=self.config.device)
        return self._chip_model

    def _join_pool(self, cell: Cell, ranges: Sequence[Tuple[int, int]]) -> None:
        """The Lava pool pieces of a cell computed in parts, joined into its pool file."""
        pieces = [self._pool_path(part_key(cell.key, a, b)) for a, b in ranges
                  if a < min(self.config.adversarial_pool, b)]
        if not pieces:
            return
        arrays: Dict[str, List[np.ndarray]] = {"x": [], "sim_pred": [], "y": []}
        for path in pieces:
            with np.load(path) as data:
                for name, values in arrays.items():
                    values.append(data[name])
        write_npz(self._pool_path(cell), {k: np.concatenate(v) for k, v in arrays.items()})
        for path in pieces:
            path.unlink()

def lava_cross_check(net_path: Path, spec: NetworkSpec, files: Sequence[Path], samples: int,
                     seed: int = 0, device: str = "cpu", progress: bool = True
                     ) -> Dict[str, Any]:
    """Re-run ``samples`` saved attacked inputs on Lava; count predictions ≠ the simulator's.

    Inputs are drawn (seeded) from the ``.npz`` pool ``files`` the attack cells wrote;
    the simulator's predictions are recomputed here and also compared with those saved
    at attack time.
    """
    from rssnn_deploy.backends import BackendError, get_backend
    from rssnn_deploy.dependencies import LAVA_INSTALL
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
        return {"skipped": f"Lava cannot be imported (to add it: {LAVA_INSTALL})",
                "passed": None}
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

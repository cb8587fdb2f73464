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

This module only orchestrates: ``config`` says what is measured, ``cells`` computes
each piece, ``record`` assembles them, ``tables`` and ``plots`` write the report.
Everything is cut into cells (``robustness.sweep``), cached in ``OUT/cells.json`` as
they finish (a rerun resumes) and shardable with ``torchrun --nproc_per_node N``.
Rank 0 writes ``report.json``, ``report.md`` and the PNG plots.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from rssnn_deploy.errors import UserError
from rssnn_deploy.fileio import atomic_write_text, staged_directory
from rssnn_deploy.progress import bars_shown
from rssnn_deploy.report import write_json
from rssnn_deploy.robustness.cells import Evaluator
from rssnn_deploy.robustness.config import EvaluateConfig, Subject
from rssnn_deploy.robustness.plan import plan
from rssnn_deploy.robustness.plots import plot_certified, write_plots
from rssnn_deploy.robustness.record import build_record, certification_record
from rssnn_deploy.robustness.sweep import (
    Cell,
    CellCache,
    dist_info,
    file_digest,
    fingerprint,
    log_line,
    run_cells,
)
from rssnn_deploy.robustness.tables import certification_section, render_markdown

__all__ = ["evaluate", "evaluate_subject", "certify_files", "load_subject", "distributed_from_env", "exit_status", "write_report"]


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
                        "apgd_steps": config.apgd_steps, "device": config.device,
                        "square_queries": config.square_queries,
                        "eot_samples": config.eot_samples,
                        "pgd_alpha_factor": dict(config.pgd_alpha_factor),
                        "certify": config.certify.to_dict() if config.certify else None,
                        "certify_samples": config.certify_samples})


def evaluate_subject(subject: Subject, config: EvaluateConfig, out: Path,
                     provenance: Optional[Mapping[str, Any]] = None) -> Optional[Dict[str, Any]]:
    """Run (or resume) every cell, then on rank 0 write the report; other ranks get None."""
    from rssnn_deploy.dependencies import require_torchattacks
    if config.attacks or config.grid_attacks:
        require_torchattacks("evaluate's attacks (--attacks)")   # before any cell runs
    out = Path(out)
    record = _run_cells(subject, config, out, provenance, build_record,
                        lambda ev: [(ev.cells(), config.progress, "evaluate"),
                                    (ev.lava_cells(), False, "Lava cross-check")])
    if record is not None:
        record["plots"] = write_report(out, record)
    return record


def _run_cells(subject: Subject, config: EvaluateConfig, out: Path,
               provenance: Optional[Mapping[str, Any]],
               build: Callable[[Evaluator, Dict[str, Any]], Dict[str, Any]],
               phases: Callable[[Evaluator], Sequence[Tuple[Sequence[Cell], bool, str]]]
               ) -> Optional[Dict[str, Any]]:
    """Run (or resume from ``out/cells.json``) each phase's cells, in order; on rank 0
    return ``build(evaluator, results)`` with wall time and provenance, else None."""
    from rssnn_deploy.report import with_provenance
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    cache = CellCache(out, _cache_identity(subject, config), enabled=config.resume)
    ev = Evaluator(subject, config, out, checkpoints=cache)
    # no bar drawn (--no-progress, or stderr not a terminal): one line per cell instead
    log = None if bars_shown(config.progress) else log_line
    steps = list(phases(ev))
    estimate = None
    if dist_info()[0] == 0:                             # the cost, before any work
        line, estimate = plan(ev, [c for cells, _, _ in steps for c in cells],
                              _finished(cache), steps[0][2] if steps else "evaluate")
        log_line(line)
    results: Dict[str, Any] = {}
    for cells, progress, desc in steps:
        results.update(run_cells(cells, ev.compute, cache, progress=progress, desc=desc,
                                 log=log, shared_work=lambda cell: cell.group == "attack",
                                 estimate=estimate))
    if dist_info()[0] != 0:
        return None
    record = build(ev, results)
    record["wall_seconds"] = time.perf_counter() - start
    return with_provenance(record, {**(provenance or {}), **_config_dict(config)})


def _finished(cache: CellCache) -> List[str]:
    """Keys of the cells already on disk (the cache's own warnings come when it is read
    for the run)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(cache.load())


def _config_dict(config: EvaluateConfig) -> Dict[str, Any]:
    values = asdict(config)
    values["noise"] = {k: list(v) for k, v in config.noise.items()}
    values["faults"] = {k: list(v) for k, v in config.faults.items()}
    values["pgd_alpha_factor"] = dict(config.pgd_alpha_factor)
    return values


def evaluate(checkpoint: Path, net_path: Path, dataset: Optional[str] = None,
             out: Path = Path("runs/evaluate"), config: EvaluateConfig = EvaluateConfig(),
             allow_mismatch: bool = False) -> Optional[Dict[str, Any]]:
    """``rssnn-deploy evaluate``: a checkpoint and its exported netx file on a test set.

    The stability report ``NET.stability.json`` (written by ``export``) is picked up
    when present. ``dataset`` defaults to the one the checkpoint records (its test
    split). A netx file that records the sha256 of the checkpoint it was exported from
    must name this one (``allow_mismatch`` to evaluate a pair anyway). ``out`` is held
    by one evaluation at a time (``fileio.directory_lock``) and is never the evaluation
    folder of another pair. Returns the record on rank 0, None on other ranks.
    """
    subject, provenance = load_subject(checkpoint, net_path, dataset, config.samples,
                                       allow_mismatch)
    with _locked(out, "evaluation directory"), distributed_from_env():
        _check_previous_report(Path(out) / "report.json", provenance)
        return evaluate_subject(subject, config, out, provenance)


def certify_files(checkpoint: Path, net_path: Path, dataset: Optional[str] = None,
                  out: Path = Path("runs/certify"), config: EvaluateConfig = EvaluateConfig(),
                  allow_mismatch: bool = False) -> Optional[Dict[str, Any]]:
    """``rssnn-deploy certify``: randomized smoothing of a checkpoint and its netx file.

    Writes ``certify.json``, ``certify.md`` and ``certified_accuracy.png`` to ``out``;
    cells are cached in ``out/cells.json`` like ``evaluate``'s. ``dataset`` defaults to
    the one the checkpoint records, as for ``evaluate``.
    """
    if config.certify is None:
        raise ValueError("certify_files needs config.certify")
    _refuse_event_model(checkpoint)
    subject, provenance = load_subject(checkpoint, net_path, dataset,
                                       min(config.samples or config.certify_samples,
                                           config.certify_samples), allow_mismatch)
    with _locked(out, "certification directory"), distributed_from_env():
        out = Path(out)
        _check_previous_report(out / "certify.json", provenance)
        record = _run_cells(subject, config, out, provenance, certification_record,
                            lambda ev: [(ev.certify_cells(), config.progress, "certify")])
        if record is None:
            return None
        with staged_directory(out) as staging:
            record["plots"] = [str(out / plot_certified(staging / "certified_accuracy.png",
                                                        record).name)]
            write_json(staging / "certify.json", record)
            atomic_write_text(staging / "certify.md", "# Certified robustness of the deployed "
                              "model\n\n" + certification_section(record) + "\n")
        return record


def _refuse_event_model(checkpoint: Path) -> None:
    """Randomized smoothing adds Gaussian noise to pixels; a model of event data takes
    0/1 spike trains, which have none (its file has no input scale to encode them)."""
    from rssnn_deploy.training import read_checkpoint
    from rssnn_deploy.training.checkpoints import checkpoint_file
    checkpoint = checkpoint_file(checkpoint)
    if read_checkpoint(checkpoint)["model_config"].get("input_encoding") == "events":
        raise EvaluationInputError(
            f"{checkpoint}: a model of event data (spike trains); randomized smoothing "
            f"certifies against Gaussian noise on pixels in [0, 1], which spike trains do "
            f"not have: `evaluate` measures it under event drop, jitter and the sparse "
            f"attack instead")


def load_subject(checkpoint: Path, net_path: Path, dataset: Optional[str],
                 samples: Optional[int], allow_mismatch: bool = False
                 ) -> Tuple[Subject, Dict[str, Any]]:
    """The checkpoint, its netx file (and stability report) and the first test samples
    of ``dataset``, by default the one the checkpoint records.

    A netx file that records the sha256 of the checkpoint it was exported from must name
    this checkpoint unless ``allow_mismatch``.
    """
    from rssnn_deploy.data.record import resolve_dataset
    from rssnn_deploy.netx.reader import read_netx
    from rssnn_deploy.report import read_stability
    from rssnn_deploy.training import load_checkpoint, read_checkpoint
    from rssnn_deploy.training.checkpoints import checkpoint_file
    checkpoint, net_path = checkpoint_file(checkpoint), Path(net_path)
    model = load_checkpoint(checkpoint)
    spec = read_netx(net_path)
    checkpoint_sha = file_digest(checkpoint)
    exported_from = spec.meta.get("checkpoint_sha256")
    if exported_from not in (None, checkpoint_sha) and not allow_mismatch:
        raise EvaluationInputError(
            f"{net_path}: exported from another checkpoint (sha256 {str(exported_from)[:12]}…) "
            f"than {checkpoint} (sha256 {checkpoint_sha[:12]}…); pass --allow-mismatch to "
            f"use them together anyway")
    data, dataset = resolve_dataset(dataset, read_checkpoint(checkpoint).get("dataset"),
                                    spec.input_layer.shape, str(checkpoint))
    n = len(data.y_test) if samples is None else min(samples, len(data.y_test))
    stability = read_stability(net_path)
    net_sha = file_digest(net_path)
    subject = Subject(model, spec, net_path, data.x_test[:n], data.y_test[:n], stability,
                      identity={"checkpoint": checkpoint_sha, "net": net_sha,
                                "dataset": str(dataset)})
    provenance = {"checkpoint": str(checkpoint), "net_file": str(net_path),
                  "dataset": str(dataset), "checkpoint_sha256": checkpoint_sha,
                  "net_sha256": net_sha, "pair_verified": exported_from == checkpoint_sha}
    return subject, provenance


def _locked(out: Path, what: str):
    """One writer per report folder; a torchrun run's shards share ``out``, so only a
    single-process run locks it."""
    from rssnn_deploy.fileio import directory_lock
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return directory_lock(out, what)
    return contextlib.nullcontext()


def _check_previous_report(path: Path, provenance: Mapping[str, Any]) -> None:
    """A report folder belongs to one checkpoint and netx file: a run for another pair
    would silently replace its report, so it is refused."""
    out = path.parent
    if not path.is_file():
        return
    try:
        config = json.loads(path.read_text()).get("config", {})
    except (OSError, ValueError, AttributeError):
        raise EvaluationInputError(f"{path}: an unreadable report is in the way; choose "
                                   f"another --out or delete it") from None
    for key in ("checkpoint_sha256", "net_sha256"):
        previous = config.get(key) if isinstance(config, dict) else None
        if previous is not None and previous != provenance[key]:
            raise EvaluationInputError(
                f"{out}: holds the evaluation of another {key.split('_')[0]} "
                f"({config.get('checkpoint' if key.startswith('c') else 'net_file')}); "
                f"choose another --out or delete it")


class EvaluationInputError(UserError, ValueError):
    """A checkpoint and netx file that do not belong together."""


def exit_status(record: Mapping[str, Any], strict: bool = False) -> int:
    """1 when Lava disagrees with the simulator (or, if strict, a sanity check failed)."""
    lava = record["lava_cross_check"]
    if lava.get("passed") is False:
        return 1
    if strict and not record["sanity"]["passed"]:
        return 1
    return 0


def write_report(out: Path, record: Dict[str, Any]) -> List[str]:
    """``report.json``, ``report.md`` and the PNGs, moved into ``out`` together once all
    are written (``fileio.staged_directory``); returns the plot paths."""
    out = Path(out)
    with staged_directory(out) as staging:
        plots = [str(out / Path(p).name) for p in write_plots(staging, record)]
        record["plots"] = plots
        write_json(staging / "report.json", record)
        atomic_write_text(staging / "report.md", render_markdown(record))
    return plots

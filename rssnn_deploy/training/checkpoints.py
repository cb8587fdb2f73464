"""Checkpoints: one ``torch.save`` dict per run (model config, weights, training
config, optimiser state, metrics), written atomically and read with
``weights_only=True``.

Reading validates at the boundary: the file must be a zip archive as ``torch.save``
writes it, hold a dict with a model config the model zoo accepts and weights that fit
that model and are finite; resuming also needs the optimiser and scheduler state.
Anything else is a ``CheckpointError`` naming the file and the field, never torch's
own multi-line message (which would advise ``weights_only=False``: never do that with a
file you did not write).
"""
from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from rssnn_deploy.errors import UserError
from rssnn_deploy.fileio import atomic_path, atomic_write_text, sha256_file
from rssnn_deploy.filekinds import check_kind
from rssnn_deploy.models.zoo import SNN, build_model
from rssnn_deploy.training.config import TrainConfig

__all__ = ["CHECKPOINT_NAME", "METRICS_NAME", "CheckpointError", "save_checkpoint",
           "read_checkpoint", "load_checkpoint", "write_run", "checkpoint_file",
           "checkpoint_digest", "check_resumable_fields"]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.json"


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be used as asked: not ours, or not resumable with this config."""


def save_checkpoint(path: Union[str, Path], payload: Mapping[str, Any]) -> None:
    """``torch.save`` a checkpoint dict atomically."""
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)


def checkpoint_file(path: Union[str, Path]) -> Path:
    """The checkpoint file of ``path``: the file itself, or a run directory's
    ``checkpoint.pt``; ``CheckpointError`` when there is none."""
    path = Path(path)
    if path.is_dir():
        if not (path / CHECKPOINT_NAME).is_file():
            check_kind(path, "checkpoint", CheckpointError)   # a report folder, …
            raise CheckpointError(f"{path}: a directory without {CHECKPOINT_NAME}; give the "
                                  f"checkpoint file or a training run directory")
        return path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return path


def checkpoint_digest(path: Union[str, Path]) -> str:
    """sha256 of the checkpoint file (``export`` records it in the netx file)."""
    return sha256_file(checkpoint_file(path))


def read_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """The raw checkpoint dict (a file, or a run directory holding ``checkpoint.pt``).

    Loaded with ``weights_only=True``: a checkpoint holds only tensors and plain data,
    so a foreign file cannot run code on load.
    """
    path = checkpoint_file(path)
    check_kind(path, "checkpoint", CheckpointError)   # a netx file, a data set, …
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a torch checkpoint (not the zip archive "
                              f"torch.save writes; truncated or another kind of file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: holds objects other than tensors and plain data; "
                              f"rssnn-deploy checkpoints never do, and such a file is not "
                              f"loaded (it could run code)") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError) as err:
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else \
            type(err).__name__
        raise CheckpointError(f"{path}: damaged torch checkpoint ({reason})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not an rssnn-deploy checkpoint (holds a "
                              f"{type(payload).__name__}, not a dict)")
    missing = {"model_config", "state_dict"} - set(payload)
    if missing:
        raise CheckpointError(f"{path}: not an rssnn-deploy checkpoint (missing "
                              f"{', '.join(sorted(missing))})")
    _check_state_dict(path, payload["state_dict"])
    if not isinstance(payload["model_config"], dict):
        raise CheckpointError(f"{path}: model_config must be a dict, found "
                              f"{type(payload['model_config']).__name__}")
    return payload


def _check_state_dict(path: Path, state: Any) -> None:
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path}: state_dict must map names to tensors")
    for name, tensor in state.items():
        if tensor.is_complex() or not (tensor.is_floating_point() or tensor.dtype in (
                torch.int64, torch.int32, torch.bool)):
            raise CheckpointError(f"{path}: state_dict/{name}: unsupported dtype "
                                  f"{tensor.dtype}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: state_dict/{name}: {bad} of {tensor.numel()} "
                                  f"values are NaN or infinite (a diverged run?)")


def check_resumable_fields(path: Path, payload: Mapping[str, Any]) -> None:
    """What resuming needs beyond the model: epoch count, optimiser and scheduler state."""
    missing = [k for k in ("epoch", "optimizer", "scheduler", "train_config")
               if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: cannot resume: the checkpoint has no "
                              f"{', '.join(missing)} (it holds weights only; start a new "
                              f"run directory)")
    epoch = payload["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise CheckpointError(f"{path}: epoch {epoch!r} is not a count of epochs")
    for key in ("optimizer", "scheduler", "train_config"):
        if not isinstance(payload[key], dict):
            raise CheckpointError(f"{path}: {key} must be a dict, found "
                                  f"{type(payload[key]).__name__}")


def load_checkpoint(path: Union[str, Path], best: bool = True) -> SNN:
    """Rebuild the trained model (eval mode, CPU) from its checkpoint alone.

    A run trained with ``keep_best`` also holds the weights of its best-test-accuracy
    epoch (the paper code's saved model); ``best=True`` loads those, ``best=False`` the
    last epoch's. Note that choosing the epoch on the test set, as the paper code does,
    makes that test accuracy an optimistic estimate.
    """
    payload = read_checkpoint(path)
    path = checkpoint_file(path)
    try:
        model = build_model(payload["model_config"])
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"{path}: model_config is not a model this version builds "
                              f"({_first_line(err)})") from None
    kept = payload.get("best") if best else None
    if kept is not None and not (isinstance(kept, dict) and "state_dict" in kept):
        raise CheckpointError(f"{path}: 'best' must hold a state_dict")
    state = kept["state_dict"] if kept else payload["state_dict"]
    if kept:
        _check_state_dict(path, state)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the weights do not fit the model its model_config "
                              f"describes ({_first_line(err, 160)})") from None
    return model.eval()


def _first_line(err: BaseException, limit: int = 120) -> str:
    text = " ".join(str(err).split())
    text = text.replace("Error(s) in loading state_dict for SNN: ", "")
    return (text[:limit] + "…") if len(text) > limit else text or type(err).__name__


def write_run(out_dir: Path, model: SNN, config: TrainConfig, epoch: int,
              optimizer: torch.optim.Optimizer, scheduler: Any,
              history: List[Dict[str, float]],
              best: Optional[Mapping[str, Any]] = None,
              dataset_record: Optional[Mapping[str, Any]] = None) -> None:
    """Write the run's checkpoint (resumable: optimiser and scheduler state included)
    and a human-readable ``metrics.json`` beside it. ``best``: the best epoch kept so
    far (``epoch``, ``test_acc``, ``state_dict``), for ``keep_best`` runs;
    ``dataset_record`` (what the run trains on, :mod:`rssnn_deploy.data.record`)
    rides along under ``"dataset"``."""
    payload = {
        "model_config": model.describe(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_config": config.to_dict(),
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "metrics": history,
    }
    summary = {"model_config": payload["model_config"],
               "train_config": payload["train_config"], "metrics": history}
    if best is not None:
        payload["best"] = dict(best)
        summary["best"] = {"epoch": best["epoch"], "test_acc": best["test_acc"]}
    if dataset_record is not None:
        payload["dataset"] = summary["dataset"] = dict(dataset_record)
    save_checkpoint(out_dir / CHECKPOINT_NAME, payload)
    text = json.dumps(summary, indent=2)
    atomic_write_text(out_dir / METRICS_NAME, text)

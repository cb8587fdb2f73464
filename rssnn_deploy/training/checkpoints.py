"""Checkpoints: one ``torch.save`` dict per run (model config, weights, training
config, optimiser state, metrics), written atomically and read with
``weights_only=True``."""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from rssnn_deploy.errors import UserError
from rssnn_deploy.fileio import atomic_path, atomic_write_text
from rssnn_deploy.models import SNN, build_model
from rssnn_deploy.training.config import TrainConfig

__all__ = ["CHECKPOINT_NAME", "METRICS_NAME", "CheckpointError", "save_checkpoint",
           "read_checkpoint", "load_checkpoint", "write_run"]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.json"


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be used as asked: not ours, or not resumable with this config."""


def save_checkpoint(path: Union[str, Path], payload: Mapping[str, Any]) -> None:
    """``torch.save`` a checkpoint dict atomically."""
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)


def _checkpoint_path(path: Union[str, Path]) -> Path:
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def read_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """The raw checkpoint dict (a file, or a run directory holding ``checkpoint.pt``).

    Loaded with ``weights_only=True``: a checkpoint holds only tensors and plain data,
    so a foreign file cannot run code on load.
    """
    path = _checkpoint_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint there")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({reason})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not an rssnn-deploy checkpoint (holds a "
                              f"{type(payload).__name__}, not a dict)")
    missing = {"model_config", "state_dict"} - set(payload)
    if missing:
        raise CheckpointError(f"{path}: not an rssnn-deploy checkpoint (missing "
                              f"{', '.join(sorted(missing))})")
    return payload


def load_checkpoint(path: Union[str, Path], best: bool = True) -> SNN:
    """Rebuild the trained model (eval mode, CPU) from its checkpoint alone.

    A run trained with ``keep_best`` also holds the weights of its best-test-accuracy
    epoch (the paper code's saved model); ``best=True`` loads those, ``best=False`` the
    last epoch's. Note that choosing the epoch on the test set, as the paper code does,
    makes that test accuracy an optimistic estimate.
    """
    payload = read_checkpoint(path)
    model = build_model(payload["model_config"])
    kept = payload.get("best") if best else None
    model.load_state_dict(kept["state_dict"] if kept else payload["state_dict"])
    return model.eval()


def write_run(out_dir: Path, model: SNN, config: TrainConfig, epoch: int,
              optimizer: torch.optim.Optimizer, scheduler: Any,
              history: List[Dict[str, float]],
              best: Optional[Mapping[str, Any]] = None,
              dataset_record: Optional[Mapping[str, Any]] = None) -> None:
    """Write the run's checkpoint (resumable: optimiser and scheduler state included)
    and a human-readable ``metrics.json`` beside it. ``best``: the best epoch kept so
    far (``epoch``, ``test_acc``, ``state_dict``), for ``keep_best`` runs;
    ``dataset_record`` (what the run trains on, :mod:`rssnn_deploy.dataset_record`)
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

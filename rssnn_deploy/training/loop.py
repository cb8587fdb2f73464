"""The training loop: float epochs, then optional Loihi-exact fine-tuning.

Quantization-aware fine-tuning (``TrainConfig.qat_epochs``): after the float epochs the
same objective is trained for ``qat_epochs`` more on the model's Loihi-exact forward
(``rssnn_deploy.training.qat.LoihiExact``): the logits, the MPPD currents and the adversarial
examples are those of the integer network the weights export to, with straight-through
gradients to the float weights, so the fine-tuning closes the float-to-chip gap rather
than training past it.

Under ``torchrun`` the batches are split across processes (DistributedSampler + DDP)
and only rank 0 writes files.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from tqdm.auto import tqdm

from rssnn_deploy.data.datasets import Dataset, load_dataset, subset_train
from rssnn_deploy.data.record import describe_dataset, split_summary
from rssnn_deploy.data.validate import check_test_labels
from rssnn_deploy.models.zoo import (
    COMMON_DEFAULTS,
    SNN,
    build_model,
    normalize_config,
    predict_classes,
)
from rssnn_deploy.progress import progress_bar
from rssnn_deploy.training.checkpoints import (
    CHECKPOINT_NAME,
    CheckpointError,
    check_resumable_fields,
    load_checkpoint,
    read_checkpoint,
    write_run,
)
from rssnn_deploy.training.config import TrainConfig
from rssnn_deploy.training.distributed import Distributed, all_sum, start_distributed
from rssnn_deploy.training.objectives import LossTerms, robust_loss, sparse_gradient_probe
from rssnn_deploy.training.orthogonality import orthogonality_step
from rssnn_deploy.training.perturbations import Perturbation, make_perturbation
from rssnn_deploy.training.presets import PRESETS
from rssnn_deploy.training.qat import LoihiExact

__all__ = ["evaluate_accuracy", "train", "run_training", "train_digits_model"]


def evaluate_accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in [0, 1], in eval mode (the model's mode is restored after)."""
    if len(x) == 0:
        return 0.0
    return float((predict_classes(model, x, batch_size) == y.cpu()).float().mean())


def _seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Reseed the global RNG per (seed, epoch, rank): the noise an epoch draws does not
    depend on how the run got there, so a resumed run matches an uninterrupted one."""
    torch.manual_seed((seed * 1_000_003 + epoch * 7919 + rank * 104_729) % (2 ** 63))


def _make_optimizer(model: nn.Module, config: TrainConfig
                    ) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum,
            weight_decay=config.effective_weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                     weight_decay=config.effective_weight_decay)
    if config.schedule == "cosine":
        scheduler: torch.optim.lr_scheduler.LRScheduler = \
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=1.0)
    return optimizer, scheduler


#: fine-tuning settings, free to change on resume until fine-tuning has begun.
_QAT_SETTINGS = ("qat_lr", "qat_profile", "qat_gain_mode", "qat_input_mapping")


def _check_resumable(payload: Mapping[str, Any], model: SNN, config: TrainConfig,
                     path: Path) -> None:
    """A resumed run must continue the same experiment. The epoch counts may change, the
    float epochs only while the run is in its float phase; the fine-tuning settings may
    change until fine-tuning begins (so one float run can be fine-tuned several ways)."""
    if normalize_config(payload["model_config"]) != model.describe():   # keys added later
        raise CheckpointError(f"{path}: checkpoint was trained with a different model "
                              f"config; choose another output directory")
    saved = dict(payload.get("train_config", {}))
    if saved:   # fields added after the checkpoint was written hold their defaults
        saved = {**TrainConfig().to_dict(), **saved}
    float_epochs = saved.get("epochs", config.epochs)
    fine_tuning = int(payload["epoch"]) > float_epochs
    free = ("epochs", "qat_epochs") + (() if fine_tuning else _QAT_SETTINGS)
    differing = sorted(k for k, v in config.to_dict().items()
                       if k not in free and saved.get(k) != v)
    if differing:
        raise CheckpointError(f"{path}: cannot resume with a changed training config "
                              f"({', '.join(differing)}); only {', '.join(free)} may change")
    if fine_tuning and config.epochs != float_epochs:
        raise CheckpointError(f"{path}: the run has finished its {float_epochs} float "
                              f"epochs and begun Loihi-exact fine-tuning; epochs cannot "
                              f"change now (only qat_epochs)")


def _extend_schedule(optimizer: torch.optim.Optimizer, scheduler: Any, epochs: int) -> None:
    """Stretch a resumed cosine schedule to a new number of epochs.

    The learning rate jumps to the closed-form value of the longer schedule at the
    current epoch, from which the scheduler's recursive update continues correctly.
    """
    if not isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        return
    if scheduler.T_max == epochs:
        return
    scheduler.T_max = epochs
    progress = math.cos(math.pi * scheduler.last_epoch / epochs)
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = scheduler.eta_min + (base - scheduler.eta_min) * (1 + progress) / 2


class _Epoch:
    """Running sums of one epoch's losses, summed over processes at the end."""

    KEYS = ("loss", "ce_clean", "ce_pert", "mppd", "sr", "correct", "count")

    def __init__(self) -> None:
        self.sums = dict.fromkeys(self.KEYS, 0.0)

    def add(self, terms: LossTerms, y: Tensor) -> None:
        n = len(y)
        for key, value in (("loss", terms.total), ("ce_clean", terms.ce_clean),
                           ("ce_pert", terms.ce_pert), ("mppd", terms.mppd), ("sr", terms.sr)):
            self.sums[key] += float(value.detach()) * n
        self.sums["correct"] += float((terms.logits.argmax(1) == y).sum())
        self.sums["count"] += n

    def summary(self, ctx: Distributed) -> Dict[str, float]:
        totals = dict(zip(self.KEYS, all_sum([self.sums[k] for k in self.KEYS], ctx)))
        count = max(totals.pop("count"), 1.0)
        correct = totals.pop("correct")
        out = {f"train_{k}" if k == "loss" else k: v / count for k, v in totals.items()}
        out["train_acc"] = correct / count
        return out


def train(model: SNN, data: Union[Dataset, Sequence[Tensor]], config: TrainConfig,
          out_dir: Union[str, Path], resume: bool = False, progress: bool = True,
          device: Optional[Union[str, torch.device]] = None,
          dataset_record: Optional[Mapping[str, Any]] = None) -> List[Dict[str, float]]:
    """Train ``model`` in place with the RSSNN objective; return the per-epoch metrics.

    Writes ``out_dir/checkpoint.pt`` (atomically, after every epoch) and
    ``metrics.json``. ``resume=True`` continues from an existing checkpoint in
    ``out_dir`` (or starts fresh when there is none); without it an existing
    checkpoint is an error rather than silently overwritten. Under ``torchrun`` the
    batches are split across processes (DistributedSampler + DDP) and only rank 0
    writes files. Deterministic for a fixed ``config.seed`` and world size.
    ``dataset_record`` (:func:`rssnn_deploy.data.record.describe_dataset`) is stored
    in the checkpoint so later commands default to the same data.
    """
    x_train, y_train, x_test, y_test = data
    out_dir = Path(out_dir)
    ctx = start_distributed(device)
    try:
        return _train(model, (x_train, y_train, x_test, y_test), config, out_dir, resume,
                      progress, ctx, dataset_record)
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


class _Phase(NamedTuple):
    """What one phase of training forwards: the float model, or its Loihi-exact forward."""

    name: str                         #: "float" | "qat"
    module: nn.Module                 #: ``model`` or ``LoihiExact(model)``
    net: nn.Module                    #: ``module``, DDP-wrapped in a data-parallel run
    perturb: Optional[Perturbation]   #: x̃ crafted against ``module``
    decay: float                      #: λ of the MPPD term (as deployed, for "qat")


def _make_phase(name: str, model: SNN, config: TrainConfig, ctx: Distributed) -> _Phase:
    if name == "float":
        module: nn.Module = model
        decay = model.last_spiking_layer.decay
    else:
        module = LoihiExact(model, config.qat_profile, config.qat_options())
        decay = module.mppd_decay
    net = module
    if ctx.active:
        net = DistributedDataParallel(
            module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    return _Phase(name, module, net, make_perturbation(module, config), decay)


def _qat_lr(config: TrainConfig, qat_epoch: int) -> float:
    """Learning rate of fine-tuning epoch ``qat_epoch`` (0-based), in closed form so a
    resumed run sets it exactly: ``qat_lr`` (default lr/10), cosine to 0 over the
    fine-tuning epochs when the float schedule is cosine, constant otherwise."""
    base = config.qat_lr if config.qat_lr is not None else config.lr / 10
    if config.schedule != "cosine":
        return base
    return base * (1 + math.cos(math.pi * qat_epoch / config.qat_epochs)) / 2


def _train(model: SNN, data: Tuple[Tensor, Tensor, Tensor, Tensor], config: TrainConfig,
           out_dir: Path, resume: bool, progress: bool, ctx: Distributed,
           dataset_record: Optional[Mapping[str, Any]] = None) -> List[Dict[str, float]]:
    x_train, y_train, x_test, y_test = data
    model.to(ctx.device).train()
    optimizer, scheduler = _make_optimizer(model, config)
    start_epoch, history, best = _restore(out_dir / CHECKPOINT_NAME, resume, model, config,
                                          optimizer, scheduler)
    if start_epoch:
        _say(ctx, progress, f"resuming {out_dir / CHECKPOINT_NAME} after epoch {start_epoch}")
    dataset = TensorDataset(x_train, y_train)
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=True, seed=config.seed)
    loader = DataLoader(dataset, sampler=sampler,
                        batch_size=max(1, config.batch_size // ctx.world_size))
    phase: Optional[_Phase] = None

    for epoch in range(start_epoch, config.total_epochs):
        began = time.perf_counter()
        name = "float" if epoch < config.epochs else "qat"
        if phase is None or phase.name != name:
            phase = _make_phase(name, model, config, ctx)
        if name == "qat":
            for group in optimizer.param_groups:
                group["lr"] = _qat_lr(config, epoch - config.epochs)
        _seed_epoch(config.seed, epoch, ctx.rank)
        sampler.set_epoch(epoch)
        stats = _Epoch()
        limit = config.max_batches
        bar = progress_bar(loader, desc=f"epoch {epoch + 1}/{config.total_epochs}",
                           leave=False, progress=progress and ctx.is_main, dynamic_ncols=True,
                           total=len(loader) if limit is None else min(limit, len(loader)))
        for batch, (x, y) in enumerate(bar):
            x, y = x.to(ctx.device), y.to(ctx.device)
            terms = _step(phase.net, phase.module, x, y, phase.perturb, phase.decay, config,
                          optimizer)
            stats.add(terms, y)
            bar.set_postfix(loss=f"{float(terms.total.detach()):.3f}")
            if limit is not None and batch + 1 >= limit:
                break
        lr = optimizer.param_groups[0]["lr"]
        if name == "float":
            scheduler.step()
        metrics = {"epoch": epoch + 1, "phase": name, "lr": lr, **stats.summary(ctx)}
        if ctx.is_main:
            metrics["test_acc"] = evaluate_accuracy(phase.module, x_test, y_test,
                                                    config.eval_batch_size)
            if name == "qat":
                metrics["test_acc_float"] = evaluate_accuracy(model, x_test, y_test,
                                                              config.eval_batch_size)
            metrics["seconds"] = time.perf_counter() - began
            history.append(metrics)
            if config.keep_best and (best is None or metrics["test_acc"] > best["test_acc"]):
                best = {"epoch": epoch + 1, "test_acc": metrics["test_acc"],
                        "state_dict": {k: v.detach().cpu().clone()
                                       for k, v in model.state_dict().items()}}
            write_run(out_dir, model, config, epoch + 1, optimizer, scheduler, history, best,
                      dataset_record)
            _say(ctx, progress, _format_metrics(metrics))
        if ctx.active:
            dist.barrier()
    return history


def _restore(checkpoint: Path, resume: bool, model: SNN, config: TrainConfig,
             optimizer: torch.optim.Optimizer, scheduler: Any
             ) -> Tuple[int, List[Dict[str, float]], Optional[Dict[str, Any]]]:
    """Load an existing run's state for ``resume``; return (epochs done, metrics so far,
    the best epoch kept so far or ``None``)."""
    if not checkpoint.exists():
        return 0, [], None
    if not resume:
        raise CheckpointError(f"{checkpoint} exists: resume it (resume=True, --resume) "
                              f"or choose another output directory")
    payload = read_checkpoint(checkpoint)
    check_resumable_fields(checkpoint, payload)
    _check_resumable(payload, model, config, checkpoint)
    try:
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{checkpoint}: cannot resume: its model or optimiser state "
                              f"does not fit this run ({' '.join(str(err).split())[:160]})"
                              ) from None
    _extend_schedule(optimizer, scheduler, config.epochs)
    return int(payload["epoch"]), list(payload.get("metrics", [])), payload.get("best")


def _step(net: nn.Module, model: nn.Module, x: Tensor, y: Tensor,
          perturb: Optional[Perturbation], decay: float, config: TrainConfig,
          optimizer: torch.optim.Optimizer) -> LossTerms:
    """One optimisation step: perturb, probe, loss, update, optional retraction.

    ``model`` is the un-wrapped module ``net`` forwards (the SNN or its Loihi-exact
    forward); probes and attacks use it directly. The phases are labelled for
    ``torch.profiler`` (``benchmarks/bench_training.py`` reads the labels).
    """
    with record_function("attack"):
        x_pert = perturb(x, y) if perturb is not None else None
        probe = (sparse_gradient_probe(model, x, y, config.sr_h)
                 if config.sr_lambda > 0 else None)
    with record_function("forward"):
        terms = robust_loss(net, x, y, x_pert, decay, config.kappa, config.rho, probe,
                            config.sr_lambda, config.sr_h, config.detach_clean,
                            config.mppd_input)
    optimizer.zero_grad(set_to_none=True)
    with record_function("backward"):
        terms.total.backward()
    with record_function("update"):
        optimizer.step()
    beta = config.effective_ortho_beta
    if beta > 0:
        with record_function("orthogonality"):
            orthogonality_step(model, beta, rows=config.ortho_rows)
    return terms


def _format_metrics(m: Mapping[str, Any]) -> str:
    test = f"test {100 * m['test_acc']:.2f}%"
    if m.get("phase") == "qat":
        test = (f"test (Loihi-exact) {100 * m['test_acc']:.2f}% "
                f"(float {100 * m['test_acc_float']:.2f}%)")
    return (f"epoch {m['epoch']} [{m.get('phase', 'float')}]: loss {m['train_loss']:.4f} "
            f"(ce {m['ce_clean']:.4f}, ce~ {m['ce_pert']:.4f}, mppd {m['mppd']:.4f}, "
            f"sr {m['sr']:.4f}) train {100 * m['train_acc']:.2f}% {test} "
            f"lr {m['lr']:.2e} {m['seconds']:.1f}s")


def _say(ctx: Distributed, progress: bool, message: str) -> None:
    """One line per finished unit (an epoch) on stdout, with or without progress bars:
    a run whose output goes to a log must still say how far it got."""
    if not ctx.is_main:
        return
    if progress:
        tqdm.write(message)      # above the bar, which is redrawn below it
    else:
        print(message, flush=True)


def run_training(dataset: Union[str, Path, Dataset], model_config: Mapping[str, Any],
                 train_config: TrainConfig, out_dir: Union[str, Path], resume: bool = False,
                 progress: bool = True, subset: Optional[int] = None,
                 test_fraction: float = 0.2, split_seed: int = 0) -> Path:
    """Load data, build the model (seeded), train, and return the checkpoint path.

    ``in_shape`` and ``num_classes`` default to the dataset's; given explicitly they
    must match it. A dataset given by name or path is recorded in the checkpoint
    (source, format, split rule and seed, ``subset``, sizes, input shape) and its split
    is printed; ``test_fraction`` and ``split_seed`` split sources without a test set.
    """
    record = None
    if isinstance(dataset, Dataset):
        data = dataset if subset is None else subset_train(dataset, subset, split_seed)
        check_test_labels(data, "the data set")
    else:
        steps = int(model_config.get("steps") or COMMON_DEFAULTS["steps"])  # event bins
        full = load_dataset(dataset, test_fraction=test_fraction, seed=split_seed,
                            steps=steps)
        data = full if subset is None else subset_train(full, subset, split_seed)
        check_test_labels(data, dataset if subset is None else f"{dataset} (--subset {subset})")
        record = describe_dataset(dataset, data, test_fraction=test_fraction,
                                  seed=split_seed, subset=subset,
                                  full_train=len(full.y_train) if subset else None)
        if int(os.environ.get("RANK", "0")) == 0:
            print(split_summary(record), flush=True)
        if record["format"] == "events":       # spike trains in: no input neuron
            model_config = {**model_config, "input_encoding": "events", "steps": steps}
    model_config = _fit_to_data(model_config, data)
    torch.manual_seed(train_config.seed)
    model = build_model(model_config)
    train(model, data, train_config, out_dir, resume=resume, progress=progress,
          dataset_record=record)
    return Path(out_dir) / CHECKPOINT_NAME


def _fit_to_data(model_config: Mapping[str, Any], data: Dataset) -> Dict[str, Any]:
    """Fill ``in_shape`` / ``num_classes`` from the data, or check the given ones fit."""
    config = dict(model_config)
    # event data: samples are spike trains (T, *in_shape) fed step by step
    sample = data.in_shape[1:] if config.get("input_encoding") == "events" else data.in_shape
    config.setdefault("in_shape", list(sample))
    config.setdefault("num_classes", data.num_classes)
    if tuple(config["in_shape"]) != tuple(sample):
        raise ValueError(f"model in_shape {tuple(config['in_shape'])} does not match the "
                         f"dataset's samples {data.in_shape}")
    if config["num_classes"] < data.num_classes:
        raise ValueError(f"model num_classes={config['num_classes']} but the dataset has "
                         f"labels up to {data.num_classes - 1}")
    return config


def train_digits_model(data: Dataset, out_dir: Union[str, Path],
                       hidden: Sequence[int] = (128,), epochs: int = 15, rho: float = 1.0,
                       perturbation: str = "gaussian", seed: int = 0, progress: bool = True,
                       resume: bool = True, **overrides: Any) -> SNN:
    """Train the demo model, a DLIF MLP with the ``digits`` preset, and return it.

    ``resume=True`` makes a rerun cheap and safe: a finished checkpoint with the same
    settings in ``out_dir`` is reused, an interrupted one continued. ``overrides`` are
    further :class:`TrainConfig` fields.
    """
    config = dataclasses.replace(PRESETS["digits"], epochs=epochs, rho=rho,
                                 perturbation=perturbation, seed=seed, **overrides)
    path = run_training(data, {"arch": "mlp", "hidden": list(hidden)}, config, out_dir,
                        resume=resume, progress=progress)
    return load_checkpoint(path)

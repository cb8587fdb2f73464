r"""Robust training of spiking networks: the RSSNN recipe, checkpoints, data parallelism.

The objective (RSSNN paper, arXiv 2405.20694) for a clean batch ``x`` and a perturbed
copy ``x̃``:

.. math::
    L = \kappa\,\mathrm{CE}(f(x), y) + (1-\kappa)\,\mathrm{CE}(f(\tilde x), y)
        + \rho\,\mathrm{MPPD} \;[+\ \lambda_{sr} R]

    \varepsilon[t] = \lambda\,\varepsilon[t-1] + \bigl(I_{clean}[t] - I_{pert}[t]\bigr),
    \qquad \mathrm{MPPD} = \operatorname{mean}_{t,n,i}\ \varepsilon[t]^2

where :math:`I` is the current the *last spiking layer* integrates (``a[t]·W·s[t]``
for DLIF). The MPPD term penalises how far the perturbation pushes that layer's
membrane potential. As in the paper's code its clean branch is detached (only the
perturbed path is pulled towards the clean one) while the clean CE term is trained
normally; ``TrainConfig.detach_clean=False`` trains both branches instead, which is
what keeps networks without batch-norm stable (see :func:`robust_loss`).

``x̃`` is Gaussian noise, a one-step R+FGSM example or PGD (adversarial examples are
made with the model in eval mode, by torchattacks). Optional extras: the Parseval-style
orthogonality step after each update, and the sparse-gradient regulariser ``R`` of the
neighbour paper (finite difference of the true-vs-runner-up probability).

Quantization-aware fine-tuning (``TrainConfig.qat_epochs``): after the float epochs the
same objective is trained for ``qat_epochs`` more on the model's Loihi-exact forward
(``rssnn_deploy.qat.LoihiExact``): the logits, the MPPD currents and the adversarial
examples are those of the integer network the weights export to, with straight-through
gradients to the float weights, so the fine-tuning closes the float-to-chip gap rather
than training past it.

Clean and perturbed inputs go through the network as *one* concatenated batch: the
networks have no batch-coupled layer (no batch-norm), so this is exactly two forward
passes, costs one, and keeps DistributedDataParallel at one forward per backward.

Run as ``python -m rssnn_deploy.train ...`` or, data-parallel,
``torchrun --nproc_per_node N -m rssnn_deploy.train ...``; only rank 0 writes files.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import (Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple,
                    Union)

import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchattacks
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from torchattacks.attack import Attack
from tqdm.auto import tqdm

from rssnn_deploy.data import Dataset, load_dataset
from rssnn_deploy.fileio import atomic_path, atomic_write_text
from rssnn_deploy.models import (ARCHITECTURES, SNN, VGG_VARIANTS, build_model,
                                 predict_classes)
from rssnn_deploy.neurons import SURROGATES
from rssnn_deploy.qat import LoihiExact
from rssnn_deploy.quantize import INPUT_MAPPINGS, QuantizeOptions
from rssnn_deploy.errors import UserError

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointError",
    "PERTURBATIONS",
    "PRESETS",
    "TrainConfig",
    "LossTerms",
    "RandomStepFGSM",
    "mppd",
    "two_class_probability",
    "sparse_gradient_probe",
    "robust_loss",
    "make_perturbation",
    "orthogonality_step",
    "evaluate_accuracy",
    "train",
    "save_checkpoint",
    "read_checkpoint",
    "load_checkpoint",
    "run_training",
    "add_train_arguments",
    "configs_from_args",
    "run_training_from_args",
    "train_digits_model",
    "train_main",
]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.json"
PERTURBATIONS = ("gaussian", "rfgsm", "pgd", "none")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")
GAIN_MODES = ("fold", "exact")


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be used as asked: not ours, or not resumable with this config."""


# ------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class TrainConfig:
    """Every coefficient of a training run. Defaults are the paper's CIFAR-10 setting."""

    epochs: int = 100
    batch_size: int = 64            #: global batch; each of W processes takes batch/W
    optimizer: str = "sgd"          #: "sgd" | "adam"
    lr: float = 0.1
    momentum: float = 0.9           #: SGD only
    weight_decay: float = 5e-4
    schedule: str = "cosine"        #: "cosine" (per epoch, to 0) | "constant"
    kappa: float = 0.5              #: weight of the clean CE term
    rho: float = 1.0                #: weight of the MPPD term
    detach_clean: bool = True       #: MPPD trains the perturbed branch only (paper code)
    perturbation: str = "gaussian"  #: x̃: "gaussian" | "rfgsm" | "pgd" | "none"
    sigma: float = 8 / 255          #: Gaussian noise std
    eps: float = 4 / 255            #: R+FGSM signed step; PGD L∞ radius
    rfgsm_noise: float = 0.001      #: R+FGSM random start α (α·sign(N(0, I)))
    pgd_alpha: float = 1 / 255
    pgd_steps: int = 7
    ortho_beta: float = 0.0         #: > 0 enables W ← (1+β)W − βWWᵀW (paper: 0.001)
    sr_lambda: float = 0.0          #: > 0 enables the sparse-gradient regulariser
    sr_h: float = 0.01              #: its finite-difference step
    seed: int = 0
    eval_batch_size: int = 500
    qat_epochs: int = 0             #: Loihi-exact fine-tuning epochs after the float ones
    qat_lr: Optional[float] = None  #: their learning rate (None: lr/10), same schedule shape
    qat_profile: str = "loihi2"     #: the hardware profile the model will be exported for
    #: the DLIF gain mode ("fold" | "exact") and input mapping ("membrane" | "threshold")
    #: of that export; defaults follow the quantizer's
    qat_gain_mode: str = QuantizeOptions.gain_mode
    qat_input_mapping: str = QuantizeOptions.input_mapping

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.perturbation in PERTURBATIONS, f"perturbation must be one of {PERTURBATIONS}"),
            (self.lr > 0, "lr must be > 0"),
            (0.0 <= self.kappa <= 1.0, "kappa must lie in [0, 1]"),
            (self.rho >= 0 and self.sr_lambda >= 0 and self.ortho_beta >= 0,
             "rho, sr_lambda and ortho_beta must be >= 0"),
            (self.sr_h > 0 and self.pgd_steps >= 1 and self.eval_batch_size >= 1,
             "sr_h, pgd_steps and eval_batch_size must be positive"),
            (self.qat_epochs >= 0, "qat_epochs must be >= 0"),
            (self.qat_lr is None or self.qat_lr > 0, "qat_lr must be > 0"),
            (self.qat_gain_mode in GAIN_MODES, f"qat_gain_mode must be one of {GAIN_MODES}"),
            (self.qat_input_mapping in INPUT_MAPPINGS,
             f"qat_input_mapping must be one of {INPUT_MAPPINGS}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def total_epochs(self) -> int:
        """Float epochs plus Loihi-exact fine-tuning epochs."""
        return self.epochs + self.qat_epochs

    def qat_options(self) -> QuantizeOptions:
        """The quantizer options of the export the fine-tuning trains for."""
        return QuantizeOptions(gain_mode=self.qat_gain_mode,
                               input_mapping=self.qat_input_mapping)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build from a dict, rejecting unknown keys (they are typos, not options)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig key(s): {', '.join(unknown)}")
        return cls(**values)


#: named starting points. "paper": the RSSNN CIFAR-10 setting, verbatim. "digits": for
#: the bundled 8×8 digits on a CPU: Adam (a few seconds to > 90 %), and the MPPD term
#: on both branches, because the paper's detached clean branch diverges in networks
#: without batch-norm (see ``robust_loss``); κ, ρ and the perturbation stay the paper's.
#: "paper-stable": the paper's setting with MPPD on both branches, the default for user
#: data, since no network the project can deploy has batch-norm.
PRESETS: Dict[str, TrainConfig] = {
    "paper": TrainConfig(),
    "paper-stable": TrainConfig(detach_clean=False),
    "digits": TrainConfig(epochs=15, optimizer="adam", lr=5e-3, weight_decay=0.0,
                          detach_clean=False),
}


# ---------------------------------------------------------------------- loss components


def mppd(i_clean: Tensor, i_pert: Tensor, decay: float) -> Tensor:
    r"""Membrane-potential perturbation dynamics, mean square over time, batch, neurons.

    .. math:: \varepsilon[t] = \lambda\,\varepsilon[t-1] + (I_{clean}[t] - I_{pert}[t]),
              \quad \varepsilon[-1] = 0

    Inputs are currents shaped ``(T, N, ...)``. ε is the membrane-potential gap the
    perturbation would open between two neurons that never spike; penalising it bounds
    the layer's sensitivity. Callers detach ``i_clean`` themselves when they want only
    the perturbed branch trained (the recipe does).
    """
    if i_clean.shape != i_pert.shape:
        raise ValueError(f"current shapes differ: {tuple(i_clean.shape)} vs "
                         f"{tuple(i_pert.shape)}")
    gap = torch.zeros_like(i_clean[0])
    squares = []
    for t in range(i_clean.shape[0]):
        gap = decay * gap + (i_clean[t] - i_pert[t])
        squares.append(gap.pow(2).mean())
    return torch.stack(squares).mean()


def runner_up_class(logits: Tensor, labels: Tensor) -> Tensor:
    """Index of the largest logit other than the true class."""
    masked = logits.detach().clone()
    masked.scatter_(1, labels[:, None], float("-inf"))
    return masked.argmax(dim=1)


def two_class_probability(logits: Tensor, labels: Tensor, runner_up: Tensor) -> Tensor:
    """Softmax probability of the true class against one rival class: σ(z_y − z_r)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    rival = logits.gather(1, runner_up[:, None]).squeeze(1)
    return torch.sigmoid(true - rival)


def sparse_gradient_probe(model: nn.Module, x: Tensor, y: Tensor, h: float
                          ) -> Tuple[Tensor, Tensor]:
    """The probe point ``x + h·sign(∇ₓp)`` and the rival classes it was taken for.

    ``p`` is :func:`two_class_probability` with the rival fixed at the runner-up of
    ``f(x)``, so both ends of the finite difference measure the same function. Only
    the input gradient is computed; parameter ``.grad`` stays untouched.
    """
    x_in = x.detach().clone().requires_grad_(True)
    logits = model(x_in)
    rival = runner_up_class(logits, y)
    (grad,) = torch.autograd.grad(two_class_probability(logits, y, rival).sum(), x_in)
    return (x + h * grad.sign()).detach(), rival


class LossTerms(NamedTuple):
    """The objective and its parts, all still in the autograd graph (log with ``float``)."""

    total: Tensor
    ce_clean: Tensor
    ce_pert: Tensor
    mppd: Tensor
    sr: Tensor
    logits: Tensor  #: clean logits, for the training accuracy


def robust_loss(model: nn.Module, x: Tensor, y: Tensor, x_pert: Optional[Tensor],
                decay: float, kappa: float = 0.5, rho: float = 1.0,
                probe: Optional[Tuple[Tensor, Tensor]] = None, sr_lambda: float = 0.0,
                sr_h: float = 0.01, detach_clean: bool = True) -> LossTerms:
    """The RSSNN objective for one batch, in a single forward pass of ``[x; x̃; probe]``.

    Without ``x_pert`` it is plain cross-entropy. ``probe`` is the output of
    :func:`sparse_gradient_probe`; with it the regulariser
    ``R = mean(((p(x + h·sign∇p) − p(x)) / h)²)`` is added with weight ``sr_lambda``.

    ``detach_clean=True`` is the paper code: the clean currents are a fixed target.
    They come from the *same* weights, so every step also moves the target. For one
    weight ``w`` and inputs ``s_c``, ``s_p`` the detached step multiplies ``w`` by
    ``1 + 2η(s_c − s_p)s_p``, which exceeds 1 whenever the clean input drives harder;
    the full gradient multiplies it by ``1 − 2η(s_c − s_p)² ≤ 1``. With batch-norm the
    scale cannot run away; without it (every Loihi-mappable network) it does: on the
    digits MLP the MPPD climbs from 0.4 to ~900 in 15 epochs and accuracy falls to
    chance, with Adam or SGD, Gaussian noise or R+FGSM. ``detach_clean=False``
    differentiates both branches and stays stable (MPPD 0.10 → 0.07, 95.6 % test).
    """
    parts = [x] + ([x_pert] if x_pert is not None else []) + ([probe[0]] if probe else [])
    out = model(torch.cat(parts), return_trace=True)
    n = len(x)
    logits = out.logits.split(n)
    zero = out.logits.new_zeros(())
    ce_clean = F.cross_entropy(logits[0], y)
    ce_pert, gap, sr, total = zero, zero, zero, ce_clean
    if x_pert is not None:
        ce_pert = F.cross_entropy(logits[1], y)
        clean = out.current[:, :n]
        gap = mppd(clean.detach() if detach_clean else clean, out.current[:, n:2 * n], decay)
        total = kappa * ce_clean + (1.0 - kappa) * ce_pert + rho * gap
    if probe is not None:
        rival = probe[1]
        slope = (two_class_probability(logits[-1], y, rival)
                 - two_class_probability(logits[0], y, rival)) / sr_h
        sr = slope.pow(2).mean()
        total = total + sr_lambda * sr
    return LossTerms(total, ce_clean, ce_pert, gap, sr, logits[0])


# ------------------------------------------------------------------------ perturbations


class RandomStepFGSM(Attack):
    r"""One-step R+FGSM as the RSSNN recipe trains with it.

    .. math::
        x' = \mathrm{clip}_{[0,1]}\bigl(x + \alpha\,\mathrm{sign}(\mathcal N(0, I))\bigr),
        \qquad
        \tilde x = \mathrm{clip}_{[0,1]}\bigl(x' + \epsilon\,
                   \mathrm{sign}(\nabla_{x'} \mathrm{CE}(f(x'), y))\bigr)

    with α = 0.001 and ε = 4/255. ``torchattacks.RFGSM`` uses one ``alpha`` for both
    the random start and the step, so it cannot express this; the base class still
    handles devices and eval mode during the attack.
    """

    def __init__(self, model: nn.Module, eps: float = 4 / 255, alpha: float = 0.001):
        super().__init__("RandomStepFGSM", model)
        self.eps = eps
        self.alpha = alpha
        self.supported_mode = ["default", "targeted"]

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:  # type: ignore[override]
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        start = images + self.alpha * torch.randn_like(images).sign()
        start = torch.clamp(start, 0.0, 1.0).detach().requires_grad_(True)
        if self.targeted:
            cost = -F.cross_entropy(self.get_logits(start),
                                    self.get_target_label(images, labels))
        else:
            cost = F.cross_entropy(self.get_logits(start), labels)
        (grad,) = torch.autograd.grad(cost, start)
        return torch.clamp(start.detach() + self.eps * grad.sign(), 0.0, 1.0).detach()


Perturbation = Callable[[Tensor, Tensor], Tensor]


def make_perturbation(model: nn.Module, config: TrainConfig) -> Optional[Perturbation]:
    """``x̃ = perturb(x, y)`` for ``config.perturbation``; ``None`` for ``"none"``.

    ``model`` must be the plain module (not a DDP wrapper): attacks only need input
    gradients, which no other process has to agree on.
    """
    kind = config.perturbation
    if kind == "none":
        return None
    if kind == "gaussian":
        sigma = config.sigma
        return lambda x, y: torch.clamp(x + sigma * torch.randn_like(x), 0.0, 1.0)
    if kind == "rfgsm":
        return RandomStepFGSM(model, eps=config.eps, alpha=config.rfgsm_noise)
    if kind == "pgd":
        return torchattacks.PGD(model, eps=config.eps, alpha=config.pgd_alpha,
                                steps=config.pgd_steps, random_start=True)
    raise ValueError(f"unknown perturbation {kind!r}; choose one of {PERTURBATIONS}")


@torch.no_grad()
def orthogonality_step(model: nn.Module, beta: float) -> None:
    r"""Parseval retraction towards orthonormal rows, for every synapse:

    .. math:: W \leftarrow (1 + \beta)\,W - \beta\, W W^\top W

    (convolutions on their ``(out, in·kH·kW)`` matrix). Keeping ``‖W‖₂ ≈ 1`` keeps the
    per-layer L2 gain bound ``sqrt(1/(1−λ))·‖W‖₂`` small.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            w = module.weight.view(module.weight.shape[0], -1)
            w.copy_((1.0 + beta) * w - beta * (w @ w.t() @ w))


# ---------------------------------------------------------------------------- evaluation


def evaluate_accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in [0, 1], in eval mode (the model's mode is restored after)."""
    if len(x) == 0:
        return 0.0
    return float((predict_classes(model, x, batch_size) == y.cpu()).float().mean())


# --------------------------------------------------------------------------- checkpoints


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


def load_checkpoint(path: Union[str, Path]) -> SNN:
    """Rebuild the trained model (eval mode, CPU) from its checkpoint alone."""
    payload = read_checkpoint(path)
    model = build_model(payload["model_config"])
    model.load_state_dict(payload["state_dict"])
    return model.eval()


# ------------------------------------------------------------------------- distribution


@dataclass
class _Distributed:
    """Where this process sits in a (possibly single-process) data-parallel run."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def _start_distributed(device: Optional[Union[str, torch.device]]) -> _Distributed:
    """Join the process group torchrun describes in the environment, if any.

    gloo on CPU, nccl on GPU (one device per local rank). A single process without
    torchrun runs unchanged, as a group of one.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:  # one GPU per local process
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns_group = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        owns_group = True
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    return _Distributed(rank, world_size, device, owns_group)


def _all_sum(values: List[float], ctx: _Distributed) -> List[float]:
    if not ctx.active:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


# ------------------------------------------------------------------------------ training


def _seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Reseed the global RNG per (seed, epoch, rank): the noise an epoch draws does not
    depend on how the run got there, so a resumed run matches an uninterrupted one."""
    torch.manual_seed((seed * 1_000_003 + epoch * 7919 + rank * 104_729) % (2 ** 63))


def _make_optimizer(model: nn.Module, config: TrainConfig
                    ) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum,
            weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                     weight_decay=config.weight_decay)
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
    if payload["model_config"] != model.describe():
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

    def summary(self, ctx: _Distributed) -> Dict[str, float]:
        totals = dict(zip(self.KEYS, _all_sum([self.sums[k] for k in self.KEYS], ctx)))
        count = max(totals.pop("count"), 1.0)
        correct = totals.pop("correct")
        out = {f"train_{k}" if k == "loss" else k: v / count for k, v in totals.items()}
        out["train_acc"] = correct / count
        return out


def train(model: SNN, data: Union[Dataset, Sequence[Tensor]], config: TrainConfig,
          out_dir: Union[str, Path], resume: bool = False, progress: bool = True,
          device: Optional[Union[str, torch.device]] = None) -> List[Dict[str, float]]:
    """Train ``model`` in place with the RSSNN objective; return the per-epoch metrics.

    Writes ``out_dir/checkpoint.pt`` (atomically, after every epoch) and
    ``metrics.json``. ``resume=True`` continues from an existing checkpoint in
    ``out_dir`` (or starts fresh when there is none); without it an existing
    checkpoint is an error rather than silently overwritten. Under ``torchrun`` the
    batches are split across processes (DistributedSampler + DDP) and only rank 0
    writes files. Deterministic for a fixed ``config.seed`` and world size.
    """
    x_train, y_train, x_test, y_test = data
    out_dir = Path(out_dir)
    ctx = _start_distributed(device)
    try:
        return _train(model, (x_train, y_train, x_test, y_test), config, out_dir, resume,
                      progress, ctx)
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


def _make_phase(name: str, model: SNN, config: TrainConfig, ctx: _Distributed) -> _Phase:
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
           out_dir: Path, resume: bool, progress: bool, ctx: _Distributed
           ) -> List[Dict[str, float]]:
    x_train, y_train, x_test, y_test = data
    model.to(ctx.device).train()
    optimizer, scheduler = _make_optimizer(model, config)
    start_epoch, history = _restore(out_dir / CHECKPOINT_NAME, resume, model, config,
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
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.total_epochs}", leave=False,
                   disable=not (progress and ctx.is_main), dynamic_ncols=True)
        for x, y in bar:
            x, y = x.to(ctx.device), y.to(ctx.device)
            terms = _step(phase.net, phase.module, x, y, phase.perturb, phase.decay, config,
                          optimizer)
            stats.add(terms, y)
            bar.set_postfix(loss=f"{float(terms.total.detach()):.3f}")
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
            _write_run(out_dir, model, config, epoch + 1, optimizer, scheduler, history)
            _say(ctx, progress, _format_metrics(metrics))
        if ctx.active:
            dist.barrier()
    return history


def _restore(checkpoint: Path, resume: bool, model: SNN, config: TrainConfig,
             optimizer: torch.optim.Optimizer, scheduler: Any
             ) -> Tuple[int, List[Dict[str, float]]]:
    """Load an existing run's state for ``resume``; return (epochs done, metrics so far)."""
    if not checkpoint.exists():
        return 0, []
    if not resume:
        raise CheckpointError(f"{checkpoint} exists: resume it (resume=True, --resume) "
                              f"or choose another output directory")
    payload = read_checkpoint(checkpoint)
    _check_resumable(payload, model, config, checkpoint)
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    _extend_schedule(optimizer, scheduler, config.epochs)
    return int(payload["epoch"]), list(payload.get("metrics", []))


def _step(net: nn.Module, model: nn.Module, x: Tensor, y: Tensor,
          perturb: Optional[Perturbation], decay: float, config: TrainConfig,
          optimizer: torch.optim.Optimizer) -> LossTerms:
    """One optimisation step: perturb, probe, loss, update, optional retraction.

    ``model`` is the un-wrapped module ``net`` forwards (the SNN or its Loihi-exact
    forward); probes and attacks use it directly.
    """
    x_pert = perturb(x, y) if perturb is not None else None
    probe = (sparse_gradient_probe(model, x, y, config.sr_h)
             if config.sr_lambda > 0 else None)
    terms = robust_loss(net, x, y, x_pert, decay, config.kappa, config.rho, probe,
                        config.sr_lambda, config.sr_h, config.detach_clean)
    optimizer.zero_grad(set_to_none=True)
    terms.total.backward()
    optimizer.step()
    if config.ortho_beta > 0:
        orthogonality_step(model, config.ortho_beta)
    return terms


def _write_run(out_dir: Path, model: SNN, config: TrainConfig, epoch: int,
               optimizer: torch.optim.Optimizer, scheduler: Any,
               history: List[Dict[str, float]]) -> None:
    payload = {
        "model_config": model.describe(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_config": config.to_dict(),
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "metrics": history,
    }
    save_checkpoint(out_dir / CHECKPOINT_NAME, payload)
    text = json.dumps({"model_config": payload["model_config"],
                       "train_config": payload["train_config"], "metrics": history}, indent=2)
    atomic_write_text(out_dir / METRICS_NAME, text)


def _format_metrics(m: Mapping[str, Any]) -> str:
    test = f"test {100 * m['test_acc']:.2f}%"
    if m.get("phase") == "qat":
        test = (f"test (Loihi-exact) {100 * m['test_acc']:.2f}% "
                f"(float {100 * m['test_acc_float']:.2f}%)")
    return (f"epoch {m['epoch']} [{m.get('phase', 'float')}]: loss {m['train_loss']:.4f} "
            f"(ce {m['ce_clean']:.4f}, ce~ {m['ce_pert']:.4f}, mppd {m['mppd']:.4f}, "
            f"sr {m['sr']:.4f}) train {100 * m['train_acc']:.2f}% {test} "
            f"lr {m['lr']:.2e} {m['seconds']:.1f}s")


def _say(ctx: _Distributed, progress: bool, message: str) -> None:
    if ctx.is_main and progress:
        tqdm.write(message)


# --------------------------------------------------------------------- entry points


def run_training(dataset: Union[str, Path, Dataset], model_config: Mapping[str, Any],
                 train_config: TrainConfig, out_dir: Union[str, Path], resume: bool = False,
                 progress: bool = True) -> Path:
    """Load data, build the model (seeded), train, and return the checkpoint path.

    ``in_shape`` and ``num_classes`` default to the dataset's; given explicitly they
    must match it.
    """
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    model_config = _fit_to_data(model_config, data)
    torch.manual_seed(train_config.seed)
    model = build_model(model_config)
    train(model, data, train_config, out_dir, resume=resume, progress=progress)
    return Path(out_dir) / CHECKPOINT_NAME


def _fit_to_data(model_config: Mapping[str, Any], data: Dataset) -> Dict[str, Any]:
    """Fill ``in_shape`` / ``num_classes`` from the data, or check the given ones fit."""
    config = dict(model_config)
    config.setdefault("in_shape", list(data.in_shape))
    config.setdefault("num_classes", data.num_classes)
    if tuple(config["in_shape"]) != data.in_shape:
        raise ValueError(f"model in_shape {tuple(config['in_shape'])} does not match the "
                         f"dataset's samples {data.in_shape}")
    if config["num_classes"] < data.num_classes:
        raise ValueError(f"model num_classes={config['num_classes']} but the dataset has "
                         f"labels up to {data.num_classes - 1}")
    return config


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register every training option on ``parser`` (defaults: ``None`` = preset/model
    default, so a preset only changes what the user did not set)."""
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default="digits",
                   help="'digits' (bundled) or a path: MNIST IDX dir, CIFAR-10 batches dir, .npz")
    g.add_argument("--preset", choices=["auto", *PRESETS], default="auto",
                   help="training defaults; 'auto' = 'digits' for the digits data, else "
                        "'paper-stable' (the paper's setting with MPPD on both branches; "
                        "'paper' detaches the clean branch as the paper's code does, which "
                        "diverges without batch-norm)")
    g = parser.add_argument_group("model")
    g.add_argument("--arch", choices=list(ARCHITECTURES), default=None)
    g.add_argument("--hidden", type=int, nargs="*", default=None, help="dense hidden sizes")
    g.add_argument("--channels", type=int, nargs="+", default=None, help="convnet channels")
    g.add_argument("--strides", type=int, nargs="+", default=None, help="convnet strides")
    g.add_argument("--kernel-size", type=int, default=None)
    g.add_argument("--variant", choices=list(VGG_VARIANTS), default=None)
    g.add_argument("--width", type=float, default=None, help="vgg channel multiplier")
    g.add_argument("--steps", type=int, default=None, help="time steps T (8)")
    g.add_argument("--decay", type=float, default=None, help="membrane decay λ (0.99)")
    g.add_argument("--threshold", type=float, default=None, help="Vth (1.0)")
    g.add_argument("--neuron", choices=["dlif", "lif"], default=None)
    g.add_argument("--surrogate", choices=list(SURROGATES), default=None)
    g.add_argument("--surrogate-scale", type=float, default=None)
    g.add_argument("--bptr", action="store_true", default=None,
                   help="no gradient through time")
    g.add_argument("--input-gain", type=float, default=None)
    g = parser.add_argument_group("objective")
    g.add_argument("--kappa", type=float, default=None, help="clean CE weight (0.5)")
    g.add_argument("--rho", type=float, default=None, help="MPPD weight (1.0)")
    g.add_argument("--detach-clean", action=argparse.BooleanOptionalAction, default=None,
                   help="MPPD: detach the clean branch (paper; unstable without batch-norm)")
    g.add_argument("--perturbation", choices=list(PERTURBATIONS), default=None)
    g.add_argument("--sigma", type=float, default=None, help="Gaussian std (8/255)")
    g.add_argument("--eps", type=float, default=None, help="R+FGSM step / PGD radius (4/255)")
    g.add_argument("--rfgsm-noise", type=float, default=None, help="R+FGSM start (0.001)")
    g.add_argument("--pgd-alpha", type=float, default=None)
    g.add_argument("--pgd-steps", type=int, default=None)
    g.add_argument("--ortho-beta", type=float, default=None, help="orthogonality β (off)")
    g.add_argument("--sr-lambda", type=float, default=None, help="sparse-gradient weight (off)")
    g.add_argument("--sr-h", type=float, default=None)
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--lr", type=float, default=None)
    g.add_argument("--optimizer", choices=list(OPTIMIZERS), default=None)
    g.add_argument("--momentum", type=float, default=None)
    g.add_argument("--weight-decay", type=float, default=None)
    g.add_argument("--schedule", choices=list(SCHEDULES), default=None)
    g.add_argument("--seed", type=int, default=None)
    g = parser.add_argument_group("quantization-aware fine-tuning")
    g.add_argument("--qat-epochs", type=int, default=None,
                   help="epochs of fine-tuning on the Loihi-exact forward after the float "
                        "epochs (0)")
    g.add_argument("--qat-lr", type=float, default=None, help="their learning rate (lr/10)")
    g.add_argument("--qat-profile", default=None,
                   help="hardware profile the model will be exported for (loihi2)")
    g.add_argument("--qat-gain-mode", choices=list(GAIN_MODES), default=None,
                   help="DLIF gain mode of that export (fold)")
    g.add_argument("--qat-input-mapping", choices=list(INPUT_MAPPINGS), default=None,
                   help="input mapping of that export (membrane)")
    g = parser.add_argument_group("output")
    g.add_argument("--out", default="runs/train", help="run directory (checkpoint.pt)")
    g.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bars or logs")
    return parser


_MODEL_OPTIONS = ("arch", "hidden", "channels", "strides", "kernel_size", "variant", "width",
                  "steps", "decay", "threshold", "neuron", "surrogate", "surrogate_scale",
                  "bptr", "input_gain")


def configs_from_args(args: argparse.Namespace) -> Tuple[Dict[str, Any], TrainConfig]:
    """The model config dict and TrainConfig the parsed options describe."""
    model_config = {k: getattr(args, k) for k in _MODEL_OPTIONS if getattr(args, k) is not None}
    preset = args.preset
    if preset == "auto":
        preset = "digits" if args.dataset == "digits" else "paper-stable"
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if getattr(args, f.name, None) is not None}
    return model_config, dataclasses.replace(PRESETS[preset], **overrides)


def run_training_from_args(args: argparse.Namespace) -> Path:
    """Run the training the options of :func:`add_train_arguments` describe."""
    model_config, train_config = configs_from_args(args)
    return run_training(args.dataset, model_config, train_config, args.out,
                        resume=args.resume, progress=not args.no_progress)


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


def train_main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m rssnn_deploy.train [options]`` (also what ``torchrun`` launches)."""
    parser = add_train_arguments(argparse.ArgumentParser(
        prog="python -m rssnn_deploy.train", description=__doc__.split("\n")[0]))
    args = parser.parse_args(argv)
    path = run_training_from_args(args)
    if int(os.environ.get("RANK", "0")) == 0 and not args.no_progress:
        print(f"checkpoint: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(train_main())

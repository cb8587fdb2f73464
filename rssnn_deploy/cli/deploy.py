"""``train``, ``export`` and ``demo``: the pipeline's first stages from the command line."""
from __future__ import annotations

import argparse
from pathlib import Path

from rssnn_deploy.cli import types as ct
from rssnn_deploy.cli.common import (
    AddCommand,
)
from rssnn_deploy.fileio import check_output

__all__ = ['register', 'DEMO_EPOCHS']

#: epochs of ``demo``'s training (digits, about a minute on two cores)
DEMO_EPOCHS = 30

def register(add: AddCommand) -> None:
    """Add this group's subcommands to the parser through ``add``."""
    p = add("train", cmd_train, "train a robust SNN (RSSNN recipe) and write a checkpoint")
    from rssnn_deploy.cli.run_config import annotate_train_defaults
    from rssnn_deploy.cli.train_args import add_train_arguments
    add_train_arguments(p)
    annotate_train_defaults(p)

    p = add("export", cmd_export, "quantize a checkpoint to Loihi fixed point and write a "
                                  "netx HDF5 file plus its stability report")
    p.add_argument("checkpoint", help="checkpoint.pt written by `train`")
    p.add_argument("--out", required=True, help="output .net file")
    p.add_argument("--profile", default="loihi2", help="hw_profiles/<name>.toml or a path")
    p.add_argument("--gain-mode", choices=("fold", "exact"), default="fold",
                   help="fold DLIF gains into weights (runs on stock netx) or keep them per "
                        "step (our simulator and the lava backend's DLIF process)")
    p.add_argument("--gain-exp", type=ct.int_range(0, 30), default=None,
                   help="exact mode: gain = mantissa / 2**gain-exp for every DLIF layer "
                        "(default: per layer, the finest exponent up to 6 that holds its "
                        "largest gain)")
    p.add_argument("--input-mapping", choices=("threshold", "membrane"), default="threshold",
                   help="how pixels become the input layer's bias: 'threshold' makes the "
                        "chip's first-step firing decision equal the float model's "
                        "(gain·x ≥ Vth); 'membrane' maps gain·x to v in units of Vth")

    p = add("demo", cmd_demo, "the main job end to end on bundled digits: train → quantize "
                              "→ export → Lava fixed-point run → robustness report")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--epochs", type=ct.positive_int, default=DEMO_EPOCHS)
    p.add_argument("--lava-samples", type=ct.nonnegative_int, default=None,
                   help="test images run on Lava (default: all)")
    p.add_argument("--seed", type=ct.seed, default=0)


def cmd_train(args: argparse.Namespace) -> int:
    from rssnn_deploy.cli.train_args import run_training_from_args
    path = run_training_from_args(args)
    print(f"checkpoint: {path}")
    return 0

def cmd_export(args: argparse.Namespace) -> int:
    from rssnn_deploy.pipeline import export_model
    from rssnn_deploy.report import stability_table
    from rssnn_deploy.training import load_checkpoint, read_checkpoint
    from rssnn_deploy.training.checkpoints import checkpoint_digest, checkpoint_file
    checkpoint = checkpoint_file(args.checkpoint)
    for target in (Path(args.out), Path(args.out).with_suffix(".stability.json")):
        check_output(target, [checkpoint])
    model = load_checkpoint(checkpoint)
    result = export_model(model, args.out, profile=args.profile, gain_mode=args.gain_mode,
                          gain_exp=args.gain_exp, input_mapping=args.input_mapping,
                          dataset=read_checkpoint(checkpoint).get("dataset"),
                          provenance={"checkpoint_sha256": checkpoint_digest(checkpoint)})
    print(result.spec.describe())
    print(stability_table(result.to_dict()["layers"]))
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.stability.json')}")
    return 0

def cmd_demo(args: argparse.Namespace) -> int:
    from rssnn_deploy.pipeline import DemoConfig, run_demo
    config = DemoConfig(out_dir=Path(args.out), epochs=args.epochs,
                        lava_samples=args.lava_samples, seed=args.seed)
    record = run_demo(config)
    print((Path(args.out) / "report.md").read_text())
    checks = "; ".join(f"{c['file']}: {c['mismatches_vs_sim']} of {c['samples']} differ"
                       for c in record["lava"].values())
    print(f"report: {args.out}/report.md, report.json, accuracy.png; Lava vs simulator: "
          f"{checks}; total {record['timings']['total_s']:.0f} s")
    return 0 if record["lava_mismatches"] == 0 else 1

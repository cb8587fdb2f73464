"""``rssnn-deploy``: one subcommand per stage; thin, the work lives in the modules.

Errors the user can fix (a missing or malformed file, a model that does not fit the
chip, a missing Loihi runtime) end with one line naming the file, field and limit, and
exit status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import rssnn_deploy


def _user_errors() -> tuple:
    from rssnn_deploy.data import DatasetError
    from rssnn_deploy.hw import ProfileError
    from rssnn_deploy.netx_io import NetxFormatError
    from rssnn_deploy.quantize import QuantizationError
    from rssnn_deploy.sim import SimulationError
    from rssnn_deploy.train import CheckpointError
    errors = [DatasetError, ProfileError, NetxFormatError, QuantizationError,
              CheckpointError, SimulationError, FileNotFoundError]
    from rssnn_deploy.backends import BackendError
    errors.append(BackendError)
    return tuple(errors)


# ------------------------------------------------------------------------ subcommands

def cmd_train(args: argparse.Namespace) -> int:
    from rssnn_deploy.train import run_training_from_args
    path = run_training_from_args(args)
    print(f"checkpoint: {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rssnn_deploy.pipeline import export_model
    from rssnn_deploy.report import stability_table
    from rssnn_deploy.train import load_checkpoint
    model = load_checkpoint(_existing(args.checkpoint))
    result = export_model(model, args.out, profile=args.profile, gain_mode=args.gain_mode)
    print(result.spec.describe())
    print(stability_table(result.to_dict()["layers"]))
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.stability.json')}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np
    from rssnn_deploy.backends import get_backend
    from rssnn_deploy.netx_io import read_netx
    from rssnn_deploy.report import write_npz
    net = _existing(args.net)
    spec = read_netx(net)
    inputs = np.load(_existing(args.input))
    record = {s.strip() for s in args.record.split(",") if s.strip()} if args.record else set()
    result = get_backend(args.backend).simulate(net, spec, inputs, steps=args.steps,
                                                record=record)
    write_npz(args.out, result)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in result.items()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rssnn_deploy.pipeline import evaluate_files
    record = evaluate_files(_existing(args.checkpoint), _existing(args.net), args.dataset,
                            Path(args.out), args.eps, args.lava_samples)
    print((Path(args.out) / "report.md").read_text())
    return 0 if record["lava"]["mismatches_vs_sim"] == 0 else 1


def cmd_info(args: argparse.Namespace) -> int:
    from rssnn_deploy.report import versions
    from rssnn_deploy._compat import lava_loihi_installed
    for name, version in versions().items():
        print(f"{name:>14}: {version}")
    print(f"{'backends':>14}: {', '.join(_backend_status())}")
    loihi = lava_loihi_installed()
    print(f"{'lava-loihi':>14}: {'installed' if loihi else 'not installed (no real Loihi runs)'}")
    if args.net:
        from rssnn_deploy.netx_io import read_netx
        spec = read_netx(_existing(args.net))
        print(f"\n{args.net}: {len(spec.layers)} layers, pipeline depth {spec.pipeline_depth}, "
              f"T = {spec.steps}, {spec.run_steps} steps per sample on chip")
        print(spec.describe())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rssnn_deploy.pipeline import DemoConfig, run_demo
    config = DemoConfig(out_dir=Path(args.out), epochs=args.epochs,
                        lava_samples=args.lava_samples, seed=args.seed)
    record = run_demo(config)
    print((Path(args.out) / "report.md").read_text())
    lava = record["lava"]
    print(f"report: {args.out}/report.md, report.json, accuracy.png; "
          f"Lava vs simulator: {lava['mismatches_vs_sim']} of {lava['samples']} differ; "
          f"total {record['timings']['total_s']:.0f} s")
    return 0 if lava["mismatches_vs_sim"] == 0 else 1


def _backend_status() -> List[str]:
    try:
        from rssnn_deploy.backends import BACKENDS, get_backend
    except ImportError:
        return ["none importable"]
    status = []
    for name in BACKENDS:
        try:
            status.append(f"{name} ({'available' if get_backend(name).available() else 'unavailable'})")
        except Exception as err:  # report, do not crash `info`
            status.append(f"{name} (error: {err})")
    return status


def _existing(path: str) -> Path:
    found = Path(path)
    if not found.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return found


# --------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rssnn-deploy",
        description="Robust stable SNNs from PyTorch to Loihi fixed point: train, quantize, "
                    "export (netx HDF5), simulate bit-exactly, evaluate robustness.")
    parser.add_argument("--version", action="version", version=rssnn_deploy.__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: Dict[str, Callable[[argparse.Namespace], int]] = {}

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str
            ) -> argparse.ArgumentParser:
        handlers[name] = handler
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = add("train", cmd_train, "train a robust SNN (RSSNN recipe) and write a checkpoint")
    from rssnn_deploy.train import add_train_arguments
    add_train_arguments(p)

    p = add("export", cmd_export, "quantize a checkpoint to Loihi fixed point and write a "
                                  "netx HDF5 file plus its stability report")
    p.add_argument("checkpoint", help="checkpoint.pt written by `train`")
    p.add_argument("--out", required=True, help="output .net file")
    p.add_argument("--profile", default="loihi2", help="hw_profiles/<name>.toml or a path")
    p.add_argument("--gain-mode", choices=("fold", "exact"), default="fold",
                   help="fold DLIF gains into weights (stock netx) or keep them per step")

    p = add("simulate", cmd_simulate, "run a netx file on inputs and save output spikes "
                                      "and recorded states")
    p.add_argument("net", help="netx .net file")
    p.add_argument("--input", required=True,
                   help=".npy: static images (N, ...) in [0, 1] or integer bias mantissas, "
                        "or spike trains (N, T, ...)")
    p.add_argument("--steps", type=int, default=None, help="time steps (default: file's T + depth)")
    p.add_argument("--backend", choices=("sim", "lava", "loihi"), default="sim")
    p.add_argument("--record", default="", help="comma list of states to record: u,v,s")
    p.add_argument("--out", required=True, help="output .npz")

    p = add("evaluate", cmd_evaluate, "clean, noisy and adversarial accuracy of the float "
                                      "model and of its deployed integer model")
    p.add_argument("checkpoint")
    p.add_argument("net")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--lava-samples", type=int, default=64,
                   help="test images re-run on Lava to cross-check the simulator (0: none)")
    p.add_argument("--eps", type=float, default=0.1, help="L∞ attack budget on [0, 1] pixels")
    p.add_argument("--out", default="runs/evaluate")

    p = add("info", cmd_info, "versions, available backends, Loihi runtime; with a file, "
                              "its layers")
    p.add_argument("net", nargs="?", help="optional netx .net file to describe")

    p = add("demo", cmd_demo, "the main job end to end on bundled digits: train → quantize "
                              "→ export → Lava fixed-point run → robustness report")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    p.add_argument("--lava-samples", type=int, default=None,
                   help="test images run on Lava (default: all)")
    p.add_argument("--seed", type=int, default=0)
    return parser


DEMO_EPOCHS = 30


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except _user_errors() as err:
        message = err.args[0] if isinstance(err, FileNotFoundError) and err.args else err
        print(f"rssnn-deploy {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

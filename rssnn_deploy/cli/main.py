"""``rssnn-deploy``: one subcommand per stage; thin, the work lives in the modules.

Errors the user can fix (``rssnn_deploy.errors.UserError``: a missing or malformed
file, an option out of range, a model that does not fit the chip, a missing Loihi
runtime) end with one line naming the file, field and limit, and exit status 2; anything
else is a bug: one line "internal error" with the path of a log holding the traceback,
exit status 3.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import rssnn_deploy
from rssnn_deploy.cli import types as ct
from rssnn_deploy.errors import InputFileError, UserError
from rssnn_deploy.fileio import check_output, check_output_dir

# ------------------------------------------------------------------------ subcommands

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


def cmd_simulate(args: argparse.Namespace) -> int:
    from rssnn_deploy.backends import get_backend
    from rssnn_deploy.netx.reader import read_netx
    from rssnn_deploy.report import write_npz
    _set_threads(args)
    net = _existing(args.net)
    check_output(args.out, [net] + [p for p in (args.input, args.labels)
                                    if p and p != _RECORDED])
    spec = read_netx(net)
    inputs, labels, described = _simulate_inputs(args, spec)
    record = set(args.record)
    result = get_backend(args.backend).simulate(net, spec, inputs, steps=args.steps,
                                                record=record)
    if labels is not None:
        result["labels"] = labels
    write_npz(args.out, result)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in result.items()))
    if labels is not None:
        from rssnn_deploy.report import confusion_text
        print(f"\n{described}\n" + confusion_text(labels, result["predictions"]))
    return 0


def _simulate_inputs(args: argparse.Namespace, spec):
    """(inputs for the backend, labels or None, what they are) from the options.

    ``--input`` images in [0, 1] are encoded with the file's input scale; without
    ``--input``, ``--labels`` takes the test split of the dataset the file records.
    """
    import numpy as np

    from rssnn_deploy.spec import encode_input
    if args.input is None:
        if args.labels is None:
            raise InputFileError("simulate: give --input X.npy, or --labels to run the test "
                                 "split of the dataset the file records")
        from rssnn_deploy.data.record import resolve_dataset
        data, name = resolve_dataset(args.dataset, spec.meta.get("dataset"),
                                     spec.input_layer.shape, str(args.net))
        n = len(data.y_test) if args.samples is None else min(args.samples, len(data.y_test))
        x = data.x_test[:n].numpy()
        if x.ndim == len(spec.input_layer.shape) + 2:      # event data: spike trains
            return (x != 0).astype(np.int64), data.y_test[:n].numpy(), \
                f"{n} test spike trains of {name}"
        return encode_input(spec, x), data.y_test[:n].numpy(), f"{n} test samples of {name}"
    inputs = _load_inputs(_existing(args.input))
    if np.issubdtype(inputs.dtype, np.floating) and inputs.shape[1:] != ():
        if inputs.ndim == len(spec.input_layer.shape) + 1:  # static images in [0, 1]
            inputs = encode_input(spec, inputs)
    if args.samples is not None:
        inputs = inputs[:args.samples]
    labels = None
    if args.labels is not None:
        if args.labels == _RECORDED:
            raise InputFileError("simulate: with --input, give the labels file: "
                                 "--labels Y.npy")
        labels = _load_inputs(_existing(args.labels), min_ndim=1)
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) < len(inputs):
            raise InputFileError(f"{args.labels}: expected {len(inputs)} integer labels "
                                 f"shaped (N,), got {labels.dtype} {labels.shape}")
        labels = labels[:len(inputs)].astype(np.int64)
    return inputs, labels, f"{len(inputs)} samples of {args.input}"


_RECORDED = "recorded"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rssnn_deploy.cli.evaluate_args import config_from_args
    from rssnn_deploy.robustness.evaluation import evaluate, exit_status
    from rssnn_deploy.robustness.tables import summary_text
    from rssnn_deploy.training.checkpoints import checkpoint_file
    _set_threads(args)
    checkpoint, net = checkpoint_file(args.checkpoint), _existing(args.net)
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
    from rssnn_deploy.training.checkpoints import checkpoint_file
    checkpoint, net = checkpoint_file(args.checkpoint), _existing(args.net)
    check_output_dir(args.out, [checkpoint, net])
    record = certify_files(checkpoint, net, args.dataset, Path(args.out), config,
                           allow_mismatch=args.allow_mismatch)
    if record is not None:
        print(certification_section(record))
        print(f"\nwrote {Path(args.out) / 'certify.md'}, certify.json, certified_accuracy.png")
    return 0


def _takes_events(checkpoint: Path) -> bool:
    from rssnn_deploy.training import read_checkpoint
    return read_checkpoint(checkpoint)["model_config"].get("input_encoding") == "events"


def _evaluate_events(args: argparse.Namespace, checkpoint: Path, net: Path) -> int:
    """Event-data models: float and chip accuracy under event drop and timing jitter,
    and under the sparse (L0) event attack."""
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


def cmd_verify(args: argparse.Namespace) -> int:
    """Simulator vs Lava on one netx file, every state of every layer; exit 1 on a difference."""
    from rssnn_deploy.backends.verify import verify
    result = verify(_existing(args.net), inputs=_existing(args.input) if args.input else None,
                    samples=args.samples, steps=args.steps, seed=args.seed)
    print(result.text())
    return 0 if result.bit_exact else 1


def cmd_info(args: argparse.Namespace) -> int:
    """Versions and backends; with a file, its layers, core mapping, energy and stability."""
    from rssnn_deploy._compat import lava_loihi_installed
    from rssnn_deploy.report import versions
    for name, version in versions().items():
        print(f"{name:>14}: {version}")
    print(f"{'backends':>14}: {', '.join(_backend_status())}")
    from rssnn_deploy.sim.fused.engine import engine_status
    print(f"{'simulator':>14}: {engine_status()}")
    loihi = lava_loihi_installed()
    print(f"{'lava-loihi':>14}: {'installed' if loihi else 'not installed (no real Loihi runs)'}")
    if not args.net:
        return 0
    from rssnn_deploy.netx.reader import read_netx
    net = _existing(args.net)
    spec = read_netx(net)
    print(f"\n{args.net}: {len(spec.layers)} layers, pipeline depth {spec.pipeline_depth}, "
          f"T = {spec.steps}, {spec.run_steps} steps per sample on chip")
    print(spec.describe())
    if spec.input_scale is not None:
        print(f"input: bias mantissa = floor(x · {spec.input_scale:g} + 0.5) for pixels x in "
              f"[0, 1] (rssnn_deploy.encode)")
    return _guarded(args, lambda: _info_deployment(args, net, spec))


def _info_deployment(args: argparse.Namespace, net: Path, spec) -> int:
    """Mapping, energy estimate and stability report of ``net``; optionally written out."""
    from rssnn_deploy.fileio import atomic_write_text
    from rssnn_deploy.hardware.energy import count_events, estimate_energy
    from rssnn_deploy.hardware.mapping import map_network
    from rssnn_deploy.hardware.profiles import load_profile
    from rssnn_deploy.report import read_stability, stability_table, write_json
    if args.report:
        check_output_dir(args.report, [net], option="--report")
    profile = load_profile(args.profile)
    mapping = map_network(spec, profile, max_chips=args.max_chips, skip_unmapped=True)
    sections = [f"## Core mapping on {profile.chip} ({profile.name})\n\n{mapping.table()}"]
    record = {"net": str(net), "profile": profile.name, "mapping": mapping.to_dict()}
    inputs, described = _info_inputs(args, spec)
    if not mapping.complete:
        sections.append("## Energy estimate\n\nnot estimated: layers "
                        f"{', '.join(str(s.index) for s in mapping.skipped)} are not mapped")
    elif inputs is None:
        sections.append(f"## Energy estimate\n\nnot estimated: {described}")
    else:
        from rssnn_deploy.sim.simulator import SimulationError
        try:
            counts = count_events(spec, inputs, steps=args.steps)
        except SimulationError as err:     # e.g. sigma-delta neurons: mapped, not simulated
            counts = None
            sections.append(f"## Energy estimate\n\nnot estimated: {_one_line(err)}")
        if counts is not None:
            estimate = estimate_energy(counts, mapping, profile)
            sections.append(f"## Energy estimate per inference ({described})\n\n"
                            f"{estimate.table()}")
            record.update(events=counts.to_dict(), energy=estimate.to_dict(), inputs=described)
    stability_path = net.with_suffix(".stability.json")
    stability = read_stability(net)
    if stability is not None:
        sections.append(f"## Stability report ({stability_path.name})\n\n"
                        + stability_table(stability.get("layers", [])))
        record["stability"] = stability
    text = "\n\n".join(sections)
    print("\n" + text)
    if args.report:
        out = Path(args.report)
        write_json(out / "info.json", record)
        atomic_write_text(out / "info.md", f"# {net.name}\n\n```\n{spec.describe()}\n```\n\n"
                          + text + "\n")
        print(f"\nwrote {out / 'info.json'} and {out / 'info.md'}")
    return 0


def _info_inputs(args: argparse.Namespace, spec):
    """Bias inputs for the energy count: --inputs, else digits test images when they fit."""
    import numpy as np

    from rssnn_deploy.spec import encode_input
    if args.inputs:
        data = _load_inputs(_existing(args.inputs))[:args.samples]
        if np.issubdtype(data.dtype, np.floating) and data.size and data.max() <= 1.0:
            return encode_input(spec, data), f"{len(data)} samples of {args.inputs}"
        return data.astype(np.int64), f"{len(data)} samples of {args.inputs} (bias mantissas)"
    shape = tuple(spec.input_layer.shape)
    if "input_scale" in spec.meta and ("dataset" in spec.meta or int(np.prod(shape)) == 64):
        from rssnn_deploy.data.record import resolve_dataset
        data, name = resolve_dataset(None, spec.meta.get("dataset"), shape, str(args.net))
        x = data.x_test[:args.samples].numpy()
        what = "digits test images" if name == "digits" else f"test samples of {name}"
        return encode_input(spec, x), f"{len(x)} {what}"
    return None, "give --inputs X.npy (images in [0, 1] or integer bias mantissas)"


def _guarded(args: argparse.Namespace, run: Callable[[], int]) -> int:
    """One clear line, exit status 2, for a network that does not fit or convert."""
    from rssnn_deploy.hardware.energy import EnergyError
    from rssnn_deploy.hardware.mapping import MappingError
    from rssnn_deploy.interop.targets import NIRConversionError
    try:
        return run()
    except (MappingError, EnergyError, NIRConversionError) as err:
        print(f"rssnn-deploy {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


def cmd_export_nir(args: argparse.Namespace) -> int:
    """netx file → NIR graph file (parameter mapping in ``nir_io``)."""
    from rssnn_deploy.interop.nir_export import write_nir
    from rssnn_deploy.interop.targets import NIRConversionError
    from rssnn_deploy.netx.reader import read_netx
    check_output(args.out, [args.net])
    spec = read_netx(_existing(args.net))

    def run() -> int:
        try:
            path = write_nir(spec, args.out, dt=args.dt, target=args.target)
        except NIRConversionError as err:        # name the file the layer is in
            raise NIRConversionError(f"{args.net}: {err}") from None
        return _report_written(path)
    return _guarded(args, run)


def cmd_import_nir(args: argparse.Namespace) -> int:
    """NIR graph file (ours or another library's) → netx file."""
    from rssnn_deploy.hardware.profiles import load_profile
    from rssnn_deploy.interop.nir_import import read_nir
    from rssnn_deploy.netx.writer import write_netx

    check_output(args.out, [args.nir])

    def run() -> int:
        spec = read_nir(_existing(args.nir), dt=args.dt, profile=load_profile(args.profile))
        print(spec.describe())
        if not spec.meta["nir_import"]["exact"]:
            print("note: weights were rescaled to 8-bit integers (the graph was not integer)")
        return _report_written(write_netx(spec, args.out))
    return _guarded(args, run)


def _report_written(path: Path) -> int:
    print(f"wrote {path}")
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


def _load_inputs(path: Path, min_ndim: int = 2):
    """A numeric (N, ...) array from .npy, with a one-line error for anything else:
    archives, strings, records, complex or non-finite values are refused, not cast."""
    import numpy as np
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputFileError(f"{path}: not a readable .npy array "
                             f"({' '.join(str(err).split())[:120]})") from None
    if not isinstance(data, np.ndarray):
        data.close()
        raise InputFileError(f"{path}: a .npz archive; give one .npy array (N, ...)")
    if data.dtype.kind not in "biuf":
        raise InputFileError(f"{path}: dtype {data.dtype} is not a real number type; give "
                             f"floats in [0, 1], integer bias mantissas or 0/1 spikes")
    if data.ndim < min_ndim or data.shape[0] == 0:
        raise InputFileError(f"{path}: shape {data.shape}; expected (N{', ...' * (min_ndim > 1)})"
                             f" with N >= 1 samples")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise InputFileError(f"{path}: holds {int((~np.isfinite(data)).sum())} NaN or "
                             f"infinite values")
    return data


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


def _set_threads(args: argparse.Namespace) -> None:
    """``--threads``: CPU threads of the simulator's fused engine (default: free cores)."""
    from rssnn_deploy.sim.fused.engine import set_threads
    set_threads(args.threads)


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=ct.positive_int, default=None,
                   help="CPU threads for the simulator (default: the cores other processes "
                        "leave free, from the load average; 1 on a busy machine)")


def _existing(path: str) -> Path:
    found = Path(path)
    if not found.is_file():
        raise InputFileError(f"{path}: no such file")
    return found


# --------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = ct.OneLineParser(
        prog="rssnn-deploy",
        description="Robust stable SNNs from PyTorch to Loihi fixed point: train, quantize, "
                    "export (netx HDF5), simulate bit-exactly, evaluate robustness.")
    parser.add_argument("--version", action="version", version=rssnn_deploy.__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: Dict[str, Callable[[argparse.Namespace], int]] = {}

    from rssnn_deploy.cli.run_config import COMMANDS as CONFIG_COMMANDS
    from rssnn_deploy.cli.run_config import DefaultsHelpFormatter

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str
            ) -> argparse.ArgumentParser:
        handlers[name] = handler
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=DefaultsHelpFormatter)
        p.set_defaults(handler=handler)
        if name in CONFIG_COMMANDS:
            p.add_argument("--config", default=None, metavar="FILE.toml",
                           help="options from a TOML file (top level or a "
                                f"[{name}] table); command-line flags override it")
        return p

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

    p = add("simulate", cmd_simulate, "run a netx file on inputs and save output spikes "
                                      "and recorded states")
    p.add_argument("net", help="netx .net file")
    p.add_argument("--input", default=None,
                   help=".npy: static images (N, ...) as floats in [0, 1] (encoded with the "
                        "file's input scale) or integer bias mantissas, or spike trains "
                        "(N, T, ...); default with --labels: the recorded dataset's test "
                        "split")
    p.add_argument("--labels", nargs="?", const=_RECORDED, default=None,
                   help="print accuracy and a confusion matrix: a labels .npy for --input, "
                        "or no value for the test split of the dataset the file records")
    p.add_argument("--dataset", default=None,
                   help="with --labels and no --input: test data instead of the recorded "
                        "dataset")
    p.add_argument("--samples", type=ct.positive_int, default=None,
                   help="first N samples (all)")
    p.add_argument("--steps", type=ct.positive_int, default=None,
                   help="time steps (default: file's T + depth)")
    p.add_argument("--backend", choices=("sim", "lava", "loihi"), default="sim")
    p.add_argument("--record", type=ct.state_list(("u", "v", "s")), default=(),
                   help="comma list of states to record: u,v,s")
    p.add_argument("--out", required=True, help="output .npz")
    _add_threads(p)

    p = add("verify", cmd_verify, "run a netx file (ours, slayer's, anyone's) in Lava and in "
                                  "the simulator; compare every u, v, s of every layer at "
                                  "every step (exit 1 on the first difference)")
    p.add_argument("net", help="netx .net file")
    p.add_argument("--input", default=None,
                   help=".npy: integer bias mantissas (N, ...) or spike trains (N, T, ...); "
                        "images in [0, 1] are encoded with the file's input scale "
                        "(default: random inputs)")
    p.add_argument("--samples", type=ct.positive_int, default=None,
                   help="samples to run (default: 2 random, or all of --input)")
    p.add_argument("--steps", type=ct.positive_int, default=None,
                   help="chip steps (default: the file's T + depth, else depth + 16)")
    p.add_argument("--seed", type=ct.seed, default=0, help="seed of the random inputs")

    p = add("evaluate", cmd_evaluate, "robustness of the float model and of its deployed "
                                      "integer model: noise, attacks under three threat "
                                      "models, hardware faults, sanity checks, Lava cross-check")
    from rssnn_deploy.cli.evaluate_args import add_evaluate_arguments
    add_evaluate_arguments(p)
    _add_threads(p)

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

    p = add("info", cmd_info, "versions, available backends, Loihi runtime; with a file, "
                              "its layers, core mapping, energy estimate and stability report")
    p.add_argument("net", nargs="?", help="optional netx .net file to describe")
    p.add_argument("--profile", default="loihi2", help="hw_profiles/<name>.toml or a path")
    p.add_argument("--inputs", default=None,
                   help=".npy inputs for the energy count: images in [0, 1] or integer bias "
                        "mantissas (default: test split of the dataset the file records, "
                        "else digits test images when the input fits)")
    p.add_argument("--samples", type=ct.positive_int, default=100,
                   help="inputs counted for the estimate")
    p.add_argument("--steps", type=ct.positive_int, default=None,
                   help="chip steps per inference for the energy count (default: the file's "
                        "T plus pipeline depth; lava-dl's PilotNet benchmark used 16)")
    p.add_argument("--max-chips", type=ct.positive_int, default=None,
                   help="fail when the network needs more chips than this")
    p.add_argument("--report", default=None, help="directory for info.json and info.md")

    p = add("demo", cmd_demo, "the main job end to end on bundled digits: train → quantize "
                              "→ export → Lava fixed-point run → robustness report")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--epochs", type=ct.positive_int, default=DEMO_EPOCHS)
    p.add_argument("--lava-samples", type=ct.nonnegative_int, default=None,
                   help="test images run on Lava (default: all)")
    p.add_argument("--seed", type=ct.seed, default=0)

    p = add("export-nir", cmd_export_nir, "write a netx file as a NIR graph (Neuromorphic "
                                          "Intermediate Representation)")
    p.add_argument("net", help="netx .net file")
    p.add_argument("--out", required=True, help="output .nir file")
    p.add_argument("--dt", type=ct.positive_float, default=1.0,
                   help="NIR time per chip step (plain NIR; the snntorch form uses "
                        "snnTorch's fixed 1e-4, the norse form Norse's default 1e-3)")
    p.add_argument("--for", dest="target", choices=("nir", "snntorch", "norse"),
                   default="nir",
                   help="plain NIR 1.0, or the form snnTorch 1.0 / Norse 1.1 imports "
                        "(see nir_targets)")

    p = add("import-nir", cmd_import_nir, "read a NIR graph (from rssnn-deploy, snntorch, …) "
                                          "and write it as a netx file")
    p.add_argument("nir", help="input .nir file")
    p.add_argument("--out", required=True, help="output .net file")
    p.add_argument("--dt", type=ct.positive_float, default=None,
                   help="NIR time per chip step (default: the file's metadata, else τ/r)")
    p.add_argument("--profile", default="loihi2", help="hw_profiles/<name>.toml or a path")
    return parser


DEMO_EPOCHS = 30


def main(argv: Optional[List[str]] = None) -> int:
    """Run one subcommand: user errors end in one line and exit 2, bugs in a log file."""
    import warnings

    from rssnn_deploy.cli.run_config import parse_with_config
    try:
        args = parse_with_config(build_parser(), argv)
    except UserError as err:   # a --config file that cannot be used
        return _fail("config", _one_line(err))
    try:
        with warnings.catch_warnings(), _recorded(args):
            warnings.showwarning = _show_warning
            return args.handler(args)
    except UserError as err:
        return _fail(args.command, _one_line(err))
    except FileNotFoundError as err:
        return _fail(args.command, _one_line(err))
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted", status=130)
    except Exception:  # a bug: keep the traceback in a file, print one line
        return _fail(args.command, f"internal error, please report it with the log "
                                   f"{_write_crash_log(args)}", status=3)


def _recorded(args: argparse.Namespace):
    """``train``, ``export`` and ``evaluate`` keep their resolved options and a log in
    their run folder (``run_config.record_run``); other commands run as they are."""
    import contextlib

    from rssnn_deploy.cli.run_config import COMMANDS, record_run
    if args.command not in COMMANDS:
        return contextlib.nullcontext()
    _check_outputs(args)
    folder = Path(args.out).parent if args.command == "export" else Path(args.out)
    return record_run(args, folder)


def _check_outputs(args: argparse.Namespace) -> None:
    """Output paths are checked before anything is written there (the run log
    included): never an input, never a file where a folder is meant, writable."""
    if args.command == "export":
        for target in (Path(args.out), Path(args.out).with_suffix(".stability.json")):
            check_output(target, [args.checkpoint])
    elif args.command in ("evaluate", "certify"):
        check_output_dir(args.out, [args.checkpoint, args.net])
    elif args.command == "train":
        check_output_dir(args.out, [] if args.dataset == "digits" else [args.dataset],
                         beside_inputs=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning is one line for the user (Python's default adds a line of source)."""
    print(f"rssnn-deploy: warning: {_one_line(message)}", file=sys.stderr)


def _one_line(err: object) -> str:
    text = str(err).strip()
    return " ".join(text.split()) if text else type(err).__name__


def _fail(command: str, message: str, status: int = 2) -> int:
    print(f"rssnn-deploy {command}: error: {message}", file=sys.stderr)
    return status


def _write_crash_log(args: argparse.Namespace) -> Path:
    """The traceback of an unexpected error, in a file the user can attach to a report."""
    import tempfile
    import traceback
    fd, name = tempfile.mkstemp(prefix="rssnn-deploy-crash-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        log.write(f"rssnn-deploy {rssnn_deploy.__version__}\nargv: {sys.argv!r}\n"
                  f"command: {args.command}\n\n")
        traceback.print_exc(file=log)
    return Path(name)


if __name__ == "__main__":
    sys.exit(main())

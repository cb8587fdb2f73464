"""``simulate``, ``verify`` and ``info``: running and describing a netx file."""
from __future__ import annotations

import argparse
from pathlib import Path

from rssnn_deploy.cli import types as ct
from rssnn_deploy.cli.common import (
    RECORDED,
    AddCommand,
    add_threads,
    backend_status,
    existing,
    guarded,
    load_inputs,
    one_line,
    set_threads,
)
from rssnn_deploy.errors import InputFileError
from rssnn_deploy.fileio import check_output, check_output_dir

__all__ = ['register']


def register(add: AddCommand) -> None:
    """Add this group's subcommands to the parser through ``add``."""
    p = add("simulate", cmd_simulate, "run a netx file on inputs and save output spikes "
                                      "and recorded states")
    p.add_argument("net", help="netx .net file")
    p.add_argument("--input", default=None,
                   help=".npy: static images (N, ...) as floats in [0, 1] (encoded with the "
                        "file's input scale) or integer bias mantissas, or spike trains "
                        "(N, T, ...); default with --labels: the recorded dataset's test "
                        "split")
    p.add_argument("--labels", nargs="?", const=RECORDED, default=None,
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
    add_threads(p)

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


def cmd_simulate(args: argparse.Namespace) -> int:
    from rssnn_deploy.backends import get_backend
    from rssnn_deploy.netx.reader import read_netx
    from rssnn_deploy.report import write_npz
    set_threads(args)
    net = existing(args.net, "netx")
    check_output(args.out, [net] + [p for p in (args.input, args.labels)
                                    if p and p != RECORDED])
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
    inputs = load_inputs(existing(args.input, "npy"))
    if np.issubdtype(inputs.dtype, np.floating) and inputs.shape[1:] != ():
        if inputs.ndim == len(spec.input_layer.shape) + 1:  # static images in [0, 1]
            inputs = encode_input(spec, inputs)
    if args.samples is not None:
        inputs = inputs[:args.samples]
    labels = None
    if args.labels is not None:
        if args.labels == RECORDED:
            raise InputFileError("simulate: with --input, give the labels file: "
                                 "--labels Y.npy")
        labels = load_inputs(existing(args.labels, "npy"), min_ndim=1)
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) < len(inputs):
            raise InputFileError(f"{args.labels}: expected {len(inputs)} integer labels "
                                 f"shaped (N,), got {labels.dtype} {labels.shape}")
        labels = labels[:len(inputs)].astype(np.int64)
    return inputs, labels, f"{len(inputs)} samples of {args.input}"

def cmd_verify(args: argparse.Namespace) -> int:
    """Simulator vs Lava on one netx file, every state of every layer; exit 1 on a difference."""
    from rssnn_deploy.backends.verify import verify
    result = verify(existing(args.net, "netx"), inputs=existing(args.input, "npy") if args.input else None,
                    samples=args.samples, steps=args.steps, seed=args.seed)
    print(result.text())
    return 0 if result.bit_exact else 1

def cmd_info(args: argparse.Namespace) -> int:
    """Versions and backends; with a file, its layers, core mapping, energy and stability."""
    from rssnn_deploy._compat import lava_loihi_installed
    from rssnn_deploy.report import versions
    if args.net:     # a bad file or option: its one error line, nothing printed before
        from rssnn_deploy.hardware.profiles import load_profile
        from rssnn_deploy.netx.reader import read_netx
        net = existing(args.net, "netx")
        spec = read_netx(net)
        given = load_inputs(existing(args.inputs, "npy")) if args.inputs else None
        if args.report:
            check_output_dir(args.report, [net], option="--report")
        profile = load_profile(args.profile)
    for name, version in versions().items():
        print(f"{name:>14}: {version}")
    print(f"{'backends':>14}: {', '.join(backend_status())}")
    from rssnn_deploy.sim.fused.engine import engine_status
    print(f"{'simulator':>14}: {engine_status()}")
    loihi = lava_loihi_installed()
    print(f"{'lava-loihi':>14}: {'installed' if loihi else 'not installed (no real Loihi runs)'}")
    if not args.net:
        return 0
    print(f"\n{args.net}: {len(spec.layers)} layers, pipeline depth {spec.pipeline_depth}, "
          f"T = {spec.steps}, {spec.run_steps} steps per sample on chip")
    print(spec.describe())
    if spec.input_scale is not None:
        print(f"input: bias mantissa = floor(x · {spec.input_scale:g} + 0.5) for pixels x in "
              f"[0, 1] (rssnn_deploy.encode)")
    return guarded(args, lambda: _info_deployment(args, net, spec, profile, given))


def _info_deployment(args: argparse.Namespace, net: Path, spec, profile, given) -> int:
    """Mapping, energy estimate and stability report of ``net``; optionally written out."""
    from rssnn_deploy.fileio import atomic_write_text
    from rssnn_deploy.hardware.energy import count_events, estimate_energy
    from rssnn_deploy.hardware.mapping import map_network
    from rssnn_deploy.report import read_stability, stability_table, write_json
    mapping = map_network(spec, profile, max_chips=args.max_chips, skip_unmapped=True)
    sections = [f"## Core mapping on {profile.chip} ({profile.name})\n\n{mapping.table()}"]
    record = {"net": str(net), "profile": profile.name, "mapping": mapping.to_dict()}
    inputs, described = _info_inputs(args, spec, given)
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
            sections.append(f"## Energy estimate\n\nnot estimated: {one_line(err)}")
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

def _info_inputs(args: argparse.Namespace, spec, given):
    """Bias inputs for the energy count: ``given`` (--inputs, loaded and checked before
    anything was printed), else digits test images when they fit."""
    import numpy as np

    from rssnn_deploy.spec import encode_input
    if given is not None:
        data = given[:args.samples]
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

r"""Lava against the simulator, sample by sample, for analog-input (graded-spike) files.

    .venv/bin/python benchmarks/bench_analog_lava.py [--epochs 15] [--samples 360]

Trains the analog-input digits MLP 64-128-10 DLIF (``digits`` preset, R+FGSM ε = 0.05,
ρ = 1, seed 0), exports it with folded gains (stock netx: ``hdf5.Network(...,
input_message_bits=b)``) and with exact gains (the project's DLIF process), and runs
the test images through Lava's ``Loihi2SimCfg("fixed_pt")`` and through the bit-exact
simulator. Reports, per file, how many samples have identical output membranes and
predictions (all of them, or the file is not bit-exact), and the accuracy.
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (argument_parser, common_options, parse, start,  # noqa: E402
                          write_results)
from rssnn_deploy.backends import get_backend  # noqa: E402
from rssnn_deploy.models.zoo import build_model  # noqa: E402
from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.netx.writer import write_netx  # noqa: E402
from rssnn_deploy.quantization import QuantizeOptions, quantize  # noqa: E402
from rssnn_deploy.sim.simulator import Simulator  # noqa: E402
from rssnn_deploy.spec import encode_input  # noqa: E402
from rssnn_deploy.training import PRESETS, train  # noqa: E402


def main(argv: Sequence[str] = ()) -> int:
    parser = argument_parser(__doc__)
    common_options(parser, seeds=None, attacks=False)
    parser.add_argument("--samples", type=int, default=360)
    args = parse(parser, "analog_lava.md", argv)
    data = start()
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [128], "input_encoding": "analog"})
    config = dataclasses.replace(PRESETS["digits"], epochs=args.epochs, seed=0,
                                 perturbation="rfgsm", eps=0.05)
    x, y = data.x_test[:args.samples], data.y_test[:args.samples]
    rows, payload = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        train(model, data, config, tmp, progress=False)
        for gain_mode in ("fold", "exact"):
            path = write_netx(quantize(model.eval(), options=QuantizeOptions(
                gain_mode=gain_mode)).spec, Path(tmp) / f"{gain_mode}.net")
            spec = read_netx(path)
            graded = torch.as_tensor(encode_input(spec, x.numpy()))
            ours = Simulator(spec).run(graded)
            lava = get_backend("lava")
            theirs = lava.run(path, graded)
            same_v = (ours.output_v == theirs.output_v).reshape(len(x), -1).all(dim=1)
            same_p = ours.predictions("membrane") == theirs.predictions("membrane")
            acc = float((theirs.predictions("membrane") == y).float().mean())
            bits = spec.meta["input_message_bits"]
            rows.append(f"| {gain_mode} | {lava.last_builder} | {bits} | "
                        f"{int(same_v.sum())}/{len(x)} | {int(same_p.sum())}/{len(x)} | "
                        f"{100 * acc:.1f} | {lava.last_timing['seconds']:.0f} |")
            payload[gain_mode] = {"builder": lava.last_builder, "bits": bits,
                                  "same_v": int(same_v.sum()), "same_pred": int(same_p.sum()),
                                  "n": len(x), "accuracy": acc,
                                  "lava_seconds": lava.last_timing["seconds"]}
    text = ("Analog-input digits MLP 64-128-10 DLIF (digits preset, R+FGSM ε = 0.05, "
            f"{args.epochs} epochs, seed 0), {len(x)} test images, Lava "
            "`Loihi2SimCfg(\"fixed_pt\")` vs the simulator.\n\n"
            "| gains | Lava network | input bits b | identical output v | identical "
            "prediction | accuracy on Lava (%) | Lava seconds |\n|---|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")
    write_results(args.out, text, args, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

r"""Our netx files in other simulators through NIR: do snnTorch and Norse predict the chip's class?

    .venv/bin/python benchmarks/bench_nir_consumers.py [--net models/mnist_conv_robust/model.net]
        [--dataset mnist] [--samples 1000] [--batch 250]

Exports ``--net`` with ``spec_to_nir(..., target="snntorch")`` and ``target="norse"``,
imports each graph with the consumer's own importer and runs it as the chip is fed
(``rssnn_deploy.interop.import_into`` / ``run_imported``: ``snntorch.import_nir
.import_from_nir``; ``norse.torch.from_nir(graph, dt=graph.metadata["dt"])``; the input
layer's bias mantissas ``rssnn_deploy.encode`` gives, every step, for ``spec.steps``
steps, then the argmax of the readout layer's membrane), on the first ``--samples`` test
images of ``--dataset`` in batches of ``--batch``. Reports, per consumer, how many
predictions equal the bit-exact simulator's and each accuracy. What the consumers do
differently from the chip (float instead of truncated decays, no per-layer delay, no
24-bit wrap) is listed in ``rssnn_deploy/interop/targets.py``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import RESULTS, argument_parser, start, write_results  # noqa: E402

import rssnn_deploy as rd  # noqa: E402
from rssnn_deploy.interop import import_into, run_imported  # noqa: E402
from rssnn_deploy.interop.nir_export import spec_to_nir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] = ()) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--net", type=Path, default=ROOT / "models/mnist_conv_robust/model.net")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--out", type=Path, default=RESULTS / "nir_consumers.md")
    args = parser.parse_args(list(argv) or None)
    data = start(threads=1, dataset=args.dataset)
    x, y = data.x_test[:args.samples].numpy(), data.y_test[:args.samples].numpy()
    spec = rd.read_netx(args.net)
    chip = rd.predict(args.net, x)
    rows, payload = [], {"chip_accuracy": float(np.mean(chip == y)), "n": len(y)}
    for name, library in (("snnTorch 1.0", "snntorch"), ("Norse 1.1", "norse")):
        begin = time.perf_counter()
        net = import_into(library, spec_to_nir(spec, target=library))
        pred = np.concatenate([run_imported(net, x[first:first + args.batch], spec)
                               for first in range(0, len(x), args.batch)])
        seconds = time.perf_counter() - begin
        same, acc = int(np.sum(pred == chip)), float(np.mean(pred == y))
        rows.append(f"| {name} | {same}/{len(y)} | {100 * acc:.1f} | {seconds:.1f} |")
        payload[name] = {"same_as_chip": same, "accuracy": acc, "seconds": seconds}
    try:
        where = args.net.resolve().relative_to(ROOT)
    except ValueError:
        where = args.net
    text = (f"`{where}` ({spec.steps} steps, {len(spec.layers)} layers) exported to NIR and "
            f"imported by each consumer, first {len(y)} test images of {args.dataset}, "
            f"batches of {args.batch}; chip (bit-exact simulator) accuracy "
            f"{100 * payload['chip_accuracy']:.1f} %.\n\n"
            "| consumer | same prediction as the chip | accuracy (%) | seconds (import + run) |\n"
            "|---|---|---|---|\n" + "\n".join(rows) + "\n")
    write_results(args.out, text, args, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

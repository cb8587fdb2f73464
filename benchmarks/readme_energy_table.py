r"""The README's "Will it fit, what will it cost" table, from ``rssnn-deploy info``.

    .venv/bin/python benchmarks/readme_energy_table.py [--samples 360] [--out results/energy_table.md]

For each checked-in digits deployment, runs ``rssnn-deploy info FILE --profile P
--samples N --report DIR`` for the Loihi 1 and Loihi 2 profiles (events counted on the
first N digits test images by the bit-exact simulator, ``spec.run_steps`` steps per
inference) and reads the PGD-10 chip white-box accuracy at the default budget from the
model's evaluation report (``evaluation*/report.json``). Prints one Markdown row per
file: cores and chips, events, Loihi 1's dynamic energy, Loihi 2's dynamic and total
energy and latency (low–high from the profile's per-event ranges), and robust accuracy
per millijoule of Loihi 2's total energy (at its high and low end).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent
#: (label, .net file, evaluation report of that deployment)
DEPLOYMENTS = [
    ("natural LIF, `model.net`", "models/digits_lif_natural/model.net",
     "models/digits_lif_natural/evaluation/report.json"),
    ("robust DLIF, `model.net` (folded)", "models/digits_dlif_robust/model.net",
     "models/digits_dlif_robust/evaluation_folded_gains/report.json"),
    ("robust DLIF, `model_exact.net`", "models/digits_dlif_robust/model_exact.net",
     "models/digits_dlif_robust/evaluation_exact_gains/report.json"),
]


def chip_pgd10(report_path: Path) -> float:
    """PGD-10 accuracy, white-box on the chip model (STE gradients), default budget."""
    report = json.loads(report_path.read_text())
    default = report["eps"]["default"]
    hits = [a["accuracy"] for a in report["attacks"] if a["attack"] == "PGD-10"
            and a["threat"] == "chip" and a["eps"] == default]
    if len(hits) != 1:
        raise SystemExit(f"{report_path}: expected one chip PGD-10 record, found {len(hits)}")
    return float(hits[0])


def info_record(net: Path, profile: str, samples: int, out: Path) -> Dict[str, Any]:
    from rssnn_deploy.cli import main
    status = main(["info", str(net), "--profile", profile, "--samples", str(samples),
                   "--report", str(out)])
    if status != 0:
        raise SystemExit(f"rssnn-deploy info {net} --profile {profile} exited {status}")
    return json.loads((out / "info.json").read_text())


def span(values: List[float], digits: str = ".3g") -> str:
    low, high = (format(v, digits) for v in values)
    return low if low == high else f"{low}–{high}"


def row(label: str, l1: Dict[str, Any], l2: Dict[str, Any], accuracy: float) -> List[str]:
    e1, e2 = l1["energy"], l2["energy"]
    dyn1 = [t - s for t, s in zip(e1["total_pj"], e1["energy_pj"]["static (core·ns)"])]
    dyn2 = [t - s for t, s in zip(e2["total_pj"], e2["energy_pj"]["static (core·ns)"])]
    total2 = e2["total_pj"]
    per_mj = [accuracy / (total2[1] * 1e-9), accuracy / (total2[0] * 1e-9)]
    cores = f"{l1['mapping']['total_cores']} / {l2['mapping']['total_cores']}"
    return [label, cores, f"{e2['events']['synaptic ops']:,.0f}",
            f"{e2['events']['spike messages']:,.0f}",
            span([v * 1e-6 for v in dyn1]), span([v * 1e-6 for v in dyn2]),
            span([v * 1e-6 for v in total2]), span(e2["latency_us"], ".3g"),
            f"{100 * accuracy:.1f} %", span(per_mj, ".3g")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=360)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    header = ["model / file", "cores Loihi 1 / 2", "synaptic ops", "spike messages (Loihi 2)",
              "Loihi 1 dynamic (µJ)", "Loihi 2 dynamic (µJ, ESTIMATE)",
              "Loihi 2 total (µJ, ESTIMATE)", "Loihi 2 latency (µs)",
              "PGD-10 chip white-box", "robust acc. per mJ (Loihi 2 total)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    with tempfile.TemporaryDirectory() as tmp:
        for n, (label, net, report) in enumerate(DEPLOYMENTS):
            records = {p: info_record(ROOT / net, p, args.samples, Path(tmp) / f"{n}-{p}")
                       for p in ("loihi1", "loihi2")}
            lines.append("| " + " | ".join(row(label, records["loihi1"], records["loihi2"],
                                                chip_pgd10(ROOT / report))) + " |")
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        from rssnn_deploy.fileio import atomic_write_text
        atomic_write_text(Path(args.out), table + "\n")


if __name__ == "__main__":
    main()

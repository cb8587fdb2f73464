r"""The README's "Will it fit, what will it cost" figures, from ``rssnn-deploy info``.

    .venv/bin/python benchmarks/readme_energy_table.py [--samples 360]
        [--out benchmarks/results/energy_table.md]   (a PNG is written beside it)

First lava-dl's PilotNet-LIF (the ``network.net`` and ``image.npy`` its wheel ships under
``tests/lava/lib/dl/netx/gts/pilotnet_lif``): ``info --profile loihi2 --steps 16`` on the
image, its cores per layer beside those Intel's compiler printed, and its energy beside
what Intel measured (``tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb``), each
figure labelled calibrated or predicted as ``hw_profiles/loihi2.toml`` derives it.

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

import rssnn_deploy  # noqa: F401  (applies the Lava-on-Python-3.11 fixes before lava imports)

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


#: Intel's Lava compiler, "Per core distribution" for PilotNet-LIF (benchmark.ipynb),
#: by netx layer index; and the measured figures of the same run.
INTEL_CORES = {0: 13, 1: 25, 2: 13, 3: 3, 4: 3, 5: 2, 7: 12, 8: 1, 9: 1, 10: 1}
INTEL_DYNAMIC_MJ, INTEL_TOTAL_MJ, INTEL_POWER_W = 1.093544, 1.661103, 0.679234


def pilotnet_record(out: Path) -> Dict[str, Any]:
    """``info`` on lava-dl's PilotNet-LIF and its image, 16 steps per inference."""
    import numpy as np
    import lava.lib.dl.netx as netx
    root = (Path(netx.__file__).resolve().parents[4] / "tests" / "lava" / "lib" / "dl" / "netx"
            / "gts" / "pilotnet_lif")
    image = np.load(root / "image.npy").transpose(2, 1, 0)[None].astype(np.int64)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "image_bias.npy", image)
    from rssnn_deploy.cli.main import main
    status = main(["info", str(root / "network.net"), "--profile", "loihi2", "--inputs",
                   str(out / "image_bias.npy"), "--samples", "1", "--steps", "16",
                   "--report", str(out)])
    if status != 0:
        raise SystemExit(f"rssnn-deploy info on PilotNet-LIF exited {status}")
    return json.loads((out / "info.json").read_text())


def pilotnet_tables(record: Dict[str, Any]) -> str:
    """Cores per layer ours vs Intel's; energy predicted/calibrated vs measured."""
    from rssnn_deploy.hardware.profiles import load_profile
    ours = {m["index"]: m["cores"] for m in record["mapping"]["layers"]}
    names = ["input", "conv1", "conv2", "conv3", "conv4", "conv5", "fc0", "fc1", "fc2", "fc3"]
    head = "| PilotNet-LIF layer | " + " | ".join(names) + " | total |\n|" + "---|" * 12
    intel = "| Intel's compiler | " + " | ".join(str(v) for v in INTEL_CORES.values())
    mine = "| `info --profile loihi2` | " + " | ".join(str(ours[i]) for i in INTEL_CORES)
    cores = "\n".join([head, intel + f" | {sum(INTEL_CORES.values())} |",
                       mine + f" | {record['mapping']['total_cores']} |"])
    energy = record["energy"]
    point = load_profile("loihi2").operating_point
    dynamic = [(t - s) * 1e-9 for t, s in zip(energy["total_pj"],
                                               energy["energy_pj"]["static (core·ns)"])]
    power = [point.static_power_w + d * 1e-3 * point.inferences_per_second for d in dynamic]
    rows = [("dynamic energy per inference (mJ)", "predicted", span(dynamic), INTEL_DYNAMIC_MJ),
            ("power at 408.91 inferences/s (W)", "static calibrated + dynamic predicted",
             span(power), INTEL_POWER_W),
            ("energy per inference, low end (mJ)", "calibrated latency and static",
             f"{energy['total_pj'][0] * 1e-9:.3g}", INTEL_TOTAL_MJ),
            ("inferences per second, high end", "calibrated (op time)",
             f"{1e6 / energy['latency_us'][0]:.4g}", point.inferences_per_second)]
    table = ["| figure | how obtained | model | Intel measured |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d:.4g} |" for a, b, c, d in rows]
    return cores + "\n\n" + "\n".join(table)


def plot(pilot: Dict[str, Any], digits: List[Dict[str, Any]], labels: List[str],
         path: Path) -> Path:
    """PilotNet-LIF cores per layer (ours vs Intel's) and the digits models' energy ranges."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from rssnn_deploy.report import save_figure
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    idx = list(INTEL_CORES)
    ours = {m["index"]: m["cores"] for m in pilot["mapping"]["layers"]}
    x = np.arange(len(idx))
    left.bar(x - 0.2, [INTEL_CORES[i] for i in idx], 0.4, label="Intel's Lava compiler")
    left.bar(x + 0.2, [ours[i] for i in idx], 0.4, label="rssnn-deploy (loihi2)")
    left.set_xticks(x, ["input", "conv1", "conv2", "conv3", "conv4", "conv5", "fc0", "fc1",
                        "fc2", "fc3"], rotation=30)
    left.set_ylabel("cores")
    left.set_title("PilotNet-LIF on Loihi 2: cores per layer")
    left.legend()
    for k, record in enumerate(digits):
        low, high = (v * 1e-6 for v in record["energy"]["total_pj"])
        dyn = (record["energy"]["total_pj"][0]
               - record["energy"]["energy_pj"]["static (core·ns)"][0]) * 1e-6
        right.plot([low, high], [k, k], lw=6, color="tab:blue", solid_capstyle="butt",
                   label="total, low–high" if k == 0 else None)
        right.plot([dyn], [k], "o", color="tab:orange", label="dynamic (events)" if k == 0 else None)
    right.set_xscale("log")
    right.set_yticks(range(len(labels)), [lab.replace("`", "") for lab in labels])
    right.set_xlabel("energy per inference on Loihi 2 (µJ, ESTIMATE)")
    right.set_title("digits deployments, 10 steps per inference")
    right.set_ylim(-0.5, len(labels) + 0.2)
    right.legend(loc="upper right", ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)


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
    from rssnn_deploy.cli.main import main
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
    parser.add_argument("--out", default=None, help="also write the tables here (and a PNG)")
    args = parser.parse_args()
    header = ["model / file", "cores Loihi 1 / 2", "synaptic ops", "spike messages (Loihi 2)",
              "Loihi 1 dynamic (µJ)", "Loihi 2 dynamic (µJ, ESTIMATE)",
              "Loihi 2 total (µJ, ESTIMATE)", "Loihi 2 latency (µs)",
              "PGD-10 chip white-box", "robust acc. per mJ (Loihi 2 total)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    digits = []
    with tempfile.TemporaryDirectory() as tmp:
        pilot = pilotnet_record(Path(tmp) / "pilotnet")
        for n, (label, net, report) in enumerate(DEPLOYMENTS):
            records = {p: info_record(ROOT / net, p, args.samples, Path(tmp) / f"{n}-{p}")
                       for p in ("loihi1", "loihi2")}
            digits.append(records["loihi2"])
            lines.append("| " + " | ".join(row(label, records["loihi1"], records["loihi2"],
                                                chip_pgd10(ROOT / report))) + " |")
    text = pilotnet_tables(pilot) + "\n\n" + "\n".join(lines)
    print("\n" + text)
    if args.out:
        from rssnn_deploy.fileio import atomic_write_text
        out = Path(args.out)
        atomic_write_text(out, text + "\n")
        png = plot(pilot, digits, [d[0] for d in DEPLOYMENTS], out.with_suffix(".png"))
        print(f"\nwrote {out} and {png}")


if __name__ == "__main__":
    main()

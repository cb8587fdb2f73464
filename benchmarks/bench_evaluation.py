"""Cost of a reviewer-grade evaluation: AutoAttack on the chip model plus certification.

    nice -n 10 .venv/bin/python benchmarks/bench_evaluation.py [--samples 360]
        [--certify-samples 100] [--certify-n 10000] [--square-queries 5000]
        [--apgd-steps 100] [--threads 2] [--out benchmarks/results]

Runs ``evaluate --protocol autoattack`` (APGD-CE, APGD-T, FAB-T, Square and the
AutoAttack ensemble on the float model, transferred to the chip, and white-box on the
chip: straight-through gradients, Square on the integer forward) and randomized-smoothing
certification (σ = 0.12, 0.25, 0.5) of the checked-in digits model
``models/digits_dlif_robust`` (exact-gain file), then reports wall time, images per
second and the share of time spent inside the bit-exact simulator (``Simulator.run``,
forward only: the backward pass of straight-through gradients is counted outside).
This is a throughput measurement of one configuration, not a comparison of contenders.
Writes ``evaluation.json`` and ``evaluation.md`` to ``--out``; the evaluation's own
report lands in ``--out/evaluation_run/``.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import rssnn_deploy  # noqa: E402,F401  (Lava shim first)
from rssnn_deploy.sim import simulator as sim_module  # noqa: E402
from rssnn_deploy.fileio import atomic_write_text  # noqa: E402
from rssnn_deploy.robustness.certify import CertifyConfig  # noqa: E402
from rssnn_deploy.robustness.evaluation import evaluate_subject, load_subject  # noqa: E402
from rssnn_deploy.robustness.protocols import config_for_protocol  # noqa: E402


class SimTimer:
    """Wall time spent inside ``Simulator.run`` (all instances), by patching the class."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._original = sim_module.Simulator.run

    def __enter__(self) -> "SimTimer":
        timer, original = self, self._original

        def run(self_sim, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(self_sim, *args, **kwargs)
            finally:
                timer.seconds += time.perf_counter() - start
                timer.calls += 1

        sim_module.Simulator.run = run
        return self

    def __exit__(self, *exc) -> None:
        sim_module.Simulator.run = self._original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models/digits_dlif_robust"))
    parser.add_argument("--net", default="model_exact.net")
    parser.add_argument("--samples", type=int, default=360)
    parser.add_argument("--certify-samples", type=int, default=100)
    parser.add_argument("--certify-n", type=int, default=10_000)
    parser.add_argument("--sigmas", default="0.12,0.25,0.5")
    parser.add_argument("--square-queries", type=int, default=5000)
    parser.add_argument("--apgd-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--phases", default="autoattack,certify",
                        help="comma list of the phases to run: autoattack, certify")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir, out = Path(args.model), Path(args.out)
    sigmas = tuple(float(s) for s in args.sigmas.split(","))
    subject, provenance = load_subject(model_dir / "checkpoint.pt", model_dir / args.net,
                                       "digits", args.samples)
    common = dict(noise={}, faults={}, lava_samples=0, resume=False, progress=True,
                  apgd_steps=args.apgd_steps, square_queries=args.square_queries)
    phases, per_cell, worst, certified = {}, {}, [], {}
    wanted = set(args.phases.split(","))
    run_dir = out / "evaluation_run"
    if "autoattack" in wanted:
        attack_config = config_for_protocol("autoattack", **common)
        with SimTimer() as timer:
            start = time.perf_counter()
            record = evaluate_subject(subject, attack_config, run_dir / "autoattack", provenance)
            phases["autoattack"] = {"wall_s": time.perf_counter() - start,
                                    "images": args.samples, "sim_s": timer.seconds,
                                    "sim_calls": timer.calls}
        per_cell = {f"{r['threat']}/{r['gradient']}/{r['attack']}/{r['eps']:g}": r["seconds"]
                    for r in record["attacks"] if r["threat"] != "transfer"}  # float's cells
        worst = [w for w in record["worst_case_all_gradients"]
                 if w["eps"] == record["eps"]["default"]]
    if "certify" in wanted:
        certify_config = config_for_protocol(
            "quick", attacks=(), **common,
            certify=CertifyConfig(sigmas=sigmas, n=args.certify_n),
            certify_samples=args.certify_samples)
        certify_subject, _ = load_subject(model_dir / "checkpoint.pt", model_dir / args.net,
                                          "digits", args.certify_samples)
        with SimTimer() as timer:
            start = time.perf_counter()
            cert = evaluate_subject(certify_subject, certify_config, run_dir / "certify",
                                    provenance)
            phases["certify"] = {"wall_s": time.perf_counter() - start,
                                 "images": args.certify_samples * len(sigmas),
                                 "sim_s": timer.seconds, "sim_calls": timer.calls}
        certified = {e["sigma"]: e["models"] for e in cert["certification"]["sigmas"]}
    for phase in phases.values():
        phase["images_per_s"] = phase["images"] / phase["wall_s"]
        phase["sim_share"] = phase["sim_s"] / phase["wall_s"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    result = {"commit": commit, "machine": platform.processor() or platform.machine(),
              "threads": args.threads, "model": str(model_dir / args.net),
              "settings": vars(args), "phases": phases, "attack_cell_seconds": per_cell,
              "autoattack_default_eps": worst, "certification": certified}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "evaluation.json", json.dumps(result, indent=1))
    runs = {"autoattack": f"AutoAttack protocol on {args.samples} images (APGD/FAB "
                          f"{args.apgd_steps} iterations, Square {args.square_queries:,} "
                          "queries; float, transfer and chip threat models)",
            "certify": f"certification of {args.certify_samples} images at σ = {args.sigmas} "
                       f"with n = {args.certify_n:,}"}
    lines = [f"# Evaluation cost (commit {commit}, {args.threads} threads)", "",
             f"Model `{model_dir.name}/{args.net}`; "
             + "; ".join(text for name, text in runs.items() if name in phases) + ".",
             "", "| phase | wall time (s) | images/s | share in simulator |", "|---|---|---|---|"]
    lines += [f"| {name} | {p['wall_s']:.0f} | {p['images_per_s']:.2f} | "
              f"{100 * p['sim_share']:.0f}% |" for name, p in phases.items()]
    if per_cell:
        lines += ["", "Slowest attack cells (s): " + ", ".join(
            f"{k} {v:.0f}" for k, v in sorted(per_cell.items(), key=lambda kv: -kv[1])[:6])]
    atomic_write_text(out / "evaluation.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

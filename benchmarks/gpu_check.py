"""The CUDA path of the simulator against the CPU engines, then its speed (run by
``benchmarks/gpu_check.sh``; meant to finish in under 5 minutes on one GPU).

1. Bit-exactness: on each of the benchmark's networks (``bench_simulator.networks``:
   dense 784-128-10, conv 1×28×28-8c3-16c3s2-10, PilotNet-LIF when lava-dl's file is
   there), a CUDA simulator (``engine="auto"``: ``torch_ops``) with TF32 switched on
   outside the run must equal the CPU fused engine and the CPU reference loop: every
   recorded u, v, s on a small batch, and output spikes, final v and counts on the first
   256 samples of every batch timed below.
2. Speed: samples × chip steps per second of the CUDA path at growing batches and of
   the CPU fused engine at 256, alternating in every round (min / median / max over
   rounds, CUDA timed with ``torch.cuda.synchronize``); PilotNet-LIF also as Loihi 2
   chips (408.91 inferences/s × 16 steps = 6,543 steps/s each, DESIGN.md section 6).

Exit status 1 when anything differs. Writes ``benchmarks/results/gpu_check.{json,md}``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_simulator as bench  # noqa: E402  (puts the repository on sys.path)
from rssnn_deploy.sim.fused import engine as fastsim, dispatch  # noqa: E402
from rssnn_deploy.fileio import atomic_write_text  # noqa: E402
from rssnn_deploy.report import markdown_table, write_json  # noqa: E402
from rssnn_deploy.sim.simulator import Simulator  # noqa: E402

LOIHI_STEPS_PER_S = 408.91 * 16
OUTPUTS = ("output_v", "spike_counts", "output_spikes")


def same(a, b, records: bool) -> bool:
    ok = all(torch.equal(getattr(a, k).cpu(), getattr(b, k).cpu()) for k in OUTPUTS)
    if records:
        ok &= a.states.keys() == b.states.keys() and all(
            torch.equal(x.cpu(), b.states[i][k].cpu())
            for i, rec in a.states.items() for k, x in rec.items())
    return ok


def first(result, name: str, n: int) -> torch.Tensor:
    """A result's ``name`` for its first n samples (spikes are (steps, samples, ...))."""
    x = getattr(result, name)
    return x[:, :n] if name == "output_spikes" else x[:n]


def timed(sim: Simulator, x: torch.Tensor, steps: int):
    if x.is_cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = sim.run(x, steps=steps)
    if x.is_cuda:
        torch.cuda.synchronize()
    return len(x) * steps / (time.perf_counter() - t), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one round, smaller batches")
    ap.add_argument("--out", default=str(bench.RESULTS / "gpu_check"))
    ap.add_argument("--device", default="cuda",
                    help="the device checked (default cuda; others run the same checks)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device (torch.cuda.is_available() is False); torch "
              f"{torch.__version__}", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    print(f"GPU: {gpu}; torch {torch.__version__}, CUDA {torch.version.cuda}; "
          f"{bench.machine_line()}", flush=True)
    rng = np.random.default_rng(0)
    try:
        import lava.lib.dl.netx  # noqa: F401  (PilotNet-LIF's file comes with lava-dl)
        pilot = True
    except ImportError as err:
        print(f"PilotNet-LIF left out: {err}", flush=True)
        pilot = False
    nets = bench.networks(rng, pilotnet_lif=pilot)
    rounds = 1 if args.quick else args.rounds
    batches = {"dense": [256, 1024, 4096, 16384], "conv": [256, 1024, 4096],
               "PilotNet": [64, 256, 1024, 2048]}
    ok, records, checks = True, [], []
    for name, (spec, steps, make) in nets.items():
        sizes = batches[name.split()[0].split("-")[0]]
        sizes = sizes[:2] if args.quick else sizes
        x = make(max(sizes))
        cpu = Simulator(spec)
        cpu_ref = Simulator(spec, engine="reference")
        cuda = Simulator(spec, device=device)
        # every record on a small batch, TF32 on outside the run
        small = x[:8]
        old = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
        torch.set_float32_matmul_precision("medium")
        torch.backends.cudnn.allow_tf32 = True
        try:
            g = cuda.run(small.to(device), steps=steps, record="all")
        finally:
            torch.set_float32_matmul_precision(old[0])
            torch.backends.cudnn.allow_tf32 = old[1]
        path = fastsim.engine_path(cuda)
        for engine, sim in (("CPU fused", cpu), ("CPU reference", cpu_ref)):
            eq = same(sim.run(small, steps=steps, record="all"), g, records=True)
            checks.append({"network": name, "against": engine, "batch": len(small),
                           "records": "all", "identical": eq})
            ok &= eq
            print(f"{name}: CUDA ({path}) vs {engine}, every record, batch {len(small)}: "
                  f"{'identical' if eq else 'DIFFERENT'}", flush=True)
        cpu_out = cpu.run(x[:256], steps=steps)      # the first 256 of every timed batch
        runs: Dict[str, List[float]] = {}
        for r in range(rounds):
            print(f"{name}: round {r + 1}/{rounds}", flush=True)
            rate, _ = timed(cpu, x[:256], steps)
            runs.setdefault("CPU fused, 256", []).append(rate)
            for n in sizes:
                rate, out = timed(cuda, x[:n].to(device), steps)
                runs.setdefault(f"CUDA, {n}", []).append(rate)
                head = min(n, 256)
                eq = all(torch.equal(first(out, k, head).cpu(), first(cpu_out, k, head))
                         for k in OUTPUTS)
                if r == 0:
                    checks.append({"network": name, "against": "CPU fused", "batch": n,
                                   "records": f"outputs of the first {head}",
                                   "identical": eq})
                ok &= eq
        for label, rates in runs.items():
            s = bench.stats(rates)
            rec = {"network": name, "contender": label, "rate": s, "path": path
                   if label.startswith("CUDA") else fastsim.engine_path(cpu)}
            if name.startswith("PilotNet"):
                rec["loihi2_chips"] = s["median"] / LOIHI_STEPS_PER_S
            records.append(rec)
    meta = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
            "machine": bench.machine_line(), "rounds": rounds,
            "product": dispatch.describe(), "wall_s": time.perf_counter() - t_start,
            "all_identical": ok}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), {"meta": meta, "checks": checks, "runs": records})
    text = markdown(meta, checks, records)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)
    return 0 if ok else 1


def markdown(meta, checks, records) -> str:
    lines = ["# Simulator on CUDA against the CPU engines", "",
             f"GPU: {meta['gpu']}; torch {meta['torch']}, CUDA {meta['cuda']}; "
             f"{meta['machine']}. {meta['rounds']} rounds, {meta['wall_s'] / 60:.1f} min. "
             f"Everything identical: **{meta['all_identical']}**.", "",
             markdown_table(["network", "against", "batch", "compared", "identical"],
                            [[c["network"], c["against"], c["batch"], c["records"],
                              c["identical"]] for c in checks]), "",
             "Rates: samples × chip steps per second, min / **median** / max over rounds "
             "(contenders alternate within a round). Loihi 2 chips: the median over "
             "408.91 inferences/s × 16 steps.", "",
             markdown_table(["network", "contender, batch", "path", "rate", "Loihi 2 chips"],
                            [[r["network"], r["contender"], r["path"], bench._r(r["rate"]),
                              f"{r['loihi2_chips']:.1f}" if "loihi2_chips" in r else ""]
                             for r in records])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

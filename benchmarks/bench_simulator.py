"""Lava CPU (stock netx, fixed_pt) vs the project's batched simulator, side by side.

    .venv/bin/python benchmarks/bench_simulator.py [--lava-samples 6] [--device cpu]

For each network (dense 784-128-10 and a small conv net) and batch size (1, 256) the
same integer inputs run on both; the outputs (output layer's final v and spike counts)
must be identical for every sample Lava ran. Lava runs samples one after another, so it
runs only ``--lava-samples`` of a batch and its rate is extrapolated from the steady
state (median time per sample after the first, which includes compiling); the simulator
runs the whole batch (best of a few repeats after a warm-up). Rates are samples × steps
per second, steps = ``spec.run_steps`` per sample.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import rssnn_deploy  # noqa: E402,F401  (Lava shim first)
from rssnn_deploy.backends import get_backend  # noqa: E402
from rssnn_deploy.sim import Simulator  # noqa: E402
from rssnn_deploy.spec import CubaNeuron, LayerSpec, NetworkSpec  # noqa: E402

INTEGRATOR = CubaNeuron(i_decay=4096, v_decay=0, vth_mant=131071)
LIF = CubaNeuron(i_decay=4096, v_decay=41, vth_mant=64)   # paper LIF, λ = 0.99


def dense_net(rng) -> NetworkSpec:
    layers = [LayerSpec("input", (784,), neuron=CubaNeuron(4096, 41, 64)),
              LayerSpec("dense", (128,), neuron=LIF,
                        weight=np.clip(rng.normal(0, 30, (128, 784)), -256, 254).round(),
                        bias=rng.integers(-8, 9, 128)),
              LayerSpec("dense", (10,), neuron=INTEGRATOR,
                        weight=np.clip(rng.normal(0, 60, (10, 128)), -256, 254).round())]
    return NetworkSpec(layers, meta={"steps": 8, "readout": "membrane"})


def conv_net(rng) -> NetworkSpec:
    def w(*shape, s=40):
        return np.clip(rng.normal(0, s, shape), -256, 254).round()
    layers = [LayerSpec("input", (1, 28, 28), neuron=CubaNeuron(4096, 41, 64)),
              LayerSpec("conv", (8, 28, 28), neuron=LIF, weight=w(8, 1, 3, 3, s=80),
                        padding=(1, 1)),
              LayerSpec("conv", (16, 14, 14), neuron=LIF, weight=w(16, 8, 3, 3),
                        stride=(2, 2), padding=(1, 1)),
              LayerSpec("flatten", (16 * 14 * 14,)),
              LayerSpec("dense", (10,), neuron=INTEGRATOR, weight=w(10, 16 * 14 * 14, s=20))]
    return NetworkSpec(layers, meta={"steps": 8, "readout": "membrane"})


def bench_sim(spec, bias, device, repeats=3):
    sim = Simulator(spec, device=device)
    b = bias.to(device)
    sim.run(b)                                      # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        res = sim.run(b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return res, best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lava-samples", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="1,256")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    lava = get_backend("lava", progress=False)
    rows, ok = [], True
    batches = [int(b) for b in args.batches.split(",")]
    nets = (("dense 784-128-10", dense_net(rng)), ("conv 1x28x28-8c3-16c3s2-10", conv_net(rng)))
    for name, spec in nets:
        steps = spec.run_steps
        bias = torch.as_tensor(rng.integers(0, 40, (max(batches),) + spec.layers[0].shape))
        n_lava = max(2, min(max(batches), args.lava_samples))
        lres = lava.run(spec, bias[:n_lava])
        per_sample = lava.last_timing["sample_s"]
        rate_lava = steps / statistics.median(per_sample[1:])
        for batch in batches:
            res, sim_s = bench_sim(spec, bias[:batch], args.device)
            n = min(batch, n_lava)
            same = (torch.equal(lres.output_v[:n], res.output_v[:n].cpu())
                    and torch.equal(lres.spike_counts[:n], res.spike_counts[:n].cpu()))
            ok &= same
            rate_sim = batch * steps / sim_s
            rows.append((name, batch, n, rate_lava, rate_sim, rate_sim / rate_lava, same,
                         lava.last_timing["seconds"]))
    print(f"\nsteps per sample = spec.run_steps (T=8 + pipeline depth); device={args.device}, "
          f"torch threads={torch.get_num_threads()}")
    print(f"{'network':<28}{'batch':>6}{'checked':>8}{'Lava sa*st/s':>14}{'sim sa*st/s':>14}"
          f"{'ratio':>9}  identical  Lava wall for {args.lava_samples} samples")
    for name, batch, n, rl, rs, ratio, same, wall in rows:
        print(f"{name:<28}{batch:>6}{n:>8}{rl:>14.0f}{rs:>14.0f}{ratio:>9.0f}  {str(same):<9}  "
              f"{wall:.1f} s")
    print("Lava: stock netx, Loihi2SimCfg(fixed_pt), samples streamed one after another "
          "(reset_interval); its rate is the steady state (median time per sample after the "
          "first, which compiles), extrapolated to every batch size. 'checked': samples whose "
          "final v and spike counts were compared (all identical = True).")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

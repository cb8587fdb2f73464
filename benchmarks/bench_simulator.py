"""Lava CPU fixed_pt vs the simulator's reference loop vs its fused engine, side by side.

    .venv/bin/python benchmarks/bench_simulator.py [--rounds 3] [--load N] [--quick]
    .venv/bin/python benchmarks/bench_simulator.py --products [--quick]   # forced products

Contenders alternate inside every round (Lava, then each simulator configuration, then
the next round), so a machine whose load changes during the run slows all of them
alike; each contender's statistics are min / median / max over the rounds, and ratios
are ratios of medians. Rates are samples × chip steps per second.

* Lava (stock netx, ``Loihi2SimCfg(select_tag="fixed_pt")``) runs one sample at a time
  (samples streamed through one network with ``reset_interval``); each of its samples
  is one measurement (the first of a run, which compiles, is dropped). Lava's rate does
  not depend on the batch, so the simulator's rate at every batch is compared with it.
  Lava's outputs (final v, spike counts) must equal the simulator's for every sample it
  ran, and the fused engine's must equal the reference's; the script exits 1 otherwise.
* The simulator runs whole batches (1, 64, 256, 1024, 4096; PilotNet to 1024 and the
  reference only where affordable, so that a default run stays near 10 minutes on an
  idle 2-core machine) with 1 thread and with the default threads (the fused engine's
  automatic choice, ``fastsim.auto_threads``: the free cores; torch's default intra-op
  threads for the reference), and for dense 784-128-10 with T up to 256.
* Loaded rows (``--load N``, default: one busy process per core; 0 skips them): N
  processes spinning on the CPU run throughout a second set of rounds, in which Lava and
  the fused engine (1 thread and default threads) alternate again on dense 784-128-10
  and PilotNet-LIF; the ratio there is of medians measured under the same load.
* Peak memory: the resident-set high-water mark of a run (VmHWM, reset before it)
  minus the resident set before it.
* Machine limits, measured in the same run: float32 and int8 GEMM throughput (2048²
  ``torch.mm`` / ``torch._int_mm``) and memory bandwidth (a 256 MiB copy), with 1
  thread and every core. A run's "GEMM %" is its synaptic multiply-adds (2 · M · K · N
  per dense/conv layer) per second over the GEMM peak (the fused engine's synapses on
  spikes are int8 GEMMs); "BW %" is the bytes the fused design must move (spikes 9 B
  per input value-step, synaptic sums 8 B and spikes 1 B per neuron-step) per second
  over the copy bandwidth. Both apply the same work to both engines, so they read as
  "how far from the machine's limit". "path GEMM %" is the same work over the peak of
  the GEMM the row's path uses (its C kernel, ``torch._int_mm`` or float32 ``mm``,
  measured alike: the C kernels on 2048 × 1024 × 1024 from as many threads).
* The machine: CPU model and the flags that decide the synaptic product (avx2,
  avx512_vnni, avx_vnni, amx; asimddp on ARM), the product ``auto`` takes, and each
  row's engine path (``fastsim.engine_path``: whole pieces in C with which GEMM kernel,
  or the product of each layer). Rows where the fused engine's automatic choice is
  slower than the reference at batch ≥ 64 are flagged.
* ``--products``: instead of the above, every synaptic product this machine can run,
  forced one at a time (``fastsim.use_kernel``), alternating with the reference and
  ``auto`` in each round, on the same networks at batches 64 and 256 (PilotNet 64),
  1 thread and the default threads; outputs must be identical. This is how the AVX2
  and float32 paths are measured on a machine whose ``auto`` takes another one.
  Writes ``benchmarks/results/simulator_products.{json,md}``.

Writes ``benchmarks/results/simulator.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import rssnn_deploy  # noqa: E402,F401  (Lava shim first)
from rssnn_deploy.sim.fused import engine as fastsim  # noqa: E402
from rssnn_deploy.sim.fused import dispatch  # noqa: E402
from rssnn_deploy.sim.fused import kernels as fastsim_kernels  # noqa: E402
from rssnn_deploy.sim.fused import layers as fastsim_layers  # noqa: E402
from rssnn_deploy.backends import get_backend  # noqa: E402
from rssnn_deploy.netx.reader import read_netx  # noqa: E402
from rssnn_deploy.report import markdown_table, save_figure, write_json  # noqa: E402
from rssnn_deploy.fileio import atomic_write_text  # noqa: E402
from rssnn_deploy.sim.simulator import Simulator  # noqa: E402
from rssnn_deploy.spec import CubaNeuron, LayerSpec, NetworkSpec  # noqa: E402

INTEGRATOR = CubaNeuron(i_decay=4096, v_decay=0, vth_mant=131071)
LIF = CubaNeuron(i_decay=4096, v_decay=41, vth_mant=64)   # paper LIF, λ = 0.99
RESULTS = Path(__file__).resolve().parent / "results"
ENGINES = ("reference", "fused")


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


def networks(rng, pilotnet_lif: bool = True
             ) -> Dict[str, Tuple[NetworkSpec, int, Callable[[int], torch.Tensor]]]:
    """The benchmark's networks: name → (spec, chip steps, n ↦ n samples' input biases:
    random 0–39 for dense and conv, the PilotNet test image with per-pixel jitter);
    PilotNet-LIF (its file comes with lava-dl) unless ``pilotnet_lif`` is off."""

    def biases(shape):
        return lambda n: torch.as_tensor(rng.integers(0, 40, (n,) + tuple(shape)))

    dense, conv = dense_net(rng), conv_net(rng)
    nets = {"dense 784-128-10": (dense, 10, biases(dense.layers[0].shape)),
            "conv 1x28x28-8c3-16c3s2-10": (conv, 10, biases(conv.layers[0].shape))}
    if pilotnet_lif:
        pn_spec, pn_image = pilotnet()

        def pn_inputs(n):
            jitter = rng.integers(-8, 9, (n,) + pn_image.shape)
            return torch.as_tensor(np.clip(pn_image[None] + jitter, 0, None))

        nets["PilotNet-LIF (lava-dl)"] = (pn_spec, 17, pn_inputs)
    return nets


def pilotnet() -> Tuple[NetworkSpec, np.ndarray]:
    """lava-dl's PilotNet-LIF (gts/pilotnet_lif/network.net) and its test image."""
    import lava.lib.dl.netx as netx
    root = (Path(netx.__file__).resolve().parents[4] / "tests" / "lava" / "lib" / "dl" / "netx"
            / "gts" / "pilotnet_lif")
    image = np.load(root / "image.npy").transpose(2, 1, 0).astype(np.int64)
    return read_netx(root / "network.net"), image


# ---------------------------------------------------------------------------- measuring

class PeakRSS:
    """Resident-set growth of the block: the kernel's high-water mark (VmHWM, reset
    through /proc/self/clear_refs before the block) minus the resident set before it.
    No sampling thread, whose wake-ups would take the GIL from the run being timed."""

    def __enter__(self):
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        self.base = self._status("VmRSS")
        return self

    def __exit__(self, *exc):
        self.peak = self._status("VmHWM")

    @staticmethod
    def _status(field: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"/proc/self/status has no {field}")

    @property
    def mib(self) -> float:
        return max(0, self.peak - self.base) / 2 ** 20


def set_threads(n: Optional[int], cores: int) -> int:
    """1 thread, or (``None``) the defaults: the fused engine's automatic choice and
    torch's every core for the reference. Returns the fused engine's thread count."""
    torch.set_num_threads(n or cores)
    fastsim.set_threads(n)
    return n or fastsim.auto_threads()


class BusyLoad:
    """``n`` processes spinning on the CPU while the block runs (the loaded rows)."""

    def __init__(self, n: int):
        self.n = n
        self.procs: List[subprocess.Popen] = []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                      for _ in range(self.n)]
        time.sleep(1.0)         # let them reach the run queue
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def kernel_limits(n: int, reps: int) -> Dict[str, float]:
    """Peak GOP/s (max of ``reps``) of each C GEMM kernel this CPU runs, on 2048 × 1024
    0/1 bytes × 1024 × 1024 int8 weights, from ``n`` threads at once (each its own
    product; ctypes releases Python's lock, as in whole pieces)."""
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.random((2048, 1024)) < 0.5).to(torch.uint8)
    packed, n_pad = fastsim_layers.pack_weights(rng.integers(-128, 128, (1024, 1024))
                                                .astype(np.int8))
    outs = [torch.empty((2048, 1024), dtype=torch.int32) for _ in range(n)]
    out = {}
    with ThreadPoolExecutor(n) as pool:
        for kernel in sorted(fastsim_kernels.CPU_GEMMS):
            best = 0.0
            for _ in range(reps):
                t = time.perf_counter()
                list(pool.map(lambda o: fastsim_layers.c_gemm(x, packed, n_pad, 1024, kernel,
                                                                o), outs))
                best = max(best, n * 2 * 2048 * 1024 * 1024 / (time.perf_counter() - t) / 1e9)
            out[f"{kernel}_gops_max"] = best
    return out


def path_peak(path: str, lim: Dict[str, float]) -> Tuple[str, float]:
    """(name, GOP/s) of the GEMM an engine path uses (``fastsim.engine_path``): its C
    kernel, ``torch._int_mm`` for the int_mm product and VNNI layers driven from Python,
    float32 ``mm`` for the reference and float layers."""
    if path.startswith("C pieces ("):
        kernel = path[len("C pieces ("):-1]
        return kernel, lim[f"{kernel}_gops_max"]
    products = path[path.find("(") + 1:-1].split(", ") if path.startswith("layers") else []
    int8 = [p for p in products if p in dispatch.INT8_PRODUCTS]
    if int8 and int8[0] in ("vnni", "int_mm") and dispatch.INT_MM:
        return "torch._int_mm", lim["int8_gops_max"]
    if int8:
        return int8[0], lim[f"{int8[0]}_gops_max"]
    return "float32 mm", lim["gemm_gflops_max"]


def machine_limits(threads: List[int], reps: int = 5) -> Dict[int, Dict[str, float]]:
    out = {}
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a8 = torch.randint(-128, 128, (2048, 2048), dtype=torch.int8)
    src = torch.ones(2 ** 26)            # 256 MiB of float32
    dst = torch.empty_like(src)
    for n in threads:
        torch.set_num_threads(n)
        gemm, gemm8, copy = [], [], []
        for _ in range(reps):            # alternate the probes as well
            t = time.perf_counter()
            torch.mm(a, b)
            gemm.append(2 * 2048 ** 3 / (time.perf_counter() - t) / 1e9)
            t = time.perf_counter()
            torch._int_mm(a8, a8)
            gemm8.append(2 * 2048 ** 3 / (time.perf_counter() - t) / 1e9)
            t = time.perf_counter()
            dst.copy_(src)
            copy.append(2 * src.numel() * 4 / (time.perf_counter() - t) / 1e9)
        out[n] = {"gemm_gflops_max": max(gemm), "gemm_gflops_median": statistics.median(gemm),
                  "int8_gops_max": max(gemm8), "int8_gops_median": statistics.median(gemm8),
                  "copy_gbs_max": max(copy), "copy_gbs_median": statistics.median(copy),
                  **kernel_limits(n, 3)}
    return out


def work(sim: Simulator, steps: int, n: int) -> Tuple[float, float]:
    """(multiply-adds × 2, bytes the fused design moves) for one run of n samples."""
    flops, nbytes = 0.0, 0.0
    in_width = int(np.prod(sim.input_shape))
    for st in sim.stages:
        f = int(np.prod(st.shape))
        if st.synapse is not None:
            w = st.synapse.w_eff
            per_out = int(np.prod(w.shape[1:])) if st.kind == "conv" else in_width
            flops += 2.0 * f * per_out * (steps - 1) * n
            nbytes += 9.0 * in_width * (steps - 1) * n
        nbytes += 9.0 * f * steps * n
        in_width = f
    return flops, nbytes


def stats(xs: List[float]) -> Optional[Dict[str, float]]:
    if not xs:
        return None
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}


# ---------------------------------------------------------------------------- the run

def lava_round(lava, spec, inputs, steps, fused_ref) -> Tuple[List[float], bool]:
    """Per-sample rates of one Lava run (first sample dropped) and whether outputs match."""
    res = lava.run(spec, inputs, steps=steps)
    same = (torch.equal(res.output_v, fused_ref.output_v[:len(inputs)])
            and torch.equal(res.spike_counts, fused_ref.spike_counts[:len(inputs)]))
    return [steps / s for s in lava.last_timing["sample_s"][1:]], same


def flag_auto_slower(records: List[Dict]) -> List[str]:
    """Give every fused row at batch ≥ 64 its ratio to the reference of the same network,
    condition, threads and batch (``vs_reference``); return a line for each where the
    automatic choice is slower than the reference."""
    ref = {(r["network"], r.get("condition"), r["threads"], r["batch"]): r["rate"]["median"]
           for r in records if r["engine"] == "reference"}
    flagged = []
    for r in records:
        base = ref.get((r["network"], r.get("condition"), r["threads"], r["batch"]))
        if r["engine"] in ("fused", "auto") and base and r["batch"] >= 64:
            r["vs_reference"] = r["rate"]["median"] / base
            if r["vs_reference"] < 1.0:
                flagged.append(f"{r['network']} batch {r['batch']} threads {r['threads']}: "
                               f"auto ({r.get('path', '?')}) {r['vs_reference']:.2f}× "
                               "the reference")
    return flagged


def timed(sim: Simulator, x: torch.Tensor, steps: int) -> Tuple[float, float]:
    """(samples × steps per second, peak MiB) of one run."""
    with PeakRSS() as peak:
        t = time.perf_counter()
        sim.run(x, steps=steps)
        dt = time.perf_counter() - t
    return len(x) * steps / dt, peak.mib


THREADS = {"1": 1, "default": None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="few batches and rounds (smoke run)")
    ap.add_argument("--nets", default="dense,conv,pilotnet",
                    help="comma list of networks: dense, conv, pilotnet")
    ap.add_argument("--t-values", default="8,32,128,256", help="T for the scaling run ('' = none)")
    ap.add_argument("--load", type=int, default=None,
                    help="busy processes for the loaded rows (default: one per core; 0: none)")
    ap.add_argument("--out", default=str(RESULTS / "simulator"))
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the Markdown and PNG from the existing JSON")
    ap.add_argument("--products", action="store_true",
                    help="every synaptic product this machine runs, forced, side by side "
                         "with the reference and auto (no Lava)")
    args = ap.parse_args()
    if args.products:
        return products_main(args)
    if args.render:
        import json
        out = Path(args.out)
        data = json.loads(out.with_suffix(".json").read_text())
        atomic_write_text(out.with_suffix(".md"),
                          markdown(data["meta"], data["runs"], data["t_scaling"]))
        plot(data["runs"], data["t_scaling"], out.with_suffix(".png"))
        return 0
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    rng = np.random.default_rng(0)
    cores = len(os.sched_getaffinity(0))
    busy = cores if args.load is None else args.load
    rounds = 1 if args.quick else args.rounds
    all_batches = [1, 64] if args.quick else [1, 64, 256, 1024, 4096]
    # name: spec, steps, inputs, Lava samples per round, max batch per engine, loaded batch
    extra = {"dense": (12, {"reference": 4096, "fused": 4096}, 256),
             "conv": (4, {"reference": 256, "fused": 4096}, None),
             "PilotNet": (3, {"reference": 64, "fused": 1024}, 64)}
    nets = {name: (spec, steps, make) + extra[name.split()[0].split("-")[0]]
            for name, (spec, steps, make) in networks(rng).items()}
    dense_spec = nets["dense 784-128-10"][0]
    wanted = [w.strip().lower() for w in args.nets.split(",") if w.strip()]
    nets = {k: v for k, v in nets.items() if any(w in k.lower() for w in wanted)}
    print(f"machine limits ({cores} cores) ...", flush=True)
    limits = machine_limits(sorted({1, cores}))
    lava = get_backend("lava", progress=False)
    ok = True
    records = []
    prepared = {}

    def add_records(name, sims, steps, lava_rates, lava_same, same_engines, runs, mem, chosen,
                    condition, n_lava, paths):
        lava_stats = stats(lava_rates)
        for (engine, label, batch), rates in sorted(runs.items()):
            s = stats(rates)
            flops, nbytes = work(sims[engine], steps, batch)
            sec = batch * steps / s["median"]
            lim = limits[1 if label == "1" else cores]
            n_thr = chosen[(engine, label, batch)]
            path = paths.get((engine, label, batch), "reference")
            peak_name, peak = path_peak(path, lim)
            records.append({
                "network": name, "engine": engine, "threads": label,
                "threads_used": statistics.median(n_thr), "condition": condition,
                "batch": batch, "steps": steps, "rate": s, "lava_rate": lava_stats,
                "ratio_of_medians": s["median"] / lava_stats["median"],
                "peak_mib": mem[(engine, label, batch)],
                "gemm_fraction": flops / sec / 1e9 / lim["gemm_gflops_max"],
                "int8_fraction": flops / sec / 1e9 / lim["int8_gops_max"],
                "path": path, "path_gemm": peak_name,
                "path_gemm_fraction": flops / sec / 1e9 / peak,
                "bw_fraction": nbytes / sec / 1e9 / lim["copy_gbs_max"],
                "lava_outputs_identical": lava_same, "engines_identical": same_engines,
                "lava_samples_checked": n_lava})
        print(f"{name} ({condition}): Lava {lava_stats['median']:.3g} sa*st/s, outputs "
              f"identical: {lava_same}; engines identical: {same_engines}", flush=True)

    for name, (spec, steps, make, n_lava, max_batch, _) in nets.items():
        batches = [b for b in all_batches if b <= max(max_batch.values())]
        top = max(batches + [n_lava])
        x = make(top)
        sims = {e: Simulator(spec, engine=e) for e in ENGINES}
        check = {e: sims[e].run(x[:min(top, 64)], steps=steps) for e in ENGINES}
        same_engines = all(torch.equal(getattr(check["reference"], k), getattr(check["fused"], k))
                           for k in ("output_v", "spike_counts", "output_spikes"))
        ok &= same_engines
        prepared[name] = (sims, x, check, same_engines)
        lava_rates, lava_same = [], True
        runs: Dict[Tuple[str, str, int], List[float]] = {}
        mem: Dict[Tuple[str, str, int], float] = {}
        chosen: Dict[Tuple[str, str, int], List[int]] = {}
        paths: Dict[Tuple[str, str, int], str] = {}
        for r in range(rounds):
            print(f"{name}: round {r + 1}/{rounds}: Lava ...", flush=True)
            rates, same = lava_round(lava, spec, x[:n_lava], steps, check["fused"])
            lava_rates += rates
            lava_same &= same
            for label, n_set in THREADS.items():
                for batch in batches:
                    for engine in ENGINES:
                        if batch > max_batch[engine]:
                            continue
                        key = (engine, label, batch)
                        n_thr = set_threads(n_set, cores) if engine == "fused" else (n_set or cores)
                        rate, mib = timed(sims[engine], x[:batch], steps)
                        if engine == "fused":   # the count the run took (capped by its work)
                            n_thr = sims[engine].fused_state.last_threads
                            paths[key] = fastsim.engine_path(sims[engine])
                        runs.setdefault(key, []).append(rate)
                        chosen.setdefault(key, []).append(n_thr)
                        mem[key] = max(mem.get(key, 0.0), mib)
                print(f"  threads {label}: done", flush=True)
        set_threads(None, cores)
        ok &= lava_same
        add_records(name, sims, steps, lava_rates, lava_same, same_engines, runs, mem, chosen,
                    "as found", n_lava, paths)

    # T scaling, dense 784-128-10, batch 256, default threads
    t_values = [int(t) for t in args.t_values.split(",") if t.strip()]
    spec = dense_spec
    x = torch.as_tensor(rng.integers(0, 40, (256,) + tuple(spec.layers[0].shape)))
    sims = {e: Simulator(spec, engine=e) for e in ENGINES}
    t_runs: Dict[Tuple[str, int], List[float]] = {}
    t_mem: Dict[Tuple[str, int], float] = {}
    set_threads(None, cores)
    for r in range(rounds if t_values else 0):
        print(f"T scaling: round {r + 1}/{rounds}", flush=True)
        for T in t_values:
            steps = T + spec.pipeline_depth
            ref = sims["fused"].run(x[:3], steps=steps)
            rates, same = lava_round(lava, spec, x[:3], steps, ref)
            ok &= same
            t_runs.setdefault(("lava", T), []).extend(rates)
            for engine in ENGINES:
                rate, mib = timed(sims[engine], x, steps)
                t_runs.setdefault((engine, T), []).append(rate)
                t_mem[(engine, T)] = max(t_mem.get((engine, T), 0.0), mib)
    t_records = [{"T": T, "engine": e, "rate": stats(t_runs[(e, T)]),
                  "peak_mib": t_mem.get((e, T))} for T in t_values
                 for e in ("lava",) + ENGINES] if t_runs else []
    for rec in t_records:
        rec["ratio_of_medians"] = (rec["rate"]["median"]
                                   / stats(t_runs[("lava", rec["T"])])["median"])

    # loaded rows: busy processes on every core, Lava and the fused engine alternating
    loaded = [(name, v) for name, v in nets.items() if v[5] is not None]
    if busy and loaded:
        condition = f"+{busy} busy process{'es' if busy > 1 else ''}"
        with BusyLoad(busy):
            acc = {name: ([], True, {}, {}, {}) for name, _ in loaded}
            loaded_paths: Dict[str, Dict[Tuple[str, str, int], str]] = {n: {} for n, _ in loaded}
            for r in range(rounds):
                for name, (spec, steps, make, n_lava, max_batch, batch) in loaded:
                    print(f"{name} ({condition}): round {r + 1}/{rounds}", flush=True)
                    sims, x, check, same_engines = prepared[name]
                    lava_rates, lava_same, runs, mem, chosen = acc[name]
                    rates, same = lava_round(lava, spec, x[:n_lava], steps, check["fused"])
                    lava_rates += rates
                    acc[name] = (lava_rates, lava_same and same, runs, mem, chosen)
                    for label, n_set in THREADS.items():
                        key = ("fused", label, batch)
                        set_threads(n_set, cores)
                        rate, mib = timed(sims["fused"], x[:batch], steps)
                        n_thr = sims["fused"].fused_state.last_threads
                        loaded_paths[name][key] = fastsim.engine_path(sims["fused"])
                        runs.setdefault(key, []).append(rate)
                        chosen.setdefault(key, []).append(n_thr)
                        mem[key] = max(mem.get(key, 0.0), mib)
        set_threads(None, cores)
        for name, (spec, steps, make, n_lava, max_batch, batch) in loaded:
            lava_rates, lava_same, runs, mem, chosen = acc[name]
            ok &= lava_same
            add_records(name, prepared[name][0], steps, lava_rates, lava_same,
                        prepared[name][3], runs, mem, chosen, condition, n_lava,
                        loaded_paths[name])

    flagged = flag_auto_slower(records)
    for line in flagged:
        print(f"FLAG: {line}", flush=True)
    meta = {"cores": cores, "cpu": platform.processor() or platform.machine(),
            "machine": dispatch.machine_line(), "auto_slower_than_reference": flagged,
            "torch": torch.__version__, "engine": fastsim.engine_status(),
            "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
            "rounds": rounds, "limits": limits, "busy_processes": busy,
            "wall_s": time.perf_counter() - t_start, "all_outputs_identical": ok}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), {"meta": meta, "runs": records, "t_scaling": t_records})
    atomic_write_text(out.with_suffix(".md"), markdown(meta, records, t_records))
    plot(records, t_records, out.with_suffix(".png"))
    print(markdown(meta, records, t_records))
    return 0 if ok else 1


# ------------------------------------------------------------ forced products, side by side

def products_main(args) -> int:
    """Every synaptic product this machine runs, forced, alternating with the reference
    and ``auto`` (see the module notes, ``--products``)."""
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    rng = np.random.default_rng(0)
    cores = len(os.sched_getaffinity(0))
    rounds = 1 if args.quick else args.rounds
    wanted = [w.strip().lower() for w in args.nets.split(",") if w.strip()]
    nets = {k: v for k, v in networks(rng).items() if any(w in k.lower() for w in wanted)}
    products = [p for p in dispatch.PRODUCTS if dispatch.can_run(p)]
    # the reference last in a round, and a pause after it on several threads: its
    # OpenMP workers keep spinning for a while and would slow whichever came next
    contenders = ["auto"] + products + ["reference"]
    print(dispatch.machine_line(), flush=True)
    ok, records = True, []
    for name, (spec, steps, make) in nets.items():
        batches = [64] if args.quick or name.startswith("PilotNet") else [64, 256]
        x = make(max(batches))
        sims = {c: Simulator(spec, engine="reference" if c == "reference" else "fused")
                for c in contenders}
        for c in products:
            fastsim.use_kernel(sims[c], c)
        check = {c: sims[c].run(x[:16], steps=steps) for c in contenders}
        for c in contenders:
            same = all(torch.equal(getattr(check[c], k), getattr(check["reference"], k))
                       for k in ("output_v", "spike_counts", "output_spikes"))
            ok &= same
            if not same:
                print(f"{name}: {c} differs from the reference", flush=True)
            if c != "reference":        # warm: workspace, cost estimate, first-run costs
                sims[c].run(x, steps=steps)
        runs: Dict[Tuple[str, str, int], List[float]] = {}
        used: Dict[Tuple[str, str, int], List[int]] = {}
        paths: Dict[Tuple[str, str, int], str] = {}
        fused = contenders[:-1]
        for r in range(rounds):
            print(f"{name}: round {r + 1}/{rounds}", flush=True)
            # the fused contenders' order turns each round: the first after the
            # reference ran slower (auto, always first, measured 472,789 against its
            # own forced product's 757,215 at dense batch 64, the same path)
            order = fused[r % len(fused):] + fused[:r % len(fused)] + ["reference"]
            for label, n_set in THREADS.items():
                for batch in batches:
                    for c in order:
                        set_threads(n_set, cores)
                        rate, _ = timed(sims[c], x[:batch], steps)
                        key = (c, label, batch)
                        runs.setdefault(key, []).append(rate)
                        used.setdefault(key, []).append(
                            n_set or cores if c == "reference" else sims[c].fused_state.last_threads)
                        paths[key] = fastsim.engine_path(sims[c]) if c != "reference" \
                            else "reference"
                        if c == "reference" and (n_set or cores) > 1:
                            time.sleep(0.3)
        set_threads(None, cores)
        for (c, label, batch), rates in runs.items():
            records.append({"network": name, "engine": c, "threads": label,
                            "threads_used": statistics.median(used[(c, label, batch)]),
                            "batch": batch, "steps": steps, "rate": stats(rates),
                            "path": paths[(c, label, batch)]})
    flagged = flag_auto_slower(records)
    for r in records:       # every forced product against the reference as well
        base = next((q["rate"]["median"] for q in records if q["engine"] == "reference" and
                     (q["network"], q["threads"], q["batch"]) ==
                     (r["network"], r["threads"], r["batch"])), None)
        r["vs_reference"] = r["rate"]["median"] / base
    for line in flagged:
        print(f"FLAG: {line}", flush=True)
    meta = {"cores": cores, "machine": dispatch.machine_line(), "torch": torch.__version__,
            "rounds": rounds, "load_average_at_start": load_start,
            "load_average_at_end": os.getloadavg(), "wall_s": time.perf_counter() - t_start,
            "all_outputs_identical": ok, "auto_slower_than_reference": flagged}
    out = Path(args.out + "_products")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), {"meta": meta, "runs": records})
    text = products_markdown(meta, records)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)
    return 0 if ok else 1


def products_markdown(meta, records) -> str:
    loads = ", ".join(f"{v:.1f}" for v in meta["load_average_at_start"])
    loads_end = ", ".join(f"{v:.1f}" for v in meta["load_average_at_end"])
    lines = ["# Simulator speed by synaptic product, forced side by side", "",
             meta["machine"], "",
             f"{meta['cores']} cores, torch {meta['torch']}, {meta['rounds']} rounds, "
             f"{meta['wall_s'] / 60:.1f} min. Load average (1, 5, 15 min) at the start: "
             f"{loads}; at the end: {loads_end}. The reference, ``auto`` and every product "
             "this machine runs (forced with fastsim.use_kernel) alternate within each "
             "round. Outputs identical to the reference's: "
             f"**{meta['all_outputs_identical']}**.", "",
             "Rates: samples × chip steps per second, min / **median** / max over rounds; "
             "vs ref = median / the reference's median at the same batch and threads. "
             "Threads: 1, or the default (the fused engine's automatic choice, the number "
             "it took in parentheses; torch's every core for the reference).", ""]
    rows = [[r["network"], r["batch"], _threads(r), r["engine"], r["path"], _r(r["rate"]),
             f"{r['vs_reference']:.2f}×"] for r in records]
    lines.append(markdown_table(["network", "batch", "threads", "contender", "path", "rate",
                                 "vs ref"], rows))
    flagged = meta["auto_slower_than_reference"]
    lines += ["", "Automatic choice slower than the reference (batch ≥ 64): " +
              ("; ".join(flagged) if flagged else "none") + "."]
    return "\n".join(lines) + "\n"


def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _r(s: Dict[str, float]) -> str:
    return f"{_n(s['min'])} / **{_n(s['median'])}** / {_n(s['max'])}"


def _threads(r) -> str:
    if str(r["threads"]) == "1" or "threads_used" not in r:    # older files: a count
        return str(r["threads"])
    return f"default ({r['threads_used']:g})"


def markdown(meta, records, t_records) -> str:
    lim = meta["limits"]
    loads = ", ".join(f"{v:.1f}" for v in meta.get("load_average_at_start", ()))
    loads_end = ", ".join(f"{v:.1f}" for v in meta["load_average_at_end"])
    lines = ["# Simulator speed: Lava CPU fixed_pt vs reference loop vs fused engine", "",
             f"{meta['cores']} cores ({meta['cpu']}), torch {meta['torch']}, "
             f"{meta['rounds']} rounds, {meta.get('wall_s', float('nan')) / 60:.1f} min; engine: "
             f"{meta['engine']}. Load average (1, 5, 15 min) at the start: {loads}; at the "
             f"end: {loads_end} (rows \"as found\" ran with whatever else the machine was "
             f"running; rows \"+N busy\" with N processes spinning on the CPU, started by "
             f"the benchmark). Contenders alternate within each round. All outputs "
             f"identical (Lava vs simulator on every sample Lava ran, fused vs reference): "
             f"**{meta['all_outputs_identical']}**.",
             "", meta.get("machine", ""), "", "Machine limits measured in the same run (max of 5): " + "; ".join(
                 f"{n} thread{'s' if int(n) > 1 else ''}: float32 GEMM {v['gemm_gflops_max']:.0f} "
                 f"GFLOP/s, int8 GEMM {v['int8_gops_max']:.0f} GOP/s, " + "".join(
                     f"C {k[:-9]} {g:.0f} GOP/s, " for k, g in v.items()
                     if k.endswith("_gops_max") and k != "int8_gops_max") +
                 f"copy {v['copy_gbs_max']:.1f} GB/s" for n, v in lim.items()), "",
             "Rates: samples × chip steps per second, min / **median** / max over rounds; "
             "ratio = median / Lava's median in the same condition (Lava runs one sample at "
             "a time; its rate does not depend on the batch). Threads: 1, or the default "
             "(the fused engine's automatic choice, the number it took in parentheses; "
             "torch's every core for the reference). GEMM %: synaptic multiply-adds per "
             "second over the measured peak (the fused engine's synapses on spikes are "
             "int8 GEMMs). Path GEMM %: the same over the peak of the GEMM the row's path "
             "uses (named). BW %: bytes the fused design must move per second over the "
             "measured copy bandwidth of a 256 MiB buffer (above 100 % the working set "
             "stayed in cache). Path: the fused engine's (whole pieces in C and their GEMM "
             "kernel, or each layer's synaptic product); vs ref: its median over the "
             "reference's at the same batch and threads.", ""]
    rows = []
    for r in records:
        path_gemm = (f"{100 * r['path_gemm_fraction']:.1f} ({r['path_gemm']})"
                     if "path_gemm_fraction" in r else "")
        rows.append([r["network"], r.get("condition", "as found"), r["batch"], _threads(r),
                     r["engine"], r.get("path", ""), _r(r["rate"]), _n(r["lava_rate"]["median"]),
                     f"{r['ratio_of_medians']:,.0f}×",
                     f"{r['vs_reference']:.2f}×" if "vs_reference" in r else "",
                     f"{r['peak_mib']:.0f}",
                     f"{100 * r['gemm_fraction']:.1f}", f"{100 * r['int8_fraction']:.1f}",
                     path_gemm, f"{100 * r['bw_fraction']:.1f}"])
    lines.append(markdown_table(["network", "condition", "batch", "threads", "engine", "path",
                                 "rate", "Lava", "ratio", "vs ref", "peak MiB", "f32 GEMM %",
                                 "int8 GEMM %", "path GEMM %", "BW %"], rows))
    flagged = meta.get("auto_slower_than_reference")
    if flagged is not None:
        lines += ["", "Automatic choice slower than the reference (batch ≥ 64): " +
                  ("; ".join(flagged) if flagged else "none") + "."]
    if t_records:
        lines += ["", "## T scaling (dense 784-128-10, batch 256, default threads)", ""]
        rows = [[r["T"], r["engine"], _r(r["rate"]), f"{r['ratio_of_medians']:,.1f}×",
                 "" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"] for r in t_records]
        lines.append(markdown_table(["T", "contender", "rate", "ratio to Lava", "peak MiB"],
                                    rows))
    return "\n".join(lines) + "\n"


def plot(records, t_records, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    nets = list(dict.fromkeys(r["network"] for r in records))
    fig, axes = plt.subplots(1, len(nets) + 1, figsize=(5 * (len(nets) + 1), 4.2))
    for ax, net in zip(axes, nets):
        every = [r for r in records if r["network"] == net]
        rs = [r for r in every if r.get("condition", "as found") == "as found"]
        for engine, n_thr in sorted({(r["engine"], r["threads"]) for r in rs}):
            sel = sorted((r for r in rs if (r["engine"], r["threads"]) == (engine, n_thr)),
                         key=lambda r: r["batch"])
            b = [r["batch"] for r in sel]
            ax.plot(b, [r["rate"]["median"] for r in sel], marker="o",
                    linestyle="-" if engine == "fused" else "--",
                    label=f"{engine}, {sel[0]['threads']} thr")   # default: count varies
            ax.fill_between(b, [r["rate"]["min"] for r in sel], [r["rate"]["max"] for r in sel],
                            alpha=0.15)
        ax.axhline(rs[0]["lava_rate"]["median"], color="k", linestyle=":", label="Lava fixed_pt")
        busy = [r for r in every if r not in rs]
        for r in busy:
            ax.errorbar([r["batch"]], [r["rate"]["median"]], marker="x", markersize=9,
                        yerr=[[r["rate"]["median"] - r["rate"]["min"]],
                              [r["rate"]["max"] - r["rate"]["median"]]],
                        label=f"fused, {_threads(r)} thr, {r['condition']}")
        if busy:
            ax.axhline(busy[0]["lava_rate"]["median"], color="grey", linestyle=":",
                       label=f"Lava, {busy[0]['condition']}")
        ax.set(xscale="log", yscale="log", xlabel="batch (samples)",
               ylabel="samples × steps / s", title=net)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[-1]
    for engine in ("lava",) + ENGINES:
        sel = [r for r in t_records if r["engine"] == engine]
        ax.plot([r["T"] for r in sel], [r["rate"]["median"] for r in sel], marker="o",
                label=engine)
    ax.set(xscale="log" if t_records else "linear", yscale="log" if t_records else "linear",
           xlabel="T (steps per sample)", ylabel="samples × steps / s",
           title="dense 784-128-10, batch 256")     # (empty without a T scaling run)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())

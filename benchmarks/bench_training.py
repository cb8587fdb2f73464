r"""Training throughput: the project's ``paper`` preset against the authors' training
step, side by side, on MNIST.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/bench_training.py \
        [--dataset PATH] [--official-dir DIR] [--rounds 7] [--batches 16]

The configuration of the RSSNN paper's MNIST runs: an MLP 784-256-256-10 of DLIF
neurons (T = 8, λ = 0.99, Vth = 1, triangle surrogate γ = 1, bias-free, the image fed
directly every step), R+FGSM adversarial training (ε = 4/255, start ``x + 0.001·N``),
κ = 0.5, pre-gain MPPD with ρ = 1 on the clean-detached branch, SGD lr 0.1 momentum 0.9
without weight decay, the orthogonality retraction β = 5e-4 after every update, batch 64.
Every contender starts every round from the same initial weights and trains the same
number of batches of the same training images.

* **official (re-stated)**: the authors' training step (DingJianhao/stable-snn,
  ``main_train-v2.py`` in ``RAT_FGSM`` mode) as ``tests/training/paper_code.py`` re-states it
  from their equations, in their order: an eval-mode clean forward whose graph is built
  and discarded, the R+FGSM forward and input gradient, a clean and an adversarial
  train-mode forward, loss, backward, SGD step, ``snn_rat_reg1``; batches from a
  ``DataLoader`` over the same tensors, as the script draws them.
* **official (script)** (with ``--official-dir``, a checkout of the authors' repository
  kept outside this one): ``main_train-v2.py`` itself, unchanged, in a subprocess:
  ``cv2``/``torchvision`` (imported, unused here) are empty stand-ins, the script's
  ``device``/``VGG``/``mnist`` globals point at the CPU, the MLP above built from the
  script's own ``models/layers.py`` with the same initial weights, and the same
  tensors. Its ``tqdm`` is wrapped to time each of its batches; the first two batches
  are warm-up. This shows the re-statement runs at the script's speed.
* **project**: ``rssnn_deploy.training.train`` with ``PRESETS["paper"]`` (R+FGSM),
  ``max_batches`` batches, one epoch, on the same tensors, timed as a whole call: it
  includes the call's fixed costs (data loader, one evaluation of 64 test images, the
  checkpoint write), which a real epoch of 938 batches would amortise further.
* **project (reference neurons)**: the same, with every spiking layer on its
  step-by-step autograd path (``LIF.fused = False``) instead of the fused one.

Contenders alternate inside every round, their order rotating from round to round, so
a machine whose load changes slows all of them alike; statistics are min / median / max
over the rounds of the time per batch, ratios are ratios of medians, and an epoch is
⌈60000 / 64⌉ = 938 batches at the median. Threads: ``torch.set_num_threads(--threads)``
in this process and ``OMP_NUM_THREADS`` in the script's subprocess.

A profiled run per contender (after the timed rounds, not part of the timing) splits a
batch into the phases the training step labels with ``torch.profiler.record_function``
(attack, forward incl. loss and MPPD, backward, update, orthogonality).

MNIST is the project's ``mnist`` dataset unless ``--dataset`` names an ``.npz`` (x, y,
x_test, y_test). Writes ``benchmarks/results/training.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "training"))   # paper_code.py
import paper_code  # noqa: E402  (the re-statement of the authors' code)
from bench_common import spread  # noqa: E402
import rssnn_deploy  # noqa: E402,F401
from rssnn_deploy.models import lif_kernel  # noqa: E402
from rssnn_deploy.data.datasets import load_dataset  # noqa: E402
from rssnn_deploy.errors import UserError  # noqa: E402
from rssnn_deploy.models.zoo import SNN, build_model  # noqa: E402
from rssnn_deploy.report import markdown_table, save_figure, versions, write_json  # noqa: E402
from rssnn_deploy.fileio import atomic_write_text  # noqa: E402
from rssnn_deploy.training import PRESETS, train  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BATCH = 64
STEPS = 8
EPS = 4 / 255
BETA = 5e-4
TRAIN_SIZE = 60000
EPOCH_BATCHES = math.ceil(TRAIN_SIZE / BATCH)
MODEL = {"arch": "mlp", "hidden": [256, 256], "in_shape": [784], "input_encoding": "analog",
         "neuron": "dlif", "steps": STEPS, "decay": paper_code.TAU,
         "threshold": paper_code.VTH, "surrogate": "triangle",
         "surrogate_scale": paper_code.GAMMA}
PHASES = ("attack", "forward", "backward", "update", "orthogonality")
WARMUP_BATCHES = 2


# ------------------------------------------------------------------------------- data

def load_images(path: Optional[str]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                               torch.Tensor]:
    """MNIST as flat float32 rows in [0, 1]: the project's ``mnist`` dataset, or a file."""
    try:
        data = load_dataset(path if path is not None else "mnist")
    except UserError as err:
        if path is not None:
            raise
        raise SystemExit(f"the project's 'mnist' dataset is not available here ({err}); "
                         f"pass --dataset PATH to an .npz with x, y, x_test, y_test")
    flat = [t.reshape(len(t), -1).float() if t.is_floating_point() else t
            for t in (data.x_train, data.y_train, data.x_test, data.y_test)]
    if flat[0].shape[1] != 784:
        raise SystemExit(f"expected 28x28 MNIST images, got samples {data.in_shape}")
    return flat[0], flat[1].long(), flat[2], flat[3].long()


# ------------------------------------------------------------------------ contenders

def initial_state(seed: int) -> Dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in build_model(MODEL).state_dict().items()}


def fresh_model(state: Dict[str, torch.Tensor]) -> SNN:
    model = build_model(MODEL)
    model.load_state_dict(state)
    return model


def run_official_restated(state: Dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                          batches: int, seed: int) -> Dict[str, float]:
    """``batches`` batches of the authors' step (re-stated); wall seconds and metrics."""
    model = fresh_model(state)
    params = {"hidden": [(b.synapse.weight, b.neuron.gains) for b in model.blocks],
              "head": model.head.weight}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0)
    torch.manual_seed(seed)
    np.random.seed(seed)
    began = time.perf_counter()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)
    losses, correct, count = [], 0, 0
    for i, (images, labels) in enumerate(loader):
        if i == batches:
            break
        loss, _, right = paper_code.train_step(params, optimizer, images, labels, STEPS,
                                               EPS, BETA)
        losses.append(loss)
        correct += right
        count += len(labels)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "loss": float(np.mean(losses)), "train_acc": correct / count}


def project_config(batches: int, seed: int):
    import dataclasses
    return dataclasses.replace(PRESETS["paper"], perturbation="rfgsm", eps=EPS, epochs=1,
                               max_batches=batches, seed=seed, batch_size=BATCH)


def run_project(state: Dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                x_test: torch.Tensor, y_test: torch.Tensor, batches: int, seed: int,
                fused: bool = True) -> Dict[str, float]:
    """One call of ``rssnn_deploy.training.train`` over ``batches`` batches."""
    model = fresh_model(state)
    for layer in model.spiking_layers:
        layer.fused = fused
    config = project_config(batches, seed)
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        history = train(model, (x, y, x_test, y_test), config, tmp, progress=False,
                        device="cpu")
        seconds = time.perf_counter() - began
    last = history[-1]
    return {"seconds": seconds, "loss": 0.5 * last["ce_clean"] + 0.5 * last["ce_pert"],
            "train_acc": last["train_acc"],
            # outside the epoch's batches and evaluation: setup and the checkpoint write
            "fixed_seconds": seconds - last["seconds"]}


def run_official_script(official_dir: Path, state_path: Path, data_path: Path,
                        batches: int, seed: int, threads: int) -> Dict[str, float]:
    """The authors' script in a subprocess (see ``official_worker``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--official-worker",
           str(official_dir), "--state", str(state_path), "--data", str(data_path),
           "--batches", str(batches), "--seed", str(seed), "--threads", str(threads)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the official script failed (exit {done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    record = json.loads(lines[-1])
    return {"seconds": float(sum(record["batch_seconds"])), "loss": float("nan"),
            "train_acc": float("nan")}


def official_worker(args: argparse.Namespace) -> None:
    """Run ``main_train-v2.py`` unchanged for ``--batches`` (+ warm-up) batches; print the
    time of each batch as JSON. Runs in its own process (the script keeps global state)."""
    import runpy
    import types
    here = Path(args.official_worker).resolve()
    sys.path.insert(0, str(here))
    cv2 = types.ModuleType("cv2")
    cv2.mean = None  # type: ignore[attr-defined]
    tv, tvt, tvd = (types.ModuleType(n) for n in
                    ("torchvision", "torchvision.transforms", "torchvision.datasets"))
    for name in ("CIFAR10", "CIFAR100", "MNIST"):
        setattr(tvd, name, None)
    tv.transforms, tv.datasets = tvt, tvd  # type: ignore[attr-defined]
    sys.modules.update({"cv2": cv2, "torchvision": tv, "torchvision.transforms": tvt,
                        "torchvision.datasets": tvd})
    if not (here / "models" / "stable_classifier.py").exists():
        sc = types.ModuleType("models.stable_classifier")
        sc.StableClassifier = None  # type: ignore[attr-defined]
        sys.modules["models.stable_classifier"] = sc
    torch.set_num_threads(args.threads)
    import models.layers as layers  # the script's own layers
    from torch import nn

    arrays = torch.load(args.data, weights_only=True)
    state = torch.load(args.state, weights_only=True)

    class MLP(nn.Module):
        """Linear → DLIFSpike → Linear → DLIFSpike → Linear (bias-free) on the image
        repeated over T, merged batches, output (T, N, C), in the script's layers."""

        def __init__(self, T: int, neuron_module: Callable[[], nn.Module]) -> None:
            super().__init__()
            self.T = T
            self.fc1 = nn.Linear(784, 256, bias=False)
            self.act1 = neuron_module()
            self.fc2 = nn.Linear(256, 256, bias=False)
            self.act2 = neuron_module()
            self.fc3 = nn.Linear(256, 10, bias=False)
            self.expand = layers.ExpandTemporalDim(T)
            with torch.no_grad():
                self.fc1.weight.copy_(state["blocks.0.synapse.weight"])
                self.act1.p.copy_(state["blocks.0.neuron.gains"])
                self.fc2.weight.copy_(state["blocks.1.synapse.weight"])
                self.act2.p.copy_(state["blocks.1.neuron.gains"])
                self.fc3.weight.copy_(state["head.weight"])

        def forward(self, x):
            x = x.flatten(1).unsqueeze(0).repeat(self.T, 1, 1).flatten(0, 1)
            return self.expand(self.fc3(self.act2(self.fc2(self.act1(self.fc1(x))))))

    os.chdir(tempfile.mkdtemp(prefix="official-run-"))
    sys.argv = ["main_train-v2.py", "-data", "mnist", "-arch", "vgg-mlp", "-j", "0",
                "-sd", str(args.seed), "--epochs", "1", "-training_mode", "RAT_FGSM",
                "-eps", "4", "-bs", str(BATCH)]
    module = runpy.run_path(str(here / "main_train-v2.py"), run_name="official")
    scope = module["main"].__globals__
    total = args.batches + WARMUP_BATCHES
    scope["device"] = torch.device("cpu")
    scope["VGG"] = lambda **kw: MLP(kw["T"], kw["neuron_module"])
    scope["mnist"] = lambda: (TensorDataset(arrays["x"][:total * BATCH],
                                            arrays["y"][:total * BATCH]),
                              TensorDataset(arrays["x_test"], arrays["y_test"]), None)
    stamps: List[float] = []
    wrapped: List[int] = []

    def timed(iterable):
        for item in iterable:
            stamps.append(time.perf_counter())
            yield item
        stamps.append(time.perf_counter())

    def fake_tqdm(iterable, *a, **k):      # the first loop the script runs is training
        wrapped.append(1)
        return timed(iterable) if len(wrapped) == 1 else iterable

    scope["tqdm"] = fake_tqdm
    scope["main"]()
    gaps = np.diff(stamps)[WARMUP_BATCHES:]
    print(json.dumps({"batch_seconds": [float(g) for g in gaps]}))


# ------------------------------------------------------------------------- measuring

def compile_check(rounds: int, calls: int = 30) -> Dict[str, Dict[str, float]]:
    """One DLIF layer (8 × 128 × 256) forward and backward: the reference loop under
    ``torch.compile``, the same loop eager, and the fused node, alternating; ms per call
    (the compile time of the first call reported apart)."""
    from rssnn_deploy.models.neurons import DLIF
    layer = DLIF(STEPS)
    current = (1.5 * torch.rand(STEPS, 2 * BATCH, 256)).requires_grad_(True)
    probe = torch.randn(current.shape)

    def step(fused: bool) -> None:
        layer.fused = fused
        (layer.simulate(current).spikes * probe).sum().backward()

    compiled = torch.compile(lambda: step(False))
    began = time.perf_counter()
    compiled()
    compile_seconds = time.perf_counter() - began
    runs = {"reference loop, torch.compile": compiled, "reference loop, eager":
            lambda: step(False), "fused node": lambda: step(True)}
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            run()
            began = time.perf_counter()
            for _ in range(calls):
                run()
            times[name].append(1e3 * (time.perf_counter() - began) / calls)
    out = {name: spread(v) for name, v in times.items()}
    out["compile_seconds"] = {"first call": compile_seconds}
    return out


def profile_phases(run: Callable[[], Any], batches: int) -> Dict[str, float]:
    """Milliseconds per batch in each labelled phase (and the rest), from one
    profiled run."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        began = time.perf_counter()
        run()
        wall = time.perf_counter() - began
    totals = {e.key: e.cpu_time_total / 1e3 for e in prof.key_averages() if e.key in PHASES}
    out = {p: totals.get(p, 0.0) / batches for p in PHASES}
    out["other"] = max(0.0, 1e3 * wall / batches - sum(out.values()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default=None,
                    help="MNIST .npz (x, y, x_test, y_test); default: the project's "
                         "'mnist' dataset")
    ap.add_argument("--official-dir", type=Path, default=None,
                    help="checkout of DingJianhao/stable-snn: also time the script itself")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batches", type=int, default=16, help="timed batches per round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the project's reference-neuron contender")
    ap.add_argument("--out", type=Path, default=RESULTS / "training")
    ap.add_argument("--compile-check", action="store_true",
                    help="only compare torch.compile of the reference neuron loop with "
                         "eager and the fused node (one layer), print and exit")
    # the official script's subprocess
    ap.add_argument("--official-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--state", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.official_worker:
        official_worker(args)
        return
    if args.rounds < 3 or args.batches < 1:
        raise SystemExit("need --rounds >= 3 and --batches >= 1")
    torch.set_num_threads(args.threads)
    if args.compile_check:
        result = compile_check(args.rounds)
        for name, row in result.items():
            print(name, ", ".join(f"{k} {v:.2f}" for k, v in row.items()))
        return
    x, y, x_test, y_test = load_images(args.dataset)
    n = args.batches * BATCH
    x, y, x_test, y_test = x[:n], y[:n], x_test[:BATCH], y_test[:BATCH]
    state = initial_state(args.seed)

    runs: Dict[str, Callable[[int], Dict[str, float]]] = {
        "official (re-stated)": lambda b: run_official_restated(state, x, y, b, args.seed),
        "project": lambda b: run_project(state, x, y, x_test, y_test, b, args.seed),
    }
    if not args.no_reference:
        runs["project (reference neurons)"] = lambda b: run_project(
            state, x, y, x_test, y_test, b, args.seed, fused=False)
    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    if args.official_dir is not None:
        state_path, data_path = tmp / "state.pt", tmp / "data.pt"
        torch.save(state, state_path)
        full = load_images(args.dataset)
        torch.save({"x": full[0][:n + WARMUP_BATCHES * BATCH],
                    "y": full[1][:n + WARMUP_BATCHES * BATCH],
                    "x_test": x_test, "y_test": y_test}, data_path)
        runs["official (script)"] = lambda b: run_official_script(
            args.official_dir, state_path, data_path, b, args.seed, args.threads)

    names = list(runs)
    for name in names:                                        # warm-up, not recorded
        if name != "official (script)":
            runs[name](WARMUP_BATCHES)
    per_batch: Dict[str, List[float]] = {name: [] for name in names}
    fixed: List[float] = []
    metrics: Dict[str, Dict[str, float]] = {}
    bar = tqdm(total=args.rounds * len(names), desc="rounds × contenders")
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            result = runs[name](args.batches)
            per_batch[name].append(result["seconds"] / args.batches)
            if name == "project":
                fixed.append(result["fixed_seconds"])
            metrics[name] = result
            bar.update()
    bar.close()

    phases = {}
    for name in ("official (re-stated)", "project"):
        phases[name] = profile_phases(lambda: runs[name](args.batches), args.batches)

    summary = {name: spread(v) for name, v in per_batch.items()}
    base = summary["official (re-stated)"]["median"]
    rows = []
    for name in names:
        s = summary[name]
        rows.append([name, f"{1e3 * s['min']:.1f}", f"{1e3 * s['median']:.1f}",
                     f"{1e3 * s['max']:.1f}", f"{BATCH / s['median']:.0f}",
                     f"{EPOCH_BATCHES * s['median']:.1f}",
                     f"{base / s['median']:.2f}×"])
    header = ["contender", "ms/batch min", "median", "max", "samples/s", "epoch s (938 batches)",
              "speed vs official (re-stated)"]
    table = markdown_table(header, rows)
    sanity = markdown_table(
        ["contender (last round)", "mean CE over its batches", "train accuracy"],
        [[name, f"{metrics[name]['loss']:.3f}", f"{100 * metrics[name]['train_acc']:.1f} %"]
         for name in names if name != "official (script)"])
    phase_rows = [[name] + [f"{phases[name][p]:.1f}" for p in (*PHASES, "other")]
                  for name in phases]
    phase_table = markdown_table(["contender (profiled, ms/batch)", *PHASES, "other"],
                                 phase_rows)
    load = os.getloadavg()
    kernel = (f"fused neurons in C ({Path(lif_kernel.kernel_path).name})"
              if lif_kernel.available(torch.zeros(1)) else
              f"fused neurons on their torch path (C kernel {lif_kernel.kernel_path}; "
              f"run `make env`)")
    conditions = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                  f"torch {torch.__version__}, {args.threads} thread(s) per contender "
                  f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), "
                  f"nice {os.nice(0)}, load average at the end {load[0]:.2f} / {load[1]:.2f} "
                  f"/ {load[2]:.2f} (1/5/15 min); {args.rounds} rounds × {args.batches} "
                  f"batches of {BATCH}, contenders alternating, order rotating; {kernel}")
    text = ("# Training throughput: project vs the authors' code (MNIST MLP 784-256-256-10, "
            "T = 8, R+FGSM, batch 64)\n\n" + conditions + "\n\n" + table + "\n\n"
            "Time per batch over the rounds; an epoch is 938 batches at the median. "
            "The project's times are whole `train()` calls, their fixed costs included "
            f"(setup and checkpoint write, median {1e3 * statistics.median(fixed):.0f} ms "
            f"per call, {1e3 * statistics.median(fixed) / args.batches:.1f} ms per batch "
            "here); the script's are its own batches (after 2 warm-up batches).\n\n"
            + sanity + "\n\nSame start, same images: the contenders learn alike (the "
            "batch order and random draws differ).\n\n" + phase_table + "\n\nPhases from one profiled run each (the profiler slows "
            "both); `forward` includes the loss and MPPD, `other` is data loading and "
            "bookkeeping.\n")
    record = {"conditions": conditions, "threads": args.threads, "rounds": args.rounds,
              "batches": args.batches, "batch_size": BATCH, "epoch_batches": EPOCH_BATCHES,
              "per_batch_seconds": per_batch, "summary": summary,
              "ratio_of_medians_vs_official_restated": {k: base / v["median"]
                                                        for k, v in summary.items()},
              "phases_ms_per_batch": phases, "last_round_metrics": metrics,
              "project_fixed_seconds_per_call": fixed,
              "model": MODEL, "load_average": load, "versions": versions()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), record)
    atomic_write_text(args.out.with_suffix(".md"), text)
    plot(args.out.with_suffix(".png"), summary, phases, conditions)
    print(text)


def plot(path: Path, summary: Dict[str, Dict[str, float]],
         phases: Dict[str, Dict[str, float]], conditions: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8),
                                      gridspec_kw={"width_ratios": [3, 2]})
    names = list(summary)
    med = [1e3 * summary[n]["median"] for n in names]
    low = [m - 1e3 * summary[n]["min"] for m, n in zip(med, names)]
    high = [1e3 * summary[n]["max"] - m for m, n in zip(med, names)]
    colours = ["tab:gray" if n.startswith("official") else "tab:blue" for n in names]
    left.barh(range(len(names)), med, xerr=[low, high], color=colours, capsize=4)
    left.set_yticks(range(len(names)), names)
    left.invert_yaxis()
    left.set_xlabel("ms per batch of 64 (median; bars: min–max over rounds)")
    for i, (m, n) in enumerate(zip(med, names)):
        left.text(1e3 * summary[n]["max"], i, f"  {m:.1f}", va="center", fontsize=9)
    left.set_xlim(0, 1.15e3 * max(summary[n]["max"] for n in names))
    left.set_title("time per training batch")
    bottom = np.zeros(len(phases))
    for phase in (*PHASES, "other"):
        values = np.array([phases[n][phase] for n in phases])
        right.bar(list(phases), values, bottom=bottom, label=phase)
        bottom += values
    right.set_ylabel("ms per batch (profiled)")
    right.set_title("where a batch goes")
    right.legend(fontsize=8)
    fig.suptitle("MNIST MLP 784-256-256-10, T = 8, R+FGSM, batch 64", fontsize=11)
    fig.text(0.01, 0.01, "\n".join(textwrap.wrap(conditions, 190)), fontsize=7)
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    save_figure(fig, path)


if __name__ == "__main__":
    main()

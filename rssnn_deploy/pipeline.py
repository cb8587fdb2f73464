"""The main job, stage by stage: train → quantize → export → simulate → report.

Each function takes the previous stage's product and returns the next one, so data
flows one way: a float model becomes a ``NetworkSpec``, the spec becomes a netx file,
and everything downstream reads *the file* (never the in-memory spec), so the numbers
reported are those of the artefact a user deploys.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from rssnn_deploy.hw import load_profile
from rssnn_deploy.netx_io import read_netx, write_netx
from rssnn_deploy.quantize import QuantizationResult, QuantizeOptions, quantize
from rssnn_deploy.report import (format_accuracy_rows, markdown_table, plot_accuracy_groups,
                                 stability_table, with_provenance, write_json,
                                 atomic_write_text)
from rssnn_deploy.robustness import CheckConfig, Predictor, accuracy, float_predictor, run_checks
from rssnn_deploy.spec import NetworkSpec, encode_input


def export_model(model: torch.nn.Module, out_path: Path, profile: str = "loihi2",
                 gain_mode: str = "fold") -> QuantizationResult:
    """Quantize ``model`` and write its netx file; the stability report rides along as JSON."""
    result = quantize(model, load_profile(profile), QuantizeOptions(gain_mode=gain_mode))
    write_netx(result.spec, out_path)
    write_json(Path(out_path).with_suffix(".stability.json"), result.to_dict())
    return result


def chip_predictor(spec: NetworkSpec, device: str = "cpu", batch_size: int = 1024) -> Predictor:
    """Predictions of the deployed integer model by the project's bit-exact simulator."""
    from rssnn_deploy.sim import predict

    def run(x: torch.Tensor) -> torch.Tensor:
        bias = encode_input(spec, x.detach().cpu().numpy())
        return torch.cat([torch.as_tensor(predict(spec, bias[i:i + batch_size], device=device))
                          for i in range(0, len(bias), batch_size)]).cpu()
    return run


def lava_predictions(net_path: Path, x: torch.Tensor) -> torch.Tensor:
    """Predictions of stock netx + Lava ``Loihi2SimCfg(select_tag="fixed_pt")`` on the file."""
    from rssnn_deploy.backends import get_backend
    spec = read_netx(net_path)
    bias = encode_input(spec, x.detach().cpu().numpy())
    return torch.as_tensor(get_backend("lava").predict(net_path, bias))


@dataclass(frozen=True)
class DemoConfig:
    """The end-to-end demo on scikit-learn's bundled digits (no download)."""

    out_dir: Path = Path("runs/demo")
    epochs: int = 30
    hidden: tuple = (128,)
    rho: float = 1.0
    perturbation: str = "rfgsm"
    #: training R+FGSM step: half the evaluation ε, as the paper pairs 4/255 with 8/255
    train_eps: float = 0.05
    seed: int = 0
    lava_samples: Optional[int] = None     # None: the whole test set on Lava
    check: CheckConfig = CheckConfig()


def run_demo(config: DemoConfig = DemoConfig()) -> Dict[str, Any]:
    """Train a robust DLIF MLP on digits and deploy it; returns (and writes) the report."""
    from rssnn_deploy.data import load_dataset
    from rssnn_deploy.train import train_digits_model
    out = Path(config.out_dir)
    start = time.perf_counter()
    data = load_dataset("digits")
    model = train_digits_model(data, out / "train", hidden=list(config.hidden),
                               epochs=config.epochs, rho=config.rho,
                               perturbation=config.perturbation, seed=config.seed,
                               eps=config.train_eps)
    train_s = time.perf_counter() - start
    net_path = out / "model.net"
    quantized = export_model(model, net_path)
    record = evaluate_deployment(model, net_path, data.x_test, data.y_test, out,
                                 check=config.check, lava_samples=config.lava_samples,
                                 stability=quantized.to_dict(),
                                 config={**asdict(config), "out_dir": str(out)})
    record["timings"] = {"train_s": train_s, **record["timings"],
                         "total_s": time.perf_counter() - start}
    write_report(out, record)
    return record


def evaluate_deployment(model: torch.nn.Module, net_path: Path, x: torch.Tensor,
                        y: torch.Tensor, out: Path, check: CheckConfig = CheckConfig(),
                        lava_samples: Optional[int] = None,
                        stability: Optional[Dict[str, Any]] = None,
                        config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Float vs deployed accuracy (clean, noise, PGD transfer) and a Lava cross-check.

    The integer model is read from ``net_path``; ``lava_samples`` test images (all when
    None, none when 0) also run on Lava's fixed-point CPU backend through stock netx,
    and every prediction is compared with the simulator's.
    """
    timings: Dict[str, float] = {}
    spec = read_netx(net_path)
    stage = time.perf_counter()
    chip = chip_predictor(spec)
    chip_pred = chip(x)
    timings["simulate_s"] = time.perf_counter() - stage

    stage = time.perf_counter()
    n_lava = len(x) if lava_samples is None else min(lava_samples, len(x))
    lava_pred = lava_predictions(net_path, x[:n_lava]) if n_lava else torch.zeros(0)
    timings["lava_s"] = time.perf_counter() - stage
    mismatches = int((lava_pred.long() != chip_pred[:n_lava]).sum()) if n_lava else 0

    stage = time.perf_counter()
    groups = run_checks(model, {"float": float_predictor(model), "chip (sim)": chip}, x, y, check)
    if n_lava:
        groups["clean"]["chip (Lava)"] = accuracy(lava_pred, y[:n_lava])
    timings["robustness_s"] = time.perf_counter() - stage
    record = with_provenance({
        "accuracy": groups,
        "lava": {"samples": n_lava, "mismatches_vs_sim": mismatches,
                 "same_prediction_every_sample": mismatches == 0},
        "stability": stability or {"layers": [], "warnings": []},
        "timings": timings,
        "net_file": str(net_path),
        "test_samples": len(x),
    }, {**(config or {}), "check": asdict(check)})
    return record


def write_report(out: Path, record: Dict[str, Any]) -> None:
    """report.json, report.md and accuracy.png for an evaluation record."""
    groups = record["accuracy"]
    series = ["float", "chip (sim)", "chip (Lava)"]
    lava = record["lava"]
    text = "\n\n".join([
        "# rssnn-deploy: float model vs deployed Loihi fixed-point model",
        markdown_table(["condition", *[f"{s} acc. (%)" for s in series]],
                       format_accuracy_rows(groups, series)),
        f"Test images: {record['test_samples']}. Lava fixed-point run of "
        f"`{record['net_file']}` on {lava['samples']} of them: "
        f"{lava['mismatches_vs_sim']} predictions differ from the project's simulator. "
        "Attacks are computed on the float model (white-box, BPTT through the surrogate); "
        "the chip columns show how those examples transfer to the deployed integer model.",
        "## Stability report (per layer)",
        stability_table(record["stability"]["layers"]),
        "Warnings: " + ("; ".join(record["stability"]["warnings"]) or "none"),
        "Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in record["timings"].items()),
    ]) + "\n"
    write_json(out / "report.json", record)
    atomic_write_text(out / "report.md", text)
    plot_accuracy_groups(out / "accuracy.png", "float vs deployed integer model", groups)


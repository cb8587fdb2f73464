"""The main job, stage by stage: train → quantize → export → simulate → report.

Each function takes the previous stage's product and returns the next one, so data
flows one way: a float model becomes a ``NetworkSpec``, the spec becomes a netx file,
and everything downstream reads *the file* (never the in-memory spec), so the numbers
reported are those of the artefact a user deploys.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch

from rssnn_deploy.fileio import atomic_files, atomic_write_text
from rssnn_deploy.hardware.profiles import load_profile
from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.netx.writer import write_netx
from rssnn_deploy.quantization import QuantizationResult, QuantizeOptions, quantize
from rssnn_deploy.report import (format_accuracy_rows, markdown_table, plot_accuracy_groups,
                                 stability_table, with_provenance, write_json)
from rssnn_deploy.robustness import CheckConfig, accuracy, float_predictor, run_checks
from rssnn_deploy.robustness.chip_model import ChipPredictor
from rssnn_deploy.spec import NetworkSpec, encode_input

__all__ = ["export_model", "lava_predictions", "DemoConfig", "run_demo", "DEPLOYMENTS",
           "export_both", "evaluate_deployment", "write_report"]


def export_model(model: torch.nn.Module, out_path: Path, profile: str = "loihi2",
                 gain_mode: str = "fold", gain_exp: Optional[int] = None,
                 input_mapping: str = QuantizeOptions.input_mapping,
                 dataset: Optional[Mapping[str, Any]] = None,
                 provenance: Optional[Mapping[str, Any]] = None) -> QuantizationResult:
    """Quantize ``model`` and write its netx file; the stability report rides along as JSON.

    ``gain_exp``: the exact-gain exponent for every DLIF layer (``None``: chosen per
    layer from its gains). ``dataset`` (the checkpoint's dataset record) is stored in
    the file's metadata so ``simulate --labels`` and ``info`` find the test data without
    being told; so is ``provenance`` (e.g. the checkpoint's ``checkpoint_sha256``), so
    ``evaluate`` can tell whether a checkpoint and a netx file belong together. Both
    files appear together or not at all (``fileio.atomic_files``). A file with neuron
    fields the profile's chip cannot hold (a profile wider than netx's fixed point, see
    ``hardware.limits``) is written with a warning saying so.
    """
    from rssnn_deploy.hardware.limits import cannot_hold, field_violations
    hardware = load_profile(profile)
    result = quantize(model, hardware,
                      QuantizeOptions(gain_mode=gain_mode, gain_exp=gain_exp,
                                      input_mapping=input_mapping))
    violations = field_violations(result.spec, hardware)
    if violations:
        result.warnings.append(cannot_hold(hardware.chip, violations))
    if dataset is not None:
        result.spec = result.spec.with_meta(dataset=dict(dataset))
    if provenance:
        result.spec = result.spec.with_meta(**provenance)
    out_path = Path(out_path)
    with atomic_files([out_path, out_path.with_suffix(".stability.json")]) as (net, report):
        write_netx(result.spec, net)
        write_json(report, result.to_dict())
    return result


def lava_predictions(net_path: Path, spec: NetworkSpec, x: torch.Tensor) -> torch.Tensor:
    """Predictions of Lava ``Loihi2SimCfg(select_tag="fixed_pt")`` on the file ``spec`` was
    read from (stock netx, or the project's DLIF process for exact-gain files)."""
    from rssnn_deploy.backends import get_backend
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
    """Train a robust DLIF MLP on digits and deploy it; returns (and writes) the report.

    Two files are exported and evaluated side by side: ``model.net`` with the DLIF gains
    folded into the weights (stock netx runs it) and ``model_exact.net`` with per-step
    gains (our simulator; Lava through the project's DLIF process).
    """
    from rssnn_deploy.data.datasets import load_dataset
    from rssnn_deploy.training import train_digits_model
    out = Path(config.out_dir)
    start = time.perf_counter()
    data = load_dataset("digits")
    model = train_digits_model(data, out / "train", hidden=list(config.hidden),
                               epochs=config.epochs, rho=config.rho,
                               perturbation=config.perturbation, seed=config.seed,
                               eps=config.train_eps)
    train_s = time.perf_counter() - start
    nets = export_both(model, out)
    record = evaluate_deployment(model, nets, data.x_test, data.y_test, check=config.check,
                                 lava_samples=config.lava_samples,
                                 config={**asdict(config), "out_dir": str(out)})
    record["timings"] = {"train_s": train_s, **record["timings"],
                         "total_s": time.perf_counter() - start}
    write_report(out, record)
    return record


#: how the two exports are named in reports, and their files.
DEPLOYMENTS = {"folded gains": ("model.net", "fold"), "exact gains": ("model_exact.net", "exact")}


def export_both(model: torch.nn.Module, out: Path) -> Dict[str, Path]:
    """Export the folded-gain (stock netx) file and, for DLIF models, the exact-gain file."""
    _, layers = model.export_description()
    if all(getattr(layer, "gains", None) is None for layer in layers):  # LIF: one file
        export_model(model, out / "model.net")
        return {"netx file": out / "model.net"}
    nets = {}
    for label, (name, gain_mode) in DEPLOYMENTS.items():
        export_model(model, out / name, gain_mode=gain_mode)
        nets[label] = out / name
    return nets


def evaluate_deployment(model: torch.nn.Module, nets: Mapping[str, Path], x: torch.Tensor,
                        y: torch.Tensor, check: CheckConfig = CheckConfig(),
                        lava_samples: Optional[int] = None,
                        config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Float vs deployed accuracy (clean, noise, PGD transfer) and Lava cross-checks.

    ``nets`` maps a label to an exported file; each integer model is read from its file.
    ``lava_samples`` test images (all when None, none when 0) also run on Lava's
    fixed-point CPU backend (stock netx, or the project's DLIF process for exact gains)
    and every prediction is compared with the simulator's. Attacks are computed once on
    the float model and transferred to every deployment.
    """
    timings = {"simulate_s": 0.0, "lava_s": 0.0}
    n_lava = len(x) if lava_samples is None else min(lava_samples, len(x))
    predictors, series, lava, stability = {"float": float_predictor(model)}, ["float"], {}, {}
    lava_accuracy = {}
    for label, path in nets.items():
        spec = read_netx(path)
        chip = ChipPredictor(spec)
        stage = time.perf_counter()
        chip_pred = chip(x[:n_lava])
        timings["simulate_s"] += time.perf_counter() - stage
        predictors[f"chip, {label} (sim)"] = chip
        series += [f"chip, {label} (sim)", f"chip, {label} (Lava)"]
        stage = time.perf_counter()
        lava_pred = lava_predictions(path, spec, x[:n_lava]) if n_lava else torch.zeros(0)
        timings["lava_s"] += time.perf_counter() - stage
        mismatches = int((lava_pred.long() != chip_pred).sum()) if n_lava else 0
        lava[label] = {"file": Path(path).name, "samples": n_lava,
                       "mismatches_vs_sim": mismatches}
        if n_lava:
            lava_accuracy[f"chip, {label} (Lava)"] = accuracy(lava_pred, y[:n_lava])
        stability[label] = _stability_of(path)
    stage = time.perf_counter()
    groups = run_checks(model, predictors, x, y, check)
    groups["clean"].update(lava_accuracy)
    timings["robustness_s"] = time.perf_counter() - stage
    return with_provenance({
        "accuracy": groups, "series": series, "lava": lava, "stability": stability,
        "timings": timings, "test_samples": len(x),
        "lava_mismatches": sum(check["mismatches_vs_sim"] for check in lava.values()),
    }, {**(config or {}), "check": asdict(check)})


def _stability_of(net_path: Path) -> Dict[str, Any]:
    path = Path(net_path).with_suffix(".stability.json")
    return json.loads(path.read_text()) if path.is_file() else {"layers": [], "warnings": []}


def write_report(out: Path, record: Dict[str, Any]) -> None:
    """report.json, report.md and accuracy.png for an evaluation record."""
    groups, series = record["accuracy"], record["series"]
    lava_lines = [f"- `{c['file']}` ({label}): {c['mismatches_vs_sim']} of {c['samples']} "
                  "Lava predictions differ from the project's simulator"
                  for label, c in record["lava"].items()]
    sections = [
        "# rssnn-deploy: float model vs deployed Loihi fixed-point model",
        markdown_table(["condition", *[f"{s} (%)" for s in series]],
                       format_accuracy_rows(groups, series)),
        f"Test images: {record['test_samples']}. Attacks are computed on the float model "
        "(white-box, BPTT through the surrogate); the chip columns show how those examples "
        "transfer to the deployed integer model. *Folded gains*: DLIF gains folded into "
        "the weights, the file stock netx runs. *Exact gains*: per-step gains, run by our "
        "simulator and on Lava by the project's DLIF process.",
        "Lava fixed-point cross-check:\n" + "\n".join(lava_lines),
    ]
    for label, stability in record["stability"].items():
        sections += [f"## Stability report: {label} (per layer)",
                     stability_table(stability["layers"]),
                     "Warnings: " + ("; ".join(stability["warnings"]) or "none")]
    sections.append("Timings (s): " + ", ".join(f"{k} {v:.1f}"
                                                 for k, v in record["timings"].items()))
    write_json(out / "report.json", record)
    atomic_write_text(out / "report.md", "\n\n".join(sections) + "\n")
    plot_accuracy_groups(out / "accuracy.png", "float vs deployed integer model", groups,
                         series)

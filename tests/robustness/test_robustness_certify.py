"""robustness.certify: Cohen et al.'s CERTIFY on hand-made classifiers, then the float and
the deployed integer model side by side, and the `certify` subcommand."""
from __future__ import annotations

import json

import pytest
import torch
from scipy.stats import norm

import rssnn_deploy  # noqa: F401  (Lava shim first)
from rssnn_deploy.cli.main import main
from rssnn_deploy.data.datasets import load_dataset
from rssnn_deploy.robustness.certify import (
    CertifyConfig,
    certified_accuracy,
    certify,
    certify_one,
    lower_confidence_bound,
    max_certifiable_radius,
    samples_for_radius,
)
from rssnn_deploy.robustness.checks import float_predictor
from rssnn_deploy.robustness.chip_model import ChipPredictor
from rssnn_deploy.training import load_checkpoint


def test_clopper_pearson_lower_bound():
    assert lower_confidence_bound(0, 100, 0.001) == 0.0
    # all hits: the bound solves p^n = alpha
    assert lower_confidence_bound(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100))
    assert lower_confidence_bound(50, 100, 0.05) < 0.5 < lower_confidence_bound(90, 100, 0.05)


def test_a_constant_classifier_gets_the_largest_radius_n_allows():
    config = CertifyConfig(sigmas=(0.25,), n0=10, n=1000, batch_size=300)
    constant = {"c": lambda z: torch.full((len(z),), 3, dtype=torch.long)}
    result = certify_one(constant, torch.rand(1, 8, 8), 0.25, config, 10, seed=0, seconds={})
    assert result["c"]["prediction"] == 3
    assert result["c"]["radius"] == pytest.approx(0.25 * norm.ppf(0.001 ** (1 / 1000)))
    assert result["c"]["radius"] == pytest.approx(max_certifiable_radius(0.25, 1000, 0.001))


def test_the_sample_count_caps_the_radius():
    # n = 1,000, α = 0.001: ~0.3 at σ 0.12, ~0.62 at σ 0.25, whatever the model
    assert max_certifiable_radius(0.12, 1000, 0.001) == pytest.approx(0.2956, abs=1e-4)
    assert max_certifiable_radius(0.25, 1000, 0.001) == pytest.approx(0.6158, abs=1e-4)
    for n in (10, 1000, 10_000, 10 ** 6):
        assert max_certifiable_radius(0.5, n, 0.01) == pytest.approx(
            0.5 * norm.ppf(lower_confidence_bound(n, n, 0.01)), rel=1e-9)
    assert max_certifiable_radius(0.5, 5, 0.001) == 0.0      # unanimous samples still abstain


@pytest.mark.parametrize("radius,sigma,alpha", [(0.25, 0.12, 0.001), (0.5, 0.25, 0.001),
                                                (1.0, 0.5, 0.001), (0.75, 0.25, 0.05),
                                                (0.01, 0.5, 0.001)])
def test_samples_for_radius_is_the_fewest_that_reach_it(radius, sigma, alpha):
    n = samples_for_radius(radius, sigma, alpha)
    assert max_certifiable_radius(sigma, n, alpha) >= radius
    assert n == 1 or max_certifiable_radius(sigma, n - 1, alpha) < radius


def test_a_coin_flip_classifier_abstains():
    config = CertifyConfig(sigmas=(0.5,), n0=20, n=400)
    coin = {"c": lambda z: (torch.randn(len(z)) > 0).long()}
    result = certify_one(coin, torch.rand(1, 8, 8), 0.5, config, 2, seed=1, seconds={})
    assert result["c"]["prediction"] == -1 and result["c"]["radius"] == 0.0


def test_noise_is_seeded_and_clipped_to_pixels():
    seen = []

    def record(z):
        seen.append(z.clone())
        return torch.zeros(len(z), dtype=torch.long)

    config = CertifyConfig(sigmas=(0.5,), n0=5, n=50)
    x = torch.full((1, 8, 8), 0.9)
    certify({"m": record}, x[None], torch.tensor([0]), 0.5, config, 2, progress=False)
    first = torch.cat(seen)
    assert first.min() >= 0 and first.max() <= 1 and (first == 1).any()
    seen.clear()
    certify({"m": record}, x[None], torch.tensor([0]), 0.5, config, 2, progress=False)
    assert torch.equal(torch.cat(seen), first)


def test_certified_accuracy_counts_abstentions_as_wrong():
    rows = [{"correct": True, "radius": 0.3}, {"correct": False, "radius": 0.0},
            {"correct": True, "radius": 0.1}, {"correct": False, "radius": 0.0}]
    assert certified_accuracy(rows, 0.0) == 0.5
    assert certified_accuracy(rows, 0.2) == 0.25


@pytest.fixture(scope="module")
def files(natural_lif_files):
    return natural_lif_files


def test_float_and_chip_share_the_noise_draws(files):
    checkpoint, net = files
    from rssnn_deploy.netx.reader import read_netx
    model, spec = load_checkpoint(checkpoint), read_netx(net)
    data = load_dataset("digits")
    x, y = data.x_test[:4], data.y_test[:4]
    config = CertifyConfig(sigmas=(0.25,), n0=20, n=200)
    chip = ChipPredictor(spec)
    both = certify({"float": float_predictor(model), "chip": chip, "chip again": chip}, x, y,
                   0.25, config, 10, progress=False)
    assert both["per_image"]["chip"] == both["per_image"]["chip again"]
    assert set(both["models"]) == {"float", "chip", "chip again"}
    agree = sum(a["prediction"] == b["prediction"] for a, b in
                zip(both["per_image"]["float"], both["per_image"]["chip"]))
    assert agree >= 3                               # the deployed model tracks the float one


def test_certify_subcommand_writes_report_and_plot(files, tmp_path, capsys):
    checkpoint, net = files
    out = tmp_path / "cert"
    code = main(["certify", str(checkpoint), str(net), "--out", str(out), "--sigmas", "0.25",
                 "--certify-n", "200", "--certify-n0", "20", "--certify-samples", "5",
                 "--no-progress"])
    assert code == 0
    record = json.loads((out / "certify.json").read_text())
    entry = record["sigmas"][0]
    assert entry["sigma"] == 0.25 and entry["images"] == 5
    assert set(entry["models"]) == {"float", "chip"}
    limit = max_certifiable_radius(0.25, 200, 0.001)
    assert entry["largest_certifiable_radius"] == pytest.approx(limit)
    assert (out / "certified_accuracy.png").stat().st_size > 5000
    text = (out / "certify.md").read_text()
    assert "before the chip's input encoding" in text and "deployed integer model" in text
    assert "largest certifiable radius (n = 200)" in text and f"| {limit:.3g} |" in text
    # radii past the limit (0.553 here) are marked as the sample count's zeros
    row = next(line for line in text.splitlines() if "| deployed integer model |" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2].endswith("†") is False and cells[4].endswith("†")   # r = 0 and r = 0.75
    assert f"{100 * entry['models']['chip']['abstain']:.1f}" == cells[-3]
    assert "r = 0.25" in capsys.readouterr().out


def test_the_plot_marks_the_largest_certifiable_radius(files, tmp_path, monkeypatch):
    import matplotlib.axes

    from rssnn_deploy.robustness.plots import plot_certified
    lines = []
    original = matplotlib.axes.Axes.axvline

    def axvline(self, x=0, *args, **kwargs):
        lines.append((x, kwargs.get("label")))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "axvline", axvline)
    rows = [{"radius": 0.2, "correct": True, "prediction": 1}]
    entry = {"models": {m: {"abstain": 0.0} for m in ("float", "chip")},
             "per_image": {m: rows for m in ("float", "chip")}}
    cert = {"parameters": {"n": 1000, "alpha": 0.001}, "samples": 1,
            "sigmas": [{**entry, "sigma": s, "largest_certifiable_radius":
                        max_certifiable_radius(s, 1000, 0.001)} for s in (0.12, 0.25)]}
    plot_certified(tmp_path / "c.png", cert)
    assert lines == [(pytest.approx(0.2956, abs=1e-4), "largest radius n=1,000 can certify"),
                     (pytest.approx(0.6158, abs=1e-4), "largest radius n=1,000 can certify")]


def test_certify_names_a_mismatched_pair_in_its_own_words(files, tmp_path, capsys):
    import rssnn_deploy as rd
    checkpoint, net = files
    other = rd.write_netx(rd.read_netx(net).with_meta(checkpoint_sha256="0" * 64),
                          tmp_path / "other.net")
    code = main(["certify", str(checkpoint), str(other), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("rssnn-deploy certify: error:") and "--allow-mismatch" in err
    assert "evaluate" not in err

"""Training: the RSSNN loss terms, perturbations, checkpoints, resume, CLI and torchrun."""
import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import rssnn_deploy  # noqa: F401
import rssnn_deploy.training.loop as loop_module
from rssnn_deploy.data.datasets import Dataset, load_dataset
from rssnn_deploy.models.zoo import build_model
from rssnn_deploy.cli.train_args import add_train_arguments, configs_from_args
from rssnn_deploy.training import (CHECKPOINT_NAME, PRESETS, CheckpointError, RandomStepFGSM,
                                   TrainConfig,
                                   evaluate_accuracy,
                                   load_checkpoint, make_perturbation, mppd, orthogonality_step,
                                   read_checkpoint, robust_loss, run_training, runner_up_class,
                                   save_checkpoint, sparse_gradient_probe, train, train_digits_model,
                                   two_class_probability)

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = {"arch": "mlp", "hidden": [16]}


@pytest.fixture(scope="module")
def tiny_data() -> Dataset:
    full = load_dataset("digits")
    return Dataset(full.x_train[:192], full.y_train[:192], full.x_test[:64], full.y_test[:64])


def tiny_config(**changes) -> TrainConfig:
    base = dataclasses.replace(PRESETS["digits"], epochs=2, batch_size=32)
    return dataclasses.replace(base, **changes)


def model_and_batch(seed=0, **config):
    torch.manual_seed(seed)
    model = build_model({**TINY_MODEL, **config})
    x = torch.rand(6, 1, 8, 8)
    y = torch.arange(6) % 10
    return model, x, y


# --------------------------------------------------------------------------------- MPPD


def test_mppd_hand_computed():
    i_clean = torch.tensor([[[1.0]], [[0.0]]])  # (T=2, N=1, 1)
    i_pert = torch.zeros(2, 1, 1)
    # ε[0] = 1, ε[1] = 0.5·1 + 0 → mean(1², 0.5²)
    assert mppd(i_clean, i_pert, decay=0.5).item() == pytest.approx(0.625)
    # decay 0: plain mean square of the current difference
    a, b = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    assert mppd(a, b, 0.0).item() == pytest.approx((a - b).pow(2).mean().item())


def test_mppd_zero_for_identical_and_grows_with_perturbation():
    model, x, _ = model_and_batch(1)
    direction = torch.randn_like(x)
    with torch.no_grad():
        clean = model(x, return_trace=True).current
        assert mppd(clean, clean.clone(), 0.99).item() == 0.0
        values = [mppd(clean, model((x + s * direction).clamp(0, 1), return_trace=True).current,
                       0.99).item() for s in (0.02, 0.1, 0.3, 1.0)]
    assert values[0] > 0 and values == sorted(values)
    a = torch.randn(8, 4, 3)
    scaled = [mppd(a, a + s * torch.ones_like(a), 0.9).item() for s in (0.1, 0.2, 0.4)]
    assert scaled[1] == pytest.approx(4 * scaled[0]) and scaled[2] == pytest.approx(16 * scaled[0])


def test_mppd_shape_mismatch():
    with pytest.raises(ValueError, match="current shapes differ"):
        mppd(torch.zeros(2, 3), torch.zeros(3, 3), 0.9)


# ------------------------------------------------------------------------ the objective


def test_robust_loss_combines_terms():
    model, x, y = model_and_batch(2)
    x_pert = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    terms = robust_loss(model, x, y, x_pert, decay=0.99, kappa=0.3, rho=2.0)
    expected = 0.3 * terms.ce_clean + 0.7 * terms.ce_pert + 2.0 * terms.mppd
    torch.testing.assert_close(terms.total, expected)
    assert terms.mppd > 0
    torch.testing.assert_close(terms.logits, model(x))
    torch.testing.assert_close(terms.ce_clean, nn.functional.cross_entropy(model(x), y))


def test_robust_loss_without_perturbation_is_cross_entropy():
    model, x, y = model_and_batch(3)
    terms = robust_loss(model, x, y, None, decay=0.99)
    torch.testing.assert_close(terms.total, nn.functional.cross_entropy(model(x), y))
    assert terms.mppd == 0 and terms.ce_pert == 0
    same = robust_loss(model, x, y, x.clone(), decay=0.99)
    assert same.mppd == 0
    torch.testing.assert_close(same.ce_pert, same.ce_clean)


@pytest.mark.parametrize("detach_clean", [True, False])
def test_mppd_clean_branch_detached_but_clean_ce_trained(detach_clean):
    """κ = 1: the loss is CE(clean) + ρ·MPPD. With the clean branch detached, the input
    gradient at x must be exactly the CE gradient: MPPD reaches only the perturbed path."""
    model, x, y = model_and_batch(4)
    x_pert = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    x_in = x.clone().requires_grad_(True)
    terms = robust_loss(model, x_in, y, x_pert, 0.99, kappa=1.0, rho=5.0,
                        detach_clean=detach_clean)
    (grad_total,) = torch.autograd.grad(terms.total, x_in)
    x_ce = x.clone().requires_grad_(True)
    (grad_ce,) = torch.autograd.grad(nn.functional.cross_entropy(model(x_ce), y), x_ce)
    assert grad_ce.abs().sum() > 0
    if detach_clean:
        torch.testing.assert_close(grad_total, grad_ce)
    else:
        assert not torch.allclose(grad_total, grad_ce)


def test_two_class_probability_and_runner_up():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]])
    labels = torch.tensor([0, 2])
    rival = runner_up_class(logits, labels)
    assert rival.tolist() == [2, 1]
    p = two_class_probability(logits, labels, rival)
    torch.testing.assert_close(p, torch.sigmoid(torch.tensor([1.0, -1.0])))


def test_sparse_gradient_probe_and_regulariser():
    model, x, y = model_and_batch(5)
    probe, rival = sparse_gradient_probe(model, x, y, h=0.01)
    assert all(p.grad is None for p in model.parameters())  # only the input gradient
    step = (probe - x).abs()
    assert torch.all((step < 1e-7) | ((step - 0.01).abs() < 1e-7)) and step.max() > 0
    terms = robust_loss(model, x, y, None, 0.99, probe=(probe, rival), sr_lambda=0.5,
                        sr_h=0.01)
    with torch.no_grad():
        p0 = two_class_probability(model(x), y, rival)
        p1 = two_class_probability(model(probe), y, rival)
    torch.testing.assert_close(terms.sr, (((p1 - p0) / 0.01) ** 2).mean())
    torch.testing.assert_close(terms.total, terms.ce_clean + 0.5 * terms.sr)


# ------------------------------------------------------------------------ perturbations


class ModeSpy(nn.Module):
    """Wraps a model and records its training flag at every forward."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.model(x)


def test_gaussian_perturbation():
    torch.manual_seed(0)
    model, _, _ = model_and_batch()
    perturb = make_perturbation(model, TrainConfig(perturbation="gaussian", sigma=0.1))
    x = torch.full((4000,), 0.5)
    noisy = perturb(x, None)
    assert noisy.std().item() == pytest.approx(0.1, rel=0.05)
    edges = perturb(torch.tensor([0.0, 1.0] * 100), None)
    assert edges.min() >= 0 and edges.max() <= 1
    assert make_perturbation(model, TrainConfig(perturbation="none")) is None


def test_rfgsm_matches_formula_and_runs_in_eval_mode():
    model, x, y = model_and_batch(6)
    spy = ModeSpy(model).train()
    attack = RandomStepFGSM(spy, eps=4 / 255, alpha=0.001)
    torch.manual_seed(7)
    adv = attack(x, y)
    assert spy.modes == [False] and spy.training  # eval during the attack, train after
    torch.manual_seed(7)
    start = (x + 0.001 * torch.randn_like(x).sign()).clamp(0, 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(start), y), start)
    torch.testing.assert_close(adv, (start.detach() + 4 / 255 * grad.sign()).clamp(0, 1))
    assert (adv - x).abs().max() <= 4 / 255 + 0.001 + 1e-6 and (adv - x).abs().max() > 0.01



def test_rfgsm_paper_start_is_normal_and_unclipped():
    model, x, y = model_and_batch(6)
    attack = RandomStepFGSM(model, eps=4 / 255, alpha=0.01, start="normal")
    torch.manual_seed(7)
    adv = attack(x, y)
    torch.manual_seed(7)
    start = (x + 0.01 * torch.randn_like(x)).requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(start), y), start)
    torch.testing.assert_close(adv, (start.detach() + 4 / 255 * grad.sign()).clamp(0, 1))
    with pytest.raises(ValueError, match="start"):
        RandomStepFGSM(model, start="uniform")

def test_pgd_from_config_stays_in_ball():
    model, x, y = model_and_batch(7)
    config = TrainConfig(perturbation="pgd", eps=8 / 255, pgd_alpha=2 / 255, pgd_steps=3)
    torch.manual_seed(0)
    adv = make_perturbation(model, config)(x, y)
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert model.training


# ------------------------------------------------------------------- orthogonality step


def test_orthogonality_step_fixes_orthonormal_rows_and_contracts_others():
    torch.manual_seed(0)
    layer = nn.Linear(12, 5, bias=False)
    q, _ = torch.linalg.qr(torch.randn(12, 5))
    with torch.no_grad():
        layer.weight.copy_(q.T)
    orthogonality_step(layer, beta=0.1)
    torch.testing.assert_close(layer.weight.detach(), q.T, atol=1e-6, rtol=0)

    conv = nn.Conv2d(3, 4, 3, bias=False)
    with torch.no_grad():
        conv.weight.mul_(3.0)

    def distance():
        w = conv.weight.detach().reshape(4, -1)
        return torch.linalg.matrix_norm(w @ w.T - torch.eye(4)).item()

    before = distance()
    w = conv.weight.detach().reshape(4, -1).clone()
    orthogonality_step(conv, beta=0.01)
    expected = 1.01 * w - 0.01 * w @ w.T @ w
    torch.testing.assert_close(conv.weight.detach().reshape(4, -1), expected)
    assert distance() < before



def test_orthogonality_paper_rows_touch_30_percent_of_wide_linear_layers():
    torch.manual_seed(0)
    wide, narrow = nn.Linear(6, 200, bias=False), nn.Linear(6, 199, bias=False)
    model = nn.Sequential(wide, narrow)
    before = [m.weight.detach().clone() for m in model]
    orthogonality_step(model, beta=0.01, rows="paper")
    changed = [int(((m.weight.detach() - b).abs().sum(1) > 0).sum()) for m, b in
               zip(model, before)]
    assert changed == [60, 199]
    rows = ((wide.weight.detach() - before[0]).abs().sum(1) > 0).nonzero().flatten()
    part = before[0][rows]
    torch.testing.assert_close(wide.weight.detach()[rows],
                               1.01 * part - 0.01 * part @ part.T @ part)


def test_rat_modes_switch_weight_decay_and_orthogonality():
    paper = PRESETS["paper"]
    adversarial = dataclasses.replace(paper, perturbation="rfgsm")
    assert (paper.effective_weight_decay, paper.effective_ortho_beta) == (5e-4, 0.0)
    assert (adversarial.effective_weight_decay, adversarial.effective_ortho_beta) == (0.0, 5e-4)
    plain = TrainConfig(ortho_beta=1e-3)
    assert (plain.effective_weight_decay, plain.effective_ortho_beta) == (5e-4, 1e-3)


def test_gaussian_noise_clipping_is_an_option():
    model, _, _ = model_and_batch()
    x = torch.full((3000,), 0.98)
    unclipped = make_perturbation(model, TrainConfig(sigma=0.1, clamp_noise=False))(x, None)
    assert float(unclipped.max()) > 1.0
    clipped = make_perturbation(model, TrainConfig(sigma=0.1))(x, None)
    assert float(clipped.max()) <= 1.0

def test_evaluate_accuracy_restores_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False)).train()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    x = torch.tensor([[2.0, 1, 0, 0], [0, 3.0, 0, 0], [5.0, 0, 0, 0]])
    assert evaluate_accuracy(model, x, torch.tensor([0, 1, 1]), batch_size=2) == \
        pytest.approx(2 / 3)
    assert model.training


# -------------------------------------------------------------------- training and I/O


def test_train_writes_checkpoint_that_reloads_identically(tmp_path, tiny_data):
    torch.manual_seed(0)
    model = build_model(TINY_MODEL)
    history = train(model, tiny_data, tiny_config(), tmp_path, progress=False)
    assert [m["epoch"] for m in history] == [1, 2]
    assert all(0 <= m["test_acc"] <= 1 and m["mppd"] > 0 for m in history)
    payload = read_checkpoint(tmp_path)
    assert {"model_config", "state_dict", "train_config", "epoch", "optimizer", "scheduler",
            "metrics"} <= set(payload)
    assert payload["epoch"] == 2 and payload["train_config"] == tiny_config().to_dict()
    assert payload["model_config"] == model.describe()
    loaded = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert not loaded.training
    x = tiny_data.x_test
    assert torch.equal(loaded(x), model.eval()(x))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["metrics"] == json.loads(json.dumps(history))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.json"]
    assert (tmp_path / CHECKPOINT_NAME).stat().st_mode & 0o044  # not the mkstemp 0600


def test_training_is_deterministic_and_resume_continues_exactly(tmp_path, tiny_data,
                                                                monkeypatch):
    config = tiny_config(epochs=2, perturbation="rfgsm")

    def states(path):
        return read_checkpoint(path)["state_dict"]

    run_training(tiny_data, TINY_MODEL, config, tmp_path / "a", progress=False)
    run_training(tiny_data, TINY_MODEL, config, tmp_path / "b", progress=False)

    # "c" is killed right after its first checkpoint, then resumed
    write_run = loop_module.write_run

    def write_then_die(*args, **kwargs):
        write_run(*args, **kwargs)
        raise KeyboardInterrupt("preempted")

    monkeypatch.setattr(loop_module, "write_run", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_data, TINY_MODEL, config, tmp_path / "c", progress=False)
    monkeypatch.setattr(loop_module, "write_run", write_run)
    assert read_checkpoint(tmp_path / "c")["epoch"] == 1
    run_training(tiny_data, TINY_MODEL, config, tmp_path / "c", resume=True, progress=False)

    a, b, c = states(tmp_path / "a"), states(tmp_path / "b"), states(tmp_path / "c")
    for key in a:
        assert torch.equal(a[key], b[key]), key
        assert torch.equal(a[key], c[key]), key
    resumed = read_checkpoint(tmp_path / "c")
    assert resumed["epoch"] == 2 and [m["epoch"] for m in resumed["metrics"]] == [1, 2]
    assert resumed["metrics"][1]["train_loss"] == read_checkpoint(tmp_path / "a")["metrics"][1]["train_loss"]



def test_keep_best_stores_and_loads_the_best_test_epoch(tmp_path, tiny_data):
    config = tiny_config(epochs=3, keep_best=True, lr=0.05)
    run_training(tiny_data, TINY_MODEL, config, tmp_path, progress=False)
    payload = read_checkpoint(tmp_path)
    accs = [m["test_acc"] for m in payload["metrics"]]
    best = payload["best"]
    assert best["test_acc"] == max(accs) and best["epoch"] == accs.index(max(accs)) + 1
    loaded = load_checkpoint(tmp_path)
    for key, value in best["state_dict"].items():
        assert torch.equal(loaded.state_dict()[key], value)
    last = load_checkpoint(tmp_path, best=False)
    for key, value in payload["state_dict"].items():
        assert torch.equal(last.state_dict()[key], value)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["best"]["epoch"] == best["epoch"]

def test_resume_can_extend_the_schedule(tmp_path, tiny_data):
    config = tiny_config(epochs=1)
    run_training(tiny_data, TINY_MODEL, config, tmp_path, progress=False)
    run_training(tiny_data, TINY_MODEL, dataclasses.replace(config, epochs=4), tmp_path,
                 resume=True, progress=False)
    metrics = read_checkpoint(tmp_path)["metrics"]
    base = config.lr
    expected = [base * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]
    assert [m["lr"] for m in metrics] == pytest.approx(expected)


def test_resume_guards(tmp_path, tiny_data):
    config = tiny_config(epochs=1)
    run_training(tiny_data, TINY_MODEL, config, tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="exists: resume it"):
        run_training(tiny_data, TINY_MODEL, config, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"changed training config \(kappa\)"):
        run_training(tiny_data, TINY_MODEL, dataclasses.replace(config, kappa=0.9), tmp_path,
                     resume=True, progress=False)
    with pytest.raises(ValueError, match="different model config"):
        run_training(tiny_data, {"arch": "mlp", "hidden": [8]}, config, tmp_path,
                     resume=True, progress=False)
    # resume without a checkpoint simply starts
    run_training(tiny_data, TINY_MODEL, config, tmp_path / "new", resume=True, progress=False)
    assert (tmp_path / "new" / CHECKPOINT_NAME).exists()


def test_optional_terms_and_sgd_run(tmp_path, tiny_data):
    config = tiny_config(epochs=1, optimizer="sgd", lr=0.05, weight_decay=5e-4,
                         ortho_beta=0.001, sr_lambda=0.1, schedule="constant")
    torch.manual_seed(0)
    model = build_model({**TINY_MODEL, "neuron": "lif", "bptr": True})
    history = train(model, tiny_data, config, tmp_path, progress=False)
    assert history[0]["sr"] > 0 and history[0]["lr"] == 0.05
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_run_training_checks_model_against_data(tmp_path, tiny_data):
    with pytest.raises(ValueError, match=r"in_shape \(64,\) does not match"):
        run_training(tiny_data, {**TINY_MODEL, "in_shape": [64]}, tiny_config(), tmp_path,
                     progress=False)
    with pytest.raises(ValueError, match="num_classes=5"):
        run_training(tiny_data, {**TINY_MODEL, "num_classes": 5}, tiny_config(), tmp_path,
                     progress=False)


def test_save_checkpoint_is_atomic(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model_config": {}, "state_dict": {}, "epoch": 1})
    with pytest.raises(Exception):
        save_checkpoint(path, {"model_config": {}, "state_dict": {}, "bad": lambda: 0})
    assert torch.load(path, weights_only=True)["epoch"] == 1  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp left


def test_read_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="a directory without checkpoint.pt"):
        read_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an rssnn-deploy checkpoint"):
        read_checkpoint(tmp_path / "other.pt")


def test_train_config_validation_and_dict_round_trip():
    config = TrainConfig(kappa=0.25)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown TrainConfig key.*kapa"):
        TrainConfig.from_dict({"kapa": 0.5})
    for bad in ({"kappa": 1.5}, {"perturbation": "fgsm"}, {"optimizer": "lbfgs"},
                {"epochs": 0}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    paper = PRESETS["paper"]
    assert (paper.optimizer, paper.lr, paper.momentum, paper.weight_decay, paper.batch_size,
            paper.kappa, paper.rho, paper.detach_clean, paper.sigma, paper.epochs) == \
        ("sgd", 0.1, 0.9, 5e-4, 64, 0.5, 1.0, True, 8 / 255, 100)


# -------------------------------------------------------------------------------- CLI


def parse(argv):
    return add_train_arguments(argparse.ArgumentParser()).parse_args(argv)


def test_cli_presets_and_overrides():
    model_config, config = configs_from_args(parse([]))
    assert model_config == {} and config == PRESETS["digits"]
    model_config, config = configs_from_args(parse(
        ["--dataset", "/data/cifar", "--arch", "vgg", "--width", "0.5", "--steps", "4",
         "--bptr", "--lr", "0.05", "--no-detach-clean", "--perturbation", "rfgsm"]))
    assert model_config == {"arch": "vgg", "width": 0.5, "steps": 4, "bptr": True}
    assert config == dataclasses.replace(PRESETS["paper"], lr=0.05, detach_clean=False,
                                         perturbation="rfgsm")
    _, config = configs_from_args(parse(["--preset", "paper", "--epochs", "3",
                                         "--hidden", "64", "32"]))
    assert config.epochs == 3 and config.optimizer == "sgd"
    assert configs_from_args(parse(["--hidden", "64", "32"]))[0] == {"hidden": [64, 32]}
    assert configs_from_args(parse(["--input-encoding", "analog"]))[0] == \
        {"input_encoding": "analog"}


def test_sanity_digits_mlp_reaches_90_percent(tmp_path):
    """The digits preset: MLP 64→128→10 DLIF, T = 8, robust recipe, > 90 % in seconds."""
    path = run_training("digits", {"arch": "mlp", "hidden": [128]},
                        dataclasses.replace(PRESETS["digits"], epochs=8), tmp_path,
                        progress=False)
    assert read_checkpoint(path)["metrics"][-1]["test_acc"] >= 0.90


def test_torchrun_two_processes(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    out = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "rssnn_deploy.training",
           "--out", str(out), "--epochs", "2", "--hidden", "32", "--no-progress",
           "--perturbation", "rfgsm"]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = read_checkpoint(out)
    assert payload["epoch"] == 2 and len(payload["metrics"]) == 2
    assert payload["metrics"][-1]["test_acc"] > 0.5
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.json"]
    model = load_checkpoint(out)
    assert model.describe()["hidden"] == [32]


def test_train_digits_model_reuses_a_finished_run(tmp_path, tiny_data):
    model = train_digits_model(tiny_data, tmp_path, hidden=[8], epochs=1, progress=False)
    assert model.describe()["hidden"] == [8] and not model.training
    stamp = (tmp_path / CHECKPOINT_NAME).stat().st_mtime_ns
    again = train_digits_model(tiny_data, tmp_path, hidden=[8], epochs=1, progress=False)
    assert (tmp_path / CHECKPOINT_NAME).stat().st_mtime_ns == stamp  # nothing retrained
    assert torch.equal(again(tiny_data.x_test), model(tiny_data.x_test))


def test_deploy_stock_is_fold_aware_fine_tuning():
    """``--deploy stock``: the measured deployment step (benchmarks/results/deploy_stock.md)
    = 10 QAT epochs on the folded forward at 0.4·lr, unless set explicitly."""
    from rssnn_deploy.errors import OptionError
    _, config = configs_from_args(parse(["--deploy", "stock"]))
    assert (config.qat_epochs, config.qat_gain_mode) == (10, "fold")
    assert config.qat_lr == pytest.approx(0.4 * PRESETS["digits"].lr)
    _, config = configs_from_args(parse(["--deploy", "stock", "--qat-epochs", "3",
                                         "--qat-lr", "1e-3"]))
    assert (config.qat_epochs, config.qat_lr) == (3, 1e-3)
    assert configs_from_args(parse([]))[1].qat_epochs == 0
    with pytest.raises(OptionError, match="--deploy stock .* --qat-gain-mode exact"):
        configs_from_args(parse(["--deploy", "stock", "--qat-gain-mode", "exact"]))
    with pytest.raises(OptionError, match="--qat-epochs of at least 1"):
        configs_from_args(parse(["--deploy", "stock", "--qat-epochs", "0"]))

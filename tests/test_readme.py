"""The README's Python blocks run as written (the API pipeline, the stock-netx script, the
snnTorch and Norse snippets), and its computed tables equal what the code computes."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _block(after: str) -> str:
    """The first ```python block following the heading or sentence ``after``."""
    text = (ROOT / "README.md").read_text()
    tail = text.split(after, 1)[1]
    return re.search(r"```python\n(.*?)```", tail, re.S).group(1)


def _run(code: str, cwd: Path, *, combined: bool = False) -> str:
    """stdout of ``python -c code`` in ``cwd`` (``combined``: stdout then stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout + out.stderr if combined else out.stdout


@pytest.mark.lava
def test_stock_netx_snippet_is_bit_exact(tmp_path):
    """The README's script as written predicts what ``predict`` does, and every output
    v it reads from stock netx equals our simulator's."""
    code = _block("### Running a file in your own Lava script")
    code = code.replace('"models/', f'"{ROOT}/models/')
    code += ("\nimport torch\nfrom rssnn_deploy.sim.simulator import Simulator\n"
             "ours = Simulator(rd.read_netx(path)).run(torch.as_tensor(rd.encode(x, path)))"
             ".output_v.numpy()[0]\nprint('equal v', bool((ours == np.asarray(v)).all()))\n")
    out = _run(code, tmp_path)
    found = re.search(r"stock netx: (\d+) rssnn_deploy.predict: (\d+)", out)
    assert found and found.group(1) == found.group(2), out
    assert "equal v True" in out


@pytest.mark.slow
def test_api_pipeline_snippet_runs(tmp_path):
    out = _run(_block("## Python API"), tmp_path)
    accuracy = float(out.split("chip accuracy")[1].split()[0])
    assert 0.5 < accuracy <= 1.0
    assert (tmp_path / "runs/api/model.net").is_file()
    assert (tmp_path / "runs/api/eval/report.json").is_file()


def test_config_example_parses_for_every_command(tmp_path):
    from rssnn_deploy.cli.main import build_parser
    from rssnn_deploy.cli.run_config import parse_with_config
    text = (ROOT / "README.md").read_text().split("## Configs and run records", 1)[1]
    (tmp_path / "run.toml").write_text(re.search(r"```toml\n(.*?)```", text, re.S).group(1))
    cfg = str(tmp_path / "run.toml")
    train = parse_with_config(build_parser(), ["train", "--config", cfg, "--epochs", "2"])
    assert (train.arch, train.epochs, train.subset, train.dataset) == ("convnet", 2, 20000,
                                                                       "/data/mnist")
    export = parse_with_config(build_parser(), ["export", "c.pt", "--config", cfg])
    assert export.out == "runs/mnist/model.net"
    evaluate = parse_with_config(build_parser(), ["evaluate", "c.pt", "m.net", "--config", cfg])
    assert evaluate.attacks == ("FGSM", "PGD-10") and evaluate.samples == 1000
    assert evaluate.eps == 8 / 255                     # "8/255": ε in pixel units


def test_samples_for_radius_table_is_what_the_function_computes():
    from rssnn_deploy.robustness.certify import RADII, SIGMAS
    from rssnn_deploy.robustness.tables import samples_needed_table
    text = (ROOT / "README.md").read_text().split("**The sample count caps the radius.**", 1)[1]
    table = re.search(r"\n(\| radius \|.*?)\n\n", text, re.S).group(1)
    assert table == samples_needed_table([r for r in RADII if r > 0], SIGMAS, 0.001)


@pytest.mark.parametrize("library,label", [("snntorch", "snnTorch"), ("norse", "Norse")])
def test_nir_consumer_snippet_predicts_the_chips_classes(library, label, tmp_path):
    """The README's export commands and the library's block, as written, print the classes
    the chip predicts, and nothing of the importer's chatter (snnTorch prints "replace
    rnn subgraph with nirgraph" when called directly)."""

    import rssnn_deploy as rd
    text = (ROOT / "README.md").read_text().split("### Running a file in snnTorch or Norse", 1)[1]
    commands = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    line = next(c for c in commands.splitlines() if f"--for {library}" in c)
    args = shlex.split(line.replace("models/", f"{ROOT}/models/"))
    assert args[0] == "rssnn-deploy"
    cli = _run(f"from rssnn_deploy.cli.main import main; raise SystemExit(main({args[1:]!r}))",
               tmp_path, combined=True)
    heading = {"snntorch": "snnTorch 1.0 (", "norse": "Norse 1.1 ("}[library]
    code = _block(heading).replace('"models/', f'"{ROOT}/models/')
    assert f'import_into("{library}"' in code
    out = _run(code, tmp_path, combined=True)
    assert "replace rnn subgraph" not in cli + out
    printed = dict(re.findall(r"^(\w+):\s*(\[.*\])$", out, re.M))
    x = rd.load_dataset("digits").x_test[:20].numpy()
    chip = rd.predict(ROOT / "models/digits_lif_natural/model.net", x).tolist()
    assert json.loads(printed["chip"]) == chip
    assert json.loads(printed[label]) == chip, out

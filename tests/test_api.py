"""The public Python API: every documented name imports, and importing stays light."""
import subprocess
import sys

import pytest

import rssnn_deploy

PUBLIC = ["load_dataset", "Dataset", "TrainConfig", "PRESETS", "run_training",
          "load_checkpoint", "quantize", "QuantizeOptions", "load_profile", "export_model",
          "write_netx", "read_netx", "NetworkSpec", "Simulator", "encode", "predict",
          "evaluate", "EvaluateConfig", "UserError"]


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_imports(name):
    assert name in rssnn_deploy.__all__ and name in dir(rssnn_deploy)
    exec(f"from rssnn_deploy import {name}", {})
    assert getattr(rssnn_deploy, name) is not None


def test_readme_lists_exactly_the_public_names():
    from pathlib import Path
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    listed = readme.split("Public names (kept stable")[1].split("### ")[0]
    assert sorted(n for n in PUBLIC) == sorted(
        w.strip("`,. \n") for w in listed.split("`")[1::2])


def test_no_submodule_shadows_a_public_name():
    """Importing every module of the package leaves each public name what _PUBLIC says."""
    import importlib
    import pkgutil
    import types
    for info in pkgutil.walk_packages(rssnn_deploy.__path__, "rssnn_deploy."):
        if not info.name.startswith(("rssnn_deploy.backends", "rssnn_deploy._")):
            importlib.import_module(info.name)
    for name in PUBLIC:
        assert not isinstance(getattr(rssnn_deploy, name), types.ModuleType), name
    from rssnn_deploy.quantization import QuantizeOptions, quantize
    assert rssnn_deploy.quantize is quantize and rssnn_deploy.QuantizeOptions is QuantizeOptions


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rssnn_deploy.nope  # noqa: B018


def test_import_is_light_and_lava_free():
    code = ("import sys, rssnn_deploy; "
            "print(sorted(m for m in ('torch', 'lava', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

"""rssnn-deploy: robust stable SNNs from PyTorch to Loihi fixed point, bit-exactly.

Importing the package installs the Lava-on-Python-3.11 fixes (see ``_compat``) so
that ``lava.lib.dl.netx`` and ``lava.lib.dl.slayer`` import afterwards.

The public Python API (README, "Python API") is reached as attributes of the package
and imported on first use, so ``import rssnn_deploy`` itself stays light: each name
lives in the module that owns it, listed in ``_PUBLIC`` (the quantizer's module is
``quantization``, so no submodule shadows the public function ``quantize``).
"""
from rssnn_deploy import _compat
from rssnn_deploy.lazy import lazy_attributes

_compat.install()

__version__ = "0.1.0"

#: public name → module that defines it. Kept stable: tests/test_api.py imports each.
_PUBLIC = {
    "load_dataset": "rssnn_deploy.data.datasets",
    "Dataset": "rssnn_deploy.data.datasets",
    "TrainConfig": "rssnn_deploy.training",
    "PRESETS": "rssnn_deploy.training",
    "run_training": "rssnn_deploy.training",
    "load_checkpoint": "rssnn_deploy.training",
    "quantize": "rssnn_deploy.quantization",
    "QuantizeOptions": "rssnn_deploy.quantization",
    "load_profile": "rssnn_deploy.hardware.profiles",
    "export_model": "rssnn_deploy.pipeline",
    "write_netx": "rssnn_deploy.netx.writer",
    "read_netx": "rssnn_deploy.netx.reader",
    "NetworkSpec": "rssnn_deploy.spec",
    "Simulator": "rssnn_deploy.sim.simulator",
    "encode": "rssnn_deploy.inference",
    "predict": "rssnn_deploy.inference",
    "evaluate": "rssnn_deploy.robustness.evaluation",
    "EvaluateConfig": "rssnn_deploy.robustness.config",
    "UserError": "rssnn_deploy.errors",
}

__all__ = ["__version__", *_PUBLIC]


__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)

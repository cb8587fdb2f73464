"""The Examples sections of the public API run as doctests and print what they say."""
import doctest
import importlib

import pytest

import rssnn_deploy  # noqa: F401  (Lava shim first)

MODULES = [
    "rssnn_deploy.native",
    "rssnn_deploy.spec",
    "rssnn_deploy.inference",
    "rssnn_deploy.netx.reader",
    "rssnn_deploy.netx.writer",
    "rssnn_deploy.sim.simulator",
    "rssnn_deploy.data.datasets",
    "rssnn_deploy.hardware.profiles",
    "rssnn_deploy.robustness.certify",
    "rssnn_deploy.interop.consumers",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"

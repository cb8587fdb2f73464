"""Build configuration that pyproject.toml cannot express: the hardware profiles and the
fused neuron kernel.

The profiles live in the top-level ``hw_profiles/`` (the source of truth, next to the
sources their numbers come from); they are installed as the package
``rssnn_deploy.hw_profiles`` so a wheel carries them and ``rssnn_deploy.hardware.profiles``
reads them through ``importlib.resources``, whether installed, editable or not.

The kernels (C; for the simulator rssnn_deploy/sim/fused/cuba.c and piece.c, loaded by
rssnn_deploy/sim/fused/kernels.py; for training rssnn_deploy/models/lif.c, loaded by
rssnn_deploy/models/lif_kernel.py; both through rssnn_deploy/native.py) are optional
extensions: without a C compiler the package still installs and the simulator and the
training neurons run their torch paths (``rssnn-deploy info`` says which one is used).
"""
from setuptools import Extension, find_packages, setup

setup(
    packages=find_packages(include=["rssnn_deploy", "rssnn_deploy.*"])
    + ["rssnn_deploy.hw_profiles"],
    package_dir={"rssnn_deploy.hw_profiles": "hw_profiles"},
    package_data={"rssnn_deploy": ["py.typed", "recipes/*.toml"], "rssnn_deploy.hw_profiles": ["*.toml"]},
    ext_modules=[Extension(
        "rssnn_deploy.sim.fused._cuba",
        sources=["rssnn_deploy/sim/fused/cuba.c", "rssnn_deploy/sim/fused/piece.c"],
        depends=["rssnn_deploy/sim/fused/cuba.h"],
        extra_compile_args=["-O3", "-fno-math-errno"], optional=True),
        Extension("rssnn_deploy.models._lif", sources=["rssnn_deploy/models/lif.c"],
                  extra_compile_args=["-O3", "-fno-math-errno"], optional=True)],
)

"""Build configuration that pyproject.toml cannot express: the hardware profiles and the
fused neuron kernel.

The profiles live in the top-level ``hw_profiles/`` (the source of truth, next to the
sources their numbers come from); they are installed as the package
``rssnn_deploy.hw_profiles`` so a wheel carries them and ``rssnn_deploy.hw`` reads them
through ``importlib.resources``, whether installed, editable or not.

The kernels (C; for the simulator rssnn_deploy/_fused_cuba.c and _fused_piece.c, see
rssnn_deploy/fastsim*.py; for training rssnn_deploy/_fused_lif.c and
rssnn_deploy/lif_kernel.py) are optional
extensions: without a C compiler the package still installs and the simulator and the
training neurons run their torch paths (``rssnn-deploy info`` says which one is used).
"""
from setuptools import Extension, find_packages, setup

setup(
    packages=find_packages(include=["rssnn_deploy", "rssnn_deploy.*"])
    + ["rssnn_deploy.hw_profiles"],
    package_dir={"rssnn_deploy.hw_profiles": "hw_profiles"},
    package_data={"rssnn_deploy": ["py.typed"], "rssnn_deploy.hw_profiles": ["*.toml"]},
    ext_modules=[Extension(
        "rssnn_deploy._fused_cuba",
        sources=["rssnn_deploy/_fused_cuba.c", "rssnn_deploy/_fused_piece.c"],
        depends=["rssnn_deploy/_fused_cuba.h"],
        extra_compile_args=["-O3", "-fno-math-errno"], optional=True),
        Extension("rssnn_deploy._fused_lif", sources=["rssnn_deploy/_fused_lif.c"],
                  extra_compile_args=["-O3", "-fno-math-errno"], optional=True)],
)

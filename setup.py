"""Build configuration that pyproject.toml cannot express: the hardware profiles.

The profiles live in the top-level ``hw_profiles/`` (the source of truth, next to the
sources their numbers come from); they are installed as the package
``rssnn_deploy.hw_profiles`` so a wheel carries them and ``rssnn_deploy.hw`` reads them
through ``importlib.resources``, whether installed, editable or not.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["rssnn_deploy", "rssnn_deploy.*"])
    + ["rssnn_deploy.hw_profiles"],
    package_dir={"rssnn_deploy.hw_profiles": "hw_profiles"},
    package_data={"rssnn_deploy": ["py.typed"], "rssnn_deploy.hw_profiles": ["*.toml"]},
)

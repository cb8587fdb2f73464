"""Hardware profiles, one TOML file per chip; installed as ``rssnn_deploy.hw_profiles``.

This folder is the source of truth; the build maps it into the package (see
``setup.py``) so wheels carry the profiles and ``rssnn_deploy.hardware.profiles`` finds them through
``importlib.resources``. It holds no code.
"""

"""rssnn-deploy: robust stable SNNs from PyTorch to Loihi fixed point, bit-exactly.

Importing the package installs the Lava-on-Python-3.11 fixes (see ``_compat``) so
that ``lava.lib.dl.netx`` and ``lava.lib.dl.slayer`` import afterwards.
"""
from rssnn_deploy import _compat

_compat.install()

__version__ = "0.1.0"

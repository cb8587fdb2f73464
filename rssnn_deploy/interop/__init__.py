"""NIR export and import, the dialects of NIR consumers (snnTorch, Norse), and running an
exported file in those consumers (``import_into``, ``run_imported``)."""
from rssnn_deploy.interop.consumers import import_into, run_imported

__all__ = ["import_into", "run_imported"]

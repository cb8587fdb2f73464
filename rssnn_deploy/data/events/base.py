"""Types and the error every event reader shares (below both the AEDAT and the N-MNIST
readers, so neither imports the other's module for them)."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from rssnn_deploy.errors import UserError
from rssnn_deploy.fileio import PathLike

__all__ = ["EventFileError", "Events", "PathLike", "Sensor"]

#: x, y, t (µs), p (0/1) as equal-length integer arrays
Events = Dict[str, np.ndarray]
#: a sensor's (H, W), where the file declares one
Sensor = Optional[Tuple[int, int]]


class EventFileError(UserError, ValueError):
    """An event recording or folder that cannot be read; the message names the file."""

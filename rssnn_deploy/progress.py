"""Progress bars on a terminal only; one decision for every bar of the package.

tqdm redraws its bar with carriage returns. On a terminal that is one line updating in
place; in a file or a pipe (``2> run.log``, ``| tee``, CI) every redraw stays, and a long
run's log fills with them. So a bar is drawn only when the caller wants progress and
stderr, where tqdm writes, is a terminal (or a Jupyter kernel, where tqdm.auto draws a
widget). Where no bar is drawn, the commands print their per-unit lines instead
(training's epoch lines, evaluation's line per finished cell with the time left).
"""
from __future__ import annotations

import sys
from typing import Any, Iterable, Optional

__all__ = ["bars_shown", "progress_bar"]


def bars_shown(progress: bool = True) -> bool:
    """Whether a bar asked for with ``progress`` is drawn: stderr must be a terminal."""
    if not progress:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def progress_bar(iterable: Optional[Iterable[Any]] = None, *, progress: bool = True,
                 **options: Any):
    """``tqdm.auto.tqdm(iterable, **options)``, disabled unless :func:`bars_shown`.

    A disabled bar still iterates, counts (``update``) and closes like a drawn one, so
    callers need not branch.
    """
    from tqdm.auto import tqdm
    return tqdm(iterable, disable=not bars_shown(progress), **options)

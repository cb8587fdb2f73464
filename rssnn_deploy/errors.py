"""One error hierarchy for everything a user can fix.

Every boundary of the tool (a CLI option, a file reader, a hardware profile, a dataset,
an output path) raises a subclass of :class:`UserError` with one line that names the
file, the field, the value and the limit. The CLI prints that line and exits with
status 2; anything else that escapes is a bug and is reported as an internal error with
the path of a log file holding the traceback (see ``rssnn_deploy.cli.main.main``).

Each module keeps its own subclass (``NetxFormatError``, ``DatasetError``, …) so code
and tests can tell the boundaries apart; they also subclass ``ValueError`` (or
``RuntimeError`` for backends) where they always did, so existing ``except`` clauses
keep working. This module imports nothing from the package: every module may use it.
"""
from __future__ import annotations

__all__ = ["UserError", "InputFileError", "OptionError", "OutputError"]


class UserError(Exception):
    """A problem the user can fix; its message is one line naming what and where."""


class InputFileError(UserError, FileNotFoundError):
    """An input path that is missing, not a file, or not of the expected format."""


class OptionError(UserError, ValueError):
    """A command-line option (or config entry) out of its type or range."""


class OutputError(UserError, OSError):
    """An output path that cannot be written safely (an input, a directory, in use)."""

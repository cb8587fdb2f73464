"""``rssnn-deploy``: one subcommand per stage; thin, the work lives in the modules.

Errors the user can fix (``rssnn_deploy.errors.UserError``: a missing or malformed
file, an option out of range, a model that does not fit the chip, a missing Loihi
runtime) end with one line naming the file, field and limit, and exit status 2; anything
else is a bug: one line "internal error" with the path of a log holding the traceback,
exit status 3.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

import rssnn_deploy
from rssnn_deploy.cli import deploy, nir, robustness, run
from rssnn_deploy.cli import types as ct
from rssnn_deploy.cli.common import one_line
from rssnn_deploy.errors import UserError
from rssnn_deploy.fileio import check_output, check_output_dir

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The `rssnn-deploy` parser: one subcommand per stage, registered by its group."""
    parser = ct.OneLineParser(
        prog="rssnn-deploy",
        description="Robust stable SNNs from PyTorch to Loihi fixed point: train, quantize, "
                    "export (netx HDF5), simulate bit-exactly, evaluate robustness.")
    parser.add_argument("--version", action="version", version=rssnn_deploy.__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from rssnn_deploy.cli.run_config import COMMANDS as CONFIG_COMMANDS
    from rssnn_deploy.cli.run_config import DefaultsHelpFormatter

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str
            ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=DefaultsHelpFormatter)
        p.set_defaults(handler=handler)
        if name in CONFIG_COMMANDS:
            p.add_argument("--config", default=None, metavar="FILE.toml|RECIPE",
                           help="options from a TOML file (top level or a "
                                f"[{name}] table), or a shipped recipe by name ('robust': "
                                "the paper's recipe for your own data); command-line "
                                "flags override it")
        return p

    for group in (deploy, run, robustness, nir):
        group.register(add)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run one subcommand: user errors end in one line and exit 2, bugs in a log file."""
    import warnings

    from rssnn_deploy.cli.run_config import parse_with_config
    try:
        args = parse_with_config(build_parser(), argv)
    except UserError as err:   # a --config file that cannot be used
        return _fail("config", one_line(err))
    try:
        with warnings.catch_warnings(), _recorded(args):
            warnings.showwarning = _show_warning
            return args.handler(args)
    except UserError as err:
        return _fail(args.command, one_line(err))
    except FileNotFoundError as err:
        return _fail(args.command, one_line(err))
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted", status=130)
    except Exception:  # a bug: keep the traceback in a file, print one line
        return _fail(args.command, f"internal error, please report it with the log "
                                   f"{_write_crash_log(args)}", status=3)

def _recorded(args: argparse.Namespace):
    """``train``, ``export`` and ``evaluate`` keep their resolved options and a log in
    their run folder (``run_config.record_run``); other commands run as they are."""
    import contextlib

    from rssnn_deploy.cli.run_config import COMMANDS, record_run
    if args.command not in COMMANDS:
        return contextlib.nullcontext()
    _check_outputs(args)
    folder = Path(args.out).parent if args.command == "export" else Path(args.out)
    return record_run(args, folder)

def _check_outputs(args: argparse.Namespace) -> None:
    """Output paths are checked before anything is written there (the run log
    included): never an input, never a file where a folder is meant, writable."""
    if args.command == "export":
        for target in (Path(args.out), Path(args.out).with_suffix(".stability.json")):
            check_output(target, [args.checkpoint])
    elif args.command in ("evaluate", "certify"):
        check_output_dir(args.out, [args.checkpoint, args.net])
    elif args.command == "train":
        check_output_dir(args.out, [] if args.dataset == "digits" else [args.dataset],
                         beside_inputs=True)

def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning is one line for the user (Python's default adds a line of source)."""
    print(f"rssnn-deploy: warning: {one_line(message)}", file=sys.stderr)


def _fail(command: str, message: str, status: int = 2) -> int:
    print(f"rssnn-deploy {command}: error: {message}", file=sys.stderr)
    return status

def _write_crash_log(args: argparse.Namespace) -> Path:
    """The traceback of an unexpected error, in a file the user can attach to a report."""
    import tempfile
    import traceback
    fd, name = tempfile.mkstemp(prefix="rssnn-deploy-crash-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        log.write(f"rssnn-deploy {rssnn_deploy.__version__}\nargv: {sys.argv!r}\n"
                  f"command: {args.command}\n\n")
        traceback.print_exc(file=log)
    return Path(name)


if __name__ == "__main__":
    sys.exit(main())

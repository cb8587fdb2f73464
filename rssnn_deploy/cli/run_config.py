"""Run configuration files (``--config run.toml``), the resolved config and a log per run.

A TOML file holds any option of ``train``, ``export``, ``evaluate`` and ``certify``
under its long name (``batch-size`` or ``batch_size``), either at the top level or in a
table named for the command (``[train]``, ``[export]``, ...), so one file can describe a
whole experiment. ``--config NAME`` without such a file reads the recipe the package
ships as ``rssnn_deploy/recipes/NAME.toml`` (``robust``: the paper's recipe for your
own data, end to end). Values go through the same argparse types as the command line, so a
config file is checked exactly like typed options; flags given on the command line
override the file. Positional arguments (checkpoint, netx file) stay on the command line.
An ε (``eps``, ``eps-grid``, ``large-eps``, ``pgd-alpha``) is a pixel value
(``eps = 0.0314``) or a fraction in a string (``eps = "8/255"``); ``eps = 8`` is refused
as on the command line.

After parsing, :func:`record_run` writes the resolved options (``<command>.toml``) and
starts ``<command>.log`` (a copy of everything the command prints) in the run folder.
``tomllib`` reads TOML but cannot write it, and the resolved options are flat scalars
and lists, so the few lines of :func:`to_toml` write them instead of adding a
dependency.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, TextIO, Tuple

from rssnn_deploy.cli.types import did_you_mean, is_budget
from rssnn_deploy.epsilon import eps_text
from rssnn_deploy.errors import InputFileError, OptionError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["COMMANDS", "annotate_train_defaults", "load_config", "config_tokens",
           "parse_with_config", "to_toml", "record_run", "DefaultsHelpFormatter", "recipes",
           "resolve_config"]

#: the subcommands that take ``--config`` and where each keeps its run folder.
COMMANDS = ("train", "export", "evaluate", "certify")

_NOT_RECORDED = {"config", "handler", "command"}


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` shows every option's default (omitted where it is None: the option's
    help then says what applies instead)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default is None or default is argparse.SUPPRESS \
                or default is False or default == () or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".strip()


def annotate_train_defaults(parser: argparse.ArgumentParser) -> None:
    """Say in ``train --help`` what an option left unset (default None) becomes: the
    model's default (per architecture where they differ) or the preset's value."""
    import dataclasses

    from rssnn_deploy.models.config import ARCHITECTURES, COMMON_DEFAULTS
    from rssnn_deploy.training.presets import PRESETS
    fields = {f.name for f in dataclasses.fields(PRESETS["digits"])}
    for action in parser._actions:
        if action.default is not None or not action.option_strings:
            continue
        dest, help_text = action.dest, (action.help or "").strip()
        text = re.sub(r"\s*\([^() ]*\)$", "", help_text)   # a hand-written "(8)" goes
        if dest in fields:
            digits, other = getattr(PRESETS["digits"], dest), getattr(PRESETS["paper-stable"], dest)
            if digits is None and other is None:
                continue
            shown = eps_text if is_budget(action.type) else _shown
            note = (f"default: {shown(digits)}" if digits == other else
                    f"default: {shown(digits)} for digits, {shown(other)} for other data")
            action.help = f"{text} ({note}; --preset sets it)".strip()
        elif dest in COMMON_DEFAULTS and COMMON_DEFAULTS[dest] is not None:
            action.help = f"{text} (default: {COMMON_DEFAULTS[dest]})".strip()
        elif dest == "arch":
            action.help = f"{text} (default: mlp)".strip()
        elif any(dest in keys for keys in ARCHITECTURES.values()):
            values = {a: keys[dest] for a, keys in ARCHITECTURES.items() if dest in keys}
            action.help = (f"{text} (default: "
                           + ", ".join(f"{v} for {a}" for a, v in values.items()) + ")").strip()


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def recipes() -> Dict[str, Path]:
    """The recipes shipped with the package (``rssnn_deploy/recipes/NAME.toml``) by name."""
    from importlib.resources import files
    folder = Path(str(files("rssnn_deploy") / "recipes"))
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def resolve_config(text: str) -> Path:
    """``--config``'s value as a file: a path, or the name of a shipped recipe
    (``--config robust``) when no such file exists."""
    path = Path(text)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    found = recipes()
    if text in found:
        return found[text]
    raise InputFileError(f"{text}: no such config file, and no recipe of that name "
                         f"(recipes: {', '.join(found) or 'none'})")


def load_config(path: Path, command: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(top-level options, the ``[command]`` table's options) of a TOML file."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise OptionError(f"{path}: not valid TOML ({err})") from None
    tables = {k: v for k, v in data.items() if k in COMMANDS and isinstance(v, dict)}
    flat = {k: v for k, v in data.items() if k not in tables}
    return flat, dict(tables.get(command, {}))


def config_tokens(parser: argparse.ArgumentParser, options: Mapping[str, Any],
                  source: Path, given: Sequence[str], shared: Mapping[str, Any] = {},
                  elsewhere: Sequence[str] = ()) -> List[str]:
    """Command-line tokens for ``options`` (a command's table) and ``shared`` (top-level
    options; those only ``elsewhere`` — other commands — know are skipped), leaving out
    options ``given`` on the command line."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    positional = {a.dest for a in parser._actions if not a.option_strings}
    options = {k: v for k, v in options.items() if k not in positional}  # a record's
    merged = {k: v for k, v in shared.items()
              if k not in positional and (k.replace("-", "_") in actions
                                          or k.replace("-", "_") not in elsewhere)}
    merged.update(options)
    tokens: List[str] = []
    for key, value in merged.items():
        dest = key.replace("-", "_")
        action = actions.get(dest)
        if action is None or dest in _NOT_RECORDED:
            names = sorted(d.replace("_", "-") for d in actions
                           if d not in _NOT_RECORDED and d != "help")
            close = did_you_mean(key.replace("_", "-"), names)
            raise OptionError(f"{source}: unknown option {key!r} for "
                              f"'{parser.prog.split()[-1]}' ("
                              + (f"did you mean {close!r}? " if close else "")
                              + f"known: {', '.join(names)})")
        if any(_mentions(token, action) for token in given):
            continue                      # the command line overrides the file
        tokens += _tokens(action, value, source, key)
    return tokens


def _mentions(token: str, action: argparse.Action) -> bool:
    return any(token == s or token.startswith(s + "=") or token == "--no-" + s[2:]
               for s in action.option_strings)


def _tokens(action: argparse.Action, value: Any, source: Path, key: str) -> List[str]:
    negated = isinstance(action, argparse.BooleanOptionalAction)
    flag = max((o for o in action.option_strings
                if not (negated and o.startswith("--no-"))), key=len)
    if isinstance(action, argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            raise OptionError(f"{source}: {key} must be true or false, got {value!r}")
        return [flag if value else "--no-" + flag[2:]]
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise OptionError(f"{source}: {key} must be true or false, got {value!r}")
        wanted = isinstance(action, argparse._StoreTrueAction)
        return [flag] if value == wanted else []
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [t for item in items for t in (flag, _text(item, source, key))]
    if isinstance(value, list):
        if action.nargs in (None, "?"):   # a comma list parsed by the option's type
            return [flag, ",".join(_text(v, source, key) for v in value)]
        return [flag, *(_text(v, source, key) for v in value)]
    return [flag, _text(value, source, key)]


def _text(value: Any, source: Path, key: str) -> str:
    if isinstance(value, (dict, list)):
        raise OptionError(f"{source}: {key} must be a number, string or list of them")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_with_config(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]
                      ) -> argparse.Namespace:
    """Parse ``argv``; a subcommand's ``--config FILE`` supplies the options not given
    on the command line (read before parsing, so it can supply required ones too)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((t for t in argv if t in COMMANDS), None)
    path = _config_path(argv[argv.index(command) + 1:]) if command else None
    if path is None:
        return parser.parse_args(argv)
    position = argv.index(command) + 1
    path = resolve_config(path)
    shared, table = load_config(path, command)
    elsewhere = {a.dest for other in COMMANDS if other != command
                 for a in _subparser(parser, other)._actions}
    extra = config_tokens(_subparser(parser, command), table, path, argv[position:],
                          shared, sorted(elsewhere))
    return parser.parse_args(argv[:position] + extra + argv[position:])


def _config_path(tokens: Sequence[str]) -> Optional[str]:
    for i, token in enumerate(tokens):
        if token == "--config" and i + 1 < len(tokens):
            return tokens[i + 1]
        if token.startswith("--config="):
            return token.split("=", 1)[1]
    return None


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise OptionError(f"no subcommand {command!r}")


def to_toml(values: Mapping[str, Any]) -> str:
    """Flat ``key = value`` TOML for scalars, lists of scalars and None (left out)."""
    lines = []
    for key in sorted(values):
        value = values[key]
        if value is None:
            continue
        lines.append(f"{key.replace('_', '-')} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) \
            and isinstance(value[1], tuple):     # a KIND=L1,L2 option, as typed
        if not value[1]:                      # "none": the option's word for no levels
            return _toml_value(value[0])
        return _toml_value(f"{value[0]}=" + ",".join(f"{v:g}" for v in value[1]))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r} = {_toml_value(v)}".replace("'", '"')
                               for k, v in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


class _Tee:
    """Writes to the terminal and to a log file (``lines_only``: not the writes that
    redraw a line, as progress bars do with a carriage return)."""

    def __init__(self, stream: TextIO, log: TextIO, lines_only: bool = False) -> None:
        self.stream, self.log, self.lines_only = stream, log, lines_only

    def write(self, text: str) -> int:
        if not (self.lines_only and "\r" in text):
            self.log.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _tidy_failed_run(folder: Path, log_path: Path, created: List[Path],
                     logged_before: bool) -> None:
    """A command that failed before printing anything (a missing input, a bad option)
    leaves no trace: its empty log goes, and the folders this run created go (with the
    run's lock files) when nothing else is in them. A log with lines, or anything in a
    folder that was there before, stays."""
    from rssnn_deploy.fileio import LOCK_NAME
    if logged_before or not log_path.is_file() or log_path.stat().st_size:
        return
    log_path.unlink()
    locks = {LOCK_NAME, LOCK_NAME + ".pid"}
    if folder in created and {p.name for p in folder.iterdir()} <= locks:
        for name in locks:
            (folder / name).unlink(missing_ok=True)
        for made in created:                      # deepest first; stop at one in use
            if any(made.iterdir()):
                break
            made.rmdir()


@contextlib.contextmanager
def record_run(args: argparse.Namespace, folder: Path) -> Iterator[None]:
    """Copy what the command prints to ``folder/<command>.log``; when it succeeds,
    write every resolved option to ``folder/<command>.toml`` (a file ``--config``
    reads back; positionals are kept there for the record)."""
    from rssnn_deploy.fileio import atomic_write_text
    log_path = folder / f"{args.command}.log"
    # the folders this run creates, deepest first
    created = [f for f in (folder, *folder.parents) if not f.exists()]
    logged_before = log_path.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "a", encoding="utf-8") as log:
            stdout, stderr = sys.stdout, sys.stderr
            sys.stdout = _Tee(stdout, log)
            # the plan, per-cell lines and warnings go to stderr; progress bars (redrawn
            # with carriage returns) stay out of the log
            sys.stderr = _Tee(stderr, log, lines_only=True)
            try:
                yield
            finally:
                sys.stdout, sys.stderr = stdout, stderr
    except BaseException:
        _tidy_failed_run(folder, log_path, created, logged_before)
        raise
    values = {k: v for k, v in vars(args).items()
              if k not in _NOT_RECORDED and not callable(v)}
    source = f" (from --config {args.config} and the command line)" if args.config else ""
    atomic_write_text(folder / f"{args.command}.toml",
                      f"# resolved options of `rssnn-deploy {args.command}`{source}\n"
                      + to_toml(values))

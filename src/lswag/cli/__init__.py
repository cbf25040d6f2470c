"""The ``lswag`` command line: parses arguments and calls the library, nothing else.

One class per command (:mod:`lswag.cli.commands`); the flags of the settings a command passes to
the library are derived from the settings dataclasses (:mod:`lswag.cli.flags`). Every command
takes ``--config FILE`` (a JSON object of its flags, as ``--save-config FILE`` writes them) to
replay a run; the command line wins over the file. Nothing heavy is imported before a command
runs, so ``--help``, ``--version`` and argument errors answer at once.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from lswag.errors import LswagError, LswagWarning

#: flags every command has, that are no part of a replayable configuration
_CONFIG_DESTS = ("config", "save_config", "command", "run")
#: the exit code of a run stopped by Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2, no usage dump)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class _ShowDefaults(argparse.HelpFormatter):
    """Help that ends with each flag's default, unless its text already says it or it has none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default in (None, False, [], "", argparse.SUPPRESS):
            return text
        return f"{text} (default {action.default})"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lswag")
    except PackageNotFoundError:
        return "0.0.0+unknown"


def build_parser() -> Parser:
    from lswag.cli.commands import COMMANDS

    parser = Parser(prog="lswag", description="Zero-cost neural architecture search with L-SWAG.")
    parser.add_argument("--version", action="version", version=f"lswag {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help,
                                    formatter_class=_ShowDefaults)
        command.add_arguments(sub)
        sub.add_argument("--config", metavar="FILE.json",
                         help="read this command's flags from a JSON object (as --save-config writes it); the "
                              "command line wins")
        sub.add_argument("--save-config", metavar="FILE.json", help="write this command's flags to FILE and run")
        sub.set_defaults(run=command.run)
    return parser


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._subparsers._group_actions:   # argparse keeps its subparsers here
        if name in action.choices:
            return action.choices[name]
    return None


def _apply_config(parser: Parser, argv: list[str]) -> None:
    """Make the flags of ``--config FILE`` the defaults of its command before the real parse."""
    if not argv or "--config" not in argv[1:] and not any(a.startswith("--config=") for a in argv[1:]):
        return
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--config")
    path = peek.parse_known_args(argv[1:])[0].config
    sub = _subparser(parser, argv[0])
    if sub is None or path is None:
        return
    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError:
        parser.exit(2, f"lswag: error: config file {path} not found\n")
    except (OSError, json.JSONDecodeError) as error:
        parser.exit(2, f"lswag: error: cannot read config file {path}: {error}\n")
    if not isinstance(values, dict):
        parser.exit(2, f"lswag: error: config file {path} is not a JSON object of flags\n")
    actions = {a.dest: a for a in sub._actions if a.dest not in _CONFIG_DESTS and a.dest != "help"}
    unknown = sorted(set(key.replace("-", "_") for key in values) - set(actions))
    if unknown:
        parser.exit(2, f"lswag: error: config file {path} names unknown flags of lswag {argv[0]}: "
                       f"{', '.join(unknown)}; valid: {', '.join(sorted(actions))}\n")
    for key, value in values.items():
        actions[key.replace("-", "_")].required = False
    sub.set_defaults(**{key.replace("-", "_"): value for key, value in values.items()})


def _save_config(args: argparse.Namespace) -> None:
    flags = {key: value for key, value in vars(args).items() if key not in _CONFIG_DESTS}
    path = Path(args.save_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(flags, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        _apply_config(parser, argv)
        args = parser.parse_args(argv)
    except SystemExit as stop:   # --help, --version, or an argument error, already printed as one line
        return stop.code if isinstance(stop.code, int) else 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            if args.save_config:
                _save_config(args)
            args.run(args)
    except LswagError as error:
        print(f"lswag: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # Ctrl-C: what is kept, no traceback
        print(_interrupted(args), file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


_SHOW_WARNING = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """lswag's own warnings as one line on stderr; other libraries' as Python shows them."""
    if issubclass(category, LswagWarning):
        print(f"lswag: warning: {message}", file=sys.stderr)
    else:
        _SHOW_WARNING(message, category, filename, lineno, file, line)


def _interrupted(args: argparse.Namespace) -> str:
    """``interrupted``, with how many results the command's store keeps when it has one."""
    from lswag.cli.commands import COMMANDS

    store = next(c for c in COMMANDS if c.name == args.command).store_of(args)
    if store is None or not Path(store).is_file():
        return "interrupted"
    from lswag.store import Store

    try:
        with Store(store) as opened:
            return f"interrupted: {opened.count()} results kept in {store}"
    except LswagError:   # a store never written to: nothing kept
        return "interrupted"

"""Command-line flags derived from the settings dataclasses of :mod:`lswag.settings`.

Each field made with :func:`lswag.settings.setting` becomes one flag: ``--field-name`` (or the
field's own ``flag``), its help, choices and default read from the field, its text form from its
``kind``. :func:`add_settings` declares a dataclass's flags on a parser and :func:`settings_from`
makes the dataclass back from the parsed arguments, so that a setting is declared once, in the
dataclass, and passed whole. No argparse dependency is beyond the standard library's: the
settings objects need flags of a few kinds only, and a library (tyro, jsonargparse) would add an
import of its own to every command, ``--help`` included.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Iterable

from lswag.settings import SettingError, flag_of, parse_build_options, parse_options

__all__ = ["add_settings", "dest_of", "flag_of", "offered", "settings_from"]

_TYPES = {"int": int, "float": float, "str": str}


def _type_of(annotation: str):
    """The argparse type of a field annotated ``int``, ``int | None``, ``float | None``, ``str``..."""
    base = annotation.replace(" | None", "").strip()
    return _TYPES.get(base, str)


def dest_of(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def offered(cls) -> list[dataclasses.Field]:
    """The fields of the settings dataclass ``cls`` that the command line offers (those with help)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("help")]


def add_settings(parser: argparse.ArgumentParser, cls, *, only: Iterable[str] | None = None,
                 skip: Iterable[str] = (), renamed: dict[str, str] | None = None,
                 defaults: dict[str, Any] | None = None, required: Iterable[str] = ()) -> None:
    """Declare the flags of ``cls``'s offered fields on ``parser``: all, ``only`` some, or all but
    ``skip``; ``renamed`` gives a field another flag, ``defaults`` another default (in its text
    form), ``required`` the fields the command cannot run without."""
    only, skip, required, defaults = set(only or ()), set(skip), set(required), defaults or {}
    for field in offered(cls):
        if (only and field.name not in only) or field.name in skip:
            continue
        meta, flag = field.metadata, flag_of(field, renamed)
        kind, help_text = meta.get("kind"), meta["help"]
        default = defaults.get(field.name, meta.get("cli_default"))
        if default is dataclasses.MISSING:
            default = field.default if field.default is not dataclasses.MISSING else None
        extra: dict[str, Any] = {"dest": dest_of(flag), "help": help_text}
        if field.name in required:
            extra["required"] = True
        if kind == "switch":
            parser.add_argument(flag, action="store_true", **extra)
            continue
        if kind in ("option", "build"):
            parser.add_argument(flag, action="append", default=[], metavar="PROXY.KEY=VALUE" if kind == "option"
                                else "KEY=VALUE", **extra)
            continue
        if kind == "csv":
            default = ",".join(default) if isinstance(default, (tuple, list)) else default
            extra["metavar"] = "A,B,..."
        elif meta.get("choices"):
            extra["choices"] = meta["choices"]
        else:
            extra["type"] = _type_of(field.type)
        parser.add_argument(flag, default=default, **extra)


def settings_from(cls, args: argparse.Namespace, *, renamed: dict[str, str] | None = None, **given):
    """``cls`` made from the parsed ``args`` of :func:`add_settings` (each field from its flag, in
    its value form) and ``given`` (fields the command sets itself). A refused value names the flag
    this command gives it (``renamed``)."""
    renamed = renamed or {}
    try:
        return cls(**_values(cls, args, renamed, given))
    except SettingError as error:
        if error.name not in renamed:
            raise
        raise SettingError(error.name, renamed[error.name], error.problem) from None


def _values(cls, args: argparse.Namespace, renamed: dict[str, str], given: dict[str, Any]) -> dict[str, Any]:
    values = dict(given)
    for field in offered(cls):
        dest = dest_of(flag_of(field, renamed))
        if field.name in values or dest not in args:
            continue
        text, kind = getattr(args, dest), field.metadata.get("kind")
        if kind == "csv":
            text = tuple(p.strip() for p in text.split(",") if p.strip()) if isinstance(text, str) else text
        elif kind == "option":
            text = parse_options(text)
        elif kind == "build":
            text = parse_build_options(text)
        values[field.name] = text
    return values

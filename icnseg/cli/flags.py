"""Command-line flags generated from frozen config dataclasses (defaults stay in the class)."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing
from collections.abc import Sequence

from icnseg.cli.bounds import BOUNDS, add_bounded


def field_comments(cls: type) -> dict[str, str]:
    """Map each field of a config dataclass to the comment written beside it in the source."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    found = (re.match(r"\s+(\w+):[^#]*#\s*(.*)", line) for line in lines)
    return {m.group(1): m.group(2) for m in found if m}


def add_config_args(p: argparse.ArgumentParser, cls: type, skip: Sequence[str] = ()) -> None:
    """Expose the fields of a frozen config dataclass as --flags (defaults stay in the class)."""
    hints = typing.get_type_hints(cls)
    notes = field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.default is dataclasses.MISSING:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if typing.get_origin(kind) is typing.Literal:  # a fixed set of choices
            p.add_argument(flag, choices=typing.get_args(kind), default=None,
                           help=f"{notes.get(f.name, '')} (default: {f.default})")
            continue
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        if base is bool:
            p.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{notes.get(f.name, '')} (default: {f.default})",
            )
        elif f.name in BOUNDS and base in (int, float):
            add_bounded(p, flag, f"{notes.get(f.name, '')} (default: {f.default})",
                        default=None, dest=f.name)
        else:
            p.add_argument(
                flag,
                type=base,
                default=None,
                help=f"{notes.get(f.name, '')} (default: {f.default})",
            )


def config_from_args(cls: type, args: argparse.Namespace, **fixed):
    """Build ``cls`` from parsed flags; unset flags keep the dataclass defaults."""
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if getattr(args, f.name, None) is not None
    }
    values.update(fixed)
    return cls(**values)

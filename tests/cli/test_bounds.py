"""Every numeric flag is bounded: the ends of its range parse, one step beyond is refused, and
``--help`` shows the range."""

from __future__ import annotations

import argparse

import pytest

from icnseg.cli.bounds import BOUNDS, bounded
from icnseg.cli.main import build_parser


def _subparsers(parser: argparse.ArgumentParser):
    """Every (sub)parser of the command tree."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _subparsers(sub)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_ends_parse_and_beyond_is_refused(name):
    b = BOUNDS[name]
    convert = bounded(name)
    step = 1 if b.kind is int else 1e-9 * max(1.0, abs(b.hi))
    for value, ok in ((b.lo, not b.lo_open), (b.hi, not b.hi_open),
                      (b.lo - step, False), (b.hi + step, False)):
        text = str(b.kind(value)) if b.kind is int else repr(float(value))
        if ok:
            assert convert(text) == b.kind(value)
        else:
            with pytest.raises(argparse.ArgumentTypeError, match="outside"):
                convert(text)


def test_every_numeric_flag_of_the_cli_is_bounded_and_says_so():
    """No plain int/float flag is left; each bounded one shows its range in --help."""
    unbounded = []
    for parser in _subparsers(build_parser()):
        for action in parser._actions:
            if action.type in (int, float):
                unbounded.append(f"{parser.prog} {action.option_strings}")
            elif getattr(action.type, "__name__", "") in ("int", "float"):
                assert "(range: " in action.help, (parser.prog, action.dest)
    assert unbounded == []

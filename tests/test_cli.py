"""The command line as a newcomer meets it: every help ends with a line to paste."""

from __future__ import annotations

import argparse
import shlex

from kvtier.cli import build_parser, example_of


def _parsers(parser: argparse.ArgumentParser, path=("kvtier",)):
    """Every parser of the command tree with its command words."""
    yield path, parser
    for action in parser._actions:  # argparse keeps subcommands here and nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_help_ends_with_an_example_that_parses():
    root = build_parser()
    seen = []
    for words, parser in _parsers(root):
        command = example_of(parser)
        assert command, f"{' '.join(words)} --help has no example"
        help_text = parser.format_help()
        assert help_text.rstrip().endswith("\n  " + command), f"{' '.join(words)}: the example is not the last line"
        argv = shlex.split(command)
        assert argv[: len(words)] == list(words) or words == ("kvtier",), (words, command)
        args = root.parse_args(argv[1:])  # a valid command line (paths need not exist to parse)
        assert args.func is not None
        seen.append(" ".join(words))
    assert {"kvtier", "kvtier replay", "kvtier bench", "kvtier trace stats", "kvtier trace convert"} <= set(seen)


def test_a_long_example_is_not_wrapped(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    for _, parser in _parsers(build_parser()):
        assert "\n  " + example_of(parser) + "\n" in parser.format_help()

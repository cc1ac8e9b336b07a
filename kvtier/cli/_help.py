"""Help text the subcommands share: every ``--help`` ends with one line a user can paste."""

from __future__ import annotations

import argparse

_EXAMPLE = "example:\n  "


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, except that the example is never re-wrapped (a command split
    over two lines cannot be pasted)."""

    def _fill_text(self, text, width, indent):
        if text.startswith(_EXAMPLE):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def with_example(command: str) -> dict:
    """Keyword arguments for ``ArgumentParser`` / ``add_parser`` that end the help with
    ``command`` as an example, on a line of its own."""
    return {"epilog": _EXAMPLE + command, "formatter_class": _Formatter}


def example_of(parser: argparse.ArgumentParser) -> str | None:
    """The example command ``parser``'s help ends with (``None`` if it has none)."""
    epilog = parser.epilog or ""
    return epilog[len(_EXAMPLE):] if epilog.startswith(_EXAMPLE) else None

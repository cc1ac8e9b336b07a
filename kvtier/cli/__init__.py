"""The ``kvtier`` command line.

Each module in this package that defines ``register(subparsers)`` adds one subcommand
(``kvtier <name> ...``); ``register`` sets ``func`` on its parser, which receives the
parsed arguments and returns the exit status. Modules are found by name, so adding a
command is adding a file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from kvtier.cli._help import example_of, with_example
from kvtier.errors import KvtierError


__all__ = ["build_parser", "example_of", "main", "with_example"]


def build_parser() -> argparse.ArgumentParser:
    from kvtier import __version__

    parser = argparse.ArgumentParser(
        prog="kvtier", description="KV-cache tiering for LLM inference.",
        **with_example("kvtier replay --trace traces/golden/mooncake-tiny.jsonl --policy lru --capacity-blocks 8"))
    parser.add_argument("--version", action="version", version=f"kvtier {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KvtierError as e:
        print(f"kvtier {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The command line as a newcomer meets it: every help ends with a line to paste, and the
first ``kvtier replay`` compiles only its own kernel and says so."""

from __future__ import annotations

import argparse
import io
import json
import shlex
from pathlib import Path

import pytest

from kvtier.cli import build_parser, example_of, main
from kvtier.cli.replay import compile_kernel
from kvtier.errors import UnknownNameError
from kvtier.replay import KERNELS, select_kernel, warm_up

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "traces" / "golden" / "mooncake-tiny.jsonl"


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


@pytest.mark.parametrize("name", KERNELS)
def test_warm_up_runs_the_kernel_it_names(name):
    assert warm_up((name,)) >= 0.0


def test_warm_up_rejects_unknown_kernels():
    with pytest.raises(UnknownNameError, match="kernels: got 'nope'"):
        warm_up(("list", "nope"))


def test_compiling_says_what_and_that_it_happens_once():
    out = io.StringIO()
    compile_kernel("list", stream=out, notice_after_s=0.0)
    text = out.getvalue()
    assert "compiling the 'list' replay kernel" in text and "once" in text and "compiled in" in text
    quiet = io.StringIO()
    compile_kernel("list", stream=quiet, notice_after_s=60.0)  # loads from the cache well within a minute
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("argv, policies", [
    (["--policy", "lru", "--capacity-blocks", "8"], ["lru"]),
    (["--policy", "arc", "--capacity-blocks", "8"], ["arc"]),
    (["--tiers", "hbm:6:lfu,dram:10:lru"], ["lfu", "lru"]),
])
def test_replay_compiles_only_the_kernel_its_tiers_select(monkeypatch, capsys, argv, policies):
    import kvtier.cli.replay as cli_replay

    compiled = []
    monkeypatch.setattr(cli_replay, "compile_kernel", lambda kernel: compiled.append(kernel) or 0.0)
    assert main(["replay", "--trace", str(GOLDEN), "--json", *argv]) == 0
    out = json.loads(capsys.readouterr().out)
    assert compiled == [select_kernel(policies, [1] * len(policies), accesses=out["block_accesses"]).name]


def test_replay_of_a_gzipped_named_trace_matches_its_plain_form(tmp_path, capsys):
    import gzip

    rows = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    named = "".join(json.dumps({**r, "session_id": f"agent-{k % 3}"}) + "\n" for k, r in enumerate(rows))
    (tmp_path / "named.jsonl.gz").write_bytes(gzip.compress(named.encode()))
    results = []
    for path in (GOLDEN, tmp_path / "named.jsonl.gz"):
        assert main(["replay", "--trace", str(path), "--policy", "lru", "--capacity-blocks", "8", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        results.append({k: out[k] for k in ("requests", "block_hits", "prefix_hits", "unique_blocks", "tiers")})
    assert results[0] == results[1]

"""The store demonstration (what `kvtier bench` runs today) checks every byte it reads."""

from __future__ import annotations

from kvtier.cli import main
from kvtier.demo import DemoConfig, run_store_demo


def test_demo_verifies_every_block_and_survives_reopen(tmp_path):
    cfg = DemoConfig(agents=2, turns=4, tokens_per_turn=512, hbm_blocks=64, dram_blocks=64, flash_blocks=512)
    lines = []
    result = run_store_demo(cfg, str(tmp_path), log=lines.append)
    assert sum(r.corrupt_or_wrong for r in result.rows) == 0
    assert sum(r.verified for r in result.rows) > 0
    flash = result.stats["tiers"]["flash"]
    assert flash["hits"] > 0 and flash["blocks_in"] > 0  # the run really reached the flash tier
    assert result.reopened_blocks > 0 and result.reopened_verified == result.reopened_blocks
    # Turn by turn: every block of a context is either found or stored, none twice.
    for row in result.rows:
        assert sum(row.hits_by_tier.values()) + row.missing == row.blocks


def test_demo_is_deterministic(tmp_path):
    cfg = DemoConfig(agents=2, turns=3, tokens_per_turn=256, hbm_blocks=16, dram_blocks=16, flash_blocks=128)
    a = run_store_demo(cfg, str(tmp_path / "a"), log=lambda s: None)
    b = run_store_demo(cfg, str(tmp_path / "b"), log=lambda s: None)
    assert [r.hits_by_tier for r in a.rows] == [r.hits_by_tier for r in b.rows]
    assert {k: v for k, v in a.stats["tiers"]["flash"].items() if not k.endswith("_ns")} == {
        k: v for k, v in b.stats["tiers"]["flash"].items() if not k.endswith("_ns")
    }


def test_cli_bench_runs_the_demo(tmp_path, capsys):
    # `kvtier bench` runs the simulator suite now; the store demonstration is `kvtier demo`
    assert main(["demo", "--agents", "2", "--turns", "2", "--dir", str(tmp_path)]) == 0
    assert "read back bit-identical" in capsys.readouterr().out

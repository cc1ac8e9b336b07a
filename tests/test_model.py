"""ModelSpec: KV geometry and prefill FLOPs against the sourced figures (hardware.md §3)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from kvtier import ConfigError, ModelSpec, UnknownNameError, model_names
from kvtier._data import hardware_data

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "hardware.json"
REQUIRED = ["llama-3.1-8b", "llama-3.1-70b", "qwen2.5-coder-32b", "qwen3-coder-480b-a35b", "deepseek-v3", "gpt-oss-120b"]


def test_required_presets_exist():
    assert set(REQUIRED) <= set(model_names())
    assert "tiny" in model_names()


@pytest.mark.parametrize("name", sorted(hardware_data()["models"]))
def test_preset_kv_bytes_match_sourced_table(name):
    entry = hardware_data()["models"][name]
    m = ModelSpec.preset(name)
    assert m.kv_bytes_per_token == entry["kv_bytes_per_token_bf16"]
    assert m.with_dtype_bytes(1).kv_bytes_per_token == entry["kv_bytes_per_token_fp8"]
    for ctx, expected in entry["kv_bytes_at_ctx_bf16"].items():
        assert m.kv_bytes(int(ctx)) == expected


@pytest.mark.parametrize("name", sorted(hardware_data()["models"]))
def test_preset_prefill_flops_match_sourced_table(name):
    entry = hardware_data()["models"][name]
    m = ModelSpec.preset(name)
    for ctx, expected in entry["prefill_flops_total"].items():
        assert m.prefill_flops(int(ctx)) == pytest.approx(expected, rel=1e-4)


def test_hand_computed_llama70b():
    m = ModelSpec.preset("llama-3.1-70b")
    assert m.kv_bytes_per_token == 2 * 80 * 8 * 128 * 2 == 327_680
    assert m.attention_flops_coef == 4 * 80 * 64 * 128
    s, c = 1000, 4000
    assert m.prefill_flops(s, c) == pytest.approx(s * 2 * 70.6e9 + 4 * 80 * 64 * 128 * (s * c + s * s / 2))
    assert m.block_shape(16) == (80, 2, 16, 8, 128)
    assert m.block_bytes(16) == 16 * 327_680


def test_mla_block_shape_and_bytes():
    m = ModelSpec.preset("deepseek-v3")
    assert m.is_mla and m.block_shape(64) == (61, 64, 576)
    assert m.block_bytes(64) == 61 * 64 * 576 * 2


def test_sliding_window_fixed_cost():
    m = ModelSpec.preset("gpt-oss-120b")
    assert m.sliding_window_bytes == 4_718_592  # hardware.json "fixed_bytes_cap"
    assert m.kv_bytes(64) == 64 * m.kv_bytes_per_token + 64 * 4_718_592 // 128
    assert m.block_shape(16)[0] == 18  # only full-attention layers live in prefix blocks


def test_vectorised_prefill():
    m = ModelSpec.preset("llama-3.1-8b")
    s = np.array([1, 10, 100])
    out = m.prefill_flops(s, 50)
    assert out.shape == (3,)
    assert np.allclose(out, [m.prefill_flops(int(x), 50) for x in s])


def test_prefill_monotone_in_tokens_and_context():
    m = ModelSpec.preset("qwen3-coder-480b-a35b")
    assert m.prefill_flops(101, 0) > m.prefill_flops(100, 0)
    assert m.prefill_flops(100, 1) > m.prefill_flops(100, 0)


def test_tiny_is_small():
    tiny = ModelSpec.preset("tiny")
    assert tiny.kv_bytes_per_token == 256 and tiny.block_bytes(16) == 4096
    assert tiny.kv_dtype == np.float32


@pytest.mark.parametrize(
    "field,value",
    [("num_layers", 0), ("num_q_heads", -1), ("head_dim", 1.5), ("num_kv_heads", None), ("dtype_bytes", 3),
     ("active_params", 0), ("sliding_window_layers", 5)],
)
def test_invalid_spec_names_the_field(field, value):
    kwargs = dict(name="x", num_layers=4, num_q_heads=4, num_kv_heads=2, head_dim=8, active_params=1e6)
    kwargs[field] = value
    with pytest.raises(ConfigError, match=field):
        ModelSpec(**kwargs)


def test_unknown_preset_lists_choices():
    with pytest.raises(UnknownNameError, match="llama-3.1-70b"):
        ModelSpec.preset("llama-9")


def test_negative_tokens_rejected():
    with pytest.raises(ConfigError, match="new_tokens"):
        ModelSpec.preset("tiny").prefill_flops(-1)


@pytest.mark.skipif(not SHARED.exists(), reason="shared/ not beside the checkout")
def test_vendored_hardware_data_matches_shared():
    assert hardware_data() == json.loads(SHARED.read_text())


def test_sliding_layers_are_not_counted_twice():
    """Without the sourced coefficient, attention over full layers is 4 * full_layers * q * d."""
    import dataclasses

    preset = ModelSpec.preset("gpt-oss-120b")
    derived = dataclasses.replace(preset, attn_flops_coef=None)
    assert derived.attention_flops_coef == preset.attention_flops_coef == 4 * 18 * 64 * 64
    assert derived.prefill_flops(1, 100_000) == pytest.approx(preset.prefill_flops(1, 100_000))


@pytest.mark.parametrize("bad", [-5, float("nan"), "a"])
def test_token_counts_are_validated(bad):
    m = ModelSpec.preset("tiny")
    with pytest.raises(ConfigError):
        m.kv_bytes(bad)
    with pytest.raises(ConfigError):
        m.prefill_flops(bad)

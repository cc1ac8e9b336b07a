"""Hardware targets: presets against hardware.json/hardware.md, weights placement, KV
capacity, estimate flags, validation, user files and the ``kvtier targets`` command."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvtier._data import hardware_data
from kvtier.cli import main as cli_main
from kvtier.errors import ConfigError, UnknownNameError
from kvtier.model import ModelSpec
from kvtier.targets import (
    DEFAULT_EFFICIENCY,
    Estimate,
    HardwareTarget,
    LinkSpec,
    TargetTier,
    load_target,
    target_names,
    weights_bytes,
)
from kvtier.targets.figures import assumption, assumptions_data, hardware_value

LLAMA70 = ModelSpec.preset("llama-3.1-70b")
HW = hardware_data()


def close(got, want, rel=0.05):
    return abs(got - want) <= rel * abs(want)


# -- hardware.md §3: KV bytes per token of every model preset ----------------------------

MD_KV_BYTES_PER_TOKEN = {  # hardware.md §3 table, bf16
    "llama-3.1-8b": 131_072, "llama-3.1-70b": 327_680, "llama-3.1-405b": 516_096, "qwen2.5-coder-32b": 262_144,
    "qwen3-coder-480b-a35b": 253_952, "deepseek-v3": 70_272, "gpt-oss-120b": 36_864, "llama-2-70b": 327_680,
}


@pytest.mark.parametrize("name,want", sorted(MD_KV_BYTES_PER_TOKEN.items()))
def test_kv_bytes_per_token_matches_hardware_md(name, want):
    assert close(ModelSpec.preset(name).kv_bytes_per_token, want)
    assert ModelSpec.preset(name).kv_bytes_per_token == want  # exact, in fact


# -- presets: names, figures from hardware.json -----------------------------------------


def test_target_names_are_the_issue_list():
    assert target_names() == [
        "cerebras-cs3", "cerebras-cs3x4", "groq-lpu-576", "groq3-lpx", "h100", "h200", "b200", "gb200-nvl72",
        "vera-rubin-nvl72", "etched-sohu", "matx-one",
    ]


def test_unknown_preset_names_the_choices():
    with pytest.raises(UnknownNameError, match="h100"):
        HardwareTarget.preset("h1000")


@pytest.mark.parametrize("name", target_names())
def test_every_preset_builds_with_and_without_a_model(name):
    bare = HardwareTarget.preset(name)
    assert bare.weights_bytes == 0
    assert bare.kv_capacity_bytes == tuple(t.capacity_bytes for t in bare.tiers)
    placed = HardwareTarget.preset(name, model=LLAMA70)
    assert placed.weights_bytes in (weights_bytes(LLAMA70, 1), weights_bytes(LLAMA70, 2))
    assert all(c >= 0 for c in placed.kv_capacity_bytes)
    assert placed.sources and all(isinstance(u, str) for u in placed.source_urls().values())
    for i in range(1, len(placed.tiers)):
        path = placed.fetch_path(i)
        assert path.read_bw_bytes_per_s <= placed.tiers[i].read_bw_bytes_per_s
        assert path.read_bw_bytes_per_s <= placed.link_of(i).read_bw_bytes_per_s


def test_cerebras_x4_is_four_wafers_and_matches_its_json_entry():
    x4 = HardwareTarget.preset("cerebras-cs3x4")
    j = HW["targets"]["cerebras_cs3_x4_llama70b"]
    assert x4.chips == 4
    assert x4.tiers[0].capacity_bytes == j["tiers"][0]["capacity_bytes"] == 176e9
    assert x4.tiers[0].read_bw_bytes_per_s == j["tiers"][0]["read_bw_bytes_per_s"]
    assert x4.fetch_path(1).read_bw_bytes_per_s == j["tiers"][1]["read_bw_bytes_per_s"] == 600e9
    assert x4.link("memoryx_io").count == 4
    assert x4.compute_flops == j["compute_flops_bf16"]
    assert x4.power_w == j["power_w"]
    # MemoryX is a shared appliance: four wafers do not make it four times larger.
    assert x4.tiers[1].capacity_bytes == HardwareTarget.preset("cerebras-cs3").tiers[1].capacity_bytes
    # the scalable one-wafer preset picks four wafers for Llama-70B (hardware.md §4: "4 used")
    assert HardwareTarget.preset("cerebras-cs3", model=LLAMA70).chips == 4


def test_fixed_systems_refuse_other_chip_counts():
    with pytest.raises(ConfigError, match="chips"):
        HardwareTarget.preset("groq-lpu-576", chips=8)
    assert HardwareTarget.preset("groq-lpu-576", chips=576).chips == 576


def test_groq_576_system_figures():
    g = HardwareTarget.preset("groq-lpu-576")
    assert g.tiers[0].capacity_bytes == 576 * 230_000_000
    assert g.compute_flops == HW["targets"]["groq_system_576_llama2_70b"]["compute_flops_bf16"]
    assert g.weights_bytes_per_param == 1  # FP8 weights, hardware.md §4
    assert g.link("pcie4").read_bw_bytes_per_s == 576 * 32e9  # one PCIe4 x16 per card
    assert g.tiers[1].is_estimate("capacity_bytes")  # host DRAM size is not public


def test_per_chip_presets_scale_linearly():
    one, eight = HardwareTarget.preset("h100"), HardwareTarget.preset("h100", chips=8)
    assert eight.tiers[0].capacity_bytes == 8 * one.tiers[0].capacity_bytes == 640e9
    assert eight.compute_flops == 8 * one.compute_flops
    assert eight.fetch_path(1).read_bw_bytes_per_s == 8 * 64e9
    assert eight.power_w == 8 * 700
    assert eight.fetch_path(1).latency_s == one.fetch_path(1).latency_s
    est1, est8 = one.tiers[2].estimate_of("capacity_bytes"), eight.tiers[2].estimate_of("capacity_bytes")
    assert est8.low == 8 * est1.low and est8.high == 8 * est1.high


def test_default_chips_is_smallest_power_of_two_that_holds_the_weights():
    assert HardwareTarget.preset("h100", model=LLAMA70).chips == 2  # 141.2 GB > 80 GB
    assert HardwareTarget.preset("b200", model=LLAMA70).chips == 1  # 141.2 GB < 178 GB
    assert HardwareTarget.preset("h100", model="llama-3.1-8b").chips == 1
    assert HardwareTarget.preset("h100", model="qwen3-coder-480b-a35b").chips == 16  # 960 GB


def test_weights_that_do_not_fit_are_refused():
    with pytest.raises(ConfigError, match="weights of llama-3.1-70b need 141.2 GB"):
        HardwareTarget.preset("h100", model=LLAMA70, chips=1)
    with pytest.raises(ConfigError, match="weights"):
        HardwareTarget.preset("cerebras-cs3x4", model="qwen3-coder-480b-a35b")


# -- hardware.md §4: capacities --------------------------------------------------------


def test_capacity_cliff_on_sram_machines_llama70b():
    """``kvtier targets --model llama-3.1-70b``: cerebras-cs3x4 ~107k, groq-lpu-576 ~194k."""
    cs = HardwareTarget.preset("cerebras-cs3x4", model=LLAMA70)
    assert cs.weights_bytes == 141_200_000_000
    assert cs.kv_capacity_bytes[0] == 176_000_000_000 - 141_200_000_000
    assert int(cs.kv_capacity_tokens()[0]) == (176_000_000_000 - 141_200_000_000) // 327_680 == 106_201
    assert close(cs.kv_capacity_tokens()[0], 107_000)
    groq = HardwareTarget.preset("groq-lpu-576", model=LLAMA70)
    assert int(groq.kv_capacity_tokens()[0]) == (132_480_000_000 - 70_600_000_000) // 327_680 == 188_842
    assert close(groq.kv_capacity_tokens()[0], 194_000)
    # hardware.md's 194k is Llama-2-70B (69B params) on the same system: exact there.
    groq2 = HardwareTarget.preset("groq-lpu-576", model="llama-2-70b")
    assert int(groq2.kv_capacity_tokens()[0]) == 193_725


@pytest.mark.parametrize("target,per,model,want", [
    ("cerebras-cs3", 1, "llama-3.1-70b", 134_277),
    ("groq3-lpx", 1, "llama-3.1-70b", 390_625),
    ("h100", 1, "llama-3.1-70b", 244_141),
    ("vera-rubin-nvl72", 72, "llama-3.1-70b", 878_906),
    ("cerebras-cs3", 1, "qwen3-coder-480b-a35b", 173_261),
    ("groq3-lpx", 1, "qwen3-coder-480b-a35b", 504_032),
])
def test_kv_tokens_that_fit_without_weights(target, per, model, want):
    """hardware.md §4 "KV tokens that fit (bf16, no weights)" (Rubin per GPU)."""
    t = HardwareTarget.preset(target)
    assert close(t.kv_capacity_tokens(ModelSpec.preset(model))[0] / per, want)


def test_icms_is_16_tb_per_gpu():
    vr = HardwareTarget.preset("vera-rubin-nvl72")
    icms = vr.tiers[vr.tier_index("icms")]
    assert icms.capacity_bytes == 72 * 16e12
    assert close(icms.capacity_bytes / 72 / LLAMA70.kv_bytes_per_token, 48.8e6)


@pytest.mark.parametrize("model,want_bytes", [("llama-3.1-70b", 141e9), ("qwen3-coder-480b-a35b", 960e9),
                                              ("deepseek-v3", 1.34e12)])
def test_bf16_weight_bytes(model, want_bytes):
    assert close(weights_bytes(ModelSpec.preset(model)), want_bytes)
    assert weights_bytes(ModelSpec.preset(model), 1) * 2 == weights_bytes(ModelSpec.preset(model))


def test_matx_keeps_weights_in_sram_and_kv_in_hbm():
    m = HardwareTarget.preset("matx-one", model=LLAMA70)
    assert m.weights_tier.name == "sram" and m.weights_tier is m.weights_memory
    assert m.kv_capacity_bytes[0] == m.tiers[0].capacity_bytes  # HBM untouched by weights
    assert m.chips * 0.5e9 >= m.weights_bytes > m.chips / 2 * 0.5e9


# -- estimates ------------------------------------------------------------------------


def test_matx_every_number_is_an_estimate():
    m = HardwareTarget.preset("matx-one")
    for tier in (*m.tiers, m.weights_memory):
        for f in ("capacity_bytes", "read_bw_bytes_per_s", "write_bw_bytes_per_s", "latency_s"):
            e = tier.estimate_of(f)
            assert e is not None and e.assumption, (tier.name, f)
            assert e.low <= getattr(tier, f) <= e.high
    assert m.is_estimate("compute_flops")
    for k in m.links:
        assert k.is_estimate("read_bw_bytes_per_s") and k.is_estimate("latency_s")


def test_json_estimate_flags_carry_over():
    assert HardwareTarget.preset("cerebras-cs3").is_estimate("compute_flops")
    assert HardwareTarget.preset("cerebras-cs3").is_estimate("power_w")
    assert HardwareTarget.preset("vera-rubin-nvl72").is_estimate("compute_flops")
    assert HardwareTarget.preset("etched-sohu").is_estimate("compute_flops")
    assert HardwareTarget.preset("etched-sohu").tiers[0].is_estimate("read_bw_bytes_per_s")
    assert not HardwareTarget.preset("etched-sohu").tiers[0].is_estimate("capacity_bytes")  # 144 GB is Etched's
    h100 = HardwareTarget.preset("h100")
    assert not h100.is_estimate("compute_flops") and not h100.tiers[0].is_estimate("read_bw_bytes_per_s")
    assert h100.tiers[0].is_estimate("latency_s")  # latency_estimate: true in hardware.json
    vr = HardwareTarget.preset("vera-rubin-nvl72")
    assert vr.tiers[vr.tier_index("icms")].is_estimate("read_bw_bytes_per_s")


@pytest.mark.parametrize("name", target_names())
def test_every_estimate_brackets_its_value(name):
    t = HardwareTarget.preset(name)
    for part in (t, *t.tiers, *t.links, *((t.weights_memory,) if t.weights_memory else ())):
        for e in part.estimates:
            assert e.low <= getattr(part, e.field) * (1 + 1e-12) and getattr(part, e.field) <= e.high * (1 + 1e-12)
            assert len(e.assumption) > 10


def _assumption_entries(node=None, path=()):
    """(keys, entry) of every figure in assumptions.json."""
    node = assumptions_data() if node is None else node
    for key, value in node.items():
        if isinstance(value, dict) and "reason" in value:
            yield (*path, key), value
            yield from _assumption_entries({k: v for k, v in value.items() if isinstance(v, dict)}, (*path, key))
        elif isinstance(value, dict) and key != "meta":
            yield from _assumption_entries(value, (*path, key))


def test_assumptions_are_data_with_reasons_ranges_and_sources():
    sources = HW["meta"]["sources"]
    entries = dict(_assumption_entries())
    assert len(entries) > 40
    for keys, e in entries.items():
        assert {"value", "low", "high", "reason", "sources"} <= set(e), keys
        assert len(e["reason"]) > 10, keys
        assert all(s in sources for s in e["sources"]), (keys, e["sources"])
        for end in ("value", "low", "high"):
            if f"{end}_from" in e:  # a figure named in hardware.json, not repeated here
                assert e[end] is None and isinstance(hardware_value(e[f"{end}_from"]), (int, float)), (keys, end)
        fig = assumption(*keys)
        assert (fig.low is None) == (fig.high is None) and (fig.low is None or fig.low <= fig.high), keys


@pytest.mark.parametrize("name", target_names())
def test_every_preset_estimate_comes_from_data(name):
    """Each range a preset's assumptions give is an estimate of that preset (scaled to its
    chips), with the data's reason; and every estimate of the preset is one of the data's."""
    t = HardwareTarget.preset(name)
    estimates = [e for part in (t, *t.tiers, *t.links, *((t.weights_memory,) if t.weights_memory else ()))
                 for e in part.estimates]
    for figure in assumptions_data()["presets"].get(name, {}):
        fig = assumption("presets", name, figure)
        if fig.low is not None:
            field = figure.split(".")[-1]
            assert any(e.field.endswith(field) and e.assumption == fig.reason
                       and e.low / e.high == pytest.approx(fig.low / fig.high) for e in estimates), (name, figure)
    reasons = {entry["reason"] for _, entry in _assumption_entries()}
    assert all(e.assumption in reasons for e in estimates), name


def test_matx_figures_are_the_assumed_ones():
    m = HardwareTarget.preset("matx-one")
    assert m.weights_memory.capacity_bytes == int(assumption("presets", "matx-one", "sram.capacity_bytes").value)
    assert m.tiers[0].read_bw_bytes_per_s == assumption("presets", "matx-one", "hbm.read_bw_bytes_per_s").value
    assert m.compute_flops == assumption("presets", "matx-one", "compute_flops").value
    assert m.efficiency == DEFAULT_EFFICIENCY == assumption("efficiency").value


# -- validation -----------------------------------------------------------------------


def _tier(**kw):
    base = dict(name="hbm", kind="hbm", capacity_bytes=1000, read_bw_bytes_per_s=10.0, write_bw_bytes_per_s=10.0)
    base.update(kw)
    return TargetTier(**base)


def _target(**kw):
    base = dict(
        name="toy",
        tiers=(_tier(), _tier(name="dram", kind="dram", capacity_bytes=10_000, link="pcie")),
        links=(LinkSpec(name="pcie", read_bw_bytes_per_s=5.0, write_bw_bytes_per_s=5.0),),
        compute_flops=1e9,
    )
    base.update(kw)
    return HardwareTarget(**base)


@given(field=st.sampled_from(["capacity_bytes", "read_bw_bytes_per_s", "write_bw_bytes_per_s"]),
       value=st.one_of(st.integers(-10**12, 0), st.floats(max_value=0.0), st.just(float("nan"))))
@settings(max_examples=40)
def test_tier_capacity_and_bandwidth_must_be_positive(field, value):
    with pytest.raises(ConfigError, match=field):
        _tier(**{field: value})


@given(value=st.one_of(st.floats(max_value=0.0), st.just(float("inf")), st.just(float("nan"))))
@settings(max_examples=20)
def test_link_bandwidth_and_compute_must_be_positive(value):
    with pytest.raises(ConfigError, match="read_bw_bytes_per_s"):
        LinkSpec(name="x", read_bw_bytes_per_s=value, write_bw_bytes_per_s=1.0)
    with pytest.raises(ConfigError, match="compute_flops"):
        _target(compute_flops=value)


@pytest.mark.parametrize("kw,match", [
    ({"chips": 0}, "chips"),
    ({"efficiency": 0.0}, "efficiency"),
    ({"efficiency": 1.5}, "efficiency"),
    ({"power_w": -1.0}, "power_w"),
    ({"tiers": ()}, "tiers"),
    ({"tiers": (_tier(link="pcie"),)}, r"tiers\[0\].link"),
    ({"tiers": (_tier(), _tier(name="dram", kind="dram"))}, r"tiers\[1\].link"),
    ({"tiers": (_tier(), _tier())}, "unique"),
    ({"weights_bytes_per_param": 3}, "weights_bytes_per_param"),
    ({"model": ModelSpec.preset("tiny").__class__(name="big", num_layers=1, num_q_heads=1, num_kv_heads=1,
                                                  head_dim=1, active_params=1e6)}, "weights of big"),
    ({"estimates": (Estimate(field="compute_flops", low=1.0, high=2.0, assumption="made up for the test"),)},
     "estimate range"),
])
def test_target_validation_names_the_field(kw, match):
    with pytest.raises(ConfigError, match=match):
        _target(**kw)


def test_estimate_validation():
    with pytest.raises(ConfigError, match="low"):
        Estimate(field="x", low=2.0, high=1.0, assumption="because")
    with pytest.raises(ConfigError, match="assumption"):
        Estimate(field="x", low=1.0, high=2.0, assumption=" ")
    with pytest.raises(ConfigError, match="not one of"):
        _tier(estimates=(Estimate(field="colour", low=1.0, high=2.0, assumption="because"),))


def test_kv_tokens_need_a_model():
    with pytest.raises(ConfigError, match="model"):
        HardwareTarget.preset("h100").kv_capacity_tokens()


def test_fetch_path_combines_tier_and_link():
    t = _target(tiers=(_tier(), _tier(name="dram", kind="dram", capacity_bytes=10_000, link="pcie", latency_s=1e-3,
                                       read_bw_bytes_per_s=4.0)),
                links=(LinkSpec(name="pcie", read_bw_bytes_per_s=5.0, write_bw_bytes_per_s=7.0, latency_s=2e-3),))
    p = t.fetch_path(1)
    assert (p.name, p.read_bw_bytes_per_s, p.write_bw_bytes_per_s, p.latency_s) == ("pcie", 4.0, 7.0, 3e-3)
    assert t.fetch_path(0).read_bw_bytes_per_s == 10.0 and t.link_of(0) is None
    with pytest.raises(ConfigError, match="tier_index"):
        t.fetch_path(2)


# -- user files -----------------------------------------------------------------------

TOML = """
name = "my-box"
unit = "8 GPUs"
chips = 8
compute_flops = 7.9e15
efficiency = 0.4
model = "llama-3.1-70b"
sources = ["my notes"]

[[links]]
name = "pcie5"
read_bw_bytes_per_s = 5.12e11
write_bw_bytes_per_s = 5.12e11
latency_s = 5e-6

[[tiers]]
name = "hbm"
kind = "hbm"
capacity_bytes = 640e9
read_bw_bytes_per_s = 2.68e13
write_bw_bytes_per_s = 2.68e13
latency_s = 6e-7

[[tiers]]
name = "dram"
kind = "dram"
capacity_bytes = 2000000000000
read_bw_bytes_per_s = 9e11
write_bw_bytes_per_s = 9e11
link = "pcie5"
estimates = [{ field = "capacity_bytes", low = 1e12, high = 4e12, assumption = "a guess at the node's DRAM" }]
"""


def test_load_target_toml(tmp_path):
    p = tmp_path / "box.toml"
    p.write_text(TOML)
    t = load_target(p)
    assert t.name == "my-box" and t.chips == 8 and t.efficiency == 0.4
    assert t.model == LLAMA70
    assert t.kv_capacity_bytes == (640_000_000_000 - 141_200_000_000, 2_000_000_000_000)
    assert t.fetch_path(1).read_bw_bytes_per_s == 5.12e11
    assert t.tiers[1].is_estimate("capacity_bytes")
    assert load_target(p, model="llama-3.1-8b").model.name == "llama-3.1-8b"


@pytest.mark.parametrize("name", ["h100", "matx-one", "vera-rubin-nvl72"])
def test_json_round_trip_of_presets(tmp_path, name):
    t = HardwareTarget.preset(name, model=LLAMA70)
    p = tmp_path / "t.json"
    p.write_text(json.dumps(t.to_dict(derived=False)))
    assert load_target(p) == t


@pytest.mark.parametrize("edit,match", [
    (lambda s: s.replace('kind = "dram"', 'kind = "dram"\nbandwidth = 3'), r"tiers\[1\]\.bandwidth: unknown field"),
    (lambda s: s.replace("capacity_bytes = 640e9", "capacity_bytes = -1"), r"tiers\[0\].*capacity_bytes"),
    (lambda s: s.replace("capacity_bytes = 640e9", "capacity_bytes = 640.5"), r"tiers\[0\]\.capacity_bytes"),
    (lambda s: s.replace("read_bw_bytes_per_s = 9e11", "read_bw_bytes_per_s = 0"), "read_bw_bytes_per_s"),
    (lambda s: s.replace('name = "my-box"', 'name = "my-box"\ncolour = "red"'), r"target\.colour: unknown field"),
    (lambda s: s.replace("compute_flops = 7.9e15\n", ""), "compute_flops: missing"),
    (lambda s: s.replace('link = "pcie5"', 'link = "nvlink"'), r"tiers\[1\]\.link"),
    (lambda s: s.replace('model = "llama-3.1-70b"', 'model = "llama-9"'), "model"),
    (lambda s: s + "\n[[[", "not valid TOML"),
])
def test_bad_files_name_the_field_and_the_file(tmp_path, edit, match):
    p = tmp_path / "bad.toml"
    p.write_text(edit(TOML))
    with pytest.raises(ConfigError, match=match) as info:
        load_target(p)
    assert str(p) in str(info.value)


def test_bad_suffix_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="suffix"):
        (tmp_path / "x.yaml").write_text("a: 1")
        load_target(tmp_path / "x.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_target(tmp_path / "nope.toml")


# -- the command ----------------------------------------------------------------------


def _line(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(name + " "))


def test_cli_targets_shows_the_capacity_cliff(capsys):
    assert cli_main(["targets", "--model", "llama-3.1-70b"]) == 0
    out = capsys.readouterr().out
    assert "106.2k" in _line(out, "cerebras-cs3x4") and "34.8 GB" in _line(out, "cerebras-cs3x4")
    assert "188.8k" in _line(out, "groq-lpu-576")
    for name in target_names():
        assert _line(out, name)


def test_cli_targets_json_and_unfit(capsys):
    assert cli_main(["targets", "--model", "qwen3-coder-480b-a35b", "--json", "--target", "h100",
                     "--target", "cerebras-cs3x4"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["name"] == "h100" and data[0]["chips"] == 16
    assert data[0]["kv_capacity_tokens"][0] == (16 * 80_000_000_000 - 960_000_000_000) // 253_952
    assert "weights" in data[1]["error"]
    assert cli_main(["targets", "--target", "h100"]) == 0
    assert "80.0 GB" in _line(capsys.readouterr().out, "h100")


def test_cli_targets_file(tmp_path, capsys):
    p = tmp_path / "box.toml"
    p.write_text(TOML)
    assert cli_main(["targets", "--file", str(p), "--weights", "fp8"]) == 0
    out = capsys.readouterr().out
    assert "70.6 GB in hbm" in _line(out, "my-box")
    p.write_text(TOML.replace("capacity_bytes = 640e9", "capacity_bytes = 0"))
    assert cli_main(["targets", "--file", str(p)]) == 2
    assert "capacity_bytes" in capsys.readouterr().err


def test_with_model_and_dataclass_equality():
    a = HardwareTarget.preset("b200").with_model(LLAMA70, weights_bytes_per_param=1)
    assert a.weights_bytes == 70_600_000_000
    assert a == dataclasses.replace(HardwareTarget.preset("b200"), model=LLAMA70, weights_bytes_per_param=1)
    assert np.array_equal(a.kv_capacity_tokens(), np.asarray(a.kv_capacity_bytes) // 327_680)


def test_tier_specs_build_a_store_with_the_same_tier_order(tmp_path):
    from kvtier.store import TieredStore

    t = HardwareTarget.preset("h100", model=LLAMA70)
    specs = t.tier_specs(capacity_scale=1e-6, flash_path=tmp_path)
    assert [s.name for s in specs] == ["hbm", "host_dram", "nvme"]
    assert specs[0].capacity_bytes == int(t.kv_capacity_bytes[0] * 1e-6)
    assert t.chips == 2 and specs[1].read_bw_bytes_per_s == 2 * 64e9  # one PCIe5 x16 per GPU
    assert specs[1].latency_s == t.fetch_path(1).latency_s
    tiny = ModelSpec.preset("tiny")
    store = TieredStore.for_model(tiny, 16, specs)
    try:
        assert store.tier_names == ("hbm", "host_dram", "nvme")
    finally:
        store.close()
    with pytest.raises(ConfigError, match="flash_path"):
        t.tier_specs(capacity_scale=1e-6)
    with pytest.raises(ConfigError, match="capacity_scale"):
        t.tier_specs(capacity_scale=0)

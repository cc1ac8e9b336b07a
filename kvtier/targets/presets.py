"""The preset catalogue: named hardware targets built from the sourced figures.

Every figure comes from data: published ones from ``kvtier/data/hardware.json`` (source
keys in ``sources``), kvtier's own assumptions (figures that are not public, estimate
ranges, system sizes) from ``kvtier/data/assumptions.json`` with their reasons and source
keys (``kvtier.targets.figures``). This module only says how the parts fit together: which
memory is a tier of which kind, which link a tier comes in over, what scales with chips.

Importing it registers the presets in ``kvtier.targets.spec.PRESETS``, in the order the
issue lists them.
"""

from __future__ import annotations

import dataclasses

from kvtier._data import hardware_data
from kvtier.targets.deployment import Deployment
from kvtier.targets.figures import Figure, assumption, assumptions_data, hardware_value
from kvtier.targets.spec import PRESETS, TIME_PARTS, Estimate, HardwareTarget, LinkSpec, Preset, TargetTier


def _tier_json(target_key: str, tier_name: str) -> dict:
    return hardware_value(f"targets.{target_key}.tiers.{tier_name}")


def _figure(preset: str, name: str) -> Figure:
    return assumption("presets", preset, name)


def _estimate(field: str, low: float, high: float, reason: str) -> Estimate:
    return Estimate(field=field, low=float(low), high=float(high), assumption=reason)


def _figure_estimate(field: str, fig: Figure, scale: int = 1) -> Estimate:
    """``fig``'s range as the estimate of ``field``, times ``scale`` (chips, for a range
    given per chip)."""
    return _estimate(field, fig.low * scale, fig.high * scale, fig.reason)


def _lat_est(kind: str, value: float) -> Estimate:
    """The latency range of a path kind (``assumptions.json`` latency_ranges), widened to
    hold ``value``."""
    r = assumption("latency_ranges", kind)
    return _estimate("latency_s", min(r.low, value), max(r.high, value), r.reason)


def _tier(name, kind, entry, *, link=None, capacity=None, read=None, write=None, latency=None,
          lat_kind=None, estimates=(), sources=(), note=None, shared=False) -> TargetTier:
    """A TargetTier from a hardware.json tier entry, overriding what the entry lacks."""
    cap = entry.get("capacity_bytes") if capacity is None else capacity
    rd = entry.get("read_bw_bytes_per_s") if read is None else read
    wr = entry.get("write_bw_bytes_per_s") if write is None else write
    lat = entry.get("latency_s") if latency is None else latency
    est = list(estimates)
    if lat_kind is not None and not any(e.field == "latency_s" for e in est):
        est.append(_lat_est(lat_kind, lat))
    return TargetTier(
        name=name, kind=kind, capacity_bytes=int(cap), read_bw_bytes_per_s=float(rd), write_bw_bytes_per_s=float(wr),
        latency_s=float(lat), link=link, shared=shared, note=entry.get("note", "") if note is None else note,
        estimates=tuple(est), sources=tuple(sources),
    )


def _assumed_tier(preset: str, name: str, kind: str, *, note: str) -> TargetTier:
    """A tier whose every figure is an assumption of ``preset`` (``name.capacity_bytes``,
    ``name.read_bw_bytes_per_s``, ``name.write_bw_bytes_per_s``, ``name.latency_s``)."""
    cap, rd, wr, lat = (_figure(preset, f"{name}.{f}")
                        for f in ("capacity_bytes", "read_bw_bytes_per_s", "write_bw_bytes_per_s", "latency_s"))
    return TargetTier(
        name=name, kind=kind, capacity_bytes=int(cap.value), read_bw_bytes_per_s=rd.value, write_bw_bytes_per_s=wr.value,
        latency_s=lat.value, note=note,
        estimates=(_figure_estimate("capacity_bytes", cap), _figure_estimate("read_bw_bytes_per_s", rd),
                   _figure_estimate("write_bw_bytes_per_s", wr), _lat_est(kind, lat.value)),
        sources=cap.sources,
    )


def _pcie5_link(per_chip_note: str = "one PCIe Gen5 x16 per GPU") -> LinkSpec:
    g = hardware_data()["generic_tiers"]["pcie_gen5_x16"]
    return LinkSpec(
        name="pcie5", read_bw_bytes_per_s=g["read_bw_bytes_per_s"], write_bw_bytes_per_s=g["write_bw_bytes_per_s"],
        latency_s=g["latency_s"], note=f"{per_chip_note}; {g['note']}", estimates=(_lat_est("pcie", g["latency_s"]),),
        sources=("pcie5", "h100_gk"),
    )


def _ddr5_latency() -> float:
    return hardware_data()["generic_tiers"]["ddr5_socket_12ch_4800"]["latency_s"]


def _host_dram(entry: dict, *, capacity=None, cap_est: Estimate | None = None, sources=("hgx_node",)) -> TargetTier:
    # hardware.json's "host_dram_via_pcie5_x16" bandwidth is the PCIe bound; its latency is
    # the DMA setup, which the link charges, so the memory keeps DDR5's own latency.
    return _tier(
        "host_dram", "dram", entry, link="pcie5", capacity=capacity, latency=_ddr5_latency(), lat_kind="dram",
        estimates=(cap_est,) if cap_est else (), sources=sources,
    )


def _assumed_host(preset: str) -> tuple[TargetTier, LinkSpec]:
    """Host DRAM over one PCIe Gen5 x16 per chip, for a chip whose host is not public:
    figures as an HGX host's, ranges from ``preset``'s assumptions."""
    cap = _figure(preset, "host_dram.capacity_bytes")
    host = _host_dram(_tier_json("nvidia_h100_sxm", "host_dram_via_pcie5_x16"), capacity=cap.value,
                      cap_est=_figure_estimate("capacity_bytes", cap))
    host = dataclasses.replace(host, estimates=(*host.estimates, *(
        _figure_estimate(f, _figure(preset, f"host_dram.{f}")) for f in ("read_bw_bytes_per_s", "write_bw_bytes_per_s"))))
    pcie = _pcie5_link("assumed: one PCIe Gen5 x16 per chip (not public)")
    pcie = dataclasses.replace(pcie, estimates=(*pcie.estimates, *(
        _figure_estimate(f, _figure(preset, f"pcie5.{f}")) for f in ("read_bw_bytes_per_s", "write_bw_bytes_per_s"))))
    return host, pcie


def _nvme_per_chip(link: str) -> TargetTier:
    n5 = hardware_data()["generic_tiers"]["nvme_gen5_ssd"]
    figs = {f: assumption("local_nvme", f) for f in ("capacity_bytes", "read_bw_bytes_per_s", "write_bw_bytes_per_s")}
    return _tier(
        "nvme", "flash", n5, link=link, estimates=tuple(_figure_estimate(f, fig) for f, fig in figs.items()),
        sources=figs["capacity_bytes"].sources, note="local NVMe, " + n5["note"],
    )


def _scale_target(t: HardwareTarget, n: int, *, shared_tiers: tuple[str, ...] = ()) -> HardwareTarget:
    """A per-chip target on ``n`` chips; tiers named in ``shared_tiers`` keep their capacity."""
    est = tuple(e.scaled(n) if e.field in ("compute_flops", "power_w") else e for e in t.estimates)
    return dataclasses.replace(
        t,
        chips=n,
        tiers=tuple(x.times(n, capacity=x.name not in shared_tiers) for x in t.tiers),
        links=tuple(k.times(n) for k in t.links),
        weights_memory=t.weights_memory.times(n) if t.weights_memory else None,
        compute_flops=t.compute_flops * n,
        power_w=None if t.power_w is None else t.power_w * n,
        estimates=est,
    )


def _cerebras(name: str, chips: int) -> HardwareTarget:
    j = hardware_data()["targets"]["cerebras_cs3"]
    sram = _tier("wafer_sram", "sram", _tier_json("cerebras_cs3", "wafer_sram"), lat_kind="sram", sources=("cs3_alcf",))
    mx_entry = _tier_json("cerebras_cs3", "memoryx_dram_flash")
    memx = _tier(
        "memoryx", "dram", mx_entry, link="memoryx_io", lat_kind="memoryx", sources=("cs3_toms", "cs3_memx_semiwiki"),
        shared=True,
        note="MemoryX DDR5+flash appliance (largest option; shared, so it does not grow with wafers). " + mx_entry["note"],
    )
    io = LinkSpec(
        name="memoryx_io", read_bw_bytes_per_s=j["interconnect"]["system_io_bytes_per_s"],
        write_bw_bytes_per_s=j["interconnect"]["system_io_bytes_per_s"], latency_s=0.0,
        note="CS-3 system I/O 1.2 Tb/s (12x100 GbE) per wafer; MemoryX latency is charged by the tier",
        sources=("cs3_alcf",),
    )
    flops, power = _figure("cerebras-cs3", "compute_flops"), _figure("cerebras-cs3", "power_w")
    per = HardwareTarget(
        name=name, unit=j["unit"], chips=1, tiers=(sram, memx), links=(io,),
        compute_flops=flops.value, power_w=power.value,
        estimates=(_figure_estimate("compute_flops", flops), _figure_estimate("power_w", power)),
        notes=j["notes"], sources=tuple(j["source"]),
    )
    out = _scale_target(per, chips, shared_tiers=("memoryx",))
    if chips == _figure("cerebras-cs3x4", "chips").value:
        x4 = hardware_data()["targets"]["cerebras_cs3_x4_llama70b"]
        out = dataclasses.replace(out, unit=x4["unit"], notes=x4["notes"],
                                  sources=tuple(dict.fromkeys((*x4["source"], *out.sources))))
    return out


def _groq576(chips: int) -> HardwareTarget:
    j = hardware_data()["targets"]["groq_system_576_llama2_70b"]
    chip = hardware_data()["targets"]["groq_lpu_v1"]
    sram = _tier("sram", "sram", _tier_json("groq_system_576_llama2_70b", "sram"), lat_kind="sram", sources=("groq_tpu",))
    host_entry = _tier_json("groq_lpu_v1", "host_dram_via_pcie4_x16")
    cap = _figure("groq-lpu-576", "host_dram.capacity_bytes")
    host = _tier(
        "host_dram", "dram", host_entry, link="pcie4", capacity=int(cap.value), latency=_ddr5_latency(),
        lat_kind="dram", read=host_entry["read_bw_bytes_per_s"] * chips, write=host_entry["write_bw_bytes_per_s"] * chips,
        estimates=(_figure_estimate("capacity_bytes", cap),),
        sources=cap.sources, note="host DRAM of the GroqNodes, reached over each card's PCIe Gen4 x16",
    )
    link = LinkSpec(
        name="pcie4", read_bw_bytes_per_s=host_entry["read_bw_bytes_per_s"],
        write_bw_bytes_per_s=host_entry["write_bw_bytes_per_s"], latency_s=host_entry["latency_s"],
        note="one PCIe Gen4 x16 host port per card", estimates=(_lat_est("pcie", host_entry["latency_s"]),),
        sources=("groq_linley",),
    ).times(chips)
    power = _figure("groq-lpu-576", "power_w")
    return HardwareTarget(
        name="groq-lpu-576", unit=j["unit"], chips=chips, tiers=(sram, host), links=(link,),
        compute_flops=j["compute_flops_bf16"], power_w=power.value,
        estimates=(_figure_estimate("power_w", power),),
        notes=j["notes"] + " Compute is the FP16 figure (no BF16 published). Weights default to FP8 (hardware.md §4). "
        + chip["notes"],
        sources=tuple(dict.fromkeys((*j["source"], *chip["source"]))),
    )


def _groq3_lpx(chips: int) -> HardwareTarget:
    j = hardware_data()["targets"]["groq3_lpx_rack"]
    sram = _tier("sram", "sram", _tier_json("groq3_lpx_rack", "sram"), latency=_figure("groq3-lpx", "sram.latency_s").value,
                 lat_kind="sram", sources=("groq3",), note="256 x 512 MB LP30 SRAM; latency not public")
    flops = _figure("groq3-lpx", "compute_flops")
    return HardwareTarget(
        name="groq3-lpx", unit=j["unit"], chips=chips, tiers=(sram,), links=(),
        compute_flops=flops.value, estimates=(_figure_estimate("compute_flops", flops),),
        notes=j["notes"] + " No host or flash tier is public (paired with Vera Rubin NVL72 for prefill). Weights default to "
        "FP8 (assumption: LP30 publishes FP8 compute only).",
        sources=tuple(j["source"]),
    )


def _nvidia_gpu(name: str, key: str, hbm_name: str, chips: int, *, hbm_capacity: Figure | None = None,
                host_capacity: Figure | None = None) -> HardwareTarget:
    """One HGX-style GPU: HBM, host DRAM and one local NVMe over PCIe Gen5; ``hbm_capacity``
    and ``host_capacity`` replace hardware.json's figures with assumed ones."""
    j = hardware_data()["targets"][key]
    hbm = _tier("hbm", "hbm", _tier_json(key, hbm_name), capacity=hbm_capacity.value if hbm_capacity else None,
                lat_kind="hbm", sources=tuple(j["source"]))
    host_e = _tier_json(key, "host_dram_via_pcie5_x16")
    if host_capacity is not None:
        host = _host_dram(host_e, capacity=host_capacity.value,
                          cap_est=_figure_estimate("capacity_bytes", host_capacity))
    else:
        host = _host_dram(host_e, cap_est=None)
    per = HardwareTarget(
        name=name, unit=j["unit"], chips=1, tiers=(hbm, host, _nvme_per_chip("pcie5")), links=(_pcie5_link(),),
        compute_flops=j["compute_flops_bf16"], power_w=j.get("power_w"), notes=j.get("notes", ""),
        sources=tuple(j["source"]),
    )
    return _scale_target(per, chips)


def _h100(chips: int) -> HardwareTarget:
    return _nvidia_gpu("h100", "nvidia_h100_sxm", "hbm3", chips)


def _h200(chips: int) -> HardwareTarget:
    return _nvidia_gpu("h200", "nvidia_h200", "hbm3e", chips)


def _b200(chips: int) -> HardwareTarget:
    return _nvidia_gpu("b200", "nvidia_b200_hgx", "hbm3e", chips, hbm_capacity=_figure("b200", "hbm.capacity_bytes"),
                       host_capacity=_figure("b200", "host_dram.capacity_bytes"))


def _c2c_link(per_dir: float, count: int, *, est: Estimate | None, note: str, sources) -> LinkSpec:
    lat = hardware_data()["generic_tiers"]["nvlink_c2c_grace"]["latency_s"]
    ests = [_lat_est("c2c", lat)]
    if est is not None:
        ests += [est, dataclasses.replace(est, field="write_bw_bytes_per_s")]
    return LinkSpec(name="nvlink_c2c", read_bw_bytes_per_s=per_dir, write_bw_bytes_per_s=per_dir, latency_s=lat,
                    note=note, estimates=tuple(ests), sources=tuple(sources)).times(count)


def _rack_nvme(chips: int) -> TargetTier:
    return _nvme_per_chip("nvlink_c2c").times(chips)


def _cpu_dram(name: str, target_key: str, tier_name: str, source: str) -> TargetTier:
    """A rack CPU's LPDDR5X as the GPUs see it over NVLink-C2C (DDR5-like latency)."""
    return _tier(name, "dram", _tier_json(target_key, tier_name), link="nvlink_c2c", latency=_ddr5_latency(),
                 lat_kind="dram", sources=(source,))


def _gb200(chips: int) -> HardwareTarget:
    j = hardware_data()["targets"]["nvidia_gb200_nvl72"]
    hbm = _tier("hbm", "hbm", _tier_json("nvidia_gb200_nvl72", "hbm3e"), lat_kind="hbm", sources=("gb200",))
    grace = _cpu_dram("grace_dram", "nvidia_gb200_nvl72", "grace_lpddr5x_via_nvlink_c2c", "grace")
    c2c_e = hardware_data()["generic_tiers"]["nvlink_c2c_grace"]
    link = _c2c_link(c2c_e["read_bw_bytes_per_s"], chips // _figure("gb200-nvl72", "gpus_per_grace").value, est=None,
                     sources=("grace",),
                     note="NVLink-C2C 450 GB/s/dir per Grace (one Grace per 2 GPUs); NVMe shares it (assumption)")
    power = _figure("gb200-nvl72", "power_w")
    return HardwareTarget(
        name="gb200-nvl72", unit=j["unit"], chips=chips, tiers=(hbm, grace, _rack_nvme(chips)), links=(link,),
        compute_flops=j["compute_flops_bf16"], power_w=power.value, estimates=(_figure_estimate("power_w", power),),
        notes=j["notes"], sources=tuple(j["source"]),
    )


def _vera_rubin(chips: int) -> HardwareTarget:
    j = hardware_data()["targets"]["nvidia_vr_nvl72"]
    hbm = _tier("hbm", "hbm", _tier_json("nvidia_vr_nvl72", "hbm4"), lat_kind="hbm", sources=("rubin",))
    vera = _cpu_dram("vera_dram", "nvidia_vr_nvl72", "vera_lpddr5x_via_nvlink_c2c", "rubin")
    c2c = _figure("vera-rubin-nvl72", "nvlink_c2c.bw_bytes_per_s")
    link = _c2c_link(c2c.value, chips // _figure("vera-rubin-nvl72", "gpus_per_vera").value,
                     est=_figure_estimate("read_bw_bytes_per_s", c2c), sources=("rubin",),
                     note="NVLink-C2C per Vera (one Vera per 2 GPUs)")
    icms_e = _tier_json("nvidia_icms", "icms_flash")
    icms_read, icms_write = (_figure("vera-rubin-nvl72", f"icms.{f}") for f in ("read_bw_bytes_per_s", "write_bw_bytes_per_s"))
    icms = _tier(
        "icms", "flash", icms_e, link="bluefield4", capacity=_tier_json("nvidia_vr_nvl72", "icms_flash_g3_5")["capacity_bytes"],
        read=icms_read.value * chips, write=icms_write.value * chips, lat_kind="icms",
        sources=("icms_nv", "icms_nand", "icms_16tb", "bf4"),
        estimates=(_figure_estimate("read_bw_bytes_per_s", icms_read, chips),
                   _figure_estimate("write_bw_bytes_per_s", icms_write, chips)),
        note="NVIDIA context-memory flash (ICMS, G3.5): +16 TB per GPU; " + icms_e["note"],
    )
    rdma = hardware_data()["generic_tiers"]["rdma_nic_400g"]
    bf4_bw = _figure("vera-rubin-nvl72", "bluefield4.bw_bytes_per_s").value
    bf4 = LinkSpec(
        name="bluefield4", read_bw_bytes_per_s=bf4_bw, write_bw_bytes_per_s=bf4_bw, latency_s=rdma["latency_s"],
        note="800 Gb/s BlueField-4 per 4-GPU compute tray (bf4); RDMA latency est",
        estimates=(_lat_est("rdma", rdma["latency_s"]),), sources=("bf4", "cx7"),
    ).times(chips // _figure("vera-rubin-nvl72", "gpus_per_bluefield4").value)
    flops = _figure("vera-rubin-nvl72", "compute_flops")
    return HardwareTarget(
        name="vera-rubin-nvl72", unit=j["unit"], chips=chips, tiers=(hbm, vera, icms), links=(link, bf4),
        compute_flops=flops.value, estimates=(_figure_estimate("compute_flops", flops),),
        notes=j["notes"], sources=tuple(dict.fromkeys((*j["source"], "icms_nv", "icms_nand", "bf4"))),
    )


def _sohu(chips: int) -> HardwareTarget:
    j = hardware_data()["targets"]["etched_sohu"]
    hbm = _tier("hbm", "hbm", _tier_json("etched_sohu", "hbm3e"), lat_kind="hbm", sources=("sohu",), estimates=tuple(
        _figure_estimate(f, _figure("etched-sohu", f"hbm.{f}")) for f in ("read_bw_bytes_per_s", "write_bw_bytes_per_s")))
    host, pcie = _assumed_host("etched-sohu")
    flops = _figure("etched-sohu", "compute_flops")
    per = HardwareTarget(
        name="etched-sohu", unit=j["unit"], chips=1, tiers=(hbm, host), links=(pcie,),
        compute_flops=flops.value, estimates=(_figure_estimate("compute_flops", flops),),
        notes=j["notes"], sources=tuple(j["source"]),
    )
    return _scale_target(per, chips)


def _matx(chips: int) -> HardwareTarget:
    j = hardware_data()["targets"]["matx_one"]
    sram = _assumed_tier("matx-one", "sram", "sram", note="holds the weights only (matx); size not public")
    hbm = _assumed_tier("matx-one", "hbm", "hbm", note="holds the KV cache (matx); size not public")
    host, pcie = _assumed_host("matx-one")
    flops = _figure("matx-one", "compute_flops")
    per = HardwareTarget(
        name="matx-one", unit=j["unit"], chips=1, tiers=(hbm, host), links=(pcie,), weights_memory=sram,
        compute_flops=flops.value, estimates=(_figure_estimate("compute_flops", flops),),
        notes=j["notes"] + " Every figure here is an assumption (see estimates).", sources=tuple(j["source"]),
    )
    return _scale_target(per, chips)


def family_of(preset: str) -> str:
    """The hardware family of ``preset`` (``assumptions.json`` deployments)."""
    return assumptions_data()["deployments"][preset]["family"]


def _family_figures(family: str, preset: str) -> tuple[dict, tuple[Estimate, ...]]:
    """The time-model parts of ``family`` (``assumptions.json`` families), with the
    preset's own where it has them (deployments.<preset>.parts), and their ranges."""
    values, est = {}, []
    own = assumptions_data()["deployments"][preset].get("parts", {})
    for field in TIME_PARTS:
        if field in own:
            fig = assumption("deployments", preset, "parts", field)
        elif field in assumptions_data()["families"][family]:
            fig = assumption("families", family, field)
        else:
            continue
        values[field] = fig.value
        if fig.low is not None:
            est.append(_figure_estimate(field, fig))
    return values, tuple(est)


def _fewest_stages(t: HardwareTarget, tp: int) -> int:
    """The fewest pipeline stages (a power of two) whose ``tp``-wide groups hold the
    placed weights in their weight memory, leaving room for KV when it shares it."""
    per_chip = t.weights_tier.capacity_bytes / t.chips
    headroom = 1.0 if t.weights_memory is not None else 0.9
    pp = 1
    while pp * tp < t.chips and t.weights_bytes > headroom * per_chip * tp * pp:
        pp *= 2
    return min(pp, max(1, t.chips // tp))


def _serve(preset: str):
    """``preset``'s family efficiencies and deployment, applied to a built target."""
    def serve(t: HardwareTarget) -> HardwareTarget:
        entry = assumptions_data()["deployments"][preset]
        values, est = _family_figures(entry["family"], preset)
        tp = min(int(entry["tp"]), t.chips)
        pp = int(entry["pp"]) if entry["pp"] is not None else (_fewest_stages(t, tp) if t.model else 1)
        pp = max(1, min(pp, t.chips // tp))
        dep = Deployment(tp=tp, pp=pp, estimate=bool(entry["estimate"]), note=entry["reason"])
        kept = tuple(e for e in t.estimates if e.field not in values)
        return dataclasses.replace(t, family=entry["family"], deployment=dep, estimates=(*kept, *est), **values)
    return serve


def _fixed(preset: str, build, **kw) -> Preset:
    """A fixed system: its size (and any other preset default) from its assumptions."""
    return Preset(build=build, fixed_chips=_figure(preset, "chips").value, serve=_serve(preset), **kw)


def _weights(preset: str) -> int:
    return _figure(preset, "weights_bytes_per_param").value


for _name, _preset in (
    ("cerebras-cs3", Preset(build=lambda n: _cerebras("cerebras-cs3", n), serve=_serve("cerebras-cs3"))),
    ("cerebras-cs3x4", _fixed("cerebras-cs3x4", lambda n: _cerebras("cerebras-cs3x4", n))),
    ("groq-lpu-576", _fixed("groq-lpu-576", _groq576, weights_bytes_per_param=_weights("groq-lpu-576"))),
    ("groq3-lpx", _fixed("groq3-lpx", _groq3_lpx, weights_bytes_per_param=_weights("groq3-lpx"))),
    ("h100", Preset(build=_h100, serve=_serve("h100"))),
    ("h200", Preset(build=_h200, serve=_serve("h200"))),
    ("b200", Preset(build=_b200, serve=_serve("b200"))),
    ("gb200-nvl72", _fixed("gb200-nvl72", _gb200)),
    ("vera-rubin-nvl72", _fixed("vera-rubin-nvl72", _vera_rubin)),
    ("etched-sohu", Preset(build=_sohu, serve=_serve("etched-sohu"))),
    ("matx-one", Preset(build=_matx, serve=_serve("matx-one"))),
):
    PRESETS.register(_name, _preset)

"""``local_cpu_target``: this machine, as measured by ``calibrate``, as a ``HardwareTarget``.

The planner and the cost model (``kvtier.cost``) price fetches and recomputes against a
``HardwareTarget``; this one is named ``local-cpu`` and is built from a ``Calibration``
instead of published figures, so its predictions can be compared with what the example
really takes on this machine.

Read next: ``check.py`` (the predictions checked against real fetches and recomputes).
"""

from __future__ import annotations

from kvtier.examples.agent_loop.calibration import Calibration
from kvtier.model import ModelSpec
from kvtier.targets import HardwareTarget, LinkSpec, TargetTier


def local_cpu_target(cal: Calibration, *, model: ModelSpec | None = None, hbm_bytes: int, dram_bytes: int,
                     flash_bytes: int) -> HardwareTarget:
    """A ``HardwareTarget`` named ``local-cpu`` from measured figures.

    Tiers ``hbm`` (the compute tier: the model reads KV pages in host memory), ``dram``
    over link ``memcpy`` and ``flash`` over link ``file``. A fetch from tier ``t`` costs
    ``fetch_overhead_s[t] + bytes / bandwidth``: memcpy bandwidth for memory tiers, and
    for flash the file read, CRC and any lz4 decode in series (``flash_read_bw_bytes_per_s``).
    ``compute_flops`` is the achieved FLOP/s with ``efficiency=1``: it is already achieved.
    """
    mem = cal.memcpy_bw_bytes_per_s
    fl = cal.flash_read_bw_bytes_per_s
    oh = cal.fetch_overhead_s
    tiers = (
        TargetTier(name="hbm", kind="hbm", capacity_bytes=int(hbm_bytes), read_bw_bytes_per_s=mem,
                   write_bw_bytes_per_s=mem, latency_s=oh["hbm"],
                   note="KV pool in host memory; latency = the store's measured fixed cost per fetch"),
        TargetTier(name="dram", kind="dram", capacity_bytes=int(dram_bytes), read_bw_bytes_per_s=mem,
                   write_bw_bytes_per_s=mem, latency_s=oh["dram"], link="memcpy",
                   note="a second slab in host memory; latency = the store's measured fixed cost per fetch"),
        TargetTier(name="flash", kind="flash", capacity_bytes=int(flash_bytes), read_bw_bytes_per_s=fl,
                   write_bw_bytes_per_s=cal.file_read_bw_bytes_per_s, latency_s=oh["flash"], link="file",
                   note="a file read through the page cache, CRC32C-verified, lz4-decoded if compressed"),
    )
    links = (
        LinkSpec(name="memcpy", read_bw_bytes_per_s=mem, write_bw_bytes_per_s=mem, note="measured block-sized np.copyto"),
        LinkSpec(name="file", read_bw_bytes_per_s=cal.file_read_bw_bytes_per_s,
                 write_bw_bytes_per_s=cal.file_read_bw_bytes_per_s, note="measured block-sized os.preadv (page cache)"),
    )
    return HardwareTarget(
        name="local-cpu", unit="this machine, numpy", chips=1, tiers=tiers, links=links,
        compute_flops=cal.achieved_flops, efficiency=1.0, model=model,
        notes=(f"measured: memcpy {mem / 1e9:.1f} GB/s, file read {cal.file_read_bw_bytes_per_s / 1e9:.1f} GB/s, "
               f"{cal.achieved_flops / 1e9:.1f} GFLOP/s achieved by the numpy model"),
    )

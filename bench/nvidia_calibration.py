"""NVIDIA calibration: measure the figures kvtier's H100/H200 targets price KV moves with.

kvtier's ``nvidia_h100_sxm`` and ``nvidia_h200`` targets (``kvtier/data/hardware.json``)
carry sourced figures: HBM bandwidth, the host link (PCIe Gen5 x16, 64 GB/s per
direction) and dense BF16 compute. This script measures the same quantities on the card
it runs on, with PyTorch only, and prints them next to the sourced figures:

1. host<->device copy bandwidth, pinned and pageable, at 64 KiB, 2 MiB, 64 MiB and 1 GiB,
   plus the round trip of one synchronous 64 KiB copy and the per-copy overhead;
2. KV-block-shaped transfers: 64 llama-3.1-70b blocks of 16 tokens (5 MiB each, all
   layers' K and V) moved between a pinned host pool and scattered device slots, one
   copy per block, and gathered into one staging copy;
3. device memory bandwidth at 2 GiB: copy (bytes read + bytes written), read-only
   (a sum) and write-only (a fill);
4. prefill-like BF16 matmuls, [tokens x 8192] @ [8192 x 28672] (llama-3.1-70b MLP
   up-projection) for 512 / 2048 / 8192 tokens, and a square 8192^3, in TFLOP/s;
5. the card: name, driver and CUDA versions, SM count, memory, PCIe link.

Timing: CUDA events, warm-up first, the median of ``--repeats`` samples. Asynchronous
work (pinned copies, device kernels) is queued behind a short GPU spin (``torch.cuda._sleep``)
before the start event, so the interval is GPU time, not Python launch time; the
"issued" KV rows leave that out on purpose and show what a Python loop achieves.
Units: GB = 1e9 bytes (as hardware.md), sizes in KiB/MiB/GiB (binary).

    python3 bench/nvidia_calibration.py [--out PATH] [--repeats 10] [--sections host,kv,device,matmul]

torch is imported inside ``main``: this module imports anywhere; without torch or a
CUDA device it prints why and exits 2. kvtier is optional on the GPU machine (numba or
lz4 may be missing there): the sourced figures are then read straight from
``kvtier/data/hardware.json``. Full results go to ``--out`` as JSON (default
``$OUT/nvidia_calibration.json`` when ``$OUT`` is set, else
``bench/results/nvidia_calibration.json``), rewritten after every section so a run cut
short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent
HARDWARE_JSON = REPO_ROOT / "kvtier" / "data" / "hardware.json"

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
GB = 1e9

HOST_SIZES_BYTES = (64 * KIB, 2 * MIB, 64 * MIB, 1 * GIB)
#: Bytes each host-copy sample moves at least (small sizes repeat the copy back to back).
HOST_SAMPLE_BYTES = 256 * MIB
MAX_OPS_PER_SAMPLE = 256

KV_MODEL = "llama-3.1-70b"
KV_BLOCK_TOKENS = 16
KV_BATCH_BLOCKS = 64
KV_DEVICE_SLOTS = 256
#: Fallback when neither kvtier nor hardware.json is readable: 16 tokens x 80 layers x
#: 2 (K, V) x 8 KV heads x 128 head_dim x 2 bytes (bf16) = 5 MiB.
KV_BLOCK_BYTES_FALLBACK = 16 * 80 * 2 * 8 * 128 * 2

DEVICE_COPY_BYTES = 2 * GIB

#: llama-3.1-70b: hidden_size 8192, intermediate_size 28672 (Meta config.json).
MATMUL_HIDDEN = 8192
MATMUL_FFN = 28672
MATMUL_TOKENS = (512, 2048, 8192)
MATMUL_SQUARE = 8192

#: kvtier.targets.DEFAULT_EFFICIENCY (MFU hardware.md assumes), used when kvtier does not import.
EFFICIENCY_FALLBACK = 0.5

SECTIONS = ("host", "kv", "device", "matmul")

#: torch.cuda.get_device_name substring -> hardware.json target key (GH200 first: it
#: contains "H200" but is a Grace Hopper with an NVLink-C2C host link, not an H200).
TARGET_BY_NAME = (("GH200", None), ("H200", "nvidia_h200"), ("H100", "nvidia_h100_sxm"))


class Timing(NamedTuple):
    """Per-operation times of one measurement (an operation may be a batch of copies)."""

    median_s: float
    min_s: float
    max_s: float
    wall_median_s: float | None  # host clock incl. launch + sync; None when queued behind a spin
    samples: int
    ops_per_sample: int
    queued: bool


class Sourced(NamedTuple):
    """The figures kvtier uses for the card, and where they were read from."""

    target: str | None
    origin: str
    hbm_read_bw_bytes_per_s: float | None
    hbm_write_bw_bytes_per_s: float | None
    host_read_bw_bytes_per_s: float | None  # host -> device (a fetch from the host tier)
    host_write_bw_bytes_per_s: float | None  # device -> host (an offload to the host tier)
    host_latency_s: float | None
    compute_flops_bf16: float | None
    efficiency: float
    kv_block_bytes: int
    kv_block_bytes_origin: str


# ---------------------------------------------------------------------------------------
# environment: kvtier figures, git, nvidia-smi
# ---------------------------------------------------------------------------------------


def _load_kvtier():
    """kvtier's (hardware_data, ModelSpec, DEFAULT_EFFICIENCY), or the reason it did not import."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        from kvtier._data import hardware_data
        from kvtier.model import ModelSpec
        from kvtier.targets import DEFAULT_EFFICIENCY
    # Any failure, not only ImportError: an incompatible numba/numpy on the GPU machine
    # must cost the sourced column's origin, never the one calibration run.
    except Exception as exc:  # noqa: BLE001
        return None, f"{type(exc).__name__}: {exc}"
    return (hardware_data, ModelSpec, DEFAULT_EFFICIENCY), None


def _tier(target: dict, prefix: str) -> dict | None:
    for tier in target.get("tiers", ()):
        if str(tier.get("name", "")).startswith(prefix):
            return tier
    return None


def target_for_card(card_name: str) -> str | None:
    """hardware.json target key for a card name (None: no NVIDIA target kvtier models)."""
    upper = card_name.upper()
    for needle, key in TARGET_BY_NAME:
        if needle in upper:
            return key
    return None


def load_sourced(card_name: str, target_override: str | None) -> Sourced:
    """Sourced figures for the card: kvtier if it imports, else hardware.json read directly."""
    kvtier, why_not = _load_kvtier()
    data = None
    if kvtier is not None:
        hardware_data, model_spec, efficiency = kvtier
        data, origin = hardware_data(), "kvtier._data.hardware_data()"
    else:
        efficiency = EFFICIENCY_FALLBACK
        try:
            data = json.loads(HARDWARE_JSON.read_text(encoding="utf-8"))
            origin = f"{HARDWARE_JSON} (kvtier did not import: {why_not})"
        except (OSError, ValueError) as exc:
            origin = f"none (kvtier did not import: {why_not}; {HARDWARE_JSON}: {exc})"

    block_bytes, block_origin = KV_BLOCK_BYTES_FALLBACK, "hard-coded (80 layers x 2 x 8 heads x 128 x 2 B x 16 tokens)"
    if kvtier is not None:
        block_bytes = int(model_spec.preset(KV_MODEL).block_bytes(KV_BLOCK_TOKENS))
        block_origin = f'kvtier ModelSpec.preset("{KV_MODEL}").block_bytes({KV_BLOCK_TOKENS})'
    elif data is not None and KV_MODEL in data.get("models", {}):
        block_bytes = int(data["models"][KV_MODEL]["kv_bytes_per_token_bf16"]) * KV_BLOCK_TOKENS
        block_origin = f"hardware.json models.{KV_MODEL}.kv_bytes_per_token_bf16 x {KV_BLOCK_TOKENS}"

    key = target_override if target_override is not None else target_for_card(card_name)
    target = (data or {}).get("targets", {}).get(key) if key else None
    if target is None:
        return Sourced(key, origin, None, None, None, None, None, None, efficiency, block_bytes, block_origin)
    hbm, host = _tier(target, "hbm"), _tier(target, "host_dram")
    return Sourced(
        target=key,
        origin=origin,
        hbm_read_bw_bytes_per_s=hbm and hbm.get("read_bw_bytes_per_s"),
        hbm_write_bw_bytes_per_s=hbm and hbm.get("write_bw_bytes_per_s"),
        host_read_bw_bytes_per_s=host and host.get("read_bw_bytes_per_s"),
        host_write_bw_bytes_per_s=host and host.get("write_bw_bytes_per_s"),
        host_latency_s=host and host.get("latency_s"),
        compute_flops_bf16=target.get("compute_flops_bf16"),
        efficiency=efficiency,
        kv_block_bytes=block_bytes,
        kv_block_bytes_origin=block_origin,
    )


def git_revision() -> dict:
    """HEAD and whether tracked files differ from it; Nones where git does not work."""
    def run(*args):
        try:
            proc = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    revision = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no") if revision else None
    return {"revision": revision, "dirty": None if status is None else bool(status)}


NVSMI_FIELDS = (
    "name", "driver_version", "pci.bus_id", "pcie.link.gen.current", "pcie.link.gen.max",
    "pcie.link.width.current", "pcie.link.width.max", "clocks.max.sm", "clocks.max.mem",
    "power.limit", "memory.total",
)


def nvidia_smi(index: int) -> dict:
    """nvidia-smi's view of GPU ``index`` (empty when nvidia-smi is missing or fails)."""
    try:
        proc = subprocess.run(
            ["nvidia-smi", f"--id={index}", f"--query-gpu={','.join(NVSMI_FIELDS)}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    if proc.returncode != 0 or not proc.stdout.strip():
        return {"error": (proc.stderr or proc.stdout).strip()[:300]}
    values = [v.strip() for v in proc.stdout.strip().splitlines()[0].split(",")]
    return dict(zip(NVSMI_FIELDS, values))


def device_info(torch, index: int) -> dict:
    props = torch.cuda.get_device_properties(index)
    driver = None
    get_driver = getattr(torch._C, "_cuda_getDriverVersion", None)
    if get_driver is not None:
        try:
            driver = int(get_driver())  # e.g. 13000 = CUDA 13.0 driver API
        except RuntimeError:
            pass
    return {
        "index": index,
        "name": torch.cuda.get_device_name(index),
        "compute_capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count,
        "total_memory_bytes": props.total_memory,
        "l2_cache_bytes": getattr(props, "L2_cache_size", None),
        "torch_version": torch.__version__,
        "torch_cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_driver_api_version": driver,
        "nvidia_smi": nvidia_smi(index),
    }


# ---------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------


class Timer:
    """Times operations on the current CUDA stream with events.

    ``queued=True`` enqueues a GPU spin before the start event, long enough for the
    host to enqueue every operation of the sample, so the event interval holds GPU work
    only. The spin length assumes the SM clock (``sm_clock_hz``); a slower clock only
    lengthens the spin, which lies outside the interval.
    """

    def __init__(self, torch, *, repeats: int, warmup: int, sm_clock_hz: float):
        self.torch = torch
        self.repeats = repeats
        self.warmup = warmup
        self.sm_clock_hz = sm_clock_hz
        self.can_queue = hasattr(torch.cuda, "_sleep")

    def __call__(self, op, *, ops_per_sample: int = 1, queued: bool = True, repeats: int | None = None) -> Timing:
        torch = self.torch
        queued = queued and self.can_queue
        for _ in range(self.warmup):
            for _ in range(ops_per_sample):
                op()
        torch.cuda.synchronize()
        spin_cycles = int(min(0.2, 1e-3 + 30e-6 * ops_per_sample) * self.sm_clock_hz)
        gpu_s, wall_s = [], []
        for _ in range(repeats or self.repeats):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            if queued:
                torch.cuda._sleep(spin_cycles)
            t0 = time.perf_counter()
            start.record()
            for _ in range(ops_per_sample):
                op()
            end.record()
            end.synchronize()
            wall_s.append((time.perf_counter() - t0) / ops_per_sample)
            gpu_s.append(start.elapsed_time(end) / 1e3 / ops_per_sample)  # elapsed_time is in ms
        return Timing(
            median_s=statistics.median(gpu_s),
            min_s=min(gpu_s),
            max_s=max(gpu_s),
            wall_median_s=None if queued else statistics.median(wall_s),
            samples=len(gpu_s),
            ops_per_sample=ops_per_sample,
            queued=queued,
        )


def rate(nbytes_or_flops: float, timing: Timing) -> dict:
    """Timing plus rates per second (median and best sample)."""
    out = timing._asdict()
    out["per_s_median"] = nbytes_or_flops / timing.median_s if timing.median_s > 0 else None
    out["per_s_best"] = nbytes_or_flops / timing.min_s if timing.min_s > 0 else None
    return out


def fmt_size(nbytes: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale} {unit}"
    return f"{nbytes} B"


def free_cuda(torch) -> None:
    """Give cached device memory back between sections (call once the tensors are dropped)."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------


def measure_host(torch, timer: Timer) -> dict:
    """Host<->device copies, pinned and pageable, at HOST_SIZES_BYTES."""
    biggest = max(HOST_SIZES_BYTES)
    dev = torch.empty(biggest, dtype=torch.uint8, device="cuda")
    dev.fill_(3)
    pinned = torch.empty(biggest, dtype=torch.uint8, pin_memory=True)
    pinned.fill_(1)  # touch every page before timing
    pageable = torch.empty(biggest, dtype=torch.uint8)
    pageable.fill_(2)
    print(f"  pinned buffer is_pinned={pinned.is_pinned()}, pageable is_pinned={pageable.is_pinned()}", flush=True)

    rows = []
    print(f"  {'direction':<5} {'memory':<9} {'size':>8} {'ops/sample':>10} {'GB/s (median)':>14} "
          f"{'GB/s (best)':>12} {'us/copy':>9}", flush=True)
    for size in HOST_SIZES_BYTES:
        ops = max(1, min(MAX_OPS_PER_SAMPLE, HOST_SAMPLE_BYTES // size))
        d, p, g = dev[:size], pinned[:size], pageable[:size]
        cases = (
            ("h2d", "pinned", lambda d=d, p=p: d.copy_(p, non_blocking=True), True),
            ("d2h", "pinned", lambda d=d, p=p: p.copy_(d, non_blocking=True), True),
            # Pageable copies go through the driver's staging buffers and return to the
            # host only when done: nothing to queue.
            ("h2d", "pageable", lambda d=d, g=g: d.copy_(g), False),
            ("d2h", "pageable", lambda d=d, g=g: g.copy_(d), False),
        )
        for direction, memory, op, queued in cases:
            r = rate(size, timer(op, ops_per_sample=ops, queued=queued))
            r.update(direction=direction, memory=memory, size_bytes=size)
            rows.append(r)
            print(
                f"  {direction:<5} {memory:<9} {fmt_size(size):>8} {ops:>10} {r['per_s_median'] / GB:>14.2f} "
                f"{r['per_s_best'] / GB:>12.2f} {r['median_s'] * 1e6:>9.2f}",
                flush=True,
            )

    # One synchronous small copy, as a caller that waits for each fetch sees it.
    small = min(HOST_SIZES_BYTES)
    latency = {}
    for direction, op in (
        ("h2d", lambda: (dev[:small].copy_(pinned[:small], non_blocking=True), torch.cuda.synchronize())),
        ("d2h", lambda: (pinned[:small].copy_(dev[:small], non_blocking=True), torch.cuda.synchronize())),
    ):
        t = timer(op, ops_per_sample=1, queued=False, repeats=max(timer.repeats, 50))
        latency[direction] = {"size_bytes": small, "gpu_median_s": t.median_s, "round_trip_median_s": t.wall_median_s}
        print(f"  one {fmt_size(small)} pinned {direction} + synchronize: round trip {t.wall_median_s * 1e6:.1f} us "
              f"(GPU interval {t.median_s * 1e6:.1f} us)", flush=True)

    # Per-copy overhead of queued pinned copies: t(small) - small / bandwidth(biggest).
    overhead = {}
    for direction in ("h2d", "d2h"):
        by_size = {r["size_bytes"]: r for r in rows if r["direction"] == direction and r["memory"] == "pinned"}
        bw = by_size[biggest]["per_s_median"]
        overhead[direction] = by_size[small]["median_s"] - small / bw if bw else None
    shown = {k: "n/a" if v is None else f"{v * 1e6:.2f} us" for k, v in overhead.items()}
    print(f"  per-copy overhead (queued pinned, {fmt_size(small)} vs {fmt_size(biggest)} rate): "
          f"h2d {shown['h2d']}, d2h {shown['d2h']}", flush=True)

    return {"copies": rows, "sync_copy_latency": latency, "queued_copy_overhead_s": overhead}


def measure_kv(torch, timer: Timer, block_bytes: int) -> dict:
    """KV_BATCH_BLOCKS blocks between a pinned host pool and scattered device slots."""
    n = KV_BATCH_BLOCKS
    slots = random.Random(0).sample(range(KV_DEVICE_SLOTS), n)  # fixed scatter pattern
    dev_pool = torch.empty((KV_DEVICE_SLOTS, block_bytes), dtype=torch.uint8, device="cuda")
    dev_pool.fill_(3)
    host_pool = torch.empty((n, block_bytes), dtype=torch.uint8, pin_memory=True)
    host_pool.fill_(1)
    dev_staging = torch.empty((n, block_bytes), dtype=torch.uint8, device="cuda")
    slot_index = torch.tensor(slots, dtype=torch.long, device="cuda")
    # Views made once: the per-block loops below time the copies, not the indexing.
    slot_and_host = [(dev_pool[s], host_pool[i]) for i, s in enumerate(slots)]

    def h2d_per_block():
        for slot_view, host_view in slot_and_host:
            slot_view.copy_(host_view, non_blocking=True)

    def d2h_per_block():
        for slot_view, host_view in slot_and_host:
            host_view.copy_(slot_view, non_blocking=True)

    def h2d_gathered():  # one copy into staging, one scatter kernel into the slots
        dev_staging.copy_(host_pool, non_blocking=True)
        dev_pool.index_copy_(0, slot_index, dev_staging)

    def d2h_gathered():  # one gather kernel out of the slots, one copy to the host
        torch.index_select(dev_pool, 0, slot_index, out=dev_staging)
        host_pool.copy_(dev_staging, non_blocking=True)

    batch_bytes = n * block_bytes
    rows = []
    print(f"  {n} blocks x {fmt_size(block_bytes)} = {fmt_size(batch_bytes)} per batch, "
          f"{KV_DEVICE_SLOTS} device slots", flush=True)
    for direction, mode, op, queued in (
        ("h2d", "per_block_queued", h2d_per_block, True),
        ("d2h", "per_block_queued", d2h_per_block, True),
        ("h2d", "per_block_issued", h2d_per_block, False),
        ("d2h", "per_block_issued", d2h_per_block, False),
        ("h2d", "gathered_queued", h2d_gathered, True),
        ("d2h", "gathered_queued", d2h_gathered, True),
    ):
        r = rate(batch_bytes, timer(op, ops_per_sample=1, queued=queued))
        r.update(direction=direction, mode=mode, blocks=n, block_bytes=block_bytes)
        rows.append(r)
        print(f"  {direction} {mode:<17} {r['per_s_median'] / GB:8.2f} GB/s  "
              f"{r['median_s'] / n * 1e6:8.1f} us/block", flush=True)

    return {"block_bytes": block_bytes, "blocks": n, "device_slots": KV_DEVICE_SLOTS, "batches": rows}


def measure_device(torch, timer: Timer) -> dict:
    """Device memory bandwidth: copy (read + written bytes), read-only sum, write-only fill."""
    size = DEVICE_COPY_BYTES
    src = torch.empty(size, dtype=torch.uint8, device="cuda")
    src.fill_(1)  # as float32: 0x01010101, a small normal number
    dst = torch.empty(size, dtype=torch.uint8, device="cuda")
    src_f32 = src.view(torch.float32)
    rows = {}
    for name, op, nbytes, counted in (
        ("copy", lambda: dst.copy_(src), 2 * size, "bytes read + bytes written (2 x size)"),
        ("read_sum", lambda: src_f32.sum(), size, "bytes read"),
        ("write_fill", lambda: dst.fill_(0), size, "bytes written"),
    ):
        r = rate(nbytes, timer(op, ops_per_sample=1, queued=True))
        r.update(size_bytes=size, bytes_counted=nbytes, counts=counted)
        rows[name] = r
        print(f"  {name:<10} {fmt_size(size)}: {r['per_s_median'] / GB:9.1f} GB/s ({counted})", flush=True)
    return rows


def measure_matmul(torch, timer: Timer, repeats: int) -> dict:
    """BF16 matmul rates for llama-3.1-70b MLP shapes and a square; FLOPs = 2 m k n."""
    shapes = [(t, MATMUL_HIDDEN, MATMUL_FFN) for t in MATMUL_TOKENS] + [(MATMUL_SQUARE,) * 3]
    rows = []
    matmul_flags = torch.backends.cuda.matmul
    settings = {
        "allow_bf16_reduced_precision_reduction": getattr(matmul_flags, "allow_bf16_reduced_precision_reduction", None),
        "allow_tf32": getattr(matmul_flags, "allow_tf32", None),
    }
    gen = torch.Generator(device="cuda").manual_seed(0)
    for m, k, n in shapes:
        a = torch.randn((m, k), dtype=torch.bfloat16, device="cuda", generator=gen)
        b = torch.randn((k, n), dtype=torch.bfloat16, device="cuda", generator=gen)
        c = torch.empty((m, n), dtype=torch.bfloat16, device="cuda")
        flops = 2 * m * k * n
        r = rate(flops, timer(lambda a=a, b=b, c=c: torch.matmul(a, b, out=c), queued=True, repeats=max(10, repeats)))
        r.update(m=m, k=k, n=n, flops=flops, dtype="bfloat16")
        rows.append(r)
        print(f"  [{m} x {k}] @ [{k} x {n}]: {r['per_s_median'] / 1e12:7.1f} TFLOP/s median, "
              f"{r['per_s_best'] / 1e12:7.1f} best, {r['median_s'] * 1e3:.3f} ms", flush=True)
        del a, b, c
        free_cuda(torch)
    return {"shapes": rows, "settings": settings}


# ---------------------------------------------------------------------------------------
# comparison table
# ---------------------------------------------------------------------------------------


def comparison_rows(sections: dict, sourced: Sourced) -> list[dict]:
    """Each measured figure beside the sourced one kvtier uses (ratio = measured / sourced)."""
    rows = []

    def add(figure, measured, sourced_value, unit, scale, sourced_field):
        if measured is None:
            return
        ratio = measured / sourced_value if sourced_value else None
        rows.append({
            "figure": figure, "unit": unit,
            "measured": measured / scale,
            "sourced": None if sourced_value is None else sourced_value / scale,
            "sourced_field": sourced_field if sourced_value is not None else None,
            "ratio": ratio,
        })

    host_field = f"targets.{sourced.target}.tiers[host_dram*]"
    hbm_field = f"targets.{sourced.target}.tiers[hbm*]"
    host = sections.get("host")
    if isinstance(host, dict) and "copies" in host:
        biggest = max(HOST_SIZES_BYTES)
        for r in host["copies"]:
            if r["size_bytes"] != biggest:
                continue
            h2d = r["direction"] == "h2d"
            src = sourced.host_read_bw_bytes_per_s if h2d else sourced.host_write_bw_bytes_per_s
            arrow = "host->device" if h2d else "device->host"
            add(f"{arrow} {r['memory']} {fmt_size(biggest)}", r["per_s_median"], src, "GB/s", GB,
                f"{host_field}.{'read' if h2d else 'write'}_bw_bytes_per_s")
        for direction, lat in host["sync_copy_latency"].items():
            add(f"one {fmt_size(lat['size_bytes'])} pinned {direction} + sync, round trip", lat["round_trip_median_s"],
                sourced.host_latency_s, "us", 1e-6, f"{host_field}.latency_s (est)")
        for direction, overhead in host["queued_copy_overhead_s"].items():
            add(f"per-copy overhead, queued pinned {direction}", overhead, sourced.host_latency_s, "us", 1e-6,
                f"{host_field}.latency_s (est)")
    kv = sections.get("kv")
    if isinstance(kv, dict) and "batches" in kv:
        for r in kv["batches"]:
            h2d = r["direction"] == "h2d"
            src = sourced.host_read_bw_bytes_per_s if h2d else sourced.host_write_bw_bytes_per_s
            add(f"KV {r['blocks']} x {fmt_size(r['block_bytes'])} {r['direction']} {r['mode']}", r["per_s_median"], src,
                "GB/s", GB, f"{host_field}.{'read' if h2d else 'write'}_bw_bytes_per_s")
    dev = sections.get("device")
    if isinstance(dev, dict) and "copy" in dev:
        size = fmt_size(DEVICE_COPY_BYTES)
        add(f"device copy {size} (read + written bytes)", dev["copy"]["per_s_median"], sourced.hbm_read_bw_bytes_per_s,
            "GB/s", GB, f"{hbm_field}.read_bw_bytes_per_s")
        add(f"device read (sum) {size}", dev["read_sum"]["per_s_median"], sourced.hbm_read_bw_bytes_per_s,
            "GB/s", GB, f"{hbm_field}.read_bw_bytes_per_s")
        add(f"device write (fill) {size}", dev["write_fill"]["per_s_median"], sourced.hbm_write_bw_bytes_per_s,
            "GB/s", GB, f"{hbm_field}.write_bw_bytes_per_s")
    mm = sections.get("matmul")
    if isinstance(mm, dict) and "shapes" in mm:
        peak = sourced.compute_flops_bf16
        for r in mm["shapes"]:
            add(f"bf16 matmul [{r['m']}x{r['k']}]@[{r['k']}x{r['n']}]", r["per_s_median"], peak, "TFLOP/s", 1e12,
                f"targets.{sourced.target}.compute_flops_bf16")
        prefill = [r for r in mm["shapes"] if r["n"] == MATMUL_FFN]
        if prefill and peak:
            best = max(prefill, key=lambda r: r["m"])
            rows.append({
                "figure": f"MFU of the {best['m']}-token prefill matmul", "unit": "fraction",
                "measured": best["per_s_median"] / peak, "sourced": sourced.efficiency,
                "sourced_field": "kvtier.targets.DEFAULT_EFFICIENCY (assumed MFU)",
                "ratio": best["per_s_median"] / peak / sourced.efficiency,
            })
    return rows


def markdown_table(rows: list[dict]) -> str:
    def num(v):
        if v is None:
            return "n/a"
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"

    lines = ["| figure | measured | sourced (kvtier) | measured / sourced | unit |", "|---|---:|---:|---:|---|"]
    for r in rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"| {r['figure']} | {num(r['measured'])} | {num(r['sourced'])} | {ratio} | {r['unit']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------


def default_out() -> Path:
    out_dir = os.environ.get("OUT")
    if out_dir:
        return Path(out_dir) / "nvidia_calibration.json"
    return REPO_ROOT / "bench" / "results" / "nvidia_calibration.json"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="JSON results path (default: $OUT/nvidia_calibration.json "
                        "if $OUT is set, else bench/results/nvidia_calibration.json)")
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed samples per measurement, median reported (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed samples before each measurement (default 2)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    parser.add_argument("--target", default=None,
                        help="hardware.json target key to compare with (default: from the card name)")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: got {unknown}, expected names from {list(SECTIONS)}")
    if args.repeats < 1 or args.warmup < 0:
        parser.error(f"--repeats {args.repeats} / --warmup {args.warmup}: expected repeats >= 1 and warmup >= 0")
    args.sections = [s for s in SECTIONS if s in sections]
    args.out = args.out or default_out()
    return args


def write_json(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    try:
        import torch
    except ImportError as exc:
        print(f"nvidia_calibration: PyTorch is not installed ({type(exc).__name__}: {exc}). Run it on a machine "
              "with PyTorch and an NVIDIA GPU: python3 bench/nvidia_calibration.py", file=sys.stderr)
        return 2
    if not torch.cuda.is_available() or torch.cuda.device_count() <= args.device:
        print(f"nvidia_calibration: no CUDA device {args.device} (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda}, torch.cuda.is_available()={torch.cuda.is_available()}, "
              f"device_count={torch.cuda.device_count()}). Run it on a machine with an NVIDIA GPU.", file=sys.stderr)
        return 2
    torch.cuda.set_device(args.device)

    results = {
        "schema": "kvtier.nvidia_calibration/1",
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_revision(),
        "host": {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()},
        "units": "bytes, seconds, bytes/s, FLOP/s; GB = 1e9 B; table: GB/s, us, TFLOP/s",
        "elapsed_s": {},
        "errors": {},
        "sections": {},
    }
    print(f"== nvidia_calibration -> {args.out}", flush=True)

    t0 = time.perf_counter()
    info = device_info(torch, args.device)
    results["device"] = info
    sourced = load_sourced(info["name"], args.target)
    results["sourced"] = sourced._asdict()
    results["elapsed_s"]["info"] = time.perf_counter() - t0
    smi = info["nvidia_smi"]
    print(f"card: {info['name']} (sm_{info['compute_capability'].replace('.', '')}, {info['sm_count']} SMs, "
          f"{info['total_memory_bytes'] / GIB:.1f} GiB)", flush=True)
    print(f"torch {info['torch_version']}, CUDA runtime {info['torch_cuda_version']}, driver API "
          f"{info['cuda_driver_api_version']}, driver {smi.get('driver_version', 'n/a')}, PCIe gen "
          f"{smi.get('pcie.link.gen.current', 'n/a')}/{smi.get('pcie.link.gen.max', 'n/a')} x"
          f"{smi.get('pcie.link.width.current', 'n/a')}/{smi.get('pcie.link.width.max', 'n/a')} (current/max; "
          f"an idle link may report a lower gen), max SM clock {smi.get('clocks.max.sm', 'n/a')} MHz", flush=True)
    print(f"sourced figures: target {sourced.target} from {sourced.origin}", flush=True)
    if sourced.target is None:
        print("  (no kvtier target for this card: measured figures only; pass --target KEY to compare)", flush=True)
    elif sourced.compute_flops_bf16 is None:
        print(f"  (no figures for target {sourced.target!r} in hardware.json: measured figures only)", flush=True)
    elif any(s in info["name"].upper() for s in ("PCIE", "NVL")):
        print(f"  note: {info['name']} is not the SXM part the target describes; "
              "expect lower HBM/compute ratios", flush=True)
    print(f"KV block: {fmt_size(sourced.kv_block_bytes)} from {sourced.kv_block_bytes_origin}", flush=True)
    write_json(args.out, results)

    try:
        sm_clock_hz = float(smi["clocks.max.sm"]) * 1e6
    except (KeyError, ValueError):
        sm_clock_hz = 2.0e9
    timer = Timer(torch, repeats=args.repeats, warmup=args.warmup, sm_clock_hz=sm_clock_hz)
    if not timer.can_queue:
        print("  note: torch.cuda._sleep missing: small queued copies include Python launch time", flush=True)

    runs = {
        "host": ("host <-> device copies", lambda: measure_host(torch, timer)),
        "kv": ("KV-block batches", lambda: measure_kv(torch, timer, sourced.kv_block_bytes)),
        "device": ("device memory bandwidth", lambda: measure_device(torch, timer)),
        "matmul": ("bf16 matmul", lambda: measure_matmul(torch, timer, args.repeats)),
    }
    for name in args.sections:
        title, fn = runs[name]
        print(f"\n== {title}", flush=True)
        t0 = time.perf_counter()
        try:
            results["sections"][name] = fn()
        # One failing section (out of memory, pinned allocation refused) must not lose the others.
        except RuntimeError as exc:
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
            print(f"  FAILED: {type(exc).__name__}: {exc}", flush=True)
        free_cuda(torch)  # the section's tensors died with its frame (and with exc, cleared above)
        results["elapsed_s"][name] = time.perf_counter() - t0
        print(f"  ({name}: {results['elapsed_s'][name]:.1f} s)", flush=True)
        write_json(args.out, results)

    rows = comparison_rows(results["sections"], sourced)
    results["table"] = rows
    results["elapsed_s"]["total"] = time.perf_counter() - t_start
    write_json(args.out, results)
    print(f"\n== {info['name']} vs kvtier target {sourced.target} (medians; GB = 1e9 B)\n", flush=True)
    print(markdown_table(rows))
    print(f"\ntotal {results['elapsed_s']['total']:.1f} s; JSON: {args.out}"
          + (f"; errors in: {', '.join(results['errors'])}" if results["errors"] else ""), flush=True)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

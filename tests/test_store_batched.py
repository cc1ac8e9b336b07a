"""Batched calls: ``put_many``/``fetch_many`` against the same sequence of single calls.

Two stores built alike take the same operations, one through the batched calls and one
block by block; after every step both must agree on results, bytes, placements, policy
order (each tier's next victim) and every counter. The operations include corrupted
slots (memory tiers with checksums, the flash file's payloads), pinned blocks, full tiers
and batches that hit several tiers at once. The asynchronous calls are the same batches
on I/O threads.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kvtier import BlockNotFoundError, ConfigError, PayloadError, dram, flash, hbm
from kvtier.buffers import aligned_empty, copy_rows
from kvtier.policies import register_policy
from kvtier.policies.lru import LRU
from kvtier.tiers import FileIO, flash_tier
from kvtier.tiers.flash_format import FILE_HEADER_BYTES, SLOT_HEADER_BYTES, STATE_OFFSETS
from tests.helpers import BLOCK_BYTES, make_store, payload, same_bytes

SLOT = 8192
KEYS = 14  # hashes drawn from 0..KEYS-1: more than the tiers hold together, so they fill


def block(h: int) -> np.ndarray:
    return payload(h, compressible=h % 3 == 0)


def blocks(hashes) -> np.ndarray:
    return np.stack([block(h) for h in hashes]) if len(hashes) else np.empty((0, *block(0).shape), np.float32)


CONFIGS = {
    "exclusive": (lambda d: [hbm(3 * BLOCK_BYTES, checksum=True), dram(3 * BLOCK_BYTES, codec="lz4", checksum=True),
                             flash(5 * SLOT, d)], {}),
    "inclusive-no-promote": (lambda d: [dram(2 * BLOCK_BYTES, checksum=True), flash(6 * SLOT, d, codec="lz4")],
                             {"placement": "inclusive", "promote_on_hit": False}),
    "memory-only": (lambda d: [hbm(2 * BLOCK_BYTES), dram(3 * BLOCK_BYTES, checksum=True)], {}),
    # ghost-keeping policies: a batch of admissions consults and updates the ghosts in order
    "arc-s3fifo": (lambda d: [hbm(4 * BLOCK_BYTES, policy="arc", checksum=True), dram(4 * BLOCK_BYTES, policy="s3fifo")],
                   {}),
    "flash-first": (lambda d: [flash(6 * SLOT, d), dram(3 * BLOCK_BYTES, checksum=True)], {}),
    "flash-only": (lambda d: [flash(24 * SLOT, d)], {}),
    "sieve-clock": (lambda d: [hbm(5 * BLOCK_BYTES, policy="sieve"), dram(3 * BLOCK_BYTES, policy="clock")], {}),
}


def comparable_stats(store) -> dict:
    s = store.stats()
    out = {k: getattr(s, k) for k in s.__dataclass_fields__ if k != "tiers"}
    for name, t in s.tiers.items():
        d = t.as_dict()
        for timing in ("compress_ns", "decompress_ns"):
            d.pop(timing)
        out[name] = d
    return out


def state(store) -> tuple:
    placed = store.lookup(range(KEYS)).tier_index.tolist()
    victims = [(t.victim(), t.policy.order(), [int(t.slot_hash[x]) for x in t.policy.order()]) for t in store.tiers]
    pins = [store.pins(h) if h in store else 0 for h in range(KEYS)]
    return placed, victims, pins


def corrupt(store, h: int) -> bool:
    """Damage the stored bytes of ``h`` in its fastest tier (if that tier checks them)."""
    k = store.lookup([h]).tier_index[0]
    if k < 0:
        return False
    tier = store.tiers[k]
    slot = tier.hash_to_slot[h]
    if tier.kind == "flash":
        with open(tier.path, "r+b") as f:
            f.seek(FILE_HEADER_BYTES + slot * tier.slot_stride + SLOT_HEADER_BYTES)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
        return True
    if tier.checksum:
        tier.slab[slot, 0] ^= 0xFF
        return True
    return False


hash_lists = st.lists(st.integers(0, KEYS - 1), max_size=7)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), hash_lists),
        st.tuples(st.just("fetch"), hash_lists, st.sampled_from([None, True, False])),
        st.tuples(st.sampled_from(["pin", "unpin", "corrupt", "free"]), st.integers(0, KEYS - 1)),
    ),
    max_size=14,
)


def apply_single(store, op):
    kind = op[0]
    if kind == "put":
        return [store.put(h, block(h)) for h in op[1]]
    if kind == "fetch":
        got = [store.fetch(h, promote=op[2]) for h in op[1]]
        return [g is not None for g in got], [g for g in got if g is not None]
    return apply_other(store, op)


def apply_batched(store, op):
    kind = op[0]
    if kind == "put":
        return store.put_many(op[1], blocks(op[1]))
    if kind == "fetch":
        r = store.fetch_many(op[1], promote=op[2])
        return r.found.tolist(), [r.out[i] for i in np.flatnonzero(r.found)]
    return apply_other(store, op)


def apply_other(store, op):
    kind, h = op
    try:
        if kind == "pin":
            return store.pin(h)
        if kind == "unpin":
            return store.unpin(h)
        if kind == "free":
            return store.free(h)
    except (BlockNotFoundError, Exception) as e:  # noqa: BLE001 - both stores must raise alike
        return type(e).__name__
    return corrupt(store, h)


def run_both(config: str, steps, *, flash_queue_depth: int = 1) -> None:
    make_specs, kwargs = CONFIGS[config]
    with tempfile.TemporaryDirectory() as d:
        single = make_store(make_specs(os.path.join(d, "single")), **kwargs)
        batched = make_store(make_specs(os.path.join(d, "batched")), flash_queue_depth=flash_queue_depth, **kwargs)
        try:
            for op in steps:
                want, got = apply_single(single, op), apply_batched(batched, op)
                if op[0] == "fetch":
                    assert got[0] == want[0], op
                    hashes = [h for h, f in zip(op[1], want[0]) if f]
                    for h, a, b in zip(hashes, want[1], got[1]):
                        assert same_bytes(a, b) and same_bytes(b, block(h)), f"block {h} differs"
                else:
                    assert got == want, op
                assert state(batched) == state(single), op
                assert comparable_stats(batched) == comparable_stats(single), op
                batched.check_invariants()
        finally:
            single.close()
            batched.close()


@given(config=st.sampled_from(sorted(CONFIGS)), steps=ops)
@example(config="exclusive", steps=[("put", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), ("corrupt", 9), ("corrupt", 0),
                                    ("pin", 8), ("fetch", [0, 9, 8, 1, 1, 2, 7], None), ("put", [9, 0, 11, 12])])
@example(config="exclusive", steps=[("put", list(range(10))), ("fetch", [9, 8, 7, 4], None)])
@example(config="arc-s3fifo", steps=[("put", [0, 1, 2, 3]), ("fetch", [0, 1, 2, 3], None), ("put", [4, 5, 6, 7]),
                                     ("put", [0, 8, 9]), ("corrupt", 8), ("fetch", [8, 9, 0], None),
                                     ("free", 9), ("put", [9, 10]), ("fetch", [9, 10], None)])
@example(config="arc-s3fifo", steps=[("put", [0, 1, 2, 3]), ("put", [4, 5, 6, 7]), ("free", 4), ("free", 5),
                                     ("free", 0), ("free", 1), ("put", [0, 1]), ("put", [12, 13])])
@example(config="flash-first", steps=[("put", [0, 1, 2, 3]), ("fetch", [3, 2, 1], None), ("corrupt", 2),
                                      ("fetch", [0, 1, 2], None), ("pin", 0), ("fetch", [0, 0, 1], False)])
@example(config="memory-only", steps=[("put", [0, 1]), ("pin", 1), ("fetch", [1, 0, 1], None), ("put", [2, 3, 4]),
                                      ("corrupt", 4), ("fetch", [2, 3, 4], None)])
@example(config="inclusive-no-promote", steps=[("put", [0, 1, 2, 3]), ("fetch", [0, 1, 2, 3], True),
                                               ("corrupt", 3), ("fetch", [3, 3, 0], None)])
def test_batched_calls_match_single_calls(config, steps):
    run_both(config, steps)


@pytest.mark.parametrize("queue_depth", [1, 3])
def test_a_large_flash_batch_is_checked_at_once_and_falls_back_on_damage(queue_depth):
    everything = list(range(20))
    run_both("flash-only", [("put", everything), ("fetch", everything, None), ("corrupt", 5), ("corrupt", 17),
                            ("fetch", everything[::-1], None), ("put", everything), ("pin", 3),
                            ("fetch", everything + [3, 3], None)], flash_queue_depth=queue_depth)


@given(steps=ops)
def test_batched_fetch_with_parallel_flash_reads_matches_single_calls(steps):
    run_both("exclusive", steps, flash_queue_depth=3)


def test_one_batch_hits_every_tier_and_reads_flash_runs_in_few_calls(tmp_path):
    calls = []

    class Counting(FileIO):
        def preadv(self, fd, buffers, offset):
            calls.append(len(buffers))
            return super().preadv(fd, buffers, offset)

    store = make_store([hbm(2 * BLOCK_BYTES), flash(32 * SLOT, tmp_path)], flash_io=Counting(), promote_on_hit=False)
    hashes = list(range(20))
    store.put_many(hashes, blocks(hashes))
    assert store.lookup(hashes).counts() == {"hbm": 2, "flash": 18, "missing": 0}
    calls.clear()
    r = store.fetch_many(hashes)
    assert r.found.all() and all(same_bytes(r.out[i], block(h)) for i, h in enumerate(hashes))
    assert len(calls) == 1 and calls[0] == 3 * 18 - 1  # header, payload, gap per slot: one call
    store.close()


class CountingIO(FileIO):
    """Counts writes and syncs; fails the write numbered ``fail_at`` (1-based) if set."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = self.syncs = 0
        self.fail_at = None

    def _count(self) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise OSError(errno.EIO, "injected write failure")

    def pwritev(self, fd, buffers, offset):
        self._count()
        return super().pwritev(fd, buffers, offset)

    def pwrite(self, fd, data, offset):
        self._count()
        return super().pwrite(fd, data, offset)

    def fdatasync(self, fd):
        self.syncs += 1
        return super().fdatasync(fd)


def test_a_flash_batch_of_new_blocks_writes_each_slot_once_and_syncs_once(tmp_path):
    io = CountingIO()
    store = make_store([flash(32 * SLOT, tmp_path, fsync="always")], flash_io=io)
    writes, syncs = io.writes, io.syncs
    hashes = list(range(12))
    assert all(r.stored for r in store.put_many(hashes, blocks(hashes)))
    # one pwritev per slot, then the state record (the high-water mark), then one fdatasync
    assert (io.writes - writes, io.syncs - syncs) == (12 + 1, 1)
    store.close()
    again = make_store([flash(32 * SLOT, tmp_path, fsync="always")])
    rec = again.tier("flash").recovery
    assert rec.recovered == 12 and rec.corrupt_slots == []
    assert all(same_bytes(again.fetch(h, promote=False), block(h)) for h in hashes)
    again.close()


@pytest.mark.parametrize("fail_at", [1, 3, 12, 13])  # the first slot, one in the middle, the last, the state record
def test_a_flash_batch_whose_write_fails_is_put_again_one_block_at_a_time(tmp_path, fail_at):
    io = CountingIO()
    store = make_store([flash(32 * SLOT, tmp_path, fsync="always")], flash_io=io)
    store.put_many([100, 101], blocks([100, 101]))
    io.fail_at = io.writes + fail_at
    hashes = list(range(12))
    results = store.put_many(hashes, blocks(hashes))
    assert all(r.tier == "flash" for r in results)  # the single puts after the failed batch all landed
    assert store.stats().tiers["flash"].write_errors == 0  # (the batch's failure is not counted: nothing was lost)
    for h in hashes + [100, 101]:
        assert same_bytes(store.fetch(h, promote=False), block(h))
    store.check_invariants()
    store.close()
    again = make_store([flash(32 * SLOT, tmp_path, fsync="always")])
    rec = again.tier("flash").recovery
    assert rec.recovered == 14 and rec.corrupt_slots == []
    assert all(same_bytes(again.fetch(h, promote=False), block(h)) for h in hashes + [100, 101])
    again.close()


def test_when_the_state_record_cannot_be_written_a_batch_fails_as_the_single_puts_do(tmp_path):
    class StateWriteFails(FileIO):
        armed = False

        def pwrite(self, fd, data, offset):
            if self.armed and offset in STATE_OFFSETS:
                raise OSError(errno.EIO, "injected: the state record cannot be written")
            return super().pwrite(fd, data, offset)

    hashes = list(range(4))
    outcome = {}
    for way in ("single", "batched"):
        io = StateWriteFails()
        store = make_store([flash(16 * SLOT, tmp_path / way, fsync="always")], flash_io=io)
        io.armed = True
        if way == "single":
            results = [store.put(h, block(h)) for h in hashes]
        else:
            results = store.put_many(hashes, blocks(hashes))
        stats = comparable_stats(store)
        io.armed = False
        store.close()
        again = make_store([flash(16 * SLOT, tmp_path / way, fsync="always")])
        outcome[way] = ([r.tier for r in results], stats["flash"]["write_errors"], again.tier("flash").recovery.recovered,
                        [h for h in hashes if again.fetch(h, promote=False) is not None])
        again.close()
    assert outcome["batched"] == outcome["single"] == ([None] * 4, 4, 0, [])  # dropped, and never back


def test_a_read_part_that_raises_leaves_no_other_part_writing_into_out(tmp_path):
    started, first_failed, done = (threading.Event() for _ in range(3))

    class OnePartFails(FileIO):
        armed = False

        def preadv(self, fd, buffers, offset):
            if self.armed:
                slot = (offset - FILE_HEADER_BYTES) // SLOT
                if slot == 0:  # the calling thread's part
                    started.wait(5)
                    first_failed.set()
                    raise ValueError("injected: not an I/O error")
                if slot == 8:  # a pool thread's part: still reading when the first fails
                    started.set()
                    first_failed.wait(5)
                    got = super().preadv(fd, buffers, offset)
                    done.set()
                    return got
            return super().preadv(fd, buffers, offset)

    io = OnePartFails()
    store = make_store([flash(32 * SLOT, tmp_path)], flash_io=io, flash_queue_depth=2)
    hashes = list(range(16))
    store.put_many(hashes, blocks(hashes))
    io.armed = True
    with pytest.raises(ValueError, match="injected"):
        store.fetch_many(hashes)
    assert done.is_set()  # the other part had finished before fetch_many raised
    io.armed = False
    store.close()


class CountingLRU(LRU):
    """An LRU whose Python ``insert``/``access`` count their calls (a user's subclass)."""

    name = "test-counting-lru"

    def __init__(self, num_slots: int) -> None:
        super().__init__(num_slots)
        self.calls: list[tuple[str, int]] = []

    def insert(self, slot, **kwargs):
        self.calls.append(("insert", slot))
        super().insert(slot, **kwargs)

    def access(self, slot, **kwargs):
        self.calls.append(("access", slot))
        super().access(slot, **kwargs)


def test_a_policy_subclass_sees_every_call_of_a_batch(tmp_path):
    register_policy(CountingLRU)
    seen = {}
    for way in ("single", "batched"):
        store = make_store([dram(8 * BLOCK_BYTES, policy=CountingLRU.name)])
        hashes = [5, 1, 7, 3]
        if way == "single":
            [store.put(h, block(h)) for h in hashes]
            [store.fetch(h) for h in hashes[::-1]]
        else:
            store.put_many(hashes, blocks(hashes))
            store.fetch_many(hashes[::-1])
        seen[way] = store.tiers[0].policy.calls
        store.close()
    assert seen["batched"] == seen["single"] and len(seen["single"]) == 8


def test_flash_batches_read_in_several_chunks_per_part_match_single_calls(monkeypatch):
    monkeypatch.setattr(flash_tier, "READ_CHUNK_BYTES", 3 * SLOT)  # three slots per preadv
    everything = list(range(20))
    run_both("flash-only", [("put", everything), ("fetch", everything, None), ("corrupt", 4),
                            ("fetch", everything[::-1], None), ("fetch", everything + [7, 7], None)], flash_queue_depth=2)


def test_a_short_read_in_a_batch_falls_back_to_single_reads(tmp_path):
    class ShortMultiSlotReads(FileIO):
        def preadv(self, fd, buffers, offset):
            if len(buffers) > 3:  # a read of several slots comes back after the first slot's payload
                return super().preadv(fd, buffers[:2], offset)
            return super().preadv(fd, buffers, offset)

    hashes = list(range(20))
    stores = [make_store([flash(32 * SLOT, tmp_path / "short")], flash_io=ShortMultiSlotReads()),
              make_store([flash(32 * SLOT, tmp_path / "healthy")])]
    results = []
    for store in stores:
        store.put_many(hashes, blocks(hashes))
        r = store.fetch_many(hashes)
        assert r.found.all() and all(same_bytes(r.out[i], block(h)) for i, h in enumerate(hashes))
        results.append(comparable_stats(store))
        store.close()
    assert results[0] == results[1]


def test_bad_batches_are_rejected_naming_the_field_and_change_nothing(tmp_path):
    store = make_store([dram(4 * BLOCK_BYTES)])
    store.put(1, block(1))
    before = comparable_stats(store)
    with pytest.raises(PayloadError, match=r"kv_blocks.shape"):
        store.put_many([1, 2], blocks([1]))
    with pytest.raises(PayloadError, match=r"kv_blocks.dtype"):
        store.put_many([2], np.zeros((1, *block(2).shape), np.float64))
    with pytest.raises(ConfigError, match="block_hash"):
        store.put_many([2, -1], blocks([2, 3]))
    with pytest.raises(ConfigError, match="block_hashes"):
        store.fetch_many("ab")
    with pytest.raises(PayloadError, match="out"):
        store.fetch_many([1], out=np.empty((1, 3), np.float32))
    ro = blocks([1])
    ro.flags.writeable = False
    with pytest.raises(PayloadError, match="out"):
        store.fetch_many([1], out=ro)
    assert comparable_stats(store) == before
    assert store.fetch_many([]).found.shape == (0,)
    assert store.put_many([], blocks([])) == []
    strided = blocks([5, 6, 7, 8])[::2]  # not contiguous: accepted for a put (copied)
    assert [r.tier for r in store.put_many([5, 7], strided)] == ["dram", "dram"]
    assert same_bytes(store.fetch(7), block(7))
    store.close()


def test_copy_rows_matches_numpy_and_checks_its_arguments():
    rng = np.random.default_rng(3)
    src = rng.integers(0, 256, (6, 40), dtype=np.uint8)
    dst = aligned_empty((4, 40), np.uint8)
    dst[:] = 0
    copy_rows(src, [5, 0, 2, 0], dst, [1, 3, 0, 1])  # a later copy to row 1 wins
    assert (dst[1] == src[0]).all() and (dst[3] == src[0]).all() and (dst[0] == src[2]).all()
    with pytest.raises(ConfigError, match="dst_rows"):
        copy_rows(src, [0], dst, [4])
    with pytest.raises(ConfigError, match="src_rows"):
        copy_rows(src, [0, 1], dst, [0])
    with pytest.raises(ConfigError, match="dst.shape"):
        copy_rows(src, [0], np.zeros((2, 8), np.uint8), [0])
    with pytest.raises(ConfigError, match="src"):
        copy_rows(src.astype(np.int16), [0], dst, [0])


@pytest.mark.parametrize("queue_depth", [1, 2])
def test_a_layer_of_a_paged_buffer_is_a_batch(tmp_path, queue_depth):
    """Blocks stored per layer: ``pages[:, layer]`` (blocks a page apart) is filled and read
    in place, bit for bit, from every tier."""
    layers, shape = 3, block(0).shape
    pages = aligned_empty((5, layers, *shape), np.float32)
    pages[:] = np.stack([np.stack([block(10 * p + l) for l in range(layers)]) for p in range(5)])
    store = make_store([hbm(4 * BLOCK_BYTES), dram(4 * BLOCK_BYTES), flash(16 * SLOT, tmp_path)],
                       flash_queue_depth=queue_depth, promote_on_hit=False)
    for layer in range(layers):
        assert all(r.stored for r in store.put_many([10 * p + layer for p in range(5)], pages[:, layer]))
    back = aligned_empty(pages.shape, np.float32)
    back[:] = 0
    futures = [store.fetch_many_async([10 * p + layer for p in range(5)], back[:, layer]) for layer in range(layers)]
    assert all(f.result().found.all() for f in futures)
    assert same_bytes(back, pages)
    with pytest.raises(PayloadError, match="out"):
        store.fetch_many([0, 10], back[:2, :, 0])  # blocks not contiguous
    store.close()

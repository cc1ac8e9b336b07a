"""Crash recovery: a child process is SIGKILLed while it writes to the flash tier; the
reopened store has every block the child was told is durable, intact, and serves nothing
corrupt. No sleeps: the parent kills the child after reading a fixed number of acks.

Frees count as much as puts: a block freed and put again with new bytes comes back with
the new bytes or not at all, never the old ones; a durable free stays free."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kvtier import flash
from kvtier.testing import PowerCutFileIO, abandon
from tests.helpers import make_store, payload, same_bytes

SLOT = 8192
CAPACITY_BLOCKS = 512

CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from kvtier import flash
    from tests.helpers import make_store, payload
    store = make_store([flash({capacity}, {path!r}, fsync={fsync!r})])
    for h in range({total}):
        store.put(h, payload(h))
        if {fsync!r} == "always":
            print(h, flush=True)          # put returned: durable
        elif h % 8 == 7:
            store.flush()
            print(h, flush=True)          # everything up to h is durable
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("fsync", ["always", "flush"])
def test_sigkill_mid_write_loses_no_acknowledged_block(tmp_path, fsync):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = CHILD.format(root=root, capacity=CAPACITY_BLOCKS * SLOT, path=str(tmp_path), fsync=fsync, total=400)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acked = -1
    kill_after = 120
    for line in child.stdout:
        if line.strip() == "done":
            break
        acked = int(line)
        if acked >= kill_after:
            child.send_signal(signal.SIGKILL)
            break
    child.wait()
    child.stdout.close()
    assert acked >= kill_after, "the child finished before it could be killed"
    assert child.returncode == -signal.SIGKILL

    store = make_store([flash(CAPACITY_BLOCKS * SLOT, tmp_path, fsync=fsync)])
    rec = store.tier("flash").recovery
    for h in range(acked + 1):  # every acknowledged block is back, bit for bit
        got = store.fetch(h, promote=False)
        assert got is not None, f"acknowledged block {h} lost"
        assert same_bytes(got, payload(h))
    for h in store.tier("flash").hashes():  # whatever else survived is intact too
        assert same_bytes(store.fetch(h, promote=False), payload(h))
    in_flight = rec.recovered - (acked + 1)
    assert in_flight >= 0
    assert rec.corrupt_slots == [] or len(rec.corrupt_slots) <= 1  # at most the write in flight
    store.check_invariants()


ASYNC_CHILD = textwrap.dedent(
    """
    import sys, threading
    import numpy as np
    sys.path.insert(0, {root!r})
    from kvtier import flash
    from tests.helpers import make_store, payload
    store = make_store([flash({capacity}, {path!r}, fsync="always")], io_threads=3)
    out = threading.Lock()

    def acked(future, hashes):
        if all(r.stored for r in future.result()):
            with out:
                print(*hashes, flush=True)  # the future completed: durable

    for first in range(0, {total}, 4):
        hashes = list(range(first, first + 4))
        f = store.put_many_async(hashes, np.stack([payload(h) for h in hashes]))
        f.add_done_callback(lambda f, hashes=hashes: acked(f, hashes))
    store.close()
    print("done", flush=True)
    """
)


def test_sigkill_during_async_puts_keeps_every_completed_future(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ASYNC_CHILD.format(root=root, capacity=CAPACITY_BLOCKS * SLOT, path=str(tmp_path), total=400)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acked: list[int] = []
    for line in child.stdout:
        if line.strip() == "done":
            break
        acked += [int(h) for h in line.split()]
        if len(acked) >= 120:
            child.send_signal(signal.SIGKILL)
            break
    child.wait()
    child.stdout.close()
    assert len(acked) >= 120 and child.returncode == -signal.SIGKILL, "the child finished before it could be killed"

    store = make_store([flash(CAPACITY_BLOCKS * SLOT, tmp_path, fsync="always")])
    rec = store.tier("flash").recovery
    for h in acked:  # every put whose future completed is back, bit for bit
        got = store.fetch(h, promote=False)
        assert got is not None, f"block {h} of a completed future lost"
        assert same_bytes(got, payload(h))
    for h in store.tier("flash").hashes():
        assert same_bytes(store.fetch(h, promote=False), payload(h))
    assert len(rec.corrupt_slots) <= 1  # at most the write in flight
    store.check_invariants()
    store.close()


@pytest.mark.parametrize("fsync", ["always", "flush", "never"])
def test_power_cut_keeps_exactly_what_was_made_durable(tmp_path, fsync):
    """SIGKILL leaves the page cache intact; a power cut does not. Writes not yet
    fdatasync'ed are undone; every block acknowledged as durable must survive."""
    io = PowerCutFileIO()
    store = make_store([flash(64 * SLOT, tmp_path, fsync=fsync)], flash_io=io)
    durable = set()
    for h in range(45):  # the last 5 come after the last flush
        store.put(h, payload(h))
        if fsync == "always":
            durable.add(h)
        elif fsync == "flush" and h % 10 == 9:
            store.flush()
            durable = set(range(h + 1))
    unsynced = io.unsynced_writes
    assert (unsynced == 0) == (fsync == "always")
    io.power_cut()
    abandon(store)
    again = make_store([flash(64 * SLOT, tmp_path, fsync=fsync)])
    survivors = set(again.tier("flash").hashes())
    assert durable <= survivors, f"lost acknowledged blocks {sorted(durable - survivors)}"
    if fsync == "never":
        assert survivors == set()  # nothing was ever synced
    else:
        assert survivors == durable  # the unsynced tail really was lost: the test can tell
    for h in survivors:
        assert same_bytes(again.fetch(h, promote=False), payload(h))
    again.check_invariants()


def op_sequence(seed: int, steps: int, num_hashes: int):
    """A seeded list of operations over a dict model: ``("put", h, version)`` when ``h`` is
    not stored (each put of ``h`` has new bytes), ``("free", h, None)`` when it is."""
    rng = np.random.default_rng(seed)
    stored: set[int] = set()
    versions = dict.fromkeys(range(num_hashes), 0)
    ops = []
    for _ in range(steps):
        h = int(rng.integers(num_hashes))
        if h in stored:
            ops.append(("free", h, None))
            stored.discard(h)
        else:
            versions[h] += 1
            ops.append(("put", h, versions[h]))
            stored.add(h)
    return ops


def version_bytes(h: int, version: int):
    return payload(h * 1000 + version)


def states_from(ops, start: int, num_hashes: int):
    """Per hash, the version stored after op ``start - 1`` (``None``: not stored), and every
    state it passes through after that (what a crash later than ``start`` may leave)."""
    state = dict.fromkeys(range(num_hashes))
    for op, h, v in ops[:start]:
        state[h] = v if op == "put" else None
    allowed = {h: {v} for h, v in state.items()}
    for op, h, v in ops[start:]:
        allowed[h].add(v if op == "put" else None)
    return state, allowed


def check_reopened(store, state, allowed, num_hashes):
    """No wrong or stale bytes; every block that must be there is served or reported."""
    rec = store.tier("flash").recovery
    unserved = 0
    for h in range(num_hashes):
        got = store.fetch(h, promote=False)
        if got is None:
            assert None in allowed[h] or rec.lost > 0, f"block {h} (version {state[h]}) lost without a report"
            unserved += None not in allowed[h]
            continue
        versions = [v for v in allowed[h] if v is not None and same_bytes(got, version_bytes(h, v))]
        assert versions, f"block {h} came back with bytes of no allowed version {sorted(allowed[h], key=str)}"
    assert unserved <= rec.lost
    store.check_invariants()


CHILD_FREES = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from kvtier import flash
    from tests.helpers import make_store
    from tests.test_crash_recovery import op_sequence, version_bytes
    store = make_store([flash({capacity}, {path!r}, fsync={fsync!r})])
    for i, (op, h, v) in enumerate(op_sequence({seed}, {total}, {hashes})):
        if op == "put":
            assert store.put(h, version_bytes(h, v)).stored
        else:
            assert store.free(h)
        if {fsync!r} == "always":
            print(i, flush=True)          # the put or free returned: durable
        elif i % 8 == 7:
            store.flush()
            print(i, flush=True)          # everything up to op i is durable
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("fsync", ["always", "flush"])
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_during_frees_and_re_puts_serves_no_stale_bytes(tmp_path, fsync, seed):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    hashes, total, kill_after = 24, 600, 150 + 40 * seed
    code = CHILD_FREES.format(root=root, capacity=CAPACITY_BLOCKS * SLOT, path=str(tmp_path), fsync=fsync,
                              seed=seed, total=total, hashes=hashes)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acked = -1
    for line in child.stdout:
        if line.strip() == "done":
            break
        acked = int(line)
        if acked >= kill_after:
            child.send_signal(signal.SIGKILL)
            break
    child.wait()
    child.stdout.close()
    assert acked >= kill_after and child.returncode == -signal.SIGKILL
    ops = op_sequence(seed, total, hashes)
    assert sum(op == "free" for op, _h, _v in ops[: acked + 1]) > 40  # frees really were in the mix
    state, allowed = states_from(ops, acked + 1, hashes)
    store = make_store([flash(CAPACITY_BLOCKS * SLOT, tmp_path, fsync=fsync)])
    assert len(store.tier("flash").recovery.corrupt_slots) <= 1  # at most the write in flight
    check_reopened(store, state, allowed, hashes)


@pytest.mark.parametrize("fsync", ["always", "flush", "never"])
def test_power_cut_during_frees_and_re_puts_keeps_the_durable_state(tmp_path, fsync):
    """After a power cut the file is exactly as of the last durable point: every free and
    put acknowledged as durable is there, nothing later, and never older bytes."""
    hashes = 12
    ops = op_sequence(3, 150, hashes)
    stored = [h for h, v in states_from(ops, len(ops), hashes)[0].items() if v is not None]
    ops += [("free", h, None) for h in stored[:3]]  # frees after the last put: nothing else syncs them
    last_flush = len(ops) - 1
    if fsync != "always":
        ops += [("put", h, 1) for h in range(hashes, hashes + 10)]  # after the last flush: undone
    io = PowerCutFileIO()
    store = make_store([flash(64 * SLOT, tmp_path, fsync=fsync)], flash_io=io)
    durable = 0  # ops[:durable] are durable
    for i, (op, h, v) in enumerate(ops):
        if op == "put":
            assert store.put(h, version_bytes(h, v)).stored
        else:
            assert store.free(h)
        if fsync == "always":
            durable = i + 1
        elif fsync == "flush" and (i % 10 == 9 and i < 150 or i == last_flush):
            store.flush()
            durable = i + 1
    assert (io.unsynced_writes == 0) == (fsync == "always")
    io.power_cut()
    abandon(store)
    state, _ = states_from(ops, durable, hashes + 10)
    again = make_store([flash(64 * SLOT, tmp_path, fsync=fsync)])
    assert again.tier("flash").recovery.lost == 0
    survivors = dict.fromkeys(range(hashes + 10))
    for h in survivors:
        got = again.fetch(h, promote=False)
        if got is not None:
            survivors[h] = next(v for v in range(1, 100) if same_bytes(got, version_bytes(h, v)))
    assert survivors == state  # exactly the durable state: frees included, nothing older, nothing newer
    again.check_invariants()


@pytest.mark.parametrize("fsync", ["always", "flush"])
def test_a_durable_free_survives_a_power_cut(tmp_path, fsync):
    io = PowerCutFileIO()
    store = make_store([flash(8 * SLOT, tmp_path, fsync=fsync)], flash_io=io)
    store.put(1, payload(1))
    store.put(2, payload(2))
    store.flush()
    store.free(1)
    store.flush()  # under "always" the free was already durable when it returned
    io.power_cut()
    abandon(store)
    again = make_store([flash(8 * SLOT, tmp_path, fsync=fsync)])
    assert not again.contains(1), "a durable free was undone by a power cut"
    assert same_bytes(again.fetch(2), payload(2))

"""Crash recovery: a child process is SIGKILLed while it writes to the flash tier; the
reopened store has every block the child was told is durable, intact, and serves nothing
corrupt. No sleeps: the parent kills the child after reading a fixed number of acks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

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

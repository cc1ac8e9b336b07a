"""Reliability figures for the README: faults injected and survived, per kind.

Runs the fault-injection workload of ``tests/test_faults.py`` (seeded: the same numbers
every run) for each fault kind and for all kinds at once, and prints, per kind, how many
faults were injected, how the store counted them, how many fetches were served (every one
checked bit for bit) and how many returned wrong bytes (must be 0).

    python bench/reliability.py
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kvtier import dram, flash, hbm  # noqa: E402
from kvtier.testing import FAULT_KINDS, FaultRates, FaultyFileIO  # noqa: E402
from tests.helpers import BLOCK_BYTES, make_store, payload, same_bytes  # noqa: E402
from tests.test_faults import run_workload  # noqa: E402

SLOT = 8192
STEPS = 2000


def main() -> int:
    cases = [(k, FaultRates(**{k: 0.2})) for k in FAULT_KINDS]
    cases.append(("all at once", FaultRates(write_enospc=0.04, write_eio=0.04, torn_write=0.04, read_eio=0.04, bitflip=0.04)))
    print(f"{STEPS} seeded put/fetch steps over 40 blocks; HBM 2 + DRAM 2 + flash 12 blocks; fault rate per I/O shown")
    print("| fault | rate | injected | write_errors | read_errors | corrupt found | fetches served | wrong bytes |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rates in cases:
        with tempfile.TemporaryDirectory() as d:
            io = FaultyFileIO(rates, seed=7)
            store = make_store([hbm(2 * BLOCK_BYTES), dram(2 * BLOCK_BYTES), flash(12 * SLOT, d)], flash_io=io)
            r = run_workload(store, STEPS, seed=1)
            for h in store.tier("flash").hashes():  # read what is left, so torn writes are found
                got = store.fetch(h, promote=False)
                r["wrong"] += got is not None and not same_bytes(got, payload(h))
            f = store.stats().tiers["flash"]
            rate = max(getattr(rates, k) for k in FAULT_KINDS)
            print(f"| {name} | {rate:.2f} | {sum(io.injected.values())} | {f.write_errors} | {f.read_errors} | "
                  f"{f.corrupt} | {r['served']} | {r['wrong']} |")
            store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

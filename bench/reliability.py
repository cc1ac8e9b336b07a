"""Reliability figures for the README: faults injected and survived, per kind.

Runs the fault-injection workload of ``tests/test_faults.py`` (seeded: the same numbers
every run: puts, fetches and 10% frees over 40 blocks, each put of a block that is not
stored carrying new bytes) for each fault kind and for all kinds at once, and prints, per
kind, how many faults were injected, how the store counted them, how many frees went
through and how many the device failed (raised, block kept), how many fetches were served
(every one checked bit for bit) and how many returned an older version's bytes (stale) or
any other wrong bytes (both must be 0). After the run the device is healed, the store closed
and the file reopened: every block it serves is checked against the newest bytes too.

    python bench/reliability.py
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kvtier import dram, flash, hbm  # noqa: E402
from kvtier.testing import FAULT_KINDS, FaultRates, FaultyFileIO  # noqa: E402
from tests.helpers import BLOCK_BYTES, make_store, same_bytes  # noqa: E402
from tests.test_faults import check_left_on_flash, run_workload, version_bytes  # noqa: E402

SLOT = 8192
STEPS = 2000


def main() -> int:
    cases = [(k, FaultRates(**{k: 0.2})) for k in FAULT_KINDS]
    cases.append(("all at once", FaultRates(**dict.fromkeys(FAULT_KINDS, 0.04))))
    print(f"{STEPS} seeded put/fetch/free steps over 40 blocks (10% frees); HBM 2 + DRAM 2 + flash 12 blocks; "
          f"fault rate per I/O shown")
    print("| fault | rate | injected | write_errors | read_errors | corrupt found | frees | frees failed (raised) "
          "| fetches served | stale bytes | wrong bytes | after reopen: served, wrong |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, rates in cases:
        with tempfile.TemporaryDirectory() as d:
            io = FaultyFileIO(rates, seed=7)
            tiers = [hbm(2 * BLOCK_BYTES), dram(2 * BLOCK_BYTES), flash(12 * SLOT, d)]
            store = make_store(tiers, flash_io=io)
            r = run_workload(store, STEPS, seed=1)
            check_left_on_flash(store, r)  # read what is left, so torn writes are found (asserts: no wrong bytes)
            f = store.stats().tiers["flash"]
            io.armed = False
            store.close()
            again = make_store(tiers)
            served = wrong = 0
            for h in again.tier("flash").hashes():
                got = again.fetch(h, promote=False)
                if got is not None:
                    served += 1
                    wrong += h not in r["model"] or not same_bytes(got, version_bytes(h, r["model"][h]))
            again.close()
            rate = max(getattr(rates, k) for k in FAULT_KINDS)
            print(f"| {name} | {rate:.2f} | {sum(io.injected.values())} | {f.write_errors} | {f.read_errors} | "
                  f"{f.corrupt} | {r['frees']} | {r['free_errors']} | {r['served']} | {r['stale']} | {r['wrong']} | "
                  f"{served}, {wrong} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

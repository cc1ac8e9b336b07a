"""``kvtier warm``: compile kvtier's numba kernels ahead of time, once per install.

``kvtier replay`` compiles the one kernel it needs on its first run and ``kvtier bench``
the simulator's; numba caches them next to the sources, so later runs load them in about
a second. Running ``kvtier warm`` once after installing (it takes a few minutes on two
cores, and may run in the background) makes every first run start at once.
"""

from __future__ import annotations

import sys
import time

from kvtier.cli._help import with_example


def register(subparsers) -> None:
    p = subparsers.add_parser("warm", help="compile the numba kernels now (once per install), not on first use",
                              description=__doc__.split("\n\n", 1)[0] + " " + __doc__.split("\n\n", 1)[1].strip(),
                              **with_example("kvtier warm --replay-only"))
    p.add_argument("--replay-only", action="store_true", help="only the replay kernels (kvtier replay), not the "
                                                              "simulator's (kvtier bench)")
    p.set_defaults(func=run)


def run(args) -> int:
    from kvtier.replay import KERNELS, warm_up

    t0 = time.perf_counter()
    for name in KERNELS:
        print(f"kvtier warm: the {name!r} replay kernel ...", end=" ", file=sys.stderr, flush=True)
        print(f"{warm_up((name,)):.1f} s", file=sys.stderr, flush=True)
    if not args.replay_only:
        from kvtier.sim import warm_up as warm_up_simulator

        print("kvtier warm: the simulator's kernels ...", end=" ", file=sys.stderr, flush=True)
        print(f"{warm_up_simulator():.1f} s", file=sys.stderr, flush=True)
    print(f"kvtier warm: done in {time.perf_counter() - t0:.1f} s; later runs load the compiled kernels from "
          "numba's cache", file=sys.stderr)
    return 0

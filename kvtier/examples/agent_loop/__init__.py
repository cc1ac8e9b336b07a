"""Multi-turn, agent-like generation on the example transformer, its KV in a ``TieredStore``.

What one run does (``run_agent_loop``):

* **Sessions** share a system prompt; one session (``fork_turn``) forks from session 0's
  context mid-run, as a sub-agent does, so it shares every block of that context. Each
  turn appends a tool output / user message to the session's context and generates
  ``generate_tokens`` tokens greedily.
* **Tiers**: a small HBM, DRAM and an lz4 flash file. After each turn every full block of
  the context is put (or promoted) into HBM, which pushes older blocks to DRAM and flash
  and, when flash is full, drops them.
* **Before each turn** the context's block hashes are looked up; the chosen planner
  (``kvtier.planners``) decides, per block, to fetch it from its tier or to
  recompute it with the model (missing blocks are always recomputed). Fetched blocks go
  straight into the sequence's KV pages (``store.fetch(h, out=page)``); recomputed ranges
  run through the model given the KV before them; then the new tokens are prefilled and
  the answer decoded, attention reading the pages.
* **Calibration** (``calibrate``): memory-copy bandwidth, file read bandwidth (+ CRC and
  codec), the store's fixed cost per fetch and the model's achieved FLOP/s are measured
  on this machine, and ``local_cpu_target`` turns them into a ``HardwareTarget``. The
  planner plans against it, and every fetch and recompute is timed and compared with
  the cost model's prediction (``kvtier.cost``).

Correctness: the logits and tokens of every turn equal, bit for bit, those of the same
run with an HBM large enough to hold everything (``AgentLoopConfig.unlimited_hbm``), for
every planner, because recomputed KV is bitwise equal to the KV first computed
(``kvtier.examples.transformer``); ``compare_runs`` checks it, and the loop itself checks
each recomputed block against the copy the store still holds, where it holds one.

Wall-clock time is read only through the ``clock`` argument, for the reported timings;
every decision is a function of the config and its seed.

The files, in reading order (each stands on its own):

* ``config.py`` — ``AgentLoopConfig``, the run;
* ``tiers.py`` — the ``hbm`` / ``dram`` / ``flash`` chain every store here is built of;
* ``timing.py`` — the clock, median rates, cold fetches, ``OpTiming``;
* ``calibration.py`` — ``calibrate``: this machine's figures;
* ``target.py`` — ``local_cpu_target``: those figures as a ``HardwareTarget``;
* ``check.py`` — ``calibration_check``: predictions against real fetches and recomputes;
* ``results.py`` — ``TurnRecord`` and ``AgentLoopResult``;
* ``run.py`` — ``run_agent_loop``, the loop itself;
* ``report.py`` — the turn table, ``error_summary`` and ``compare_runs``.
"""

from __future__ import annotations

from kvtier.examples.agent_loop.calibration import Calibration, calibrate
from kvtier.examples.agent_loop.check import calibration_check
from kvtier.examples.agent_loop.config import AgentLoopConfig
from kvtier.examples.agent_loop.report import (
    Equality,
    ErrorSummary,
    compare_runs,
    error_summary,
    format_turn,
    turn_header,
)
from kvtier.examples.agent_loop.results import AgentLoopResult, TurnRecord
from kvtier.examples.agent_loop.run import build_store, run_agent_loop
from kvtier.examples.agent_loop.target import local_cpu_target
from kvtier.examples.agent_loop.tiers import TIER_NAMES
from kvtier.examples.agent_loop.timing import Clock, OpTiming

__all__ = [
    "TIER_NAMES", "AgentLoopConfig", "AgentLoopResult", "Calibration", "Clock", "Equality", "ErrorSummary",
    "OpTiming", "TurnRecord", "build_store", "calibrate", "calibration_check", "compare_runs", "error_summary",
    "format_turn", "local_cpu_target", "run_agent_loop", "turn_header",
]

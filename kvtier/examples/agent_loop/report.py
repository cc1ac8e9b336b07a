"""Reading a run's results: the per-turn table, predicted vs measured by group, and run equality.

``turn_header`` and ``format_turn`` print one line per session turn (what was found,
fetched, recomputed, and predicted vs measured times); ``error_summary`` totals the cost
model's error per group of operations; ``compare_runs`` says whether two runs gave the
same logits and tokens, bit for bit (a run against its ``unlimited_hbm`` reference).

This is the last file of the example; ``kvtier/cli/example.py`` prints these for
``kvtier example``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kvtier.examples.agent_loop.results import AgentLoopResult, TurnRecord
from kvtier.examples.agent_loop.timing import OpTiming, relative_error


def _ms(x: float) -> str:
    return f"{x * 1e3:.2f}"


def turn_header() -> str:
    return (f"{'turn':>4} {'sess':>4} {'prompt':>6} {'prefix':>6} | {'hbm':>3} {'dram':>4} {'flash':>5} {'miss':>4} | "
            f"{'fetch dram':>10} {'flash':>5} {'recomp':>6} | {'fetch ms pred/meas':>18} {'recompute ms pred/meas':>22} "
            f"{'prefill ms pred/meas':>20} | {'ttft ms plan/meas':>17}")


def format_turn(rec: TurnRecord) -> str:
    """One line of the turn table (``turn_header`` names the columns)."""

    def pair(kind: str) -> str:
        ops = [op for op in rec.ops if op.kind == kind]
        if not ops:
            return "-"
        return f"{_ms(sum(o.predicted_s for o in ops))}/{_ms(sum(o.measured_s for o in ops))}"

    f = rec.found
    return (f"{rec.turn:>4} {rec.session:>4} {rec.prompt_tokens:>6} {rec.prefix_blocks:>6} | {f['hbm']:>3} {f['dram']:>4} "
            f"{f['flash']:>5} {f['missing']:>4} | {rec.fetched.get('dram', 0):>10} {rec.fetched.get('flash', 0):>5} "
            f"{rec.recomputed_blocks:>6} | {pair('fetch'):>18} {pair('recompute'):>22} {pair('prefill'):>20} | "
            f"{_ms(rec.plan_ttft_s)}/{_ms(rec.measured_ttft_s):>8}")


class ErrorSummary(NamedTuple):
    """Predicted vs measured over a group of operations: totals, and among the ``judged``
    operations (those predicted to take at least ``error_summary``'s ``min_s``) how many
    came within 30% and the worst error."""

    group: str
    ops: int
    predicted_s: float
    measured_s: float
    judged: int
    within_30pct: int
    worst_error: float

    @property
    def total_error(self) -> float:
        return relative_error(self.predicted_s, self.measured_s, unmeasured=float("nan"))


def error_summary(result: AgentLoopResult, *, min_s: float = 1e-3) -> list[ErrorSummary]:
    """Per group (fetch per tier, recompute, prefill): totals, and for the operations the
    cost model predicts to take at least ``min_s``, how many it predicted within 30%.
    (Selecting by predicted time keeps an operation that a preemption stretched past
    ``min_s`` from being judged while its undisturbed twins are not.)"""
    groups: dict[str, list[OpTiming]] = {}
    for op in result.ops():
        groups.setdefault(op.kind if op.tier is None else f"{op.kind} {op.tier}", []).append(op)
    out = []
    for name in sorted(groups):
        ops = groups[name]
        big = [o for o in ops if o.predicted_s >= min_s]
        out.append(ErrorSummary(
            group=name, ops=len(ops), predicted_s=sum(o.predicted_s for o in ops), measured_s=sum(o.measured_s for o in ops),
            judged=len(big), within_30pct=sum(abs(o.error) <= 0.3 for o in big),
            worst_error=max((o.error for o in big), key=abs, default=0.0),
        ))
    return out


class Equality(NamedTuple):
    """How two runs compare: turns whose logits are bitwise equal, and the largest gap."""

    turns_equal: int
    turns: int
    tokens_equal: bool
    max_abs_diff: float

    @property
    def bitwise(self) -> bool:
        return self.turns_equal == self.turns and self.tokens_equal


def compare_runs(a: AgentLoopResult, b: AgentLoopResult) -> Equality:
    """Compare the logits of every turn and the final contexts of two runs."""
    keys = sorted(set(a.logits) | set(b.logits))
    equal, worst = 0, 0.0
    for k in keys:
        x, y = a.logits.get(k), b.logits.get(k)
        if x is not None and y is not None and x.shape == y.shape:
            if np.array_equal(x.view(np.uint32), y.view(np.uint32)):
                equal += 1
            else:
                worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y))))
        else:
            worst = float("inf")
    same_tokens = a.contexts.keys() == b.contexts.keys() and all(
        np.array_equal(a.contexts[s], b.contexts[s]) for s in a.contexts)
    return Equality(equal, len(keys), same_tokens, worst)

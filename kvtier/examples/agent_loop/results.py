"""What a run of the agent loop records: a ``TurnRecord`` per session turn, in an ``AgentLoopResult``.

A turn record says what the lookup found in each tier, what the planner decided (fetch
from which tier, or recompute), every timed operation (``OpTiming``) and the tokens
generated; the result adds each turn's logits and each session's final context, which
``report.compare_runs`` compares bit for bit between two runs.

Read next: ``run.py`` (the loop that fills these in).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvtier.examples.agent_loop.calibration import Calibration
from kvtier.examples.agent_loop.config import AgentLoopConfig
from kvtier.targets import HardwareTarget


@dataclass
class TurnRecord:
    """What one session's turn found, decided, cost and produced."""

    turn: int
    session: int
    prompt_tokens: int
    prefix_blocks: int
    new_tokens: int
    found: dict  # tier name -> prefix blocks found there, plus "missing"
    fetched: dict  # tier name -> blocks fetched
    recomputed_blocks: int
    fetch_failed: int
    plan_ttft_s: float
    ops: list = field(default_factory=list)
    decode_s: float = 0.0
    placement_s: float = 0.0
    recompute_verified: int = 0
    recompute_mismatched: int = 0
    generated: list = field(default_factory=list)

    @property
    def measured_ttft_s(self) -> float:
        """Fetches, recomputes and prefill as executed (one after another)."""
        return sum(op.measured_s for op in self.ops)

    @property
    def predicted_serial_s(self) -> float:
        """The cost model's prediction for the same operations run one after another."""
        return sum(op.predicted_s for op in self.ops)


@dataclass
class AgentLoopResult:
    """Everything a run produced. ``logits[(turn, session)]`` is a ``(generate_tokens,
    vocab)`` float32 array; ``contexts[session]`` the final token ids."""

    config: AgentLoopConfig
    target: HardwareTarget
    calibration: Calibration
    turns: list = field(default_factory=list)
    logits: dict = field(default_factory=dict)
    contexts: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0

    def ops(self, kind: str | None = None) -> list:
        return [op for t in self.turns for op in t.ops if kind is None or op.kind == kind]


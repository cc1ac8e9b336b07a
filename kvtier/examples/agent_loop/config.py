"""``AgentLoopConfig``: what one run of the agent loop is (model, sessions, turns, tiers, planner).

The config validates itself on construction and knows the two sizes derived from it: the
longest a session's context can grow (``max_session_tokens``, which sizes its KV pages)
and the bytes each tier needs for its blocks (``tier_bytes``). ``unlimited_hbm`` gives
the reference run that every run must equal bit for bit.

Read next: ``tiers.py`` (the three tiers these sizes describe), then ``run.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kvtier.errors import ConfigError
from kvtier.examples.agent_loop.tiers import TierBytes, tier_bytes
from kvtier.examples.transformer import TransformerConfig
from kvtier.planners import make_planner
from kvtier.validation import check_choice, check_int, is_int

#: Codecs the flash tier of the run may use.
FLASH_CODECS = ("lz4", "none")


@dataclass(frozen=True, kw_only=True)
class AgentLoopConfig:
    """The run: model, sessions, turns, tier sizes (in blocks) and the planner.

    ``turn_tokens``: mean tokens a turn appends (drawn in ``[t/2, 3t/2]``).
    ``fork_turn``: at this turn the last session starts as a copy of session 0's context
    (``None``: no fork; needs ``sessions >= 2``). ``flash_codec``: ``"lz4"`` or ``"none"``.
    ``verify_recompute``: after recomputing a block the store still holds, fetch the stored
    copy and compare the bits (those fetches count in the store's statistics).
    """

    model: TransformerConfig = TransformerConfig()
    block_tokens: int = 16
    sessions: int = 3
    turns: int = 6
    system_prompt_tokens: int = 128
    turn_tokens: int = 96
    generate_tokens: int = 16
    fork_turn: int | None = 2
    hbm_blocks: int = 16
    dram_blocks: int = 32
    flash_blocks: int = 48
    flash_codec: str = "lz4"
    planner: str = "cost-optimal"
    verify_recompute: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.model, TransformerConfig):
            raise ConfigError(f"model: got {self.model!r}, expected a TransformerConfig")
        for name in ("block_tokens", "sessions", "turns", "turn_tokens", "generate_tokens", "hbm_blocks",
                     "dram_blocks", "flash_blocks"):
            check_int(getattr(self, name), name, minimum=1)
        for name in ("system_prompt_tokens", "seed"):
            check_int(getattr(self, name), name, minimum=0)
        if self.fork_turn is not None:
            if not is_int(self.fork_turn) or not 1 <= self.fork_turn < self.turns:
                raise ConfigError(f"fork_turn: got {self.fork_turn!r}, expected None or 1 <= fork_turn < turns ({self.turns})")
            if self.sessions < 2:
                raise ConfigError(f"fork_turn: got {self.fork_turn!r} with sessions=1, expected None (nothing to fork from)")
        check_choice(self.flash_codec, "flash_codec", FLASH_CODECS)
        make_planner(self.planner)  # UnknownNameError lists the planners
        if self.max_session_tokens > self.model.max_positions:
            raise ConfigError(
                f"turns/turn_tokens: a session may reach {self.max_session_tokens} tokens, expected <= "
                f"model.max_positions ({self.model.max_positions})"
            )

    @property
    def max_session_tokens(self) -> int:
        """An upper bound on one session's context (KV pages are sized by it)."""
        per_turn = self.turn_tokens * 3 // 2 + self.generate_tokens
        return self.system_prompt_tokens + self.turns * per_turn + self.generate_tokens

    def tier_bytes(self) -> TierBytes:
        """The capacity of each tier, in bytes, that holds ``hbm_blocks`` / ``dram_blocks`` /
        ``flash_blocks`` blocks of this model."""
        block_bytes = self.model.model_spec().block_bytes(self.block_tokens)
        return tier_bytes(block_bytes, hbm_blocks=self.hbm_blocks, dram_blocks=self.dram_blocks,
                          flash_blocks=self.flash_blocks)

    def unlimited_hbm(self) -> "AgentLoopConfig":
        """The same run with an HBM that holds every block: the reference for equality."""
        blocks = self.sessions * (-(-self.max_session_tokens // self.block_tokens)) + 1
        return dataclasses.replace(self, hbm_blocks=blocks, dram_blocks=1, flash_blocks=1)

"""S3-FIFO (Yang et al., SOSP'23), as libCacheSim's ``S3FIFO`` implements it.

A small FIFO queue (``small_ratio`` of the slots, floored, at least 1), a main FIFO queue
(the rest) and a ghost FIFO of evicted keys (``ghost_ratio`` of the slots, floored). Each slot has a
hit counter capped at 3. A new block goes to the small queue, or to main when its key is
in the ghost (found by ``prepare(key)``) or, before the first eviction, when the small
queue is already full. Eviction: from main when main holds more than its share or small
is empty, else from small. Small: the oldest block moves to main (counter reset) when it
was hit at least ``move_threshold`` times, else it is evicted and its key enters the
ghost. Main: the oldest block with a non-zero counter goes back to main's newest end
with ``min(count, 3) - 1``; the first with zero is evicted.

Parameters default to libCacheSim's: small 0.10, ghost 0.90, threshold 2. The ghost needs
block keys (``prepare(key)``, ``insert(slot, key=...)``, as the store's tiers pass them);
without keys it never hits.
"""

from __future__ import annotations

from kvtier._kernels import policy as _k
from kvtier.policies.base import KernelPolicy, register_policy
from kvtier.validation import check_int, check_number

#: libCacheSim's defaults: the small queue's and the ghost's share of the slots, and the
#: hits that move a block from small to main.
SMALL_RATIO = 0.1
GHOST_RATIO = 0.9
MOVE_THRESHOLD = 2


@register_policy
class S3FIFO(KernelPolicy):
    name = "s3fifo"
    kind = _k.S3FIFO

    def __init__(self, num_slots: int, *, small_ratio: float = SMALL_RATIO, ghost_ratio: float = GHOST_RATIO,
                 move_threshold: int = MOVE_THRESHOLD) -> None:
        check_number(small_ratio, "small_ratio", minimum=0.0, maximum=1.0, min_exclusive=True, max_exclusive=True)
        check_number(ghost_ratio, "ghost_ratio", minimum=0.0, maximum=4.0)
        self.small_ratio = small_ratio
        self.ghost_ratio = ghost_ratio
        self.move_threshold = check_int(move_threshold, "move_threshold")
        super().__init__(num_slots)

    @classmethod
    def kernel_params(cls, num_slots: int, *, small_ratio: float = SMALL_RATIO, ghost_ratio: float = GHOST_RATIO,
                      move_threshold: int = MOVE_THRESHOLD) -> tuple[int, int, int]:
        n = num_slots
        small = max(1, int(n * small_ratio)) if n > 1 else 1
        return (min(small, n), int(n * ghost_ratio), move_threshold)

    def kernel_options(self) -> dict:
        return {"small_ratio": self.small_ratio, "ghost_ratio": self.ghost_ratio, "move_threshold": self.move_threshold}

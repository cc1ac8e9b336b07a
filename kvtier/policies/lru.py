"""LRU: evict the least recently inserted-or-hit slot."""

from __future__ import annotations

import numpy as np

from kvtier._kernels.dlist import (
    dlist_init,
    dlist_move_to_newest,
    dlist_oldest,
    dlist_push_newest,
    dlist_to_array,
    dlist_unlink,
)
from kvtier.policies.base import EvictionPolicy, register_policy


@register_policy
class LRU(EvictionPolicy):
    """Least recently used, as a doubly linked list: every operation O(1)."""

    name = "lru"

    def __init__(self, num_slots: int) -> None:
        super().__init__(num_slots)
        self._prev = np.empty(num_slots + 1, dtype=np.int32)
        self._next = np.empty(num_slots + 1, dtype=np.int32)
        dlist_init(self._prev, self._next)
        self._count = 0

    def insert(self, slot: int) -> None:
        assert self._prev[slot] == -1, f"slot {slot} already tracked"
        dlist_push_newest(self._prev, self._next, slot)
        self._count += 1

    def access(self, slot: int) -> None:
        dlist_move_to_newest(self._prev, self._next, slot)

    def remove(self, slot: int) -> None:
        assert self._prev[slot] != -1, f"slot {slot} not tracked"
        dlist_unlink(self._prev, self._next, slot)
        self._count -= 1

    def victim(self) -> int:
        return int(dlist_oldest(self._prev, self._next))

    def __len__(self) -> int:
        return self._count

    def __contains__(self, slot: int) -> bool:
        return bool(self._prev[slot] != -1)

    def order(self) -> list[int]:
        """Tracked slots from next victim to most recently used."""
        return dlist_to_array(self._prev, self._next, self._count).tolist()

    def check_invariants(self) -> None:
        order = self.order()
        assert len(order) == self._count, f"list holds {len(order)} slots, count says {self._count}"
        assert len(set(order)) == len(order), "a slot appears twice in the LRU list"
        tracked = int(np.count_nonzero(self._prev[:-1] != -1))
        assert tracked == self._count, f"{tracked} slots marked tracked, count says {self._count}"

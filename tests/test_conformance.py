"""Every built-in eviction policy passes the conformance check users run on their own."""

from __future__ import annotations

import pytest

from kvtier.policies import POLICIES, LRU, EvictionPolicy
from kvtier.testing import check_policy_conformance, check_policy_sequence


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_builtin_policy_conforms(name):
    check_policy_conformance(name, max_examples=25)


class _BrokenPolicy(LRU):
    """Names a victim it does not track once it holds three slots: the check must notice."""

    name = "broken-for-test"

    def victim(self) -> int:
        if len(self) >= 3:
            untracked = [s for s in range(self.num_slots) if s not in self]
            if untracked:
                return untracked[0]
        return super().victim()


def test_conformance_check_catches_a_broken_policy():
    ops = [("insert", 0), ("insert", 1), ("insert", 2)]
    with pytest.raises(AssertionError, match="not a tracked slot"):
        check_policy_sequence(_BrokenPolicy, 5, ops)


def test_conformance_check_compares_against_a_reference():
    class MRU(LRU):
        name = "mru-for-test"

        def victim(self) -> int:
            order = self.order()
            return order[-1] if order else -1

    with pytest.raises(AssertionError, match="reference"):
        check_policy_sequence(MRU, 4, [("insert", 0), ("insert", 1)], reference=LRU)
    assert issubclass(MRU, EvictionPolicy)

"""A hypothesis state machine drives the store against a plain dict model.

The model holds, for every block the store may still have, the bytes it was given. After
every step ``check_invariants()`` runs and the store must agree with the model: a stored
block comes back bit-identical or is reported missing (it may have been dropped from the
last tier), a pinned block is always there, and no block appears that was never put.
"""

from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as st
import numpy as np
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kvtier import BlockNotFoundError, BlockPinnedError, dram, flash, hbm, sram
from kvtier.testing import FaultRates, FaultyFileIO
from tests.helpers import BLOCK_BYTES, make_store, payload, same_bytes

HASHES = st.integers(0, 15)
SEEDS = st.integers(0, 5)
FLASH_SLOT = 8192


class StoreMachine(RuleBasedStateMachine):
    placement = "exclusive"
    codec = "none"
    promote_on_hit = True
    with_sram = False
    fault_rates: FaultRates | None = None  # with faults, even a pinned block may be lost (and counted)

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="kvtier-sm-")
        tiers = [hbm(3 * BLOCK_BYTES), dram(3 * BLOCK_BYTES), flash(4 * FLASH_SLOT, self.dir, codec=self.codec)]
        if self.with_sram:
            tiers.insert(0, sram(2 * BLOCK_BYTES))
        io = FaultyFileIO(self.fault_rates, seed=0) if self.fault_rates else None
        self.store = make_store(tiers, placement=self.placement, promote_on_hit=self.promote_on_hit, flash_io=io)
        self.model: dict[int, np.ndarray] = {}
        self.pins: dict[int, int] = {}

    def _lost_pinned(self, h: int) -> bool:
        """A pinned block went missing: only allowed when a device fault was counted."""
        if self.fault_rates is None:
            return False
        f = self.store.stats().tiers["flash"]
        assert f.corrupt + f.read_errors > 0, f"pinned block {h} lost without a fault"
        self.pins[h] = 0
        return True

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _forget_if_gone(self, h: int) -> None:
        if h in self.model and not self.store.contains(h):
            assert self.pins.get(h, 0) == 0 or self._lost_pinned(h), f"pinned block {h} disappeared"
            del self.model[h]

    def _faults(self) -> int:
        f = self.store.stats().tiers["flash"]
        return f.corrupt + f.read_errors

    @rule(h=HASHES, seed=SEEDS, compressible=st.booleans())
    def put(self, h, seed, compressible):
        data = payload(seed * 100 + h, compressible=compressible)
        faults = self._faults()
        res = self.store.put(h, data)
        if h in self.model and not res.already_present:
            # Its stored copy failed its checks as the put moved it up (a device fault, counted),
            # so the put stored these bytes anew.
            assert self.fault_rates is not None and self._faults() > faults, f"block {h} lost without a fault"
            del self.model[h]
            self.pins[h] = 0
        if h in self.model:
            assert res.already_present
        elif res.stored:
            self.model[h] = data
        for k in list(self.model):
            self._forget_if_gone(k)

    @rule(h=HASHES, promote=st.sampled_from([None, True, False]))
    def fetch(self, h, promote):
        got = self.store.fetch(h, promote=promote)
        if got is None:
            assert self.pins.get(h, 0) == 0 or self._lost_pinned(h), f"pinned block {h} reported missing"
            self.model.pop(h, None)
        else:
            assert h in self.model, f"block {h} was never stored"
            assert same_bytes(got, self.model[h]), f"block {h} came back with other bytes"
        for k in list(self.model):
            self._forget_if_gone(k)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), promote=st.sampled_from([None, True, False]))
    def fetch_stored(self, data, promote):
        """Fetch a block the model believes stored (hits are what exercise promotion)."""
        self.fetch(data.draw(st.sampled_from(sorted(self.model))), promote)

    @rule(hashes=st.lists(HASHES, max_size=6))
    def lookup(self, hashes):
        res = self.store.lookup(hashes)
        for h, t in zip(hashes, res.tier_index.tolist()):
            if t >= 0:
                assert h in self.model
            else:
                self._forget_if_gone(h)

    @rule(h=HASHES)
    def pin(self, h):
        if self.store.contains(h):
            self.store.pin(h)
            self.pins[h] = self.pins.get(h, 0) + 1
        else:
            try:
                self.store.pin(h)
            except BlockNotFoundError:
                pass
            else:
                raise AssertionError("pin of a missing block succeeded")

    @precondition(lambda self: any(self.pins.values()))
    @rule(data=st.data())
    def unpin(self, data):
        h = data.draw(st.sampled_from(sorted(k for k, v in self.pins.items() if v)))
        if self.fault_rates is not None and not self.store.contains(h):
            self._lost_pinned(h)
            return
        self.store.unpin(h)
        self.pins[h] -= 1

    @rule(h=HASHES)
    def unpin_unpinned(self, h):
        if self.pins.get(h, 0) == 0:
            try:
                self.store.unpin(h)
            except BlockNotFoundError:
                return
            raise AssertionError("unpin of an unpinned block succeeded")

    @rule(h=HASHES)
    def free(self, h):
        if self.pins.get(h, 0):
            before = self.store.stats().as_dict()
            try:
                self.store.free(h)
            except BlockPinnedError:
                assert self.store.contains(h) and self.store.stats().as_dict() == before
                return
            raise AssertionError("free of a pinned block succeeded")
        existed = self.store.contains(h)
        assert self.store.free(h) == existed
        self.model.pop(h, None)
        assert not self.store.contains(h)

    @invariant()
    def consistent(self):
        self.store.check_invariants()
        for tier in self.store.tiers:
            assert len(tier) <= tier.num_slots
            for h in tier.hashes():
                assert h in self.model, f"tier {tier.name} holds block {h} that the model does not"
        for h, n in self.pins.items():
            if n and not (self.fault_rates and not self.store.contains(h)):
                assert self.store.contains(h) and self.store.pins(h) == n
        s = self.store.stats()
        for name, t in s.tiers.items():  # bytes in = bytes out + bytes resident, per tier
            assert t.bytes_in == t.bytes_out + len(self.store.tier(name)) * BLOCK_BYTES


class InclusiveLz4Machine(StoreMachine):
    placement = "inclusive"
    codec = "lz4"


class NoPromotionMachine(StoreMachine):
    promote_on_hit = False


class FourTierMachine(StoreMachine):
    """SRAM + HBM + DRAM + flash."""

    with_sram = True


class FaultyFlashMachine(StoreMachine):
    """Every fault kind injected into the flash tier, lz4 on."""

    codec = "lz4"
    fault_rates = FaultRates(write_enospc=0.05, write_eio=0.05, torn_write=0.1, read_eio=0.05, bitflip=0.1)


TestStoreExclusive = StoreMachine.TestCase
TestStoreInclusiveLz4 = InclusiveLz4Machine.TestCase
TestStoreNoPromotion = NoPromotionMachine.TestCase
TestStoreFourTiers = FourTierMachine.TestCase
TestStoreFaultyFlash = FaultyFlashMachine.TestCase
for case in (TestStoreExclusive, TestStoreInclusiveLz4, TestStoreNoPromotion, TestStoreFourTiers, TestStoreFaultyFlash):
    case.settings = settings(case.settings, stateful_step_count=50)
del case  # (else pytest collects the last machine twice, under this name)

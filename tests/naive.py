"""Slow, obvious reference models that kvtier's fast code is checked against."""

from __future__ import annotations

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix64(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def chained_block_hashes(tokens, block_tokens: int, root: int) -> list[int]:
    """Reference for ``kvtier.hashing.block_hashes``: plain Python integers."""
    out = []
    parent = root
    for b in range(len(tokens) // block_tokens):
        h = _mix64(parent ^ _GOLDEN)
        for t in tokens[b * block_tokens : (b + 1) * block_tokens]:
            h = _mix64(h ^ ((int(t) + _GOLDEN) & _MASK))
        h = _mix64(h ^ block_tokens)
        out.append(h)
        parent = h
    return out


# -- eviction policies: one slow, obvious twin per policy ----------------------------------
#
# Each twin is a whole one-tier cache over block keys (no slots): ``request(key, depth,
# next_use, cost)`` returns ``(hit, evicted_keys)``. Lists are kept oldest first and every
# operation is a plain list/dict scan, so the rules can be read straight off the code.
# ``run_kernel_policy`` drives a real ``kvtier.policies`` policy the same way (slots from a
# free list), so the two can be compared event for event.

NEVER = None


class _NaiveCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity

    def request(self, key, depth=0, next_use=NEVER, cost=1.0):
        if self._has(key):
            self._hit(key, depth, next_use, cost)
            return True, []
        evicted = []
        self._prepare(key)
        while self._size() >= self.capacity:
            evicted.append(self._evict())
        self._insert(key, depth, next_use, cost)
        return False, evicted

    def _prepare(self, key):
        pass


class NaiveLRU(_NaiveCache):
    def __init__(self, capacity):
        super().__init__(capacity)
        self.order = []

    def _has(self, key):
        return key in self.order

    def _size(self):
        return len(self.order)

    def _hit(self, key, depth, next_use, cost):
        self.order.remove(key)
        self.order.append(key)

    def _insert(self, key, depth, next_use, cost):
        self.order.append(key)

    def _evict(self):
        return self.order.pop(0)


class NaiveFIFO(NaiveLRU):
    def _hit(self, key, depth, next_use, cost):
        pass


class NaiveClock(NaiveLRU):
    def __init__(self, capacity):
        super().__init__(capacity)
        self.ref = {}

    def _hit(self, key, depth, next_use, cost):
        self.ref[key] = 1

    def _insert(self, key, depth, next_use, cost):
        self.order.append(key)
        self.ref[key] = 0

    def _evict(self):
        while self.ref[self.order[0]]:
            key = self.order.pop(0)
            self.ref[key] = 0
            self.order.append(key)
        key = self.order.pop(0)
        del self.ref[key]
        return key


class NaiveSieve(NaiveClock):
    def __init__(self, capacity):
        super().__init__(capacity)
        self.hand = None  # a key, or None: start from the oldest

    def _evict(self):
        i = 0 if self.hand is None else self.order.index(self.hand)
        while self.ref[self.order[i]]:
            self.ref[self.order[i]] = 0
            i = (i + 1) % len(self.order)
        key = self.order[i]
        self.hand = self.order[i + 1] if i + 1 < len(self.order) else None
        self.order.pop(i)
        del self.ref[key]
        return key


class NaiveLFU(_NaiveCache):
    """Fewest hits first; ties: least recently used."""

    def __init__(self, capacity):
        super().__init__(capacity)
        self.count = {}
        self.last = {}
        self.clock = 0

    def _has(self, key):
        return key in self.count

    def _size(self):
        return len(self.count)

    def _hit(self, key, depth, next_use, cost):
        self.clock += 1
        self.count[key] += 1
        self.last[key] = self.clock

    def _insert(self, key, depth, next_use, cost):
        self.clock += 1
        self.count[key] = 1
        self.last[key] = self.clock

    def _evict(self):
        key = min(self.count, key=lambda k: (self.count[k], self.last[k]))
        del self.count[key], self.last[key]
        return key


class NaiveCostAware(NaiveLFU):
    """GDSF: value L + count * cost; evict the smallest (ties: least recently used); L rises."""

    def __init__(self, capacity):
        super().__init__(capacity)
        self.value = {}
        self.aging = 0.0

    def _hit(self, key, depth, next_use, cost):
        super()._hit(key, depth, next_use, cost)
        self.value[key] = self.aging + self.count[key] * cost

    def _insert(self, key, depth, next_use, cost):
        super()._insert(key, depth, next_use, cost)
        self.value[key] = self.aging + cost

    def _evict(self):
        key = min(self.value, key=lambda k: (self.value[k], self.last[k]))
        self.aging = self.value.pop(key)
        del self.count[key], self.last[key]
        return key


class NaiveBelady(NaiveLFU):
    """Evict the block used again furthest in the future (never = furthest; ties: LRU)."""

    def __init__(self, capacity):
        super().__init__(capacity)
        self.next = {}

    def _hit(self, key, depth, next_use, cost):
        super()._hit(key, depth, next_use, cost)
        self.next[key] = next_use

    def _insert(self, key, depth, next_use, cost):
        super()._insert(key, depth, next_use, cost)
        self.next[key] = next_use

    def _evict(self):
        far = float("inf")
        key = min(self.next, key=lambda k: (-(far if self.next[k] is None else self.next[k]), self.last[k]))
        del self.next[key], self.count[key], self.last[key]
        return key


class NaivePrefixLRU(NaiveLRU):
    """LRU, but a block at depth d + 1 right after the block at depth d goes just before it."""

    def __init__(self, capacity):
        super().__init__(capacity)
        self.anchor = None
        self.last_depth = -2

    def _place(self, key, depth):
        if self.anchor is not None and self.anchor != key and depth == self.last_depth + 1:
            self.order.insert(self.order.index(self.anchor), key)
        else:
            self.order.append(key)
        self.anchor = key
        self.last_depth = depth

    def _hit(self, key, depth, next_use, cost):
        self.order.remove(key)
        if key == self.anchor:
            self.anchor = key  # stays the anchor; placed at the newest end below
        self._place(key, depth)

    def _insert(self, key, depth, next_use, cost):
        self._place(key, depth)

    def _evict(self):
        key = self.order.pop(0)
        if key == self.anchor:
            self.anchor = None
        return key


class NaiveS3FIFO(_NaiveCache):
    """libCacheSim's S3FIFO (small 10%, ghost 90%, threshold 2), written out plainly."""

    def __init__(self, capacity, small_ratio=0.1, ghost_ratio=0.9, threshold=2):
        super().__init__(capacity)
        self.small_cap = min(capacity, max(1, int(capacity * small_ratio)))
        self.main_cap = capacity - self.small_cap
        self.ghost_cap = int(capacity * ghost_ratio)
        self.threshold = threshold
        self.small, self.main, self.ghost = [], [], []
        self.freq = {}
        self.ghost_hit = False
        self.has_evicted = False

    def _has(self, key):
        return key in self.freq

    def _size(self):
        return len(self.small) + len(self.main)

    def _prepare(self, key):
        self.ghost_hit = key in self.ghost
        if self.ghost_hit:
            self.ghost.remove(key)

    def _hit(self, key, depth, next_use, cost):
        self.freq[key] += 1

    def _insert(self, key, depth, next_use, cost):
        if self.ghost_hit or (not self.has_evicted and len(self.small) >= self.small_cap):
            self.main.append(key)
        else:
            self.small.append(key)
        self.ghost_hit = False
        self.freq[key] = 0

    def _evict(self):
        self.has_evicted = True
        while True:
            if len(self.main) > self.main_cap or not self.small:
                while True:
                    key = self.main.pop(0)
                    if self.freq[key] >= 1:
                        self.main.append(key)
                        self.freq[key] = min(self.freq[key], 3) - 1
                    else:
                        del self.freq[key]
                        return key
            while self.small:
                key = self.small.pop(0)
                if self.freq[key] >= self.threshold:
                    self.main.append(key)
                    self.freq[key] = 0
                else:
                    del self.freq[key]
                    if self.ghost_cap > 0:
                        if len(self.ghost) >= self.ghost_cap:
                            self.ghost.pop(0)
                        self.ghost.append(key)
                    return key


class NaiveARC(_NaiveCache):
    """libCacheSim's ARC (float p), written out plainly."""

    def __init__(self, capacity):
        super().__init__(capacity)
        self.t1, self.t2, self.b1, self.b2 = [], [], [], []
        self.p = 0.0
        self.in_b1 = self.in_b2 = False

    def _has(self, key):
        return key in self.t1 or key in self.t2

    def _size(self):
        return len(self.t1) + len(self.t2)

    def _prepare(self, key):
        self.in_b1 = key in self.b1
        self.in_b2 = key in self.b2
        c = float(self.capacity)
        if self.in_b1:
            self.p = min(self.p + max(len(self.b2) / len(self.b1), 1.0), c)
            self.b1.remove(key)
        elif self.in_b2:
            self.p = max(self.p - max(len(self.b1) / len(self.b2), 1.0), 0.0)
            self.b2.remove(key)

    def _hit(self, key, depth, next_use, cost):
        (self.t1 if key in self.t1 else self.t2).remove(key)
        self.t2.append(key)

    def _insert(self, key, depth, next_use, cost):
        (self.t2 if (self.in_b1 or self.in_b2) else self.t1).append(key)
        self.in_b1 = self.in_b2 = False

    def _replace(self):
        t1 = len(self.t1)
        if (t1 > 0 and (t1 > self.p or (t1 == self.p and self.in_b2))) or not self.t2:
            key = self.t1.pop(0)
            self.b1.append(key)
        else:
            key = self.t2.pop(0)
            self.b2.append(key)
        return key

    def _evict(self):
        c = self.capacity
        if self.in_b1 or self.in_b2:
            return self._replace()
        if len(self.t1) + len(self.b1) + 1 > c:
            if self.b1:
                self.b1.pop(0)
                return self._replace()
            return self.t1.pop(0)
        if len(self.t1) + len(self.b1) + len(self.t2) + len(self.b2) >= 2 * c and self.b2:
            self.b2.pop(0)
        return self._replace()


NAIVE_POLICIES = {
    "lru": NaiveLRU, "fifo": NaiveFIFO, "lfu": NaiveLFU, "clock": NaiveClock, "sieve": NaiveSieve,
    "s3fifo": NaiveS3FIFO, "arc": NaiveARC, "prefix-lru": NaivePrefixLRU, "cost-aware": NaiveCostAware,
    "belady": NaiveBelady,
}


def next_uses(keys) -> list:
    """For each access, the index of the next access to the same key, or None."""
    out, last = [None] * len(keys), {}
    for i in range(len(keys) - 1, -1, -1):
        out[i] = last.get(keys[i])
        last[keys[i]] = i
    return out


def run_naive(name: str, capacity: int, keys, depths=None, costs=None):
    """(hits per access, evicted keys in order) of the naive twin of policy ``name``."""
    cache = NAIVE_POLICIES[name](capacity)
    nxt = next_uses(keys)
    hits, evicted = [], []
    for i, key in enumerate(keys):
        hit, ev = cache.request(key, depths[i] if depths else 0, nxt[i], costs[i] if costs else 1.0)
        hits.append(hit)
        evicted.extend(ev)
    return hits, evicted


def run_kernel_policy(policy, keys, depths=None, costs=None, pinned=()):
    """Drive a ``kvtier.policies`` policy as a one-tier cache of ``policy.num_slots`` slots,
    exactly as ``run_naive`` drives a twin. ``pinned``: keys pinned once inserted (they
    leave the eviction order, as the store's tiers do). Returns (hits, evicted keys)."""
    nxt = next_uses(keys)
    where, slot_key = {}, {}
    free = list(range(policy.num_slots - 1, -1, -1))
    hits, evicted = [], []
    for i, key in enumerate(keys):
        depth = depths[i] if depths else 0
        cost = costs[i] if costs else 1.0
        if key in where:
            hits.append(True)
            if key not in pinned:
                policy.access(where[key], depth=depth, next_use=nxt[i], cost=cost)
            continue
        hits.append(False)
        policy.prepare(key)
        while not free:
            slot = policy.victim()
            if slot < 0:
                break  # everything pinned
            assert slot_key[slot] not in pinned
            assert policy.evict() == slot
            evicted.append(slot_key[slot])
            del where[slot_key[slot]]
            free.append(slot)
        if not free:
            continue
        slot = free.pop()
        where[key] = slot
        slot_key[slot] = key
        policy.insert(slot, key=key, depth=depth, next_use=nxt[i], cost=cost)
        if key in pinned:
            policy.remove(slot)  # a pin takes the slot out of the eviction order
    return hits, evicted

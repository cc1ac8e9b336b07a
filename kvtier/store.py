"""``TieredStore``: the block-paged, tiered KV store an inference experiment embeds.

Blocks are keyed by their chained prefix hash (``kvtier.hashing``) and hold one block of
KV (``block_shape``, ``dtype``). Tiers are ordered fastest first. When a tier is full its
policy picks a victim, which is *demoted* to the next tier (making room there the same
way) or *dropped* from the last. A fetch that hits a lower tier *promotes* the block to
the first tier when ``promote_on_hit`` is set.

Placement: ``"exclusive"`` (default) keeps each block in exactly one tier. ``"inclusive"``
keeps the lower copy when a block is promoted, so evicting it again later costs no write;
inclusion is not strict (a lower copy may be evicted first; nothing is back-invalidated).

The rules of the data: a block is returned bit for bit, or reported missing (``None``)
so the caller recomputes it. A checksum mismatch is a miss, never wrong bytes. No tier
ever holds more blocks than its slots, including during a cascade. Every public method
holds one re-entrant lock, so a store may be shared by threads.

Batches: ``put_many`` and ``fetch_many`` do exactly what the same sequence of ``put`` and
``fetch`` calls would (same bytes, placements, policy order and statistics) under one
hold of the lock, with the bytes moved per tier at once: a memory tier copies the whole
batch between its slab and the caller's contiguous buffer with one copy (a compiled
gather or scatter when the slots are not one run), a flash tier reads runs of adjacent
slots with one ``preadv`` per run (at most ``READ_CHUNK_BYTES``), ``flash_queue_depth``
parts side by side, and writes a batch of new blocks with one sync.
``fetch_many_async``/``put_many_async`` run them on the store's I/O threads and return a
``concurrent.futures.Future``.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from kvtier.codec import decode_into
from kvtier.errors import BlockNotFoundError, BlockPinnedError, ConfigError, PayloadError
from kvtier.model import ModelSpec
from kvtier.stats import StoreStats
from kvtier.tiers import Tier, TierSpec, make_tier
from kvtier.buffers import aligned_empty
from kvtier.validation import check_int, check_uint64, is_int

PLACEMENTS = ("exclusive", "inclusive")


class PutResult(NamedTuple):
    """Where ``put`` left the block: ``tier`` is its name, or ``None`` when it was dropped
    (every slot pinned: nothing changed; or the backend write failed)."""

    tier: str | None
    already_present: bool = False

    @property
    def stored(self) -> bool:
        return self.tier is not None


class FetchManyResult(NamedTuple):
    """What ``fetch_many`` filled: ``out`` (one block per row) and ``found`` (bool per row:
    the row holds its block bit for bit; where False its contents are unspecified)."""

    out: np.ndarray
    found: np.ndarray

    @property
    def hits(self) -> int:
        return int(np.count_nonzero(self.found))


class LookupResult(NamedTuple):
    """Per block, the index of the fastest tier holding it (-1: missing).

    ``prefix_blocks`` counts the leading blocks that are stored somewhere: the part of a
    request's prefix that can be fetched rather than recomputed.
    """

    tier_index: np.ndarray  # int8, one per looked-up hash
    tier_names: tuple[str, ...]
    prefix_blocks: int

    def tier_of(self, i: int) -> str | None:
        t = int(self.tier_index[i])
        return None if t < 0 else self.tier_names[t]

    def counts(self) -> dict[str, int]:
        """Blocks found per tier name, plus ``"missing"``."""
        out = {name: int(np.count_nonzero(self.tier_index == i)) for i, name in enumerate(self.tier_names)}
        out["missing"] = int(np.count_nonzero(self.tier_index < 0))
        return out


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


def _as_hash(block_hash) -> int:
    if type(block_hash) is int and 0 <= block_hash < 2**64:  # the common case, checked cheaply
        return block_hash
    return check_uint64(block_hash, "block_hash")


class TieredStore:
    """A chain of tiers holding KV blocks with real bytes.

    ``tiers``: ``TierSpec`` values, fastest first (names must be unique).
    ``block_shape``/``dtype``: the array every block must match (``for_model`` derives
    them from a ``ModelSpec``). ``placement``: ``"exclusive"`` or ``"inclusive"``.
    ``promote_on_hit``: move a block hit in a lower tier up to the first tier.
    ``flash_io``: a ``kvtier.tiers.FileIO`` the flash tiers make their system calls
    through (default: the OS directly; ``kvtier.testing.FaultyFileIO`` injects faults).
    ``io_threads``: threads serving the ``*_async`` calls (started on first use). With one,
    the default, the calls run in the order they were submitted, so a fetch submitted after
    a put of the same blocks finds them. Each call holds the store's lock throughout, so more
    threads run nothing side by side; they only let calls finish out of order.
    ``flash_queue_depth``: flash reads a batched fetch keeps in flight at once (1: read
    on the calling thread).
    """

    def __init__(
        self,
        tiers,
        *,
        block_shape,
        dtype,
        placement: str = "exclusive",
        promote_on_hit: bool = True,
        flash_io=None,
        io_threads: int = 1,
        flash_queue_depth: int = 1,
    ) -> None:
        if isinstance(tiers, (str, bytes, TierSpec)) or not hasattr(tiers, "__iter__"):
            raise ConfigError(f"tiers: got {type(tiers).__name__}, expected a list of TierSpec")
        specs = list(tiers)
        if not specs:
            raise ConfigError("tiers: got an empty list, expected at least one TierSpec")
        for i, spec in enumerate(specs):
            if not isinstance(spec, TierSpec):
                raise ConfigError(f"tiers[{i}]: got {type(spec).__name__}, expected a TierSpec")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"tiers: got names {names}, expected unique names")
        if placement not in PLACEMENTS:
            raise ConfigError(f"placement: got {placement!r}, expected one of {list(PLACEMENTS)}")
        dims = tuple(block_shape) if hasattr(block_shape, "__iter__") else ()
        if not dims or not all(is_int(d) and d > 0 for d in dims):
            raise ConfigError(f"block_shape: got {block_shape!r}, expected a tuple of positive integers")
        self.block_shape = tuple(int(d) for d in dims)
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            raise ConfigError(f"dtype: got {dtype!r}, expected a numpy dtype") from None
        if self.dtype.hasobject or self.dtype.itemsize == 0:
            raise ConfigError(f"dtype: got {self.dtype}, expected a fixed-size numeric dtype")
        self.block_bytes = int(np.prod(self.block_shape)) * self.dtype.itemsize
        self.placement = placement
        self.promote_on_hit = bool(promote_on_hit)
        for field, value in (("io_threads", io_threads), ("flash_queue_depth", flash_queue_depth)):
            if check_int(value, field) < 1:
                raise ConfigError(f"{field}: got {value!r}, expected an integer >= 1")
        self.io_threads = int(io_threads)
        self.flash_queue_depth = int(flash_queue_depth)
        self._async_pool: ThreadPoolExecutor | None = None
        self._read_pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()  # not the store's lock: close() drains without it
        self._closing = False
        self._lock = threading.RLock()
        self._stats = StoreStats()
        built: list[Tier] = []
        try:
            for spec in specs:
                built.append(make_tier(spec, self.block_bytes, flash_io=flash_io))
        except BaseException:
            for tier in built:
                try:
                    tier.close()
                except Exception:  # noqa: BLE001 - the error that stopped the build is the one to report
                    pass
            raise
        self.tiers: tuple[Tier, ...] = tuple(built)
        self.tier_names = tuple(names)

    @classmethod
    def for_model(cls, model: ModelSpec, block_tokens: int, tiers, **kwargs) -> "TieredStore":
        """A store whose blocks are ``block_tokens`` tokens of ``model``'s KV."""
        return cls(tiers, block_shape=model.block_shape(block_tokens), dtype=model.kv_dtype, **kwargs)

    # -- helpers ----------------------------------------------------------------------

    def _raw_view(self, kv, field: str = "kv") -> np.ndarray:
        """A flat uint8 view of a block, after checking dtype, shape and layout (errors name
        ``field``: ``kv`` for a put, ``out`` for a fetch)."""
        if not isinstance(kv, np.ndarray):
            raise PayloadError(f"{field}: got {type(kv).__name__}, expected a numpy array of shape {self.block_shape}")
        if isinstance(kv, np.ma.MaskedArray):  # its mask cannot be stored, and its views are not plain bytes
            raise PayloadError(f"{field}: got a numpy.ma.MaskedArray of shape {kv.shape}, expected a plain numpy "
                               f"array (pass {field}.filled(value) or {field}.data)")
        if kv.dtype != self.dtype:
            raise PayloadError(f"{field}.dtype: got {kv.dtype}, expected {self.dtype}")
        if kv.shape != self.block_shape:
            raise PayloadError(f"{field}.shape: got {kv.shape}, expected {self.block_shape}")
        if not kv.flags.c_contiguous:
            kv = np.ascontiguousarray(kv)
        return kv.reshape(-1).view(np.uint8)

    def _tier_holding(self, block_hash: int) -> int:
        for i, tier in enumerate(self.tiers):
            if block_hash in tier.hash_to_slot:
                return i
        return -1

    def _held_below(self, i: int, block_hash: int) -> bool:
        return any(block_hash in tier for tier in self.tiers[i + 1 :])

    def _make_room(self, i: int) -> bool:
        """Free a slot in tier ``i`` by evicting (and demoting) victims. False if all pinned."""
        tier = self.tiers[i]
        while tier.free_slots == 0:
            victim = tier.victim()
            if victim is None:
                return False
            self._evict(i, victim)
        return True

    def _evict(self, i: int, block_hash: int) -> None:
        """Move a victim out of tier ``i``: to tier ``i + 1`` if there is one with room."""
        tier = self.tiers[i]
        tier.stats.evictions += 1
        if i + 1 == len(self.tiers):
            tier.stats.drops += 1
            tier.remove(block_hash, evicted=True)
            return
        if self.placement == "inclusive" and self._held_below(i, block_hash):
            tier.stats.demotions += 1  # a copy already sits below: nothing to write
            tier.remove(block_hash, evicted=True)
            return
        enc = tier.read(block_hash)
        if enc is None:
            return  # failed its checks: read() removed and counted it; the slot is free
        below = self.tiers[i + 1]
        if below.codec != enc.codec:
            raw = np.empty(enc.raw_len, dtype=np.uint8)
            decode_into(enc, raw, tier.timer)
            enc = below.encode(raw)
        # Ghost lists see the key only when the block will really be admitted below.
        if below.can_make_room():
            below.policy.prepare(block_hash)
            self._make_room(i + 1)
            demoted = below.admit(block_hash, enc)
        else:
            demoted = False  # every slot below is pinned
        if demoted:
            tier.stats.demotions += 1
        else:
            tier.stats.drops += 1
        tier.remove(block_hash, evicted=True)

    def _insert_top(self, block_hash: int, raw: np.ndarray, pins: int = 0, row: int = -1) -> int:
        """Store a block in the fastest tier that can make room; its index, -1 when every
        slot of every tier is pinned, or -2 when the backend failed the write (the block is
        counted in that tier's ``drops``, next to its ``write_errors``)."""
        for i, tier in enumerate(self.tiers):
            if not tier.can_make_room():
                continue  # every slot pinned: try the next tier
            tier.policy.prepare(block_hash)  # ghost lists (ARC, S3-FIFO) see the key first
            self._make_room(i)
            if tier.admit(block_hash, tier.encode(raw), pins, row):
                return i
            tier.stats.drops += 1  # reached this tier and is kept nowhere
            return -2
        return -1

    def _promote(self, k: int, block_hash: int, raw: np.ndarray) -> None:
        """Move (exclusive) or copy (inclusive) a block hit in tier ``k`` to tier 0."""
        source = self.tiers[k]
        if not self.tiers[0].can_make_room():
            source.touch(block_hash)
            return
        source.stats.promotions += 1
        if self.placement == "exclusive":
            pins = source.remove(block_hash)
        else:
            pins = 0
            source.touch(block_hash)
        self.tiers[0].policy.prepare(block_hash)
        if self._make_room(0) and self.tiers[0].admit(block_hash, self.tiers[0].encode(raw), pins):
            return
        if self.placement == "exclusive" and self._insert_top(block_hash, raw, pins) == -1:
            source.stats.drops += 1  # (-2: counted where the write failed)

    # -- public API -------------------------------------------------------------------

    @_locked
    def put(self, block_hash, kv: np.ndarray) -> PutResult:
        """Store ``kv`` under ``block_hash`` in the fastest tier that can make room.

        A block already stored is not rewritten: the put counts as an access (and, with
        ``promote_on_hit``, moves it up). Returns where the block went; ``tier=None`` when
        every slot of every tier is pinned (nothing was changed) or the write failed.
        Raises ``PayloadError`` for a wrong dtype/shape, ``ConfigError`` for a bad hash;
        nothing stored is touched by a rejected call.
        """
        return self._put_one(_as_hash(block_hash), self._raw_view(kv))

    def _put_one(self, h: int, raw: np.ndarray, row: int = -1) -> PutResult:
        """``put`` of a checked hash and flat block (``row``: its row in a batch)."""
        self._stats.puts += 1
        k = self._tier_holding(h)
        if k > 0 and self.promote_on_hit:
            # Promote the stored copy, not the caller's bytes: a put never rewrites a block.
            stored = np.empty(self.block_bytes, dtype=np.uint8)
            enc = self.tiers[k].read(h)
            if enc is not None:
                decode_into(enc, stored, self.tiers[k].timer)
                self._promote(k, h, stored)
            k = self._tier_holding(h)  # -1 if the stored copy failed its checks
        elif k >= 0:
            self.tiers[k].touch(h)
        if k >= 0:
            self._stats.put_hits += 1
            return PutResult(self.tier_names[k], already_present=True)
        i = self._insert_top(h, raw, row=row)
        if i < 0:
            self._stats.puts_dropped += 1
            return PutResult(None)
        return PutResult(self.tier_names[i])

    @_locked
    def fetch(self, block_hash, out: np.ndarray | None = None, *, promote: bool | None = None) -> np.ndarray | None:
        """The block's KV, bit for bit, or ``None`` when it is missing or failed its checks.

        ``out``: an array of the block's shape and dtype to fill (else a new one); its
        contents are unspecified when ``None`` is returned (a payload that failed its CRC
        may have been read into it).
        ``promote``: override ``promote_on_hit`` for this call. A hit updates the policy.
        """
        h = _as_hash(block_hash)
        if out is None:
            out = np.empty(self.block_shape, dtype=self.dtype)
        elif not isinstance(out, np.ndarray) or not out.flags.c_contiguous or not out.flags.writeable:
            raise PayloadError("out: expected a writeable C-contiguous numpy array (it is filled in place)")
        raw = self._raw_view(out, "out")
        promote = self.promote_on_hit if promote is None else promote
        return out if self._fetch_one(h, raw, promote) else None

    def _fetch_one(self, h: int, raw: np.ndarray, promote: bool, row: int = -1) -> bool:
        """``fetch`` of a checked hash into a flat buffer; whether it was found. ``row``:
        the block's row in a batch, whose copy a tier may defer (not when it promotes,
        which needs the bytes now) or have read ahead."""
        self._stats.fetches += 1
        for k, tier in enumerate(self.tiers):
            if h not in tier.hash_to_slot:
                tier.stats.misses += 1
                continue
            moves = k > 0 and promote
            enc = tier.read(h, out=raw, row=row, defer=not moves)
            if enc is None:
                continue  # corrupt or unreadable here: removed; a lower copy may exist
            decode_into(enc, raw, tier.timer)
            tier.stats.hits += 1
            self._stats.fetch_hits += 1
            if moves:
                self._promote(k, h, raw)
            else:
                tier.touch(h)
            return True
        self._stats.fetch_misses += 1
        return False

    def _fetch_all_top(self, hashes: list[int], rows: np.ndarray) -> bool:
        """The common batch, at once: every block stored raw in the first tier, verifying
        (a flash tier reads them as ``preread`` does, then checks every header at once).
        What the single fetches would do then is only this: each a hit there, touched in
        order. False, with nothing changed, for any other batch."""
        top = self.tiers[0]
        index = top.hash_to_slot
        try:
            slots = np.fromiter(map(index.__getitem__, hashes), dtype=np.int64, count=len(hashes))
        except KeyError:
            return False
        pool = self._reader_pool() if self.flash_queue_depth > 1 else None
        if not slots.size or not top.read_many(slots, rows, pool, self.flash_queue_depth):
            return False
        n = slots.size
        top.stats.hits += n
        self._stats.fetches += n
        self._stats.fetch_hits += n
        top.touch_many(slots)
        return True

    def _batch_view(self, blocks, field: str, n: int, *, writeable: bool) -> np.ndarray:
        """A ``(n, block_bytes)`` uint8 view of a batch of blocks after checking it (errors
        name ``field``). Each block must be C-contiguous; the batch need not be (a layer of
        a paged buffer, ``pages[:, layer]``, is a batch whose blocks sit a page apart). A
        batch to read from that is not in that form is copied; one to fill is rejected."""
        want = (n, *self.block_shape)
        if type(blocks) is not np.ndarray and (not isinstance(blocks, np.ndarray)
                                               or isinstance(blocks, np.ma.MaskedArray)):
            raise PayloadError(f"{field}: got {type(blocks).__name__}, expected a numpy array of shape {want}")
        if blocks.dtype != self.dtype:
            raise PayloadError(f"{field}.dtype: got {blocks.dtype}, expected {self.dtype}")
        if blocks.shape != want:
            raise PayloadError(f"{field}.shape: got {blocks.shape}, expected {want} (one block per hash)")
        if writeable and not blocks.flags.writeable:
            raise PayloadError(f"{field}: got a read-only array, expected a writeable one (it is filled in place)")
        if blocks.flags.c_contiguous:
            return blocks.view(np.uint8).reshape(n, self.block_bytes)
        if n and self._blocks_contiguous(blocks) and blocks.strides[0] > 0:
            u8 = blocks.view(np.uint8)
            return np.lib.stride_tricks.as_strided(u8, shape=(n, self.block_bytes), strides=(blocks.strides[0], 1),
                                                   writeable=writeable)
        if writeable:
            raise PayloadError(f"{field}: got strides {blocks.strides}, expected each block C-contiguous "
                               f"(a C-contiguous array, or one layer of a paged buffer)")
        return np.ascontiguousarray(blocks).view(np.uint8).reshape(n, self.block_bytes)

    def _blocks_contiguous(self, blocks: np.ndarray) -> bool:
        step = self.dtype.itemsize
        for size, stride in zip(reversed(self.block_shape), reversed(blocks.strides[1:])):
            if size > 1 and stride != step:
                return False
            step *= size
        return True

    def _check_hashes(self, block_hashes) -> list[int]:
        if isinstance(block_hashes, (str, bytes)) or not hasattr(block_hashes, "__iter__"):
            raise ConfigError(f"block_hashes: got {type(block_hashes).__name__}, expected a sequence of block hashes")
        if isinstance(block_hashes, np.ndarray) and block_hashes.dtype == np.uint64:
            return block_hashes.tolist()
        hashes = list(block_hashes)
        if set(map(type, hashes)) <= {int} and (not hashes or (min(hashes) >= 0 and max(hashes) < 2**64)):
            return hashes  # the common case, checked at C speed
        return [_as_hash(h) for h in hashes]

    def _run_batch(self, rows: np.ndarray, step, before=None) -> list:
        """``step(i)`` for every row in order (after ``before()``), with every tier batching
        over ``rows``."""
        for tier in self.tiers:
            tier.begin_batch(rows)
        try:
            if before is not None:
                before()
            return [step(i) for i in range(rows.shape[0])]
        finally:
            errors = []
            for tier in self.tiers:
                try:
                    tier.end_batch()
                except Exception as e:  # noqa: BLE001 - every tier finishes its batch
                    errors.append(e)
            if errors:
                raise errors[0]

    def _read_ahead(self, hashes: list[int], rows: np.ndarray) -> None:
        """Start every flash read the batch will likely make (a hint: a read made ahead is
        used at the block's turn only if it is still valid, so the outcome is unchanged)."""
        for tier in self.tiers:
            if type(tier).preread is Tier.preread:
                continue
            want = [(i, tier.hash_to_slot[h]) for i, h in enumerate(hashes) if h in tier.hash_to_slot]
            if want:
                pool = self._reader_pool() if self.flash_queue_depth > 1 else None
                tier.preread([i for i, _ in want], [s for _, s in want], pool, self.flash_queue_depth)

    def _reader_pool(self) -> ThreadPoolExecutor | None:
        """The flash read threads (``None`` once closing: reads then run on the caller)."""
        with self._pool_lock:
            if self._closing:
                return None
            if self._read_pool is None:
                self._read_pool = ThreadPoolExecutor(self.flash_queue_depth, thread_name_prefix="kvtier-read")
            return self._read_pool

    @_locked
    def put_many(self, block_hashes, kv_blocks: np.ndarray) -> list[PutResult]:
        """``put`` of ``kv_blocks[i]`` under ``block_hashes[i]`` for every ``i``, in order, as
        one call: the same results, placements and statistics as those single calls.

        ``kv_blocks``: an array of shape ``(len(block_hashes), *block_shape)``. Raises
        ``PayloadError``/``ConfigError`` (naming the field) before anything is stored."""
        hashes = self._check_hashes(block_hashes)
        rows = self._batch_view(kv_blocks, "kv_blocks", len(hashes), writeable=False)
        if len(hashes) == 1:
            return [self._put_one(hashes[0], rows[0])]  # (a batch's set-up costs more than it saves)
        if self._put_all_new(hashes, rows):
            return [PutResult(self.tier_names[0])] * len(hashes)
        return self._run_batch(rows, lambda i: self._put_one(hashes[i], rows[i], i))

    def _put_all_new(self, hashes: list[int], rows: np.ndarray) -> bool:
        """The common batch, at once: new blocks (distinct, stored nowhere) into free slots
        of the first tier. What the single puts would do then is only this: each admitted
        there, nothing evicted. False, with nothing changed, for any other batch."""
        top = self.tiers[0]
        n = len(hashes)
        if not n or top.free_slots < n:
            return False
        new = set(hashes)
        # (a dict's keys view tests against a set by walking the smaller of the two)
        if len(new) != n or any(not tier.hash_to_slot.keys().isdisjoint(new) for tier in self.tiers):
            return False
        if not top.admit_many(hashes, rows):
            return False
        self._stats.puts += n
        return True

    @_locked
    def fetch_many(self, block_hashes, out: np.ndarray | None = None, *,
                   promote: bool | None = None) -> FetchManyResult:
        """``fetch`` of every block of ``block_hashes`` into row ``i`` of ``out``, in order,
        as one call: the same bytes, policy updates and statistics as those single calls.

        ``out``: a writeable array of shape ``(len(block_hashes), *block_shape)`` whose
        blocks are each C-contiguous (a C-contiguous array, or one layer of a paged buffer
        laid out ``(pages, layers, ...)``: ``pages[:n, layer]``); default: a new page-aligned
        one. Returns ``out`` and which rows were found; a row not found holds unspecified
        bytes. Raises ``PayloadError``/``ConfigError`` (naming the field) before anything is
        read."""
        hashes = self._check_hashes(block_hashes)
        if out is None:
            out = aligned_empty((len(hashes), *self.block_shape), self.dtype)
        rows = self._batch_view(out, "out", len(hashes), writeable=True)
        promote = self.promote_on_hit if promote is None else bool(promote)
        if len(hashes) == 1:
            return FetchManyResult(out, np.array([self._fetch_one(hashes[0], rows[0], promote)]))
        if self._fetch_all_top(hashes, rows):
            return FetchManyResult(out, np.ones(len(hashes), dtype=bool))
        found = np.zeros(len(hashes), dtype=bool)

        def step(i: int) -> None:
            found[i] = self._fetch_one(hashes[i], rows[i], promote, i)

        self._run_batch(rows, step, lambda: self._read_ahead(hashes, rows))
        return FetchManyResult(out, found)

    def put_many_async(self, block_hashes, kv_blocks: np.ndarray) -> Future:
        """``put_many`` on an I/O thread. The future's result is ``put_many``'s (or its
        exception); once it completes, the puts are as durable as ``put_many``'s return
        makes them (the flash tier's ``fsync`` policy). The caller must not change
        ``kv_blocks`` until then. Checks the arguments now (raising as ``put_many``)."""
        hashes = self._check_hashes(block_hashes)
        self._batch_view(kv_blocks, "kv_blocks", len(hashes), writeable=False)
        return self._submit(self.put_many, hashes, kv_blocks)

    def fetch_many_async(self, block_hashes, out: np.ndarray | None = None, *,
                         promote: bool | None = None) -> Future:
        """``fetch_many`` on an I/O thread; the future's result is its ``FetchManyResult``.
        ``out`` belongs to the store until the future completes. Checks the arguments now."""
        hashes = self._check_hashes(block_hashes)
        if out is None:
            out = aligned_empty((len(hashes), *self.block_shape), self.dtype)
        self._batch_view(out, "out", len(hashes), writeable=True)
        return self._submit(functools.partial(self.fetch_many, promote=promote), hashes, out)

    def _submit(self, fn, *args) -> Future:
        with self._pool_lock:
            if self._closing:
                raise ConfigError("store: closed, expected an open store for an asynchronous call")
            if self._async_pool is None:
                self._async_pool = ThreadPoolExecutor(self.io_threads, thread_name_prefix="kvtier-io")
            return self._async_pool.submit(fn, *args)

    @_locked
    def lookup(self, block_hashes) -> LookupResult:
        """Where each block is (fastest tier first). Pure: no statistics, no policy update."""
        hashes = self._check_hashes(block_hashes)
        tier_index = np.fromiter((self._tier_holding(h) for h in hashes), dtype=np.int8, count=len(hashes))
        missing = np.flatnonzero(tier_index < 0)
        prefix = int(missing[0]) if missing.size else len(hashes)
        return LookupResult(tier_index, self.tier_names, prefix)

    @_locked
    def contains(self, block_hash) -> bool:
        return self._tier_holding(_as_hash(block_hash)) >= 0

    def __contains__(self, block_hash) -> bool:
        return self.contains(block_hash)

    @_locked
    def pin(self, block_hash) -> str:
        """Pin the block's fastest copy: it is never evicted until unpinned. Pins nest.
        Returns the tier name; ``BlockNotFoundError`` if the block is not stored."""
        h = _as_hash(block_hash)
        k = self._tier_holding(h)
        if k < 0:
            raise BlockNotFoundError(f"pin: block {h:#x} is not stored")
        self.tiers[k].pin(h)
        return self.tier_names[k]

    @_locked
    def unpin(self, block_hash) -> None:
        """Release one pin; ``BlockNotFoundError`` if the block is not stored and pinned."""
        h = _as_hash(block_hash)
        for tier in self.tiers:
            if h in tier and tier.pins(h) > 0:
                tier.unpin(h)
                return
        raise BlockNotFoundError(f"unpin: block {h:#x} is not pinned")

    @_locked
    def pins(self, block_hash) -> int:
        h = _as_hash(block_hash)
        return sum(tier.pins(h) for tier in self.tiers if h in tier)

    @_locked
    def free(self, block_hash) -> bool:
        """Remove a block from every tier. False if it was not stored;
        ``BlockPinnedError`` (nothing removed) if it is pinned. A flash copy's free is as
        durable as a put under the tier's ``fsync`` policy; when the device fails it,
        ``TierIOError`` is raised (counted in ``write_errors``) and that copy is still
        stored, or, if only the sync failed, gone but not yet durably freed."""
        h = _as_hash(block_hash)
        holders = [tier for tier in self.tiers if h in tier]
        if any(tier.pins(h) for tier in holders):
            raise BlockPinnedError(f"free: block {h:#x} has {self.pins(h)} pin(s); unpin it first")
        for tier in reversed(holders):  # a device that can fail first: on failure the faster copies stay
            tier.free(h)
            tier.stats.frees += 1
        return bool(holders)

    @_locked
    def stats(self) -> StoreStats:
        """A snapshot of the store's and every tier's counters."""
        snap = StoreStats(**{k: getattr(self._stats, k) for k in StoreStats.__dataclass_fields__ if k != "tiers"})
        snap.tiers = {tier.name: tier.snapshot_stats() for tier in self.tiers}
        return snap

    def tier(self, name: str) -> Tier:
        """The tier object called ``name`` (``ConfigError`` if there is none)."""
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise ConfigError(f"tier: got {name!r}, expected one of {list(self.tier_names)}")

    @_locked
    def check_invariants(self) -> None:
        """Assert capacity, index, policy, pin and statistics consistency in every tier."""
        for tier in self.tiers:
            tier.check_invariants()
        if self.placement == "exclusive":
            seen: set[int] = set()
            for tier in self.tiers:
                both = seen & set(tier.hash_to_slot)
                assert not both, f"exclusive placement, yet {len(both)} block(s) sit in two tiers"
                seen |= set(tier.hash_to_slot)
        s = self._stats
        assert s.fetch_hits + s.fetch_misses == s.fetches

    @_locked
    def flush(self) -> None:
        """Make every acknowledged flash put and free durable (per each tier's fsync policy).
        Every tier is flushed; then the first failure (``TierIOError``) is raised."""
        errors = []
        for tier in self.tiers:
            try:
                tier.flush()
            except Exception as e:  # noqa: BLE001 - the other tiers are still flushed
                errors.append(e)
        if errors:
            for other in errors[1:]:
                errors[0].add_note(f"also: {type(other).__name__}: {other}")
            raise errors[0]

    def close(self, *, cancel_pending: bool = False) -> None:
        """Finish the asynchronous calls (``cancel_pending``: cancel those not started yet;
        their futures report cancelled), then flush and release every tier, each whatever
        the others raised; then raise the first failure (``TierIOError``: a final sync
        failed), the rest attached as notes. Memory tiers' contents are gone afterwards; a
        flash file is unlocked and may be reopened. Closing twice does nothing. A store
        dropped without ``close()`` releases its flash files when it is collected."""
        with self._pool_lock:
            self._closing = True
            pools, self._async_pool, self._read_pool = (self._async_pool, self._read_pool), None, None
        for pool in pools:  # without the store's lock: the running calls need it to finish
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=cancel_pending)
        with self._lock:
            self._close_tiers()

    def _close_tiers(self) -> None:
        errors = []
        for tier in self.tiers:
            try:
                tier.close()
            except Exception as e:  # noqa: BLE001 - every tier is closed before anything is reported
                errors.append(e)
        if errors:
            for other in errors[1:]:
                errors[0].add_note(f"also: {type(other).__name__}: {other}")
            raise errors[0]

    def __enter__(self) -> "TieredStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @_locked
    def __len__(self) -> int:
        return len(set().union(*(tier.hash_to_slot for tier in self.tiers)))

    @_locked
    def __repr__(self) -> str:
        parts = ", ".join(f"{t.name}:{len(t)}/{t.num_slots}" for t in self.tiers)
        return f"TieredStore({parts}, block_bytes={self.block_bytes}, placement={self.placement})"

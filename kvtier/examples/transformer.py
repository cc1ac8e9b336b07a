"""A small decoder-only transformer in numpy whose attention reads paged KV.

The model is a Llama-shaped decoder (RMSNorm, grouped-query attention, rotary position
embeddings, SwiGLU MLP) with seeded random float32 weights: the point is not what it
says but that it computes like an inference engine, so the KV it writes can be stored,
evicted, fetched and recomputed through a ``kvtier.TieredStore``.

**Paged KV.** A sequence's KV lives in a ``PagedKV``: pages of ``block_tokens`` tokens,
each page an array in exactly the store's block layout
``(layers, 2, block_tokens, kv_heads, head_dim)`` (``ModelSpec.block_shape``). A page can
be filled by ``TieredStore.fetch(h, out=kv.page(i))`` or by recomputing it, and handed to
``TieredStore.put(h, kv.page(i))`` once full. Attention reads a layer's K and V out of
the pages block by block into a per-call working copy (as a paged-attention kernel loads
blocks into on-chip memory); the pages are the only cache.

**Recompute = fetch, bit for bit.** ``forward`` computes any range of positions given
the KV of every position before it, and the KV (and logits) of a position do not depend
on how many other rows share the call. Two choices make that hold exactly, not just
within a tolerance:

* every projection and attention product is ``np.einsum(..., optimize=False)``, whose
  per-element summation order does not change with the number of rows (``X @ W`` goes
  to BLAS, which picks kernels, and so summation orders, by matrix size);
* the weighted sum of V adds keys one after another in key order (the head dimension is
  the inner loop), and keys after a row's position get weight exactly 0, so they leave
  its sums unchanged however far the batch reaches; the softmax denominator is summed
  the same way (a column of ones next to V), and the max is exact in any order.

numpy does not promise einsum's summation order; the tests check these properties on
every run (numpy 2.4, x86-64 here), so a numpy that changed it would fail them loudly.

A prefill of 300 tokens, a decode of one token, and a recompute of block 7 alone
therefore write identical KV bytes; ``tests/test_example_transformer.py`` checks it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kvtier.buffers import aligned_empty
from kvtier.errors import ConfigError
from kvtier.model import ModelSpec
from kvtier.validation import check_int, check_number

#: Rows per forward call; longer ranges are split (bitwise the same: rows are independent).
PREFILL_CHUNK_TOKENS = 256

def _einsum(spec: str, *ops: np.ndarray) -> np.ndarray:
    # optimize=False keeps numpy's own loops (no BLAS): a fixed summation order per element.
    return np.einsum(spec, *ops, optimize=False)


@dataclass(frozen=True, kw_only=True)
class TransformerConfig:
    """Shape and seed of the example model (defaults: 5.9M matmul parameters, 4 KiB of KV
    per token). ``num_q_heads`` must be a multiple of ``num_kv_heads`` (GQA) and
    ``head_dim`` even (RoPE rotates pairs). ``max_positions`` bounds the RoPE table."""

    vocab_size: int = 512
    num_layers: int = 4
    d_model: int = 384
    num_q_heads: int = 8
    num_kv_heads: int = 4
    head_dim: int = 32
    d_ff: int = 1024
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    max_positions: int = 8192
    seed: int = 0

    def __post_init__(self) -> None:
        for field in ("vocab_size", "num_layers", "d_model", "num_q_heads", "num_kv_heads", "head_dim", "d_ff",
                      "max_positions"):
            check_int(getattr(self, field), field, minimum=1)
        check_int(self.seed, "seed", minimum=0)
        if self.num_q_heads % self.num_kv_heads:
            raise ConfigError(
                f"num_q_heads: got {self.num_q_heads}, expected a multiple of num_kv_heads ({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise ConfigError(f"head_dim: got {self.head_dim}, expected an even number (RoPE rotates pairs)")
        for field in ("rope_theta", "norm_eps"):
            check_number(getattr(self, field), field, minimum=0, min_exclusive=True)

    @classmethod
    def tiny(cls, **changes) -> "TransformerConfig":
        """A model small enough for tests: 2 layers, 4 query / 2 KV heads of 8 dims."""
        base = dict(vocab_size=64, num_layers=2, d_model=32, num_q_heads=4, num_kv_heads=2, head_dim=8, d_ff=64)
        base.update(changes)
        return cls(**base)

    @property
    def group_size(self) -> int:
        """Query heads per KV head."""
        return self.num_q_heads // self.num_kv_heads

    @property
    def params_per_token(self) -> int:
        """Matmul parameters one token passes through in the layers (QKV, output, MLP):
        the ``N`` of ``2N`` FLOPs per token. The embedding is a lookup and the LM head runs
        for sampled positions only, so neither is counted."""
        d, hd = self.d_model, self.head_dim
        qkv = d * (self.num_q_heads + 2 * self.num_kv_heads) * hd
        out = self.num_q_heads * hd * d
        mlp = 3 * d * self.d_ff
        return self.num_layers * (qkv + out + mlp)

    def model_spec(self, name: str = "example") -> ModelSpec:
        """The ``ModelSpec`` of this model: float32 KV (``dtype_bytes=4``), its block
        shape equals ``PagedKV`` pages, its FLOPs are ``2 * params_per_token`` per token
        plus ``4 * layers * q_heads * head_dim`` per (new, context) token pair."""
        return ModelSpec(
            name=name, num_layers=self.num_layers, num_q_heads=self.num_q_heads, num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim, dtype_bytes=4, active_params=float(self.params_per_token),
            source="kvtier.examples.transformer (seeded random weights)",
        )


class PagedKV:
    """One sequence's KV cache: ``num_pages`` pages of ``block_tokens`` tokens.

    ``pages[i]`` is block ``i`` of the sequence in the store's layout
    ``(layers, 2, block_tokens, kv_heads, head_dim)`` (float32, C-contiguous), so
    ``store.fetch(h, out=kv.page(i))`` and ``store.put(h, kv.page(i))`` move it without
    reshaping. ``filled[i]`` counts the leading tokens of page ``i`` whose KV is valid.
    Unwritten slots are zero (attention gives them weight 0, so they must be finite).
    """

    def __init__(self, config: TransformerConfig, block_tokens: int, max_tokens: int) -> None:
        check_int(block_tokens, "block_tokens", minimum=1)
        check_int(max_tokens, "max_tokens", minimum=1)
        if max_tokens > config.max_positions:
            raise ConfigError(f"max_tokens: got {max_tokens}, expected <= max_positions ({config.max_positions})")
        self.config = config
        self.block_tokens = int(block_tokens)
        self.max_tokens = int(max_tokens)
        self.num_pages = -(-self.max_tokens // self.block_tokens)
        shape = (self.num_pages, config.num_layers, 2, self.block_tokens, config.num_kv_heads, config.head_dim)
        # Page-aligned, as an engine's KV pool is: block copies into a page then run at
        # full speed from any source that is cache-line aligned (see ``aligned_empty``).
        self.pages = aligned_empty(shape, np.float32)
        # Write every page now, as an engine allocates its KV pool up front: first-touch
        # page faults would otherwise land on the first fetch into each page.
        self.pages.fill(0.0)
        self.filled = np.zeros(self.num_pages, dtype=np.int64)

    @property
    def block_shape(self) -> tuple[int, ...]:
        return self.pages.shape[1:]

    def page(self, i: int) -> np.ndarray:
        """Page ``i`` (a writeable view): the array to fetch a block into or put from."""
        return self.pages[check_int(i, "page", minimum=0, maximum=self.num_pages - 1)]

    def mark_full(self, i: int) -> None:
        """Declare page ``i`` complete (after filling it from a store)."""
        self.page(i)
        self.filled[i] = self.block_tokens

    def is_full(self, i: int) -> bool:
        return bool(self.filled[i] == self.block_tokens)

    def valid_tokens(self) -> int:
        """Length of the valid prefix: positions ``0..n-1`` all hold KV."""
        partial = np.flatnonzero(self.filled < self.block_tokens)
        if partial.size == 0:
            return self.num_pages * self.block_tokens
        first = int(partial[0])
        return first * self.block_tokens + int(self.filled[first])

    def _check_ready(self, start: int) -> None:
        b = self.block_tokens
        page, offset = divmod(start, b)
        if np.any(self.filled[:page] < b) or (page < self.num_pages and self.filled[page] < offset):
            missing = int(np.flatnonzero(np.concatenate((self.filled[:page] < b, [True])))[0])
            raise ConfigError(
                f"start: got position {start}, expected the KV of every earlier position (page {missing} is incomplete)"
            )

    def _wrote(self, start: int, end: int) -> None:
        b = self.block_tokens
        for p in range(start // b, -(-end // b)):
            self.filled[p] = max(int(self.filled[p]), min(b, end - p * b))


class Transformer:
    """The example model: ``forward`` over any range of positions of a ``PagedKV``.

    Weights are drawn from ``np.random.default_rng(config.seed)``, so two instances with
    one config are the same model. Every method is deterministic bit for bit.
    """

    def __init__(self, config: TransformerConfig) -> None:
        if not isinstance(config, TransformerConfig):
            raise ConfigError(f"config: got {config!r}, expected a TransformerConfig")
        self.config = c = config
        rng = np.random.default_rng(c.seed)
        L, d, hd, F = c.num_layers, c.d_model, c.head_dim, c.d_ff
        qkv = (c.num_q_heads + 2 * c.num_kv_heads) * hd

        def weight(fan_in: int, *shape: int, scale: float = 1.0) -> np.ndarray:
            return (rng.standard_normal(shape) * (scale / math.sqrt(fan_in))).astype(np.float32)

        residual = 1.0 / math.sqrt(2 * L)  # keeps the residual stream's scale flat over depth
        self.embed = rng.standard_normal((c.vocab_size, d)).astype(np.float32)
        self.w_qkv = weight(d, L, d, qkv)
        self.w_out = weight(c.num_q_heads * hd, L, c.num_q_heads * hd, d, scale=residual)
        self.w_gate_up = weight(d, L, d, 2 * F)
        self.w_down = weight(F, L, F, d, scale=residual)
        self.attn_norm = (1.0 + 0.1 * rng.standard_normal((L, d))).astype(np.float32)
        self.mlp_norm = (1.0 + 0.1 * rng.standard_normal((L, d))).astype(np.float32)
        self.final_norm = np.ones(d, dtype=np.float32)
        self.lm_head = weight(d, d, c.vocab_size)
        # RoPE tables in float64, rounded once: the same float32 angle for a position everywhere.
        inv_freq = c.rope_theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        angles = np.arange(c.max_positions, dtype=np.float64)[:, None] * inv_freq[None, :]
        self._cos = np.cos(angles).astype(np.float32)
        self._sin = np.sin(angles).astype(np.float32)
        self._scale = np.float32(1.0 / math.sqrt(hd))

    @property
    def model_spec(self) -> ModelSpec:
        return self.config.model_spec()

    def new_cache(self, block_tokens: int, max_tokens: int) -> PagedKV:
        """An empty ``PagedKV`` for one sequence of at most ``max_tokens`` tokens."""
        return PagedKV(self.config, block_tokens, max_tokens)

    # -- building blocks ----------------------------------------------------------------

    def _rms_norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        ms = np.mean(np.square(x), axis=-1, keepdims=True)
        return x / np.sqrt(ms + np.float32(self.config.norm_eps)) * weight

    def _rope(self, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Rotate ``x[..., head_dim]`` (rows first) by each row's position (NeoX halves)."""
        half = x.shape[-1] // 2
        shape = (pos.size,) + (1,) * (x.ndim - 2) + (half,)
        cos, sin = self._cos[pos].reshape(shape), self._sin[pos].reshape(shape)
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate((x1 * cos - x2 * sin, x2 * cos + x1 * sin), axis=-1)

    def _attention(self, q: np.ndarray, kv: PagedKV, layer: int, pos: np.ndarray, end: int) -> np.ndarray:
        """Causal attention of query rows ``q`` (T, kv_heads, group, head_dim) at positions
        ``pos`` over the KV pages holding positions ``0..end-1``."""
        c, b = self.config, kv.block_tokens
        nk, hd = c.num_kv_heads, c.head_dim
        n_pages = -(-end // b)
        n = n_pages * b
        # Read this layer's K and V out of the pages, block by block, into the layouts the
        # two products below stream over: K as (kv_head, dim, key), V as (kv_head, key,
        # dim + 1) with a column of ones whose product with the weights is the softmax
        # denominator (summed in the same order as the values).
        pages = kv.pages[:n_pages, layer]
        keys = np.empty((nk, hd, n_pages, b), dtype=np.float32)
        keys[...] = pages[:, 0].transpose(2, 3, 0, 1)
        values = np.empty((nk, n_pages, b, hd + 1), dtype=np.float32)
        values[..., :hd] = pages[:, 1].transpose(2, 0, 1, 3)
        values[..., hd] = 1.0
        scores = _einsum("ikgd,kdn->ikgn", q, keys.reshape(nk, hd, n))
        future = np.arange(n)[None, :] > pos[:, None]
        scores = np.where(future[:, None, None, :], np.float32(-np.inf), scores)
        # Future keys get weight exactly 0: added in order after the row's own keys, they
        # change neither the weighted sum nor the denominator, so a row's output does not
        # depend on how far the batch reaches.
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        out = _einsum("ikgn,knd->ikgd", weights, values.reshape(nk, n, hd + 1))
        return out[..., :hd] / out[..., hd:]

    def _forward_chunk(self, tokens: np.ndarray, kv: PagedKV, start: int, logits_rows: np.ndarray,
                       before_layer=None) -> np.ndarray:
        c = self.config
        t = tokens.size
        end = start + t
        pos = np.arange(start, end)
        page, slot = pos // kv.block_tokens, pos % kv.block_tokens
        nq, nk, hd, F = c.num_q_heads, c.num_kv_heads, c.head_dim, c.d_ff
        h = self.embed[tokens]
        for layer in range(c.num_layers):
            if before_layer is not None:
                before_layer(layer)  # e.g. wait for this layer's KV to arrive (layer-wise fetch)
            x = self._rms_norm(h, self.attn_norm[layer])
            qkv = _einsum("td,de->te", x, self.w_qkv[layer])
            q = self._rope(qkv[:, : nq * hd].reshape(t, nk, c.group_size, hd), pos) * self._scale
            k = self._rope(qkv[:, nq * hd : (nq + nk) * hd].reshape(t, nk, hd), pos)
            v = qkv[:, (nq + nk) * hd :].reshape(t, nk, hd)
            kv.pages[page, layer, 0, slot] = k
            kv.pages[page, layer, 1, slot] = v
            attn = self._attention(q, kv, layer, pos, end).reshape(t, nq * hd)
            h = h + _einsum("td,de->te", attn, self.w_out[layer])
            x = self._rms_norm(h, self.mlp_norm[layer])
            gate_up = _einsum("td,de->te", x, self.w_gate_up[layer])
            gate, up = gate_up[:, :F], gate_up[:, F:]
            h = h + _einsum("td,de->te", gate / (np.float32(1.0) + np.exp(-gate)) * up, self.w_down[layer])
        kv._wrote(start, end)
        if logits_rows.size == 0:
            return np.zeros((0, c.vocab_size), dtype=np.float32)
        x = self._rms_norm(h[logits_rows], self.final_norm)
        return _einsum("td,de->te", x, self.lm_head)

    # -- public API -----------------------------------------------------------------------

    def forward(self, tokens, kv: PagedKV, start: int, *, logits: str = "last", before_layer=None) -> np.ndarray | None:
        """Run ``tokens`` at positions ``start .. start+len-1``: write their KV into ``kv``
        and return logits.

        Requires the KV of every position before ``start`` in ``kv`` (else
        ``ConfigError``); positions already valid are rewritten with identical bytes.
        ``logits``: ``"last"`` (a ``(vocab,)`` array for the last token), ``"all"``
        (``(len, vocab)``) or ``"none"`` (returns ``None``: a KV-only recompute).
        ``before_layer``: called with each layer's index before that layer computes (in
        every chunk): a layer-wise fetch waits there for the layer's KV of earlier
        positions, which may still be arriving while earlier layers compute.
        """
        if not isinstance(kv, PagedKV) or kv.config != self.config:
            raise ConfigError("kv: expected a PagedKV made for this model's config (Transformer.new_cache)")
        if logits not in ("last", "all", "none"):
            raise ConfigError(f"logits: got {logits!r}, expected 'last', 'all' or 'none'")
        toks = np.asarray(tokens)
        if toks.ndim != 1 or toks.size == 0 or toks.dtype.kind not in "iu":
            raise ConfigError(f"tokens: got an array of dtype {toks.dtype} and shape {toks.shape}, expected 1-D integers")
        if toks.min() < 0 or toks.max() >= self.config.vocab_size:
            raise ConfigError(f"tokens: got ids in [{toks.min()}, {toks.max()}], expected 0 <= id < {self.config.vocab_size}")
        check_int(start, "start", minimum=0)
        if start + toks.size > kv.max_tokens:
            raise ConfigError(f"tokens: positions {start}..{start + toks.size - 1} exceed the cache ({kv.max_tokens} tokens)")
        kv._check_ready(start)
        toks = toks.astype(np.int64)
        out = []
        for a in range(0, toks.size, PREFILL_CHUNK_TOKENS):
            chunk = toks[a : a + PREFILL_CHUNK_TOKENS]
            if logits == "all":
                rows = np.arange(chunk.size)
            elif logits == "last" and a + chunk.size == toks.size:
                rows = np.array([chunk.size - 1])
            else:
                rows = np.zeros(0, dtype=np.int64)
            out.append(self._forward_chunk(chunk, kv, start + a, rows, before_layer))
        if logits == "none":
            return None
        result = np.concatenate(out, axis=0)
        return result[-1] if logits == "last" else result

    def recompute_blocks(self, token_ids, kv: PagedKV, first_block: int, end_block: int) -> None:
        """Recompute the KV of blocks ``first_block .. end_block-1`` of a sequence whose
        tokens are ``token_ids`` (at least ``end_block`` blocks of them), given the KV of
        every block before ``first_block`` in ``kv``. Bitwise equal to the KV the same
        positions got when first computed, whatever the batch was then."""
        b = kv.block_tokens
        check_int(first_block, "first_block", minimum=0)
        check_int(end_block, "end_block", minimum=first_block + 1)
        toks = np.asarray(token_ids)
        if toks.ndim != 1 or toks.size < end_block * b:
            raise ConfigError(f"token_ids: got {toks.size} tokens, expected at least end_block * block_tokens = {end_block * b}")
        self.forward(toks[first_block * b : end_block * b], kv, first_block * b, logits="none")

    def decode_step(self, token: int, kv: PagedKV, position: int) -> np.ndarray:
        """One decode step: the KV of ``token`` at ``position`` and the next-token logits."""
        return self.forward(np.array([token]), kv, position, logits="last")

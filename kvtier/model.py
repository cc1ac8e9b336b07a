"""Model geometry: how many KV bytes a token costs and how many FLOPs a prefill needs.

Formulas (``hardware.md`` §3):

* KV bytes per token, GQA/MHA: ``2 * layers * kv_heads * head_dim * dtype_bytes``;
  MLA: ``layers * latent_dim * dtype_bytes`` (latent = kv_lora_rank + rope dim).
  Sliding-window layers hold at most ``window`` tokens, a fixed cost per sequence that
  does not grow with context and is not part of any prefix block.
* Prefill FLOPs for ``S`` new tokens on ``C`` cached tokens:
  ``S * 2 * N_active + a * (S * C + S**2 / 2)`` with ``a = 4 * layers * q_heads * head_dim``
  (QK^T and AV); presets take ``a`` from the sourced data (MLA uses qk 192 + v 128).
  Sliding-window layers add attention over at most ``window`` tokens per new token.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from kvtier._data import hardware_data
from kvtier.errors import ConfigError, UnknownNameError
from kvtier.validation import check_choice, check_int, check_number

_DTYPE_BY_BYTES = {1: np.dtype(np.uint8), 2: np.dtype(np.float16), 4: np.dtype(np.float32)}

# Fields hardware.json does not spell out as numbers: DeepSeek-V3's MLA latent is
# kv_lora_rank 512 + qk_rope_head_dim 64 (its "attention" entry and hardware.md §3).
_PRESET_OVERRIDES = {"deepseek-v3": {"mla_latent_dim": 576}}


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """KV geometry and compute size of one model.

    ``num_kv_heads``/``head_dim`` describe GQA/MHA attention; set ``mla_latent_dim``
    instead for MLA (then ``num_kv_heads`` is unused). ``dtype_bytes`` is the KV element
    size (2 for bf16/fp16, 1 for fp8). ``attn_flops_coef`` overrides the attention FLOPs
    per (new token x context token), default ``4 * layers * q_heads * head_dim``.
    """

    name: str
    num_layers: int
    num_q_heads: int
    head_dim: int
    num_kv_heads: int | None = None
    mla_latent_dim: int | None = None
    dtype_bytes: int = 2
    active_params: float
    total_params: float | None = None
    attn_flops_coef: float | None = None
    sliding_window_layers: int = 0
    sliding_window_tokens: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        for field in ("num_layers", "num_q_heads", "head_dim"):
            object.__setattr__(self, field, check_int(getattr(self, field), field))
        if self.mla_latent_dim is None:
            if self.num_kv_heads is None:
                raise ConfigError("num_kv_heads: got None, expected a positive integer (or set mla_latent_dim for MLA)")
            object.__setattr__(self, "num_kv_heads", check_int(self.num_kv_heads, "num_kv_heads"))
        else:
            object.__setattr__(self, "mla_latent_dim", check_int(self.mla_latent_dim, "mla_latent_dim"))
        dtype_bytes = check_choice(check_int(self.dtype_bytes, "dtype_bytes"), "dtype_bytes", _DTYPE_BY_BYTES)
        object.__setattr__(self, "dtype_bytes", dtype_bytes)
        object.__setattr__(self, "active_params",
                           check_number(self.active_params, "active_params", minimum=0, min_exclusive=True))
        for field in ("total_params", "attn_flops_coef"):
            value = check_number(getattr(self, field), field, minimum=0, min_exclusive=True, optional=True)
            object.__setattr__(self, field, value)
        object.__setattr__(self, "sliding_window_layers",
                           check_int(self.sliding_window_layers, "sliding_window_layers", minimum=0,
                                     maximum=self.num_layers - 1))
        sliding_tokens = check_int(self.sliding_window_tokens, "sliding_window_tokens", minimum=0)
        if self.sliding_window_layers and sliding_tokens == 0:
            raise ConfigError("sliding_window_tokens: got 0, expected a positive integer with sliding layers")
        object.__setattr__(self, "sliding_window_tokens", sliding_tokens)

    # -- geometry ---------------------------------------------------------------------

    @property
    def is_mla(self) -> bool:
        return self.mla_latent_dim is not None

    @property
    def full_attention_layers(self) -> int:
        """Layers whose KV grows with the context (and so lives in prefix blocks)."""
        return self.num_layers - self.sliding_window_layers

    @property
    def _kv_elems_per_token_per_layer(self) -> int:
        return self.mla_latent_dim if self.is_mla else 2 * self.num_kv_heads * self.head_dim

    @property
    def kv_bytes_per_token(self) -> int:
        """KV bytes one context token adds (full-attention layers only)."""
        return self.full_attention_layers * self._kv_elems_per_token_per_layer * self.dtype_bytes

    @property
    def sliding_window_bytes(self) -> int:
        """Fixed KV bytes per sequence held by sliding-window layers once the window is full."""
        return self.sliding_window_layers * self.sliding_window_tokens * self._kv_elems_per_token_per_layer * self.dtype_bytes

    def kv_bytes(self, num_tokens):
        """KV bytes of one sequence of ``num_tokens`` tokens (scalar or numpy array)."""
        tokens = np.asarray(num_tokens)
        if tokens.dtype.kind not in "iuf" or not np.all(np.isfinite(tokens)) or np.any(tokens < 0):
            raise ConfigError(f"num_tokens: got {num_tokens!r}, expected token counts >= 0")
        sliding = np.minimum(tokens, self.sliding_window_tokens) * (
            self.sliding_window_layers * self._kv_elems_per_token_per_layer * self.dtype_bytes
        )
        out = tokens * self.kv_bytes_per_token + sliding
        return out if out.ndim else int(out)

    def block_bytes(self, block_tokens: int) -> int:
        """Payload bytes of one prefix block of ``block_tokens`` tokens."""
        return check_int(block_tokens, "block_tokens") * self.kv_bytes_per_token

    def block_shape(self, block_tokens: int) -> tuple[int, ...]:
        """Array shape of one block's KV as the store holds it.

        GQA: ``(layers, 2, block_tokens, kv_heads, head_dim)`` (K and V); MLA:
        ``(layers, block_tokens, latent_dim)``. Sliding-window layers are not included.
        """
        block_tokens = check_int(block_tokens, "block_tokens")
        if self.is_mla:
            return (self.full_attention_layers, block_tokens, self.mla_latent_dim)
        return (self.full_attention_layers, 2, block_tokens, self.num_kv_heads, self.head_dim)

    @property
    def kv_dtype(self) -> np.dtype:
        """numpy dtype of KV elements: float16 for 2 bytes (bf16 payloads travel as 16-bit
        words), uint8 for fp8, float32 for 4 bytes."""
        return _DTYPE_BY_BYTES[self.dtype_bytes]

    # -- compute ----------------------------------------------------------------------

    @property
    def linear_flops_per_token(self) -> float:
        """Dense FLOPs per token outside attention: 2 x active parameters."""
        return 2.0 * self.active_params

    @property
    def attention_flops_coef(self) -> float:
        """FLOPs per (new token x context token) in attention (QK^T + AV over all layers)."""
        if self.attn_flops_coef is not None:
            return float(self.attn_flops_coef)
        return 4.0 * self.full_attention_layers * self.num_q_heads * self.head_dim

    def prefill_flops(self, new_tokens, cached_tokens=0):
        """FLOPs to prefill ``new_tokens`` on top of ``cached_tokens`` (scalars or arrays).

        ``S * 2N_active + a * (S*C + S**2/2)``, plus, for sliding-window layers, attention
        over at most ``window`` tokens each. Negative inputs raise ``ConfigError``.
        """
        try:
            s = np.asarray(new_tokens, dtype=np.float64)
            c = np.asarray(cached_tokens, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(
                f"prefill_flops: got new_tokens={new_tokens!r}, cached_tokens={cached_tokens!r}, expected numbers"
            ) from None
        if not (np.all(np.isfinite(s)) and np.all(np.isfinite(c))) or np.any(s < 0) or np.any(c < 0):
            raise ConfigError(f"prefill_flops: got new_tokens={new_tokens!r}, cached_tokens={cached_tokens!r}, expected >= 0")
        out = s * self.linear_flops_per_token + self.attention_flops_coef * (s * c + s * s / 2.0)
        if self.sliding_window_layers:
            # Each new token at position p attends to min(p, window) tokens in sliding layers.
            w = float(self.sliding_window_tokens)

            def attended(n):
                return np.where(n <= w, n * (n + 1) / 2.0, w * (w + 1) / 2.0 + (n - w) * w)

            coef = 4.0 * self.sliding_window_layers * self.num_q_heads * self.head_dim
            out = out + coef * (attended(c + s) - attended(c))
        return out if out.ndim else float(out)

    def with_dtype_bytes(self, dtype_bytes: int) -> "ModelSpec":
        """The same model with KV stored at another precision (1 = fp8 halves every KV figure)."""
        return dataclasses.replace(self, dtype_bytes=dtype_bytes)

    # -- presets ----------------------------------------------------------------------

    @classmethod
    def preset(cls, name: str) -> "ModelSpec":
        """A named preset (see ``model_names()``); ``UnknownNameError`` otherwise."""
        try:
            return _presets()[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"model: got {name!r}, expected one of {sorted(_presets())}") from None


#: A model small enough for tests and the README: 256 KV bytes per token (float32),
#: so a 16-token block is 4 KiB.
TINY = ModelSpec(
    name="tiny",
    num_layers=2,
    num_q_heads=4,
    num_kv_heads=2,
    head_dim=8,
    dtype_bytes=4,
    active_params=1.0e6,
    source="kvtier test model",
)


def _preset_from_json(name: str, entry: dict) -> ModelSpec:
    sliding = entry.get("sliding") or {}
    overrides = _PRESET_OVERRIDES.get(name, {})
    return ModelSpec(
        name=name,
        num_layers=entry["layers"],
        num_q_heads=entry["q_heads"],
        num_kv_heads=entry["kv_heads"] if "mla_latent_dim" not in overrides else None,
        # MLA presets give no head_dim: 128 (v head dim) documents it; FLOPs use attn_flops_coef.
        head_dim=entry["head_dim"] or 128,
        dtype_bytes=2,
        active_params=entry["active_params"],
        total_params=entry["total_params"],
        attn_flops_coef=entry["attn_flops_per_token_per_ctx_token"],
        sliding_window_layers=sliding.get("sliding_layers", 0),
        sliding_window_tokens=sliding.get("window", 0),
        source=entry.get("source", ""),
        **overrides,
    )


def _presets() -> dict[str, ModelSpec]:
    global _PRESETS
    if _PRESETS is None:
        models = {name: _preset_from_json(name, e) for name, e in hardware_data()["models"].items()}
        models["tiny"] = TINY
        _PRESETS = models
    return _PRESETS


_PRESETS: dict[str, ModelSpec] | None = None


def model_names() -> list[str]:
    """Names accepted by ``ModelSpec.preset``."""
    return sorted(_presets())

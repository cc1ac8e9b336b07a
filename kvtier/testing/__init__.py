"""kvtier's test kit, for kvtier's own tests and for users' policies and stores.

* Fault injection: ``FaultyFileIO`` and ``FaultRates``; ``PowerCutFileIO`` and
  ``abandon`` for durability (no extra dependency).
* Hypothesis strategies: ``model_specs``, ``tier_specs``, ``tier_chains``,
  ``block_payloads``, ``block_hash_values``, ``request_traces``.
* ``check_policy_conformance(policy, reference=None)``: the eviction-policy contract.

Strategies and the conformance check need hypothesis (``pip install 'kvtier[test]'``).
"""

from __future__ import annotations

from kvtier.tiers import flash_slot_bytes
from kvtier.testing.faults import FAULT_KINDS, FaultRates, FaultyFileIO, PowerCutFileIO, abandon

_LAZY = {
    "model_specs": "strategies", "tier_specs": "strategies", "tier_chains": "strategies",
    "block_payloads": "strategies", "block_hash_values": "strategies", "request_traces": "strategies",
"check_policy_conformance": "conformance",
    "check_policy_sequence": "conformance", "check_policy_in_store": "conformance",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kvtier.testing' has no attribute {name!r}")
    try:
        import importlib

        return getattr(importlib.import_module(f"kvtier.testing.{module}"), name)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"kvtier.testing.{name} needs hypothesis: pip install 'kvtier[test]' ({e})") from e


__all__ = ["flash_slot_bytes", "FAULT_KINDS", "FaultRates", "FaultyFileIO", "PowerCutFileIO", "abandon", *sorted(_LAZY)]

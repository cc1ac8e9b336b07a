"""Hardware targets: a model deployed on N chips, its KV tiers, links and compute.

* ``kvtier.targets.spec`` — the specs (``Estimate``, ``LinkSpec``, ``TargetTier``,
  ``HardwareTarget``) and their validation; ``HardwareTarget.preset(name)``.
* ``kvtier.targets.presets`` — the preset catalogue (``target_names()``), built from
  ``kvtier/data/hardware.json`` (published figures, with source keys) and
  ``kvtier/data/assumptions.json`` (kvtier's own assumptions, with ranges and reasons),
  read through ``kvtier.targets.figures``.
* ``kvtier.targets.deployment`` — ``Deployment``: replicas of ``tp x pp`` chips, and the
  precisions (``bf16``, ``fp8``) weights and KV are held in.
* ``kvtier.targets.loader`` — user targets from TOML or JSON files (``load_target``);
  ``kvtier targets --file PATH`` lists one.
"""

from kvtier.targets.deployment import PRECISION_BYTES, Deployment, precision_bytes, precision_name
from kvtier.targets.spec import DEFAULT_EFFICIENCY, Estimate, HardwareTarget, LinkSpec, TargetTier, target_names, weights_bytes
from kvtier.targets import presets as _presets  # noqa: F401  (fills the catalogue)
from kvtier.targets.loader import load_target, target_from_dict

__all__ = [
    "DEFAULT_EFFICIENCY", "Deployment", "Estimate", "PRECISION_BYTES", "precision_bytes", "precision_name", "HardwareTarget", "LinkSpec", "TargetTier", "load_target", "target_from_dict",
    "target_names", "weights_bytes",
]

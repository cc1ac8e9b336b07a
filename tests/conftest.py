"""Shared test settings: hypothesis profiles and small fixtures.

Profiles: ``ci`` (default; fast, fixed seed-independent database off), ``thorough``
(``make test-thorough`` or ``pytest --hypothesis-profile=thorough``), ``dev``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=20, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def tiny():
    from kvtier import ModelSpec

    return ModelSpec.preset("tiny")

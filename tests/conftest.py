"""Shared test configuration: hypothesis profiles and a seeded random generator.

Profiles (pick one with ``FGRAD_HYPOTHESIS_PROFILE``; ``ci`` is loaded by default):

* ``ci``: no deadline (timings on a shared 2-core machine are noise), a modest number of
  examples per property so the default run stays fast, and derandomized: the examples are
  derived from each test, so CI runs the same ones every time and a red CI is always a real,
  reproducible failure.
* ``thorough``: many more examples, drawn afresh on every run, for a local bug hunt.

``FGRAD_HYPOTHESIS_EXAMPLES=N`` overrides the number of examples of whichever profile is
loaded, e.g. ``FGRAD_HYPOTHESIS_EXAMPLES=200 pytest tests/test_ops.py``. A test that needs a
different budget should scale ``settings.default.max_examples`` (read at import time, after this
file has loaded the profile) rather than hard-code a number, so the variable reaches it too.
"""
from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

CI_EXAMPLES = 8
THOROUGH_EXAMPLES = 200

_override = os.environ.get("FGRAD_HYPOTHESIS_EXAMPLES")

settings.register_profile(
    "ci", deadline=None, print_blob=True, derandomize=True,
    max_examples=int(_override) if _override else CI_EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "thorough", deadline=None, print_blob=True,
    max_examples=int(_override) if _override else THOROUGH_EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("FGRAD_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's name: reproducible, and different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))

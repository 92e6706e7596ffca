"""Fixtures for the pure protocol tests; makes ``tests._support`` importable."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import settings

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# Modest example counts keep the pure suite fast (the whole suite must run in minutes).
settings.register_profile("protocol", max_examples=150, deadline=None)

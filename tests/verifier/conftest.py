"""Fixtures for the verifier tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from vector_helpers import VECTORS


@pytest.fixture
def basic() -> Path:
    return VECTORS / "valid" / "basic"

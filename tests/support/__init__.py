"""Helpers shared by the test folders and bench/: one copy of each.

- `support.runs`: the inputs of a tiny governed run (policy sections, dataset, producer
  key) and in-process training with the built-in model.
- `support.evidence`: the forger holding the producer's key: load a run's signed evidence,
  edit it, rewrite the logs and re-sign every statement.
- `support.fuzz`: "replace one field with junk" strategies for the parser fuzz tests.

Importable as ``support`` because tests/conftest.py (pytest) or the bench script puts
tests/ on sys.path.
"""

from __future__ import annotations

from types import ModuleType


def need(module: str) -> ModuleType:
    """Import ``module`` or fail the test: a test whose tool is missing fails, it does not
    skip (.ci/run installs every one of them)."""
    import importlib

    import pytest

    try:
        return importlib.import_module(module)
    except ImportError as e:
        pytest.fail(f"{module} is not installed ({e}); .ci/run installs it", pytrace=False)

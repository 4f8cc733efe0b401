"""Helpers shared by the test folders and bench/: one copy of each.

- `support.runs`: the inputs of a tiny governed run (policy sections, dataset, producer
  key) and in-process training with the built-in model.
- `support.evidence`: the forger holding the producer's key: load a run's signed evidence,
  edit it, rewrite the logs and re-sign every statement.
- `support.fuzz`: "replace one field with junk" strategies for the parser fuzz tests.

Importable as ``support`` because tests/conftest.py (pytest) or the bench script puts
tests/ on sys.path.
"""

"""Make the shared test helpers (tests/support/) importable, without shadowing the packages.

pytest's default "prepend" import mode has put tests/ on sys.path[0] to import this file,
so ``import support`` works in every test folder (and bench/ adds it itself). The same
entry makes tests/attest, tests/verifier and tests/trainer importable as namespace packages,
which shadow the real ones wherever those are found only by the editable install's finder
(it runs after the path finder): keep the repository root on sys.path too, and check.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

import attest  # noqa: E402
import trainer  # noqa: E402
import verifier  # noqa: E402

for _pkg in (attest, trainer, verifier):
    if Path(_pkg.__file__ or "").resolve() != ROOT / _pkg.__name__ / "__init__.py":
        raise ImportError(f"{_pkg.__name__}: expected {ROOT / _pkg.__name__}, got {_pkg.__file__}")

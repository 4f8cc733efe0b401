"""Helpers for the verifier tests: the spec test vectors and their flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "spec" / "vectors"
KEY = VECTORS / "keys" / "vector.pub"
UNTRUSTED_KEY = VECTORS / "keys" / "untrusted.pub"


def vector_dirs(kind: str) -> list[Path]:
    return sorted(p for p in (VECTORS / kind).iterdir() if p.is_dir())


def expected(vector: Path) -> dict[str, Any]:
    return json.loads((vector / "expected.json").read_text())  # type: ignore[no-any-return]


def verify_kwargs(vector: Path) -> dict[str, Any]:
    """api.verify keyword arguments for a vector, from its expected.json flags."""
    fl = expected(vector)["flags"]
    kw: dict[str, Any] = {"keys": [vector / k for k in fl["key"]], "threshold": fl["threshold"]}
    for name in ("base", "data", "openings"):
        if name in fl:
            kw[name] = vector / fl[name]
    return kw


def cli_args(vector: Path) -> list[str]:
    fl = expected(vector)["flags"]
    args = [str(vector / "run")]
    for k in fl["key"]:
        args += ["--key", str(vector / k)]
    args += ["--threshold", str(fl["threshold"])]
    for name in ("base", "data", "openings"):
        if name in fl:
            args += [f"--{name}", str(vector / fl[name])]
    return args

"""Canonical msgpack checking: the fast path against v0.1's per-value walk, same records.

The baseline is the reference walk that v0.1 ran on every record
(`attest.canonical._walk_msgpack`, kept as the fallback that names refusals): normalize
value by value, pack, compare bytes. govtune's figure is `require_canonical_msgpack`
as the log reader calls it now. Both see the very same decoded records.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgpack

from attest.canonical import _walk_msgpack, require_canonical_msgpack
from attest.errors import FormatError
from attest.limits import DEFAULT_LIMITS
from attest.log import iter_log

from .runner import Figure, interleave, timed

SECTION = "canonical msgpack"


def _load(path: Path) -> list[tuple[Any, bytes]]:
    return [(msgpack.unpackb(r.raw, raw=False), r.raw) for r in iter_log(path)]


def _walk_all(recs: list[tuple[Any, bytes]]) -> None:
    for value, raw in recs:
        if _walk_msgpack(value, DEFAULT_LIMITS) != raw:
            raise FormatError("bench: a record the reference walk refuses")


def _fast_all(recs: list[tuple[Any, bytes]]) -> None:
    for value, raw in recs:
        require_canonical_msgpack(value, raw)


def figures(logs: dict[str, Path], runs: int, command: str) -> list[Figure]:
    out = []
    for label, path in logs.items():
        recs = _load(path)
        # Repeat small logs so that one timed run lasts long enough to time (~0.1 s).
        reps = max(1, 4_000 // max(1, len(recs)))
        batch = recs * reps
        base, mine = interleave(
            timed(lambda b=batch: _walk_all(b), time.thread_time),
            timed(lambda b=batch: _fast_all(b), time.thread_time),
            runs,
        )
        n = len(batch)
        avg = sum(len(r) for _, r in recs) // max(1, len(recs))
        out.append(
            Figure(
                SECTION,
                f"{label}: check {n:,} records ({len(recs):,} distinct, {avg:,} B avg)",
                "CPU s",
                mine,
                base,
                baseline="v0.1 per-value walk (normalize, pack, compare), same records",
                target="<= 0.33 (>= 3x faster)",
                target_value=1 / 3,
                command=command,
                note="thread CPU time: the check is single-threaded Python",
                extra={"records/s (best run)": f"{n / min(mine):,.0f} vs {n / min(base):,.0f}"},
            )
        )
    return out

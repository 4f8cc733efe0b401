"""V9.1-V9.3 replay selection: which steps are replayed, from where, in which mode.

spec/verification.md §V9. Everything here is a pure function of the signed statements
(and the auditor's nonce), so anyone can recompute the selection; no torch. The
re-execution itself, which needs torch, is verifier/replay.py.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from attest.errors import UsageError

SEED_TAG = b"govtune.replay.v1"
DRAW_TAG = b"govtune.replay.draw.v1"
DEFAULT_TOP = 1  # top-Q intervals replayed besides the N random steps
NONCE_MAX = 64  # bytes: an auditor nonce is a value, not a payload


def parse_nonce(text: str | None) -> bytes:
    """The auditor nonce from its hex text ("" or None: no nonce). Raises UsageError."""
    if not text:
        return b""
    try:
        nonce = bytes.fromhex(text)
    except ValueError as e:
        raise UsageError(f"--replay-nonce: expected hex digits, found {text[:40]!r}") from e
    if len(nonce) > NONCE_MAX:
        raise UsageError(f"--replay-nonce: expected at most {NONCE_MAX} bytes, found {len(nonce)}")
    return nonce


def replay_seed(head_hex: str, steps: int, nonce: bytes = b"") -> bytes:
    """SHA-256("govtune.replay.v1" || head (32 bytes) || u64be(steps) || nonce)."""
    data = SEED_TAG + bytes.fromhex(head_hex) + steps.to_bytes(8, "big") + nonce
    return hashlib.sha256(data).digest()


def select_steps(seed: bytes, steps: int, n: int) -> list[int]:
    """min(n, steps) distinct steps of 1..steps, in draw order (rejection sampling, no bias)."""
    out: list[int] = []
    want, k = min(n, steps), 0
    limit = (1 << 64) - (1 << 64) % steps if steps else 0
    while len(out) < want:
        u = int.from_bytes(
            hashlib.sha256(DRAW_TAG + seed + k.to_bytes(8, "big")).digest()[:8], "big"
        )
        k += 1
        if u < limit and 1 + u % steps not in out:
            out.append(1 + u % steps)
    return out


@dataclass
class Stored:
    """A state whose values are on disk and bound to the chain by its state root."""

    step: int
    label: str  # "base", "checkpoints/step-000050.safetensors", "model.safetensors"
    tensors: dict[str, Any] | None = None  # model tensors (torch), loaded lazily
    path: Path | None = None
    optimizer: bool = False  # a checkpoint: also holds AdamW state and the generator


@dataclass
class Plan:
    """One replay pass: from ``start`` through step ``end``, vouching for ``targets``."""

    start: Stored
    end: int  # last step re-executed
    targets: list[int] = field(default_factory=list)


def top_intervals(distances: list[dict[str, Any]], q: int) -> list[dict[str, Any]]:
    """The ``q`` intervals ``{fromStep, toStep, distance}`` with the largest distance.

    Ties go to the smaller ``toStep`` (V9.1), so the choice is reproducible.
    """
    if q <= 0:
        return []
    return sorted(distances, key=lambda d: (-d["distance"], d["toStep"]))[:q]


def intervals_text(tops: list[dict[str, Any]]) -> str:
    return ", ".join(f"{q['fromStep']}->{q['toStep']}" for q in tops) or "none"


def replay_mode(env: dict[str, Any]) -> tuple[str, float, str]:
    """V9.3: (mode, tolerance, problem). Strict iff the run recorded strict, deterministic, CPU.

    Tolerant mode uses the tolerance the run recorded (trainer calibration, V9.3); a
    tolerance that is not a finite number >= 0 is a problem, and the replay then compares
    bitwise (fail closed).
    """
    if (
        env.get("mode") == "strict"
        and env.get("deterministic") is True
        and env.get("device", "cpu") == "cpu"
    ):
        return "strict", 0.0, ""
    tol = env.get("tolerance")
    if isinstance(tol, int | float) and not isinstance(tol, bool) and math.isfinite(tol) \
            and tol >= 0:  # fmt: skip
        return "tolerant", float(tol), ""
    problem = (
        "training-run environment.tolerance: expected a finite number >= 0 for tolerant "
        f"mode, found {tol!r:.40}; comparing bitwise instead"
    )
    return "tolerant", 0.0, problem


def safe_relative(name: str) -> bool:
    """A file name the run folder may hold: relative, no ``..``, no backslash (V9.2)."""
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name


def plan_passes(
    stored: list[Stored], targets: list[int], mode: str
) -> tuple[list[Plan], list[int]]:
    """V9.2: group targets by the latest stored state before them, one pass per group.

    Returns the passes in step order and the targets that have no stored state before them.
    """
    plans: dict[int, Plan] = {}
    for s in targets:
        before = [x for x in stored if x.step < s]
        if before:
            plans.setdefault(before[-1].step, Plan(before[-1], s)).targets.append(s)
    for p in plans.values():
        p.end = max(p.targets)
        if mode == "tolerant":  # values exist only at stored states: replay on to the next one
            p.end = min((x.step for x in stored if x.step >= p.end), default=p.end)
    missing = [s for s in targets if not any(s in p.targets for p in plans.values())]
    return [plans[k] for k in sorted(plans)], missing

"""V9.1-V9.3 replay selection: which steps are replayed, from where, in which mode.

spec/verification.md §V9. Everything here is a pure function of the signed statements
(and the auditor's nonce), so anyone can recompute the selection; no torch. The
re-execution itself, which needs torch, is verifier/replay.py.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from attest.errors import UsageError
from attest.tolerance import TOLERANCE_FACTOR, calibrated

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


@dataclass(frozen=True)
class Stored:
    """A state whose bytes are bound to the chain: the base, a checkpoint, the released weights.

    ``path``/``sha256`` name the file replay reads (and re-checks on every read); the base
    has none (its values come from the rebuilt model and are checked by their state root).
    """

    step: int
    label: str  # "base", "checkpoints/step-000050.safetensors", "model.safetensors"
    files: tuple[tuple[Path, str], ...] = ()  # (path, verified sha256 hex)
    optimizer: bool = False  # a checkpoint: also holds AdamW state and the generator


def top_intervals(distances: list[dict[str, Any]], q: int) -> list[dict[str, Any]]:
    """The ``q`` intervals ``{fromStep, toStep, distance}`` with the largest distance.

    Ties go to the smaller ``toStep`` (V9.1), so the choice is reproducible.
    """
    if q <= 0:
        return []
    return sorted(distances, key=lambda d: (-d["distance"], d["toStep"]))[:q]


def intervals_text(tops: list[dict[str, Any]]) -> str:
    return ", ".join(f"{q['fromStep']}->{q['toStep']}" for q in tops) or "none"


def run_seconds(started_on: str, finished_on: str) -> float | None:
    """The producer's recorded wall time (training statement ``startedOn``..``finishedOn``,
    RFC 3339), or None when either is empty, unparsable or the span is not positive."""
    from datetime import datetime

    try:
        span = datetime.fromisoformat(finished_on) - datetime.fromisoformat(started_on)
    except (TypeError, ValueError):
        return None
    seconds = span.total_seconds()
    return seconds if seconds > 0 else None


def _duration(s: float) -> str:
    s = max(1, round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def plan_text(
    intervals: Sequence[tuple[int, int]],
    states: Sequence[str],
    run_steps: int,
    seconds: float | None,
) -> str:
    """The line replay prints before it re-executes anything (issue 14): how many steps, in
    which intervals, from which stored states, and an estimate of the time.

    The estimate scales the producer's mean wall time per step (``seconds`` / ``run_steps``,
    from the signed but producer-stated startedOn/finishedOn) by the steps to re-execute.
    That mean includes admission, hashing and checkpoint writes, and this machine is not
    the producer's, so it is labelled an estimate; the bar's own ETA takes over once steps run.
    """
    n = sum(b - a for a, b in intervals)
    where = ", ".join(f"{a}->{b}" for a, b in intervals[:8]) + (
        f", … ({len(intervals)} in all)" if len(intervals) > 8 else ""
    )
    text = (
        f"replay: re-executing {n} of {run_steps} step(s) in {len(intervals)} interval(s) "
        f"({where}), loading {len(states)} stored state(s) ({', '.join(states[:4])}"
        + (", …" if len(states) > 4 else "")
        + ")"
    )
    if seconds is None or run_steps <= 0:
        return text + (
            "; no time estimate (the run records no startedOn..finishedOn span of a second or more)"
        )
    mean = seconds / run_steps
    return (
        text + f"; estimated {_duration(mean * n)} ({n} x {mean:.2g} s, the producer's mean "
        "step time from its recorded start and finish; an estimate: this machine's speed "
        "differs and the mean includes admission and hashing)"
    )


def parse_tolerance(value: float | str | None) -> float | None:
    """The auditor's ``--replay-tolerance`` (None: bitwise). Raises UsageError."""
    if value is None:
        return None
    try:
        tol = float(value)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--replay-tolerance: expected a number, found {value!r:.40}") from e
    if isinstance(value, bool) or not math.isfinite(tol) or tol < 0:
        raise UsageError(f"--replay-tolerance: expected a finite number >= 0, found {value!r:.40}")
    return tol


def replay_mode(tolerance: float | None) -> tuple[str, float | None]:
    """V9.3: ("bitwise", None) unless the auditor chose a tolerance: ("tolerant", X).

    Nothing the producer recorded (mode, deterministic, tolerance) enters this choice.
    """
    return ("bitwise", None) if tolerance is None else ("tolerant", float(tolerance))


def environment_problems(env: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """V9.3: where the recorded environment, config and calibration disagree.

    Each problem is a GT-REPLAY-ENVIRONMENT failure.

    The config's ``deterministic`` fixes the mode: strict (deterministic) records
    ``mode = "strict"``, ``deterministic = true``, ``tolerance`` 0 and no calibration;
    tolerant records its calibration and ``tolerance = calibrated(observed, config.tolerance)``
    (attest.tolerance).
    """
    out: list[str] = []
    det = config.get("deterministic")
    if not isinstance(det, bool):
        return [f"training-run config.deterministic: expected true or false, found {det!r:.40}"]
    want_mode = "strict" if det else "tolerant"
    if env.get("mode") != want_mode:
        out.append(f"training-run environment.mode: expected {want_mode!r} (config.deterministic "
                   f"= {str(det).lower()}), found {env.get('mode')!r:.40}")  # fmt: skip
    if env.get("deterministic") is not det:
        out.append(f"training-run environment.deterministic: expected {str(det).lower()} (the "
                   f"config's), found {env.get('deterministic')!r:.40}")  # fmt: skip
    device = config.get("device", "cpu")
    if env.get("device", "cpu") != device:
        out.append(f"training-run environment.device: expected {device!r} (the config's), "
                   f"found {env.get('device')!r:.40}")  # fmt: skip
    tol, cal = env.get("tolerance"), env.get("toleranceCalibration")
    if det:
        if tol != 0 or cal is not None:
            out.append(
                "training-run environment: a strict run records tolerance 0 and no "
                f"calibration, found tolerance {tol!r:.40} and calibration {cal!r:.60}"
            )
        return out
    observed = cal.get("observed") if isinstance(cal, Mapping) else None
    if not isinstance(cal, Mapping) or not isinstance(observed, int | float) \
            or not _finite(observed) or observed < 0 \
            or cal.get("factor") != TOLERANCE_FACTOR:  # fmt: skip
        out.append(f"training-run environment.toleranceCalibration: expected {{observed >= 0, "
                   f"factor {TOLERANCE_FACTOR:g}}} (V9.3), found {cal!r:.80}")  # fmt: skip
        return out
    minimum = config.get("tolerance", 0.0)
    want = calibrated(observed, minimum if _finite(minimum) else 0.0)
    if not _finite(tol) or tol != want:
        out.append(f"training-run environment.tolerance: expected {want!r} (calibrated from "
                   f"observed {observed!r}), found {tol!r:.40}")  # fmt: skip
    return out


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def intervals_for(
    stored: list[int], targets: list[int], steps: int
) -> tuple[list[tuple[int, int]], list[int]]:
    """V9.2: the whole interval (from the stored state before, to the next) of each target.

    ``stored`` are the steps of the usable stored states. Returns the intervals
    ``(from_step, to_step)`` in order, distinct, and the targets with no stored state
    before them (not replayable).
    """
    out: set[tuple[int, int]] = set()
    missing: list[int] = []
    st = sorted(set(stored))
    for s in targets:
        before = [x for x in st if x < s]
        if not before:
            missing.append(s)
            continue
        after = [x for x in st if x >= s]
        out.add((before[-1], after[0] if after else steps))
    return sorted(out), missing


def layout_intervals(stored: list[int], steps: int) -> list[tuple[int, int]]:
    """Every interval a random target can fall in: consecutive usable stored states, then
    the last one to the end of the run (no stored state after it)."""
    st = sorted({x for x in stored if x <= steps})
    out = list(zip(st, st[1:], strict=False))
    if st and st[-1] < steps:
        out.append((st[-1], steps))
    return out


def detection_probability(stored: list[int], steps: int, n: int) -> float:
    """V9.5: the least probability that a single forged step is in a replayed interval.

    ``n`` distinct steps are drawn uniformly from 1..steps; an interval of L steps is
    replayed iff a draw falls in it: 1 − C(steps − L, n) / C(steps, n). The producer picks
    where to forge, so the bound is the minimum over intervals; steps before the first
    usable stored state are never replayed (probability 0). Top-Q intervals are not
    counted: the producer knows which intervals are largest.
    """
    if steps <= 0:
        return 1.0
    ivs = layout_intervals(stored, steps)
    if not ivs or ivs[0][0] > 0:
        return 0.0
    worst = 1.0
    for a, b in ivs:
        miss = 1.0
        length = b - a
        for i in range(min(n, steps)):  # C(steps-L, n)/C(steps, n) as a product
            if steps - length - i <= 0:
                miss = 0.0
                break
            miss *= (steps - length - i) / (steps - i)
        worst = min(worst, 1.0 - miss)
    return worst


def safe_relative(name: str) -> bool:
    """A file name the run folder may hold: relative, no ``..``, no backslash (V9.2)."""
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name

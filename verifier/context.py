"""Shared state of one verification run, and the per-code tally of findings.

Layers run in order (spec/verification.md) and hand each other only what they
verified (verifier/verified.py): a layer gets the verified objects it needs as
arguments and returns its own, or None when any of its checks did not pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attest.limits import Limits
from attest.policy import Policy
from attest.predicates import TrainingPredicate

from .result import Result
from .verified import (
    VerifiedAdmissions,
    VerifiedBundle,
    VerifiedChain,
    VerifiedPolicy,
    VerifiedWeights,
)

MAX_MESSAGES = 10  # failure messages kept per check code; the rest are counted


@dataclass
class Context:
    """The run being verified: where, under which keys and limits, and the verified
    objects the layers returned so far (verifier/verified.py; None = not verified).

    Layers receive the verified objects they need as arguments; the api stores each
    returned object here once (only the api assigns these fields). The properties
    below are the v0.1 names the replay module reads, all derived from verified objects.
    """

    root: Path
    prov: Path
    keys: Sequence[Any]
    threshold: int
    limits: Limits
    result: Result
    bundle: VerifiedBundle | None = None
    vpolicy: VerifiedPolicy | None = None
    admissions: VerifiedAdmissions | None = None
    chain: VerifiedChain | None = None
    weights: VerifiedWeights | None = None
    # A layer's long loop reports (records done, records expected) here every few thousand
    # records; the api shows it beside the layer on its progress bar (attest.progress).
    records_progress: Callable[[int, int], None] = field(default=lambda done, total: None)

    @property
    def training_pred(self) -> TrainingPredicate | None:
        return self.bundle.training if self.bundle is not None else None

    @property
    def policy(self) -> Policy | None:
        return self.vpolicy.policy if self.vpolicy is not None else None

    @property
    def bad_files(self) -> frozenset[str]:
        # A sidecar that failed its digest leaves no VerifiedBundle at all.
        return frozenset()


class Tally:
    """Collect failures per code (capped) and emit one pass per code that never failed."""

    def __init__(self, result: Result, codes: Iterable[str]) -> None:
        self.result = result
        self.codes = list(codes)
        self.messages: dict[str, list[str]] = {c: [] for c in self.codes}
        self.count: Counter[str] = Counter()
        self.skipped: dict[str, str] = {}

    def fail(self, code: str, message: str) -> None:
        self.count[code] += 1
        if len(self.messages[code]) < MAX_MESSAGES:
            self.messages[code].append(message)

    def fail_all(self, code: str, messages: Sequence[str], total: int) -> None:
        """``total`` failures collected elsewhere (capped there), of which ``messages`` kept."""
        for m in messages:
            self.fail(code, m)
        self.count[code] += max(0, total - len(messages))

    def failed(self, code: str) -> bool:
        return self.count[code] > 0

    def skip(self, code: str, reason: str) -> None:
        self.skipped[code] = reason

    def flush(self, passes: dict[str, str] | None = None) -> None:
        passes = passes or {}
        for code in self.codes:
            if self.count[code]:
                for m in self.messages[code]:
                    self.result.fail(code, m)
                more = self.count[code] - len(self.messages[code])
                if more:
                    self.result.fail(code, f"... and {more} more failure(s) of this check")
            elif code in self.skipped:
                self.result.add(code, "skip", self.skipped[code])
            else:
                self.result.add(code, "pass", passes.get(code, ""))


def missing_inputs(result: Result, codes: Iterable[str], needed: Mapping[str, object]) -> bool:
    """Skip ``codes`` when a verified input is absent (its layer failed or did not run).

    ``needed`` maps a name for the message ("bundle", "policy", ...) to the verified
    object; returns True (after skipping) when any is None.
    """
    absent = [name for name, obj in needed.items() if obj is None]
    if absent:
        skip_all(result, codes, f"no verified {' or '.join(absent)}")
        return True
    return False


def skip_all(result: Result, codes: Iterable[str], reason: str) -> None:
    reported = {f.code for f in result.findings}
    for c in codes:
        if c not in reported:
            result.add(c, "skip", reason)


def all_passed(result: Result, codes: Iterable[str]) -> bool:
    """Whether every one of ``codes`` was reported and none failed or was skipped: the
    condition for a layer to publish its verified object (verification.md §2.1)."""
    want = set(codes)
    seen: set[str] = set()
    for f in result.findings:
        if f.code in want:
            if f.status != "pass":
                return False
            seen.add(f.code)
    return seen == want

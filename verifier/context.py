"""Shared state of one verification run, and the per-code tally of findings.

Layers run in order (spec/verification.md) and hand each other only what they
verified: a later layer reads the policy, the admission table or the chain's
recomputed roots from here, never from unverified files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attest.limits import Limits
from attest.policy import Policy
from attest.predicates import (
    ADMISSIONS_TYPE,
    MEMORIZATION_TYPE,
    POLICY_TYPE,
    TRAINING_TYPE,
    AdmissionsPredicate,
    MemorizationPredicate,
    PolicyPredicate,
    TrainingPredicate,
)
from attest.records import Event
from attest.statement import Statement

from .result import Result

if TYPE_CHECKING:
    from .loss_drop import LossDropCheck

MAX_MESSAGES = 10  # failure messages kept per check code; the rest are counted


@dataclass
class AdmissionTable:
    """What the chain needs from the admission log: O(examples), not O(steps)."""

    admitted: dict[int, str | None]  # index -> admitted profile (None = refused)
    canaries: set[int]
    examples: int  # dataset examples (canaries excluded)


@dataclass
class ChainFacts:
    """What the chain layer recomputed (for memorization and weights)."""

    complete: bool  # every record read and parsed
    steps: int
    final_root: bytes | None  # recomputed from base leaves + changes
    base_root: bytes | None
    events: list[dict[str, Any]]  # {**event.to_record(), "step": t} in log order
    halt_steps: list[int] = field(default_factory=list)
    last_step: int = 0
    step_events: dict[int, list[Event]] = field(default_factory=dict)  # only steps that have events
    # GT-MEM-SIGNAL: the loss-drop flags re-derived while streaming (None: no verified policy)
    loss_drop: LossDropCheck | None = None
    # GT-CHECKPOINT-DIGEST: (step, the record's checkpoint map, recomputed state root hex)
    checkpoints: list[tuple[int, dict[str, Any], str]] = field(default_factory=list)
    tensors: frozenset[str] = frozenset()  # the model's tensor names (start record)


@dataclass
class Context:
    root: Path
    prov: Path
    keys: Sequence[Any]
    threshold: int
    limits: Limits
    result: Result
    statements: dict[str, Statement] = field(default_factory=dict)
    policy_pred: PolicyPredicate | None = None
    admissions_pred: AdmissionsPredicate | None = None
    training_pred: TrainingPredicate | None = None
    memorization_pred: MemorizationPredicate | None = None
    bad_files: set[str] = field(default_factory=set)  # provenance files failing their digest
    policy: Policy | None = None
    admissions: AdmissionTable | None = None
    admissions_log_ok: bool = False
    chain: ChainFacts | None = None

    def pred(self, ptype: str) -> Any:
        return {
            POLICY_TYPE: self.policy_pred,
            ADMISSIONS_TYPE: self.admissions_pred,
            TRAINING_TYPE: self.training_pred,
            MEMORIZATION_TYPE: self.memorization_pred,
        }[ptype]


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


def inputs_unusable(
    ctx: Context, codes: Iterable[str], pred: object, statement: str, sidecar: str
) -> bool:
    """Skip ``codes`` (and say why) when a layer's statement or sidecar file is unusable.

    Callers add ``or pred is None`` so the type checker sees the narrowing too.
    """
    if pred is None:
        skip_all(ctx.result, codes, f"no usable {statement} statement")
        return True
    if sidecar in ctx.bad_files:
        skip_all(ctx.result, codes, f"{sidecar} does not match its signed digest")
        return True
    return False


def skip_all(result: Result, codes: Iterable[str], reason: str) -> None:
    reported = {f.code for f in result.findings}
    for c in codes:
        if c not in reported:
            result.add(c, "skip", reason)

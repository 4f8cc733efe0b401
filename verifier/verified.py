"""The verified facts the layers hand each other (spec/verification.md §2.1).

Each layer reads its inputs once, runs its checks and returns one of these frozen
objects only when every one of its checks passed; otherwise it returns None and no
later layer (replay and the report included) uses anything it read. This is
python-tuf's ``TrustedMetadataSet`` pattern: each ``update_*`` returns the verified
object, never a half-checked one. A later layer that re-reads a file it did not read
itself (a sidecar log, streamed again) re-checks it against the verified ``sha256``
held here before it trusts anything it read.

Names the replay module (verifier/replay.py) reads: ``VerifiedChain.start`` (the
verified start record), ``VerifiedAdmissions.admitted`` (admitted profile per index,
None = refused) and ``.canaries``, ``VerifiedChain.checkpoints`` (step -> verified
checkpoint), ``VerifiedBundle.steps_sha256`` and ``.admissions_sha256`` (to re-check a
log it streams again).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from attest.errors import FormatError
from attest.policy import Policy
from attest.predicates import (
    AdmissionsPredicate,
    MemorizationPredicate,
    PolicyPredicate,
    TrainingPredicate,
)
from attest.records import Event, StartRecord
from attest.statement import Statement

from .profile_table import ProfileTable


def _frozen(m: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(m))


@dataclass(frozen=True)
class VerifiedBundle:
    """V1: the four statements verified under the threshold, bound to one run, and the
    provenance files whose bytes matched their signed digests."""

    run_id: str
    keyids: tuple[str, ...]
    kind: str  # attest.layout.RUN or RELEASE
    statements: Mapping[str, Statement]  # predicate type -> its one verified statement
    policy_pred: PolicyPredicate
    admissions_pred: AdmissionsPredicate
    training: TrainingPredicate
    memorization: MemorizationPredicate
    policy_bytes: bytes  # provenance/policy.toml as read once and digest-checked
    admissions_sha256: str  # verified sha256 of provenance/admissions.msgpack
    steps_sha256: str  # verified sha256 of provenance/steps.msgpack

    def __post_init__(self) -> None:
        object.__setattr__(self, "statements", _frozen(self.statements))
        if len(self.run_id) != 32:
            raise FormatError(f"VerifiedBundle.runId: expected 32 hex digits, got {self.run_id!r}")


@dataclass(frozen=True)
class VerifiedPolicy:
    """V2: the policy document, valid, equal to the signed one (digest and embedded copy)."""

    policy: Policy
    digest: str


@dataclass(frozen=True)
class VerifiedAdmissions:
    """V3: the admission table, every decision re-evaluated; O(examples)."""

    # index -> admitted profile (None = refused) for 0..count-1: a ProfileTable (one byte
    # a record, verifier/profile_table.py); any other mapping is frozen as a copy.
    admitted: Mapping[int, str | None]
    canaries: frozenset[int]  # canary record indices
    canary_groups: tuple[tuple[int, ...], ...]  # canary k -> its record indices (policy §7)
    examples: int  # dataset examples (canary records excluded)
    head: str  # the verified log summary (hex)
    merkle_root: str
    count: int
    sha256: str  # the file digest these records were read under

    def __post_init__(self) -> None:
        if isinstance(self.admitted, ProfileTable):
            self.admitted.freeze()
        else:
            object.__setattr__(self, "admitted", _frozen(self.admitted))

    def iter_admitted(self) -> Iterator[int]:
        """Every admitted index (canaries included), ascending, lazily."""
        a = self.admitted
        if isinstance(a, ProfileTable):
            return a.iter_admitted()
        return (i for i, p in sorted(a.items()) if p is not None)

    def iter_pool(self) -> Iterator[int]:
        """Admitted non-canary indices, ascending (the held-out set's candidates), lazily:
        at a million records a tuple of them would cost ~36 MB."""
        a, canaries = self.admitted, self.canaries
        if isinstance(a, ProfileTable):
            return (i for i in a.iter_admitted() if i not in canaries)
        return (i for i, p in sorted(a.items()) if p is not None and i not in canaries)

    @property
    def admitted_count(self) -> int:
        a = self.admitted
        return a.admitted if isinstance(a, ProfileTable) else sum(p is not None for p in a.values())

    @property
    def pool_size(self) -> int:
        """len(pool) without building it."""
        return self.admitted_count - sum(self.admitted.get(i) is not None for i in self.canaries)

    @property
    def pool(self) -> tuple[int, ...]:
        """``iter_pool()`` as a tuple (O(records) memory; the verifier's layers stream it)."""
        return tuple(self.iter_pool())


@dataclass(frozen=True)
class VerifiedCheckpoint:
    step: int
    file: str
    sha256: str  # as signed in training checkpoints and recorded in the step record
    state_root: str  # hex; equals the chain's recomputed state root at ``step``


@dataclass(frozen=True)
class VerifiedChain:
    """V4: the step log read to the end with every chain check passed."""

    start: StartRecord
    steps: int
    last_step: int
    base_root: bytes
    final_root: bytes  # recomputed from the base leaves and every step's changes
    heldout: frozenset[int]  # re-derived and equal to the start record's
    checkpoints: Mapping[int, VerifiedCheckpoint]  # step -> checkpoint
    events: tuple[Mapping[str, Any], ...]  # {**event, "step": t}, in log order
    step_events: Mapping[int, tuple[Event, ...]]  # only steps with events
    halt_steps: tuple[int, ...]
    sha256: str  # steps.msgpack digest the records were read under
    head: str
    merkle_root: str
    count: int  # records, start record included
    derived: Any = None  # verifier.memory.Derived: flags re-derived while streaming
    complete: bool = field(default=True, init=False)  # kept for replay's v0.1 reading

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoints", _frozen(self.checkpoints))
        object.__setattr__(self, "step_events", _frozen(self.step_events))

    @property
    def tensors(self) -> frozenset[str]:
        return frozenset(self.start.tensors)


@dataclass(frozen=True)
class VerifiedWeights:
    """V6: the released weight files, digests and state root bound to the chain."""

    files: tuple[Mapping[str, Any], ...]  # {"name", "sha256", "bytes"}
    state_root: str
    tensors: Mapping[str, tuple[str, tuple[int, ...]]]  # name -> (dtype, shape), from headers

    def __post_init__(self) -> None:
        object.__setattr__(self, "tensors", _frozen(self.tensors))

    @property
    def parameters(self) -> int:
        """Parameter count from the verified headers' shapes."""
        return sum(_numel(sh) for _, sh in self.tensors.values())


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


numel = _numel

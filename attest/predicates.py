"""govtune's predicate types (spec/predicates/*.md), one frozen dataclass each.

All four share ``runId`` (32 lowercase hex digits; binds the statements of one run
together) and ``policyDigest``. Each ``from_dict`` copies its input, pops the fields it
knows and keeps the rest as ``unrecognized`` (spec/README.md "Unknown fields":
consumers ignore them, producers may add them); ``to_dict`` writes them back, so a
predicate round-trips. `parse_predicate` maps a Statement to its dataclass or raises
FormatError; an unknown predicate type returns None (the in-toto bundle rules say
consumers ignore what they do not understand; the verifier decides what is required).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .digest import check_hex32
from .errors import FormatError

# The file names are owned by attest.layout; re-exported here for existing importers.
from .layout import ADMISSIONS_FILE as ADMISSIONS_FILE
from .layout import BUNDLE_FILE as BUNDLE_FILE
from .layout import POLICY_FILE as POLICY_FILE
from .layout import STEPS_FILE as STEPS_FILE
from .log import LogSummary
from .statement import Statement, Subject

NAMESPACE = "https://govtune.dev/attestation"
FORMAT_VERSION = "v0.3"  # spec/README.md "Version and type URIs"
POLICY_TYPE = f"{NAMESPACE}/policy/{FORMAT_VERSION}"
ADMISSIONS_TYPE = f"{NAMESPACE}/admission-log/{FORMAT_VERSION}"
TRAINING_TYPE = f"{NAMESPACE}/training-run/{FORMAT_VERSION}"
MEMORIZATION_TYPE = f"{NAMESPACE}/memorization-report/{FORMAT_VERSION}"
REQUIRED_TYPES = (POLICY_TYPE, ADMISSIONS_TYPE, TRAINING_TYPE, MEMORIZATION_TYPE)

STATE_ROOT_SUBJECT = "govtune:state-root"
STATE_ROOT_ALG = "govtune-merkle-sha256"  # digest-set key for RFC 9162 roots over tensor leaves
COUNT_KEYS = ("total", "admitted", "refused", "canaries")
_RUN_ID = re.compile(r"[0-9a-f]{32}")


def _get(d: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    """Pop ``key`` from ``d`` (the caller's copy) and type-check it. Raises FormatError."""
    if key not in d:
        raise FormatError(f"{where}: missing {key}")
    v = d.pop(key)
    if isinstance(v, bool) and typ in (int, float):
        raise FormatError(f"{where}.{key}: expected {typ.__name__}, got a boolean")  # type: ignore[union-attr]
    if not isinstance(v, typ):
        name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise FormatError(f"{where}.{key}: expected {name}, got {type(v).__name__}")
    return v


def _copy(d: object, where: str) -> dict[str, Any]:
    """A copy to pop known keys from: never mutate the caller's dict (STYLE 5)."""
    if not isinstance(d, Mapping):
        raise FormatError(f"{where}: expected an object, got {type(d).__name__}")
    return dict(d)


def _run_id(v: object, where: str) -> str:
    # 128 random bits as hex (trainer); the one identifier binding the four statements.
    if not isinstance(v, str) or not _RUN_ID.fullmatch(v):
        raise FormatError(f"{where}: expected 32 lowercase hex digits, got {v!r:.40}")
    return v


def _count(v: object, where: str, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        kind = "a non-negative integer" if lo == 0 else f"an integer >= {lo}"
        raise FormatError(f"{where}: expected {kind}, got {v!r:.40}")
    return v


def _ints(v: object, where: str) -> tuple[int, ...]:
    if not isinstance(v, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v
    ):
        raise FormatError(f"{where}: expected a list of non-negative integers")
    return tuple(v)


@dataclass(frozen=True)
class PolicyPredicate:
    run_id: str
    policy_digest: str
    policy: Mapping[str, Any]  # `Policy.to_dict()`
    unrecognized: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _run_id(self.run_id, "policy.runId")

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.unrecognized,
            "runId": self.run_id,
            "policyDigest": self.policy_digest,
            "policy": dict(self.policy),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "policy") -> PolicyPredicate:
        d = _copy(d, where)
        return cls(
            _run_id(_get(d, "runId", str, where), f"{where}.runId"),
            check_hex32(_get(d, "policyDigest", str, where), f"{where}.policyDigest"),
            _get(d, "policy", dict, where),
            d,
        )


@dataclass(frozen=True)
class AdmissionsPredicate:
    run_id: str
    policy_digest: str
    log: LogSummary
    counts: Mapping[str, int]  # total, admitted, refused, canaries
    dataset: Mapping[str, Any]  # {"sha256": hex of the dataset file, "examples": n}
    unrecognized: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _run_id(self.run_id, "admissions.runId")
        for k in COUNT_KEYS:
            _count(self.counts.get(k), f"admissions.counts.{k}")

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.unrecognized,
            "runId": self.run_id,
            "policyDigest": self.policy_digest,
            "log": self.log.to_dict(),
            "counts": dict(self.counts),
            "dataset": dict(self.dataset),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "admissions") -> AdmissionsPredicate:
        d = _copy(d, where)
        counts = _get(d, "counts", dict, where)
        for k in COUNT_KEYS:
            if k not in counts:
                raise FormatError(f"{where}.counts: missing {k}")
            _count(counts[k], f"{where}.counts.{k}")
        return cls(
            _run_id(_get(d, "runId", str, where), f"{where}.runId"),
            check_hex32(_get(d, "policyDigest", str, where), f"{where}.policyDigest"),
            LogSummary.from_dict(_get(d, "log", dict, where), f"{where}.log"),
            counts,
            _get(d, "dataset", dict, where),
            d,
        )


@dataclass(frozen=True)
class Checkpoint:
    step: int  # >= 1: the step after which it was written
    file: str  # relative to the run folder
    sha256: str
    state_root: str
    unrecognized: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _count(self.step, "checkpoint.step", 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.unrecognized,
            "step": self.step,
            "file": self.file,
            "sha256": self.sha256,
            "stateRoot": self.state_root,
        }

    @classmethod
    def from_dict(cls, d: object, where: str = "checkpoint") -> Checkpoint:
        d = _copy(d, where)
        return cls(
            _count(_get(d, "step", int, where), f"{where}.step", 1),
            _get(d, "file", str, where),
            check_hex32(_get(d, "sha256", str, where), f"{where}.sha256"),
            check_hex32(_get(d, "stateRoot", str, where), f"{where}.stateRoot"),
            d,
        )


@dataclass(frozen=True)
class TrainingPredicate:
    """SLSA-provenance-like account of one run: inputs, configuration, environment, result."""

    run_id: str
    policy_digest: str
    base_model: Mapping[str, Any]  # {"name", "stateRoot"}
    dataset: Mapping[str, Any]  # {"sha256", "examples"}
    admission_head: str  # head of the admission log this run trained from
    config: Mapping[str, Any]  # the trainer config as run
    config_digest: str
    environment: Mapping[str, Any]  # python, torch, platform, determinism, mode, tolerance
    step_log: LogSummary
    steps: int
    base_state_root: str
    final_state_root: str
    weights: tuple[Mapping[str, str], ...]  # [{"name", "sha256"}]
    checkpoints: tuple[Checkpoint, ...] = ()
    # The released model's other files (config.json, tokenizer, adapter_config.json, ...):
    # [{"name", "sha256"}], top-level names; bound by digest like the weights (v0.2).
    model_files: tuple[Mapping[str, str], ...] = ()
    started_on: str = ""
    finished_on: str = ""
    builder: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    unrecognized: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _run_id(self.run_id, "training.runId")
        _count(self.steps, "training.steps")

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.unrecognized,
            "runId": self.run_id,
            "policyDigest": self.policy_digest,
            "baseModel": dict(self.base_model),
            "dataset": dict(self.dataset),
            "admissionHead": self.admission_head,
            "config": dict(self.config),
            "configDigest": self.config_digest,
            "environment": dict(self.environment),
            "stepLog": self.step_log.to_dict(),
            "steps": self.steps,
            "baseStateRoot": self.base_state_root,
            "finalStateRoot": self.final_state_root,
            "weights": [dict(w) for w in self.weights],
            "checkpoints": [c.to_dict() for c in self.checkpoints],
            **({"modelFiles": [dict(m) for m in self.model_files]} if self.model_files else {}),
            "startedOn": self.started_on,
            "finishedOn": self.finished_on,
            "builder": self.builder,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "training") -> TrainingPredicate:
        d = _copy(d, where)
        weights = _get(d, "weights", list, where)
        for i, w in enumerate(weights):
            if not isinstance(w, dict) or not isinstance(w.get("name"), str):
                raise FormatError(f"{where}.weights[{i}]: expected {{name, sha256}}")
            check_hex32(w.get("sha256"), f"{where}.weights[{i}].sha256")
        steps = _count(_get(d, "steps", int, where), f"{where}.steps")
        model_files = d.pop("modelFiles", [])
        if not isinstance(model_files, list):
            raise FormatError(
                f"{where}.modelFiles: expected a list, got {type(model_files).__name__}"
            )
        for i, m in enumerate(model_files):
            name = m.get("name") if isinstance(m, dict) else None
            if (
                not isinstance(name, str)
                or not name
                or "/" in name
                or "\\" in name
                or name in (".", "..")
                or set(m) != {"name", "sha256"}
            ):
                raise FormatError(f"{where}.modelFiles[{i}]: expected {{name, sha256}} with a "
                                  f"top-level file name")  # fmt: skip
            check_hex32(m.get("sha256"), f"{where}.modelFiles[{i}].sha256")
        names = [m["name"] for m in model_files] + [w["name"] for w in weights]
        if len(set(names)) != len(names):
            raise FormatError(f"{where}.modelFiles: a name repeats (or is also a weight file)")
        return cls(
            run_id=_run_id(_get(d, "runId", str, where), f"{where}.runId"),
            policy_digest=check_hex32(_get(d, "policyDigest", str, where), f"{where}.policyDigest"),
            base_model=_get(d, "baseModel", dict, where),
            dataset=_get(d, "dataset", dict, where),
            admission_head=check_hex32(
                _get(d, "admissionHead", str, where), f"{where}.admissionHead"
            ),
            config=_get(d, "config", dict, where),
            config_digest=check_hex32(_get(d, "configDigest", str, where), f"{where}.configDigest"),
            environment=_get(d, "environment", dict, where),
            step_log=LogSummary.from_dict(_get(d, "stepLog", dict, where), f"{where}.stepLog"),
            steps=steps,
            base_state_root=check_hex32(
                _get(d, "baseStateRoot", str, where), f"{where}.baseStateRoot"
            ),
            final_state_root=check_hex32(
                _get(d, "finalStateRoot", str, where), f"{where}.finalStateRoot"
            ),
            weights=tuple(weights),
            model_files=tuple(model_files),
            checkpoints=tuple(
                Checkpoint.from_dict(c, f"{where}.checkpoints[{i}]")
                for i, c in enumerate(_get(d, "checkpoints", list, where))
            ),
            started_on=_get(d, "startedOn", str, where),
            finished_on=_get(d, "finishedOn", str, where),
            builder=_get(d, "builder", str, where),
            extra=_get(d, "extra", dict, where),
            unrecognized=d,  # what the keyword arguments above did not pop
        )


@dataclass(frozen=True)
class MemorizationPredicate:
    run_id: str
    policy_digest: str
    step_log_head: str  # the step log whose events this report summarizes
    events: tuple[Mapping[str, Any], ...]  # every event of the step log, with its step
    quarantined: tuple[int, ...]  # admission indices
    halted: bool
    canaries: tuple[Mapping[str, Any], ...]  # [{"index", "exposure", "step"}] (no secrets)
    reference: Mapping[str, Any]  # {"count", "quantiles": {...}} of held-out losses
    unrecognized: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _run_id(self.run_id, "memorization.runId")

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.unrecognized,
            "runId": self.run_id,
            "policyDigest": self.policy_digest,
            "stepLogHead": self.step_log_head,
            "events": [dict(e) for e in self.events],
            "quarantined": list(self.quarantined),
            "halted": self.halted,
            "canaries": [dict(c) for c in self.canaries],
            "reference": dict(self.reference),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "memorization") -> MemorizationPredicate:
        d = _copy(d, where)
        events = _get(d, "events", list, where)
        if not all(isinstance(e, dict) for e in events):
            raise FormatError(f"{where}.events: expected a list of objects")
        canaries = _get(d, "canaries", list, where)
        if not all(isinstance(c, dict) for c in canaries):
            raise FormatError(f"{where}.canaries: expected a list of objects")
        return cls(
            _run_id(_get(d, "runId", str, where), f"{where}.runId"),
            check_hex32(_get(d, "policyDigest", str, where), f"{where}.policyDigest"),
            check_hex32(_get(d, "stepLogHead", str, where), f"{where}.stepLogHead"),
            tuple(events),
            _ints(_get(d, "quarantined", list, where), f"{where}.quarantined"),
            _get(d, "halted", bool, where),
            tuple(canaries),
            _get(d, "reference", dict, where),
            d,
        )


Predicate = PolicyPredicate | AdmissionsPredicate | TrainingPredicate | MemorizationPredicate
_CLASSES: dict[str, Any] = {
    POLICY_TYPE: PolicyPredicate,
    ADMISSIONS_TYPE: AdmissionsPredicate,
    TRAINING_TYPE: TrainingPredicate,
    MEMORIZATION_TYPE: MemorizationPredicate,
}


def parse_predicate(statement: Statement, where: str = "predicate") -> Predicate | None:
    """The typed predicate of a govtune statement; None for a predicate type not ours."""
    cls = _CLASSES.get(statement.predicate_type)
    if cls is None:
        return None
    return cls.from_dict(statement.predicate, where)  # type: ignore[no-any-return]


def build_statement(subjects: list[Subject], predicate: Predicate) -> Statement:
    ptype = next(t for t, c in _CLASSES.items() if isinstance(predicate, c))
    return Statement(tuple(subjects), ptype, predicate.to_dict())


def file_subject(name: str, sha256: str) -> Subject:
    return Subject(name, {"sha256": sha256})


def state_root_subject(root_hex: str) -> Subject:
    return Subject(STATE_ROOT_SUBJECT, {STATE_ROOT_ALG: root_hex})

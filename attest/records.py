"""The record model of the sidecar logs (spec/records.md).

`admissions.msgpack` holds one `AdmissionRecord` per dataset example (admitted or
refused). `steps.msgpack` opens with one `StartRecord` and continues with one
`StepRecord` per optimizer step. Each class validates itself; ``from_record``
copies its input, refuses unknown keys (records are signed commitments: a field
this version cannot interpret must not be skipped silently) and ``to_record``
round-trips. The ``prev`` chain field is set by `LogWriter` and checked by `iter_log`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .admission import Findings, Metadata, Outcome, pass_outcome_of
from .digest import check_hex32
from .errors import FormatError
from .modelspec import ModelSpec
from .tensors import DTYPE_SIZES

RECORD_VERSION = 1
EVENT_KINDS = ("memorization-flag", "quarantine", "halt", "canary-exposure", "checkpoint")


def _fields(
    d: object,
    where: str,
    kind: str,
    required: set[str],
    optional: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise FormatError(f"{where}: expected a map, got {type(d).__name__}")
    d = dict(d)
    d.pop("prev", None)
    if d.get("kind") != kind:
        raise FormatError(f"{where}.kind: expected {kind!r}, got {d.get('kind')!r:.40}")
    if d.get("v") != RECORD_VERSION:
        raise FormatError(f"{where}.v: expected {RECORD_VERSION}, got {d.get('v')!r:.20}")
    keys = set(d) - {"kind", "v"}
    missing, unknown = required - keys, keys - required - optional
    if missing:
        raise FormatError(f"{where}: missing {', '.join(sorted(missing))}")
    if unknown:
        raise FormatError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    return d


def _int(v: object, where: str, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise FormatError(f"{where}: expected an integer >= {lo}, got {v!r:.40}")
    return v


def _b32(v: object, where: str) -> bytes:
    if not isinstance(v, bytes) or len(v) != 32:
        raise FormatError(f"{where}: expected 32 bytes, got {v!r:.40}")
    return v


def _num(v: object, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise FormatError(f"{where}: expected a number, got {v!r:.40}")
    return float(v)


def _check_order(names: list[str], where: str) -> None:
    """Names of a wire list: sorted by UTF-8 bytes and distinct (spec/records.md §4, §5)."""
    for i in range(1, len(names)):
        a, b = names[i - 1], names[i]
        if a == b:
            raise FormatError(f"{where}[{i}]: duplicate tensor {b!r}")
        if b.encode() < a.encode():
            raise FormatError(
                f"{where}[{i}]: expected names sorted by UTF-8 bytes, got {b!r} after {a!r}"
            )


def _check_start(
    config_digest: object,
    policy_digest: object,
    leaves: Mapping[str, bytes],
    tensors: Mapping[str, tuple[str, tuple[int, ...]]],
    where: str,
) -> None:
    check_hex32(config_digest, f"{where}.configDigest")
    check_hex32(policy_digest, f"{where}.policyDigest")
    for name, (dtype, _) in tensors.items():
        if dtype not in DTYPE_SIZES:
            raise FormatError(
                f"{where}.tensors {name!r}: expected a safetensors dtype "
                f"({', '.join(DTYPE_SIZES)}), got {dtype!r:.40}"
            )
    if set(leaves) != set(tensors):
        only_t, only_l = sorted(set(tensors) - set(leaves)), sorted(set(leaves) - set(tensors))
        raise FormatError(
            f"{where}: expected tensors and baseLeaves to name the same tensors, found "
            f"only in tensors {only_t!r:.80}, only in baseLeaves {only_l!r:.80}"
        )


def _check_model(
    model: ModelSpec | None, trainable: tuple[str, ...], base_root: bytes, where: str
) -> None:
    """The model spec names the start record's trainable tensors and base state root."""
    if model is None:
        return
    if not isinstance(model, ModelSpec):
        raise FormatError(f"{where}.model: expected a model spec, got {type(model).__name__}")
    if model.trainable != tuple(sorted(trainable)):
        diff = sorted(set(model.trainable) ^ set(trainable))
        raise FormatError(
            f"{where}.model.trainable: expected the start record's trainable names, "
            f"found a difference in {diff[:3]!r:.120}"
        )
    if model.base is not None and model.base.state_root != base_root.hex():
        raise FormatError(
            f"{where}.model.base.stateRoot: expected baseStateRoot {base_root.hex()}, "
            f"got {model.base.state_root}"
        )


CHECKPOINT_KEYS = ("file", "sha256", "stateRoot")


def _check_checkpoint(cp: object, where: str) -> None:
    """nil, or exactly {"file": str, "sha256": hex digest, "stateRoot": hex digest}."""
    if cp is None:
        return
    if not isinstance(cp, Mapping) or set(cp) != set(CHECKPOINT_KEYS):
        got = sorted(cp) if isinstance(cp, Mapping) else type(cp).__name__
        raise FormatError(f"{where}: expected nil or a map of file, sha256, stateRoot, got {got}")
    if not isinstance(cp["file"], str) or not cp["file"]:
        raise FormatError(f"{where}.file: expected a non-empty string, got {cp['file']!r:.40}")
    check_hex32(cp["sha256"], f"{where}.sha256")
    check_hex32(cp["stateRoot"], f"{where}.stateRoot")


def _strlist(v: object, where: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise FormatError(f"{where}: expected a list of strings")
    return tuple(v)


@dataclass(frozen=True)
class AdmissionRecord:
    index: int  # 0-based position in the dataset (canaries follow the dataset)
    commitment: bytes  # salted commitment to the content as trained on
    metadata: Metadata
    findings: Findings
    outcomes: tuple[Outcome, ...]
    admitted: bool
    profile: str | None

    def to_record(self) -> dict[str, Any]:
        return {
            "v": RECORD_VERSION,
            "kind": "admission",
            "index": self.index,
            "commitment": self.commitment,
            "metadata": self.metadata.to_dict(),
            "findings": self.findings.to_dict(),
            "outcomes": [o.to_dict() for o in self.outcomes],
            "decision": "admit" if self.admitted else "refuse",
            "profile": self.profile,
        }

    @classmethod
    def from_record(cls, d: object, where: str = "admission") -> AdmissionRecord:
        d = _fields(
            d,
            where,
            "admission",
            {"index", "commitment", "metadata", "findings", "outcomes", "decision", "profile"},
        )
        if d["decision"] not in ("admit", "refuse"):
            raise FormatError(
                f"{where}.decision: expected 'admit' or 'refuse', got {d['decision']!r:.40}"
            )
        if d["profile"] is not None and not isinstance(d["profile"], str):
            raise FormatError(f"{where}.profile: expected a string or nil")
        if not isinstance(d["outcomes"], list):
            raise FormatError(f"{where}.outcomes: expected a list")
        return cls(
            _int(d["index"], f"{where}.index"),
            _b32(d["commitment"], f"{where}.commitment"),
            Metadata.from_dict(d["metadata"], f"{where}.metadata"),
            Findings.from_dict(d["findings"], f"{where}.findings"),
            tuple(
                pass_outcome_of(o) or Outcome.from_dict(o, f"{where}.outcomes[{i}]")
                for i, o in enumerate(d["outcomes"])
            ),
            d["decision"] == "admit",
            d["profile"],
        )


@dataclass(frozen=True)
class Event:
    """Something the trainer did or saw at a step (memorization, quarantine, halt...)."""

    kind: str
    example: int | None = None  # admission index, where the event concerns one example
    signal: str = ""  # loss-drop | reference-quantile | canary-exposure | ...
    value: float | None = None
    threshold: float | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise FormatError(
                f"event.kind: expected one of {', '.join(EVENT_KINDS)}, got {self.kind!r:.40}"
            )

    def to_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "example": self.example,
            "signal": self.signal,
            "value": self.value,
            "threshold": self.threshold,
            "detail": self.detail,
        }

    @classmethod
    def from_record(cls, d: object, where: str = "event") -> Event:
        keys = {"kind", "example", "signal", "value", "threshold", "detail"}
        if not isinstance(d, dict) or set(d) != keys:
            raise FormatError(f"{where}: expected keys {', '.join(sorted(keys))}")
        ex = None if d["example"] is None else _int(d["example"], f"{where}.example")
        val = None if d["value"] is None else _num(d["value"], f"{where}.value")
        thr = None if d["threshold"] is None else _num(d["threshold"], f"{where}.threshold")
        if not isinstance(d["signal"], str) or not isinstance(d["detail"], str):
            raise FormatError(f"{where}: expected string signal and detail")
        return cls(_str_kind(d["kind"], where), ex, d["signal"], val, thr, d["detail"])


def _str_kind(v: object, where: str) -> str:
    if not isinstance(v, str):
        raise FormatError(f"{where}.kind: expected a string")
    return v


@dataclass(frozen=True)
class StartRecord:
    """Record 0 of the step log: what the run starts from and how it is configured."""

    config_digest: str  # hex sha256 of the canonical JSON of the trainer config
    policy_digest: str  # hex, `Policy.digest()`
    base_leaves: Mapping[str, bytes]  # tensor name -> leaf hash of the base weights
    base_state_root: bytes
    tensors: Mapping[str, tuple[str, tuple[int, ...]]]  # name -> (dtype, shape)
    profiles: Mapping[str, tuple[str, ...]]  # profile -> resolved parameter names
    trainable: tuple[str, ...]  # parameter names the optimizer holds
    heldout: tuple[int, ...] = ()  # admission indices held out as the reference set
    extra: Mapping[str, Any] = field(default_factory=dict)  # replay facts (data order seed, etc.)
    model: ModelSpec | None = None  # what was trained (records.md §4.1); None: a v0.1 log

    def __post_init__(self) -> None:
        _check_start(
            self.config_digest, self.policy_digest, self.base_leaves, self.tensors, "start"
        )
        _check_model(self.model, self.trainable, self.base_state_root, "start")

    def to_record(self) -> dict[str, Any]:
        return {
            "v": RECORD_VERSION,
            "kind": "start",
            "configDigest": self.config_digest,
            "policyDigest": self.policy_digest,
            "baseLeaves": [[n, self.base_leaves[n]] for n in sorted(self.base_leaves)],
            "baseStateRoot": self.base_state_root,
            "tensors": [[n, dt, list(sh)] for n, (dt, sh) in sorted(self.tensors.items())],
            "profiles": {p: list(ns) for p, ns in sorted(self.profiles.items())},
            "trainable": list(self.trainable),
            "heldout": list(self.heldout),
            "extra": dict(self.extra),
            **({"model": self.model.to_dict()} if self.model is not None else {}),
        }

    @classmethod
    def from_record(cls, d: object, where: str = "start") -> StartRecord:
        d = _fields(
            d,
            where,
            "start",
            {
                "configDigest",
                "policyDigest",
                "baseLeaves",
                "baseStateRoot",
                "tensors",
                "profiles",
                "trainable",
                "heldout",
                "extra",
            },
            frozenset({"model"}),
        )
        leaves: dict[str, bytes] = {}
        if not isinstance(d["baseLeaves"], list):
            raise FormatError(f"{where}.baseLeaves: expected a list")
        for i, item in enumerate(d["baseLeaves"]):
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
                raise FormatError(f"{where}.baseLeaves[{i}]: expected [name, leaf]")
            leaves[item[0]] = _b32(item[1], f"{where}.baseLeaves[{i}]")
        _check_order([item[0] for item in d["baseLeaves"]], f"{where}.baseLeaves")
        tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
        if not isinstance(d["tensors"], list):
            raise FormatError(f"{where}.tensors: expected a list")
        for i, item in enumerate(d["tensors"]):
            if (
                not isinstance(item, list)
                or len(item) != 3
                or not isinstance(item[0], str)
                or not isinstance(item[1], str)
                or not isinstance(item[2], list)
            ):
                raise FormatError(f"{where}.tensors[{i}]: expected [name, dtype, shape]")
            if item[1] not in DTYPE_SIZES:
                raise FormatError(
                    f"{where}.tensors[{i}].dtype: expected a safetensors dtype "
                    f"({', '.join(DTYPE_SIZES)}), got {item[1]!r:.40}"
                )
            tensors[item[0]] = (
                item[1],
                tuple(_int(x, f"{where}.tensors[{i}].shape") for x in item[2]),
            )
        # A repeated name would silently collapse in the map above: refuse it.
        _check_order([item[0] for item in d["tensors"]], f"{where}.tensors")
        if not isinstance(d["profiles"], dict):
            raise FormatError(f"{where}.profiles: expected a map")
        profiles = {p: _strlist(ns, f"{where}.profiles.{p}") for p, ns in d["profiles"].items()}
        if not isinstance(d["heldout"], list) or not isinstance(d["extra"], dict):
            raise FormatError(f"{where}: expected heldout list and extra map")
        _check_start(d["configDigest"], d["policyDigest"], leaves, tensors, where)
        return cls(
            d["configDigest"],
            d["policyDigest"],
            leaves,
            _b32(d["baseStateRoot"], f"{where}.baseStateRoot"),
            tensors,
            profiles,
            _strlist(d["trainable"], f"{where}.trainable"),
            tuple(_int(x, f"{where}.heldout") for x in d["heldout"]),
            dict(d["extra"]),
            ModelSpec.from_dict(d["model"]) if "model" in d else None,
        )


@dataclass(frozen=True)
class StepRecord:
    step: int  # 1-based optimizer step
    batch: tuple[int, ...]  # admission indices, in batch order
    profiles: tuple[str, ...]  # each batch example's profile, as admitted
    loss: tuple[float, ...]  # each example's loss before the step
    grad_norm: tuple[float, ...] | None  # each example's routed gradient norm; None: not computed
    lr: float
    changed: Mapping[str, bytes]  # tensor name -> new leaf hash, for tensors this step changed
    state_root: bytes  # Merkle root over all leaves after the step
    events: tuple[Event, ...] = ()
    checkpoint: Mapping[str, Any] | None = None  # exactly {"file", "sha256", "stateRoot"} or None
    rng: bytes | None = None  # sha256 of the RNG state before the step (replay)
    # distributed runs only (records.md §5.3): ranks[j] = the rank that trained batch[j];
    # None (the key absent) in a single-process run, so single-process logs stay as before
    ranks: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.batch)
        norms = n if self.grad_norm is None else len(self.grad_norm)
        if not (len(self.profiles) == len(self.loss) == norms == n):
            raise FormatError(
                f"step {self.step}: batch, profiles, loss and gradNorm differ in length"
            )
        if self.ranks is not None and len(self.ranks) != n:
            raise FormatError(
                f"step {self.step}: expected {n} ranks (one per batch example), got "
                f"{len(self.ranks)}"
            )
        _check_checkpoint(self.checkpoint, f"step {self.step}.checkpoint")

    def to_record(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "v": RECORD_VERSION,
            "kind": "step",
            "step": self.step,
            "batch": list(self.batch),
            "profiles": list(self.profiles),
            "loss": list(self.loss),
            "gradNorm": list(self.grad_norm) if self.grad_norm is not None else None,
            "lr": self.lr,
            "changed": [[n, self.changed[n]] for n in sorted(self.changed)],
            "stateRoot": self.state_root,
            "events": [e.to_record() for e in self.events],
            "checkpoint": dict(self.checkpoint) if self.checkpoint is not None else None,
            "rng": self.rng,
        }
        if self.ranks is not None:
            d["ranks"] = list(self.ranks)
        return d

    @classmethod
    def from_record(cls, d: object, where: str = "step") -> StepRecord:
        d = _fields(
            d,
            where,
            "step",
            {
                "step",
                "batch",
                "profiles",
                "loss",
                "gradNorm",
                "lr",
                "changed",
                "stateRoot",
                "events",
                "checkpoint",
                "rng",
            },
            frozenset({"ranks"}),
        )
        if "ranks" in d and not isinstance(d["ranks"], list):
            raise FormatError(f"{where}.ranks: expected a list")
        for k in ("batch", "loss", "gradNorm", "changed", "events"):
            if not isinstance(d[k], list) and not (k == "gradNorm" and d[k] is None):
                raise FormatError(f"{where}.{k}: expected a list")
        changed: dict[str, bytes] = {}
        prev_name = None
        for i, item in enumerate(d["changed"]):
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
                raise FormatError(f"{where}.changed[{i}]: expected [name, leaf]")
            if prev_name is not None and item[0].encode() <= prev_name.encode():
                raise FormatError(
                    f"{where}.changed[{i}]: expected names sorted and distinct, "
                    f"got {item[0]!r} after {prev_name!r}"
                )
            prev_name = item[0]
            changed[item[0]] = _b32(item[1], f"{where}.changed[{i}]")
        cp = d["checkpoint"]
        _check_checkpoint(cp, f"{where}.checkpoint")
        rng = d["rng"]
        if rng is not None:
            rng = _b32(rng, f"{where}.rng")
        return cls(
            _int(d["step"], f"{where}.step", 1),
            tuple(_int(x, f"{where}.batch") for x in d["batch"]),
            _strlist(d["profiles"], f"{where}.profiles"),
            tuple(_num(x, f"{where}.loss") for x in d["loss"]),
            None
            if d["gradNorm"] is None
            else tuple(_num(x, f"{where}.gradNorm") for x in d["gradNorm"]),
            _num(d["lr"], f"{where}.lr"),
            changed,
            _b32(d["stateRoot"], f"{where}.stateRoot"),
            tuple(Event.from_record(e, f"{where}.events[{i}]") for i, e in enumerate(d["events"])),
            cp,
            rng,
            None
            if "ranks" not in d
            else tuple(_int(x, f"{where}.ranks[{i}]") for i, x in enumerate(d["ranks"])),
        )


def parse_step_log_record(d: object, index: int) -> StartRecord | StepRecord:
    """Record ``index`` of the step log: a StartRecord at 0, a StepRecord after."""
    if index == 0:
        return StartRecord.from_record(d, "steps[0]")
    return StepRecord.from_record(d, f"steps[{index}]")

"""The consumer's requirements document (spec/requirements.md §1-§3): model and loading.

`Requirements` is a frozen dataclass that validates itself; `from_dict` copies its
input and rejects an unknown key with a one-line message naming it; `to_dict` round
trips. Every problem is a UsageError (exit 2): the requirements are the consumer's
own input, not evidence. Evaluation (layer V11) is verifier/requirements.py.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from attest.errors import UsageError
from attest.limits import DEFAULT_LIMITS, Limits
from attest.pii import KINDS as PII_KINDS
from attest.policy import ACTIONS

__all__ = ["ACTION_RANK", "REQUIREMENTS_VERSION", "Requirements", "load_requirements"]

REQUIREMENTS_VERSION = "0.1"
# The memorization actions, weakest first: a consumer's minimum action admits any stronger one.
ACTION_RANK = {a: i for i, a in enumerate(ACTIONS)}  # flag < quarantine < halt
HEX = frozenset("0123456789abcdef")


# -- parsing helpers: strict types, one-line messages naming the key --------------------


def _fail(where: str, expected: str, found: object) -> UsageError:
    return UsageError(f"{where}: expected {expected}, found {found!r:.80}")


def _take(d: object, where: str, keys: Iterable[str]) -> dict[str, Any]:
    """Pop ``keys`` from a copy of table ``d``; an unknown key is an error naming it."""
    if not isinstance(d, dict):
        raise _fail(where, "a table", type(d).__name__)
    rest = dict(d)
    out = {k: rest.pop(k) for k in keys if k in rest}
    if rest:
        raise UsageError(f"{where}: unknown key {sorted(rest)[0]!r}")
    return out


def _strs(v: object, where: str) -> tuple[str, ...]:
    if not isinstance(v, list | tuple) or not all(isinstance(x, str) and x for x in v):
        raise _fail(where, "a list of non-empty strings", v)
    if len(set(v)) != len(v):
        raise _fail(where, "no repeated entries", v)
    return tuple(v)


def _number(v: object, where: str, *, lo: float, hi: float = math.inf, lo_open: bool = False,
            integer: bool = False) -> Any:  # fmt: skip
    kind = "an integer" if integer else "a number"
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    bound = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi != math.inf else "")
    if (
        isinstance(v, bool)
        or not ok
        or (isinstance(v, float) and not math.isfinite(v))
        or (v <= lo if lo_open else v < lo)  # type: ignore[operator]
        or v > hi  # type: ignore[operator]
    ):
        raise _fail(where, f"{kind} {bound}", v)
    return v if integer else float(v)  # type: ignore[arg-type]


def _digest(v: object, where: str) -> str:
    if not isinstance(v, str) or len(v) != 64 or not set(v) <= HEX:
        raise _fail(where, "64 lowercase hex digits (the policy digest, policy.md §2)", v)
    return v


def _profile_map(v: object, where: str, what: str = "profile name") -> dict[str, tuple[str, ...]]:
    if not isinstance(v, Mapping):
        raise _fail(where, f"a table of name -> list of {what}s", type(v).__name__)
    out = {}
    for k, x in v.items():
        out[str(k)] = _strs(x, f"{where}.{k}")
        if not out[str(k)]:
            raise _fail(f"{where}.{k}", f"at least one {what}", x)
    return out


# -- the model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirements:
    """The consumer's requirements; every field optional, every given value checked here.

    Raises UsageError (exit 2) for a value of the wrong type or out of range.
    """

    policy_digest: str | None = None
    pii_reject: tuple[str, ...] = ()  # PII kinds the policy must detect with action reject
    license_refuse: tuple[str, ...] = ()  # SPDX ids the policy must refuse
    license_refuse_classes: tuple[str, ...] = ()  # license class names the policy must refuse
    license_limit: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # id -> profiles
    license_limit_classes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # SPDX id -> tensor-name globs: every tensor any possible profile of the license resolves
    # to must match one (the consumer's own patterns, not the producer's profile names).
    license_limit_tensors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    canaries_min: int | None = None  # distinct canaries the policy plants (and the log holds)
    memorization_action: str | None = None  # at least this action (flag < quarantine < halt)
    loss_drop_max: float | None = None  # nats; the policy's must be enabled and <= this
    reference_quantile_min: float | None = None  # the policy's must be >= this
    holdout_min: int | None = None  # held-out reference examples
    exposure_max: float | None = None  # bits; the policy's must be enabled and <= this
    eval_every_max: int | None = None  # steps between exposure evaluations; enabled and <= this
    replay_coverage_min: float | None = None  # fraction of the run's steps re-executed
    replay_detection_min: float | None = None  # P(a single forged step is caught)
    replay_strict: bool = False  # bitwise replay only
    replay_tolerance_max: float | None = None  # tolerant replay allowed up to this (auditor's)
    source: str = ""  # where they came from (file name, "--policy-digest"), for messages

    def __post_init__(self) -> None:
        if self.policy_digest is not None:
            _digest(self.policy_digest, "policy_digest")
        for k in _strs(list(self.pii_reject), "pii.reject"):
            if k not in PII_KINDS:
                raise _fail("pii.reject", f"PII kinds among {', '.join(PII_KINDS)}", k)
        _strs(list(self.license_refuse), "licenses.refuse")
        _strs(list(self.license_refuse_classes), "licenses.refuse_classes")
        _profile_map(self.license_limit, "licenses.limit")
        _profile_map(self.license_limit_classes, "licenses.limit_classes")
        _profile_map(self.license_limit_tensors, "licenses.limit_tensors", "tensor pattern")
        both = set(self.license_refuse) & set(self.license_limit)
        if both:
            raise UsageError(f"licenses: {sorted(both)[0]!r} is both in refuse and in limit")
        both = set(self.license_refuse_classes) & set(self.license_limit_classes)
        if both:
            raise UsageError(
                f"licenses: class {sorted(both)[0]!r} is in both refuse_classes and limit_classes"
            )
        if self.canaries_min is not None:
            _number(self.canaries_min, "canaries.min_count", lo=1, integer=True)
        if self.memorization_action is not None and self.memorization_action not in ACTION_RANK:
            raise _fail(
                "memorization.action", f"one of {', '.join(ACTIONS)}", self.memorization_action
            )
        m = "memorization."
        if self.loss_drop_max is not None:
            _number(self.loss_drop_max, m + "loss_drop_max", lo=0, lo_open=True)
        if self.reference_quantile_min is not None:
            _number(self.reference_quantile_min, m + "reference_quantile_min", lo=0, hi=1,
                    lo_open=True)  # fmt: skip
            if self.reference_quantile_min >= 1:
                raise _fail(m + "reference_quantile_min", "a number below 1", 1.0)
        if self.holdout_min is not None:
            _number(self.holdout_min, m + "holdout_min", lo=1, integer=True)
        if self.exposure_max is not None:
            _number(self.exposure_max, m + "exposure_max", lo=0, lo_open=True)
        if self.eval_every_max is not None:
            _number(self.eval_every_max, m + "eval_every_max", lo=1, integer=True)
        if self.replay_coverage_min is not None:
            _number(self.replay_coverage_min, "replay.min_coverage", lo=0, hi=1, lo_open=True)
        if self.replay_detection_min is not None:
            _number(self.replay_detection_min, "replay.min_detection_probability", lo=0, hi=1,
                    lo_open=True)  # fmt: skip
        if not isinstance(self.replay_strict, bool):
            raise _fail("replay.strict", "true or false", self.replay_strict)
        if self.replay_tolerance_max is not None:
            _number(self.replay_tolerance_max, "replay.max_tolerance", lo=0, lo_open=True)
            if self.replay_strict:
                raise UsageError("replay: strict = true and max_tolerance exclude each other")

    # -- which kinds of requirement were stated ------------------------------------------

    def stated(self) -> dict[str, bool]:
        """Check code -> whether the consumer stated a requirement it checks."""
        return {
            "GT-REQ-POLICY-DIGEST": self.policy_digest is not None,
            "GT-REQ-PII": bool(self.pii_reject),
            "GT-REQ-LICENSE": bool(self.license_refuse or self.license_refuse_classes
                                   or self.license_limit or self.license_limit_classes
                                   or self.license_limit_tensors),
            "GT-REQ-CANARIES": self.canaries_min is not None,
            "GT-REQ-MEMORIZATION": any(
                x is not None
                for x in (self.memorization_action, self.loss_drop_max,
                          self.reference_quantile_min, self.holdout_min, self.exposure_max,
                          self.eval_every_max)
            ),
            "GT-REQ-REPLAY": self.replay_coverage_min is not None
            or self.replay_detection_min is not None,
            "GT-REQ-STRICT": self.replay_strict or self.replay_tolerance_max is not None,
        }  # fmt: skip

    def __bool__(self) -> bool:
        return any(self.stated().values())

    def with_policy_digest(self, digest: str | None) -> Requirements:
        """These requirements with ``--policy-digest`` added. Raises UsageError on a conflict."""
        if digest is None:
            return self
        digest = _digest(digest.lower() if isinstance(digest, str) else digest, "--policy-digest")
        if self.policy_digest not in (None, digest):
            raise UsageError(
                f"--policy-digest: expected the digest {self.source or 'the requirements'} pins "
                f"({self.policy_digest}), found {digest}"
            )
        vals = {f.name: getattr(self, f.name) for f in fields(self)}
        vals["policy_digest"] = digest
        vals["source"] = ", ".join(x for x in (self.source, "--policy-digest") if x)
        return Requirements(**vals)

    # -- document form -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, where: str = "requirements") -> Requirements:
        """Build from the parsed TOML (spec/requirements.md §3). ``doc`` is not modified.

        Raises UsageError naming ``where`` and the key: unknown key, wrong type, bad value.
        """
        try:
            return cls._from_dict(doc, where)
        except UsageError as e:
            raise UsageError(f"{where}: {e}") from e

    @classmethod
    def _from_dict(cls, doc: Mapping[str, Any], where: str) -> Requirements:
        keys = ("version", "policy_digest", "pii", "licenses", "canaries", "memorization", "replay")
        top = _take(dict(doc), "top level", keys)
        if top.get("version") != REQUIREMENTS_VERSION:
            raise _fail("version", repr(REQUIREMENTS_VERSION), top.get("version"))
        pii = _take(top.get("pii", {}), "pii", ("reject",))
        lic = _take(top.get("licenses", {}), "licenses",
                    ("refuse", "refuse_classes", "limit", "limit_classes",
                     "limit_tensors"))  # fmt: skip
        can = _take(top.get("canaries", {}), "canaries", ("min_count",))
        mem_keys = ("action", "loss_drop_max", "reference_quantile_min", "holdout_min",
                    "exposure_max", "eval_every_max")  # fmt: skip
        mem = _take(top.get("memorization", {}), "memorization", mem_keys)
        rep = _take(
            top.get("replay", {}),
            "replay",
            ("min_coverage", "min_detection_probability", "strict", "max_tolerance"),
        )
        req = cls(
            policy_digest=top.get("policy_digest"),
            pii_reject=_strs(pii.get("reject", []), "pii.reject"),
            license_refuse=_strs(lic.get("refuse", []), "licenses.refuse"),
            license_refuse_classes=_strs(lic.get("refuse_classes", []), "licenses.refuse_classes"),
            license_limit=_profile_map(lic.get("limit", {}), "licenses.limit"),
            license_limit_classes=_profile_map(lic.get("limit_classes", {}),
                                               "licenses.limit_classes"),
            license_limit_tensors=_profile_map(lic.get("limit_tensors", {}),
                                               "licenses.limit_tensors", "tensor pattern"),
            canaries_min=can.get("min_count"),
            memorization_action=mem.get("action"),
            loss_drop_max=mem.get("loss_drop_max"),
            reference_quantile_min=mem.get("reference_quantile_min"),
            holdout_min=mem.get("holdout_min"),
            exposure_max=mem.get("exposure_max"),
            eval_every_max=mem.get("eval_every_max"),
            replay_coverage_min=rep.get("min_coverage"),
            replay_detection_min=rep.get("min_detection_probability"),
            replay_strict=rep.get("strict", False),
            replay_tolerance_max=rep.get("max_tolerance"),
            source=where,
        )  # fmt: skip
        if not req:
            raise UsageError("expected at least one requirement, found none (an empty bar "
                             "checks nothing: fail closed)")  # fmt: skip
        return req

    @classmethod
    def from_toml(cls, data: bytes, *, where: str = "requirements") -> Requirements:
        """Parse requirements TOML bytes. Raises UsageError: ``{where}: {key}: ...``."""
        try:
            doc = tomllib.loads(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise UsageError(
                f"{where}: expected UTF-8 TOML, found an invalid byte at {e.start}"
            ) from e
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"{where}: expected TOML, found a syntax error ({e})") from e
        except RecursionError as e:
            raise UsageError(f"{where}: expected TOML nested at most a few hundred deep") from e
        return cls.from_dict(doc, where=where)

    def to_dict(self) -> dict[str, Any]:
        """The document form (spec/requirements.md §3), stated keys only; from_dict inverts it."""
        lic = {
            "refuse": list(self.license_refuse),
            "refuse_classes": list(self.license_refuse_classes),
            "limit": {k: list(v) for k, v in sorted(self.license_limit.items())},
            "limit_classes": {k: list(v) for k, v in sorted(self.license_limit_classes.items())},
            "limit_tensors": {k: list(v) for k, v in sorted(self.license_limit_tensors.items())},
        }
        mem = {
            "action": self.memorization_action,
            "loss_drop_max": self.loss_drop_max,
            "reference_quantile_min": self.reference_quantile_min,
            "holdout_min": self.holdout_min,
            "exposure_max": self.exposure_max,
            "eval_every_max": self.eval_every_max,
        }
        rep = {
            "min_coverage": self.replay_coverage_min,
            "min_detection_probability": self.replay_detection_min,
            "strict": self.replay_strict or None,
            "max_tolerance": self.replay_tolerance_max,
        }
        out: dict[str, Any] = {"version": REQUIREMENTS_VERSION}
        if self.policy_digest is not None:
            out["policy_digest"] = self.policy_digest
        sections: dict[str, dict[str, Any]] = {
            "pii": {"reject": list(self.pii_reject)},
            "licenses": lic,
            "canaries": {"min_count": self.canaries_min},
            "memorization": mem,
            "replay": rep,
        }
        for name, sec in sections.items():
            kept = {k: v for k, v in sec.items() if v not in (None, [], {})}
            if kept:
                out[name] = kept
        return out


def load_requirements(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> Requirements:
    """Read a requirements TOML file. Raises UsageError (exit 2) for any problem with it."""
    path = Path(path)
    try:
        if not path.is_file():
            raise UsageError(f"{path}: expected a requirements file (TOML), found "
                             f"{'something else' if path.exists() else 'nothing'}")  # fmt: skip
        if path.stat().st_size > limits.policy_max:  # the same bound as the policy it judges
            raise UsageError(f"{path}: expected at most {limits.policy_max} bytes")
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"{path}: cannot read the requirements: {e.strerror or e}") from e
    return Requirements.from_toml(data, where=path.name)

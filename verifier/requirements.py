"""The consumer's requirements (spec/requirements.md): the bar a run must clear.

Without them the verifier checks a run against the producer's own policy, whatever
that policy says: a lax policy with a reassuring name passes. `Requirements` is the
consumer's side, in the spirit of sigstore-python's `VerificationPolicy` and cosign's
`--certificate-identity`: a pinned producer policy digest (``--policy-digest HEX``)
and/or minimum requirements on the policy and the run (``--require FILE``, TOML).

`check_requirements` is layer V10. It runs after every other layer and reads only
what those layers verified: the `Policy` object that passed GT-POLICY-DIGEST, the
canary count that passed GT-ADMIT-CANARIES, the replay result that passed every
GT-REPLAY-* check. A requirement whose fact is absent or unverified FAILS, saying
why (fail closed); a requirement the consumer did not state is "skip".

Example::

    from verifier import api
    from verifier.requirements import Requirements
    req = Requirements.from_toml(b'[pii]\\nreject = ["email"]\\n', where="req.toml")
    result = api.verify("run", keys=["producer.pub"], requirements=req)
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
from attest.policy import ACTIONS, Policy

from .policy_terms import license_profiles, policy_terms
from .result import Result

__all__ = [
    "REQUIREMENT_CODES",
    "REQUIREMENTS_VERSION",
    "Requirements",
    "check_requirements",
    "load_requirements",
    "requirements_note",
]

REQUIREMENTS_VERSION = "0.1"
REQUIREMENT_CODES = (
    "GT-REQ-POLICY-DIGEST",
    "GT-REQ-PII",
    "GT-REQ-LICENSE",
    "GT-REQ-CANARIES",
    "GT-REQ-MEMORIZATION",
    "GT-REQ-REPLAY",
    "GT-REQ-STRICT",
)
NONE_GIVEN = "no consumer requirement given (--policy-digest, --require)"
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


def _profile_map(v: object, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(v, Mapping):
        raise _fail(where, "a table of name -> list of profile names", type(v).__name__)
    out = {}
    for k, x in v.items():
        out[str(k)] = _strs(x, f"{where}.{k}")
        if not out[str(k)]:
            raise _fail(f"{where}.{k}", "at least one profile name", x)
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
                                   or self.license_limit or self.license_limit_classes),
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
                    ("refuse", "refuse_classes", "limit", "limit_classes"))  # fmt: skip
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


# -- V10: evaluation ----------------------------------------------------------------------


def _passed(result: Result, codes: Iterable[str]) -> list[str]:
    """The ``codes`` that did not pass (a fail, a skip or no finding at all)."""
    ok = {f.code for f in result.findings if f.status == "pass"}
    bad = {f.code for f in result.findings if f.status == "fail"}
    return [c for c in codes if c not in ok or c in bad]


def _unverified(what: str, missing: list[str]) -> str:
    return f"no verified {what} ({', '.join(missing)} did not pass)"


def _check_licenses(req: Requirements, policy: Policy) -> list[str]:
    problems = []
    for lic in req.license_refuse:
        got = license_profiles(policy, lic, None)
        if got is not None:
            problems.append(
                f"license {lic!r}: expected refused, found admitted as class "
                f"{policy.license_class(lic)!r} (profiles {', '.join(sorted(got))})"
            )
    for c in req.license_refuse_classes:
        got = license_profiles(policy, None, c)
        if got is not None:
            problems.append(
                f"license class {c!r}: expected refused, found allowed "
                f"(profiles {', '.join(sorted(got)) or 'none'})"
            )
    for what, limits, by_id in (
        ("license", req.license_limit, True),
        ("license class", req.license_limit_classes, False),
    ):
        for name, allowed in sorted(limits.items()):
            got = license_profiles(policy, name if by_id else None, None if by_id else name)
            extra = sorted((got or set()) - set(allowed))
            if extra:
                problems.append(
                    f"{what} {name!r}: expected only profiles "
                    f"{', '.join(allowed)}, found also {', '.join(extra)}"
                )
    return problems  # fmt: skip


def _check_memorization(req: Requirements, policy: Policy) -> list[str]:
    m = policy.memorization
    out = []
    if (
        req.memorization_action is not None
        and ACTION_RANK[m.action] < ACTION_RANK[req.memorization_action]
    ):
        out.append(f"action: expected {req.memorization_action!r} or stronger, found {m.action!r}")

    def at_most(key: str, want: float | None, got: float, unit: str) -> None:
        if want is not None and (got <= 0 or got > want):
            shown = "disabled (0)" if got <= 0 else f"{got:g}{unit}"
            out.append(f"{key}: expected enabled and at most {want:g}{unit}, found {shown}")

    at_most("loss_drop_max", req.loss_drop_max, m.loss_drop_max, " nats")
    at_most("exposure_max", req.exposure_max, m.exposure_max, " bits")
    at_most("eval_every", req.eval_every_max, m.eval_every, " steps")
    if req.reference_quantile_min is not None and m.reference_quantile < req.reference_quantile_min:
        shown = "disabled (0)" if m.reference_quantile <= 0 else f"{m.reference_quantile:g}"
        out.append(f"reference_quantile: expected at least {req.reference_quantile_min:g}, "
                   f"found {shown}")  # fmt: skip
    if req.holdout_min is not None and m.holdout < req.holdout_min:
        out.append(f"holdout: expected at least {req.holdout_min} examples, found {m.holdout}")
    return out


def _replay_fact(result: Result) -> tuple[Mapping[str, Any] | None, str]:
    """The verified replay result, or None and why not."""
    flags = result.scope.get("flags") if isinstance(result.scope, Mapping) else None
    if not (isinstance(flags, Mapping) and flags.get("replay")):
        return None, "no replay ran (--replay N not given)"
    missing = _passed(result, ("GT-REPLAY-SELECT", "GT-REPLAY-CHECKPOINT", "GT-REPLAY-STEP"))
    rep = result.verified.get("replay")
    if missing or not isinstance(rep, Mapping):
        return None, _unverified("replay result", missing or ["replay"])
    return rep, ""


def _fraction(rep: Mapping[str, Any], key: str) -> float | None:
    v = rep.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _check_replay(req: Requirements, rep: Mapping[str, Any]) -> list[str]:
    out = []
    for key, want, label in (("coverage", req.replay_coverage_min, "min_coverage"),
                             ("detectionProbability", req.replay_detection_min,
                              "min_detection_probability")):  # fmt: skip
        if want is None:
            continue
        got = _fraction(rep, key)
        if got is None:
            out.append(f"{label}: expected at least {want:g}, found no {key} in the replay result")
        elif got < want:
            out.append(f"{label}: expected at least {want:g}, found {got:.4g}")
    return out


def _check_strict(req: Requirements, rep: Mapping[str, Any]) -> list[str]:
    mode, tol = rep.get("mode"), rep.get("tolerance")
    if mode == "bitwise" or (mode == "strict" and tol is None):  # "strict": v0.1 replay's name
        return []
    if req.replay_strict:
        return [f"strict: expected bitwise replay, found {mode!r} replay"]
    value = tol.get("value") if isinstance(tol, Mapping) else tol
    chosen = tol.get("chosenBy") if isinstance(tol, Mapping) else None
    assert req.replay_tolerance_max is not None  # stated() said GT-REQ-STRICT applies
    if chosen != "auditor":
        return [f"max_tolerance: expected a tolerance chosen by the auditor, found one chosen by "
                f"{chosen or 'nobody named'}"]  # fmt: skip
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or value > req.replay_tolerance_max
    ):
        return [f"max_tolerance: expected at most {req.replay_tolerance_max:g}, found {value!r}"]
    return []


def check_requirements(
    result: Result,
    requirements: Requirements | None,
    policy: Policy | None,
    tensors: Iterable[str] = (),
) -> None:
    """Layer V10: the consumer's requirements against verified facts only; never raises.

    ``policy`` is the policy object that passed GT-POLICY-DIGEST (None otherwise);
    ``tensors`` the model's tensor names from the verified start record (for the plain
    terms of the profiles). Also publishes ``result.verified["policyTerms"]`` (the
    verified policy in plain terms, for the report) and ``result.scope["requirements"]``.
    """
    policy_ok = policy is not None and not _passed(result, ("GT-POLICY-FORMAT", "GT-POLICY-DIGEST"))
    vpolicy = policy if policy_ok else None
    if vpolicy is not None:
        result.verified["policyTerms"] = policy_terms(
            vpolicy, tensors if not _passed(result, ("GT-CHAIN-PROFILES",)) else ()
        )
    req = requirements if requirements else None
    result.scope["requirements"] = {
        "checked": req is not None,
        "source": req.source if req is not None else None,
        "stated": req.to_dict() if req is not None else None,
    }
    if req is None:
        for code in REQUIREMENT_CODES:
            result.add(code, "skip", NONE_GIVEN)
        return
    stated = req.stated()
    no_policy = _unverified(
        "producer policy", _passed(result, ("GT-POLICY-FORMAT", "GT-POLICY-DIGEST")) or ["policy"]
    )
    rep, no_replay = _replay_fact(result)
    for code in REQUIREMENT_CODES:
        if not stated[code]:
            result.add(code, "skip", f"not required by {req.source}")
            continue
        problems: list[str] = []
        note = ""
        if code in ("GT-REQ-REPLAY", "GT-REQ-STRICT"):
            if rep is None:
                problems = [
                    f"{'replay' if code == 'GT-REQ-REPLAY' else 'strict replay'} "
                    f"required, but {no_replay}"
                ]
            else:
                problems = (_check_replay if code == "GT-REQ-REPLAY" else _check_strict)(req, rep)
                note = f"replay mode {rep.get('mode')}, coverage {_fraction(rep, 'coverage')}"
        elif vpolicy is None:
            problems = [f"required, but {no_policy}"]
        elif code == "GT-REQ-POLICY-DIGEST":
            got = vpolicy.digest()
            if got != req.policy_digest:
                problems = [
                    f"expected the pinned policy digest {req.policy_digest}, found "
                    f"{got} (policy {vpolicy.name!r})"
                ]
            note = f"policy {vpolicy.name!r} is the pinned one ({got})"
        elif code == "GT-REQ-PII":
            for kind in req.pii_reject:
                if kind not in vpolicy.pii_detect:
                    problems.append(
                        f"pii {kind!r}: expected detected with action reject, found "
                        f"not detected (pii.detect: {', '.join(vpolicy.pii_detect)})"
                    )
                elif vpolicy.pii_action != "reject":
                    problems.append(
                        f"pii {kind!r}: expected action reject, found {vpolicy.pii_action!r}"
                    )
            note = f"{', '.join(req.pii_reject)} detected and rejected"
        elif code == "GT-REQ-LICENSE":
            problems = _check_licenses(req, vpolicy)
            note = "every named license or class is refused or limited as required"
        elif code == "GT-REQ-CANARIES":
            missing = _passed(result, ("GT-ADMIT-CANARIES",))
            planted = vpolicy.canaries.count
            assert req.canaries_min is not None
            if missing:
                problems = [f"min_count: required, but {_unverified('canary count', missing)}"]
            elif planted < req.canaries_min:
                problems = [
                    f"min_count: expected at least {req.canaries_min} canaries, found "
                    f"{planted} (policy canaries.count)"
                ]
            note = f"{planted} canaries planted, as the admission log holds"
        elif code == "GT-REQ-MEMORIZATION":
            problems = _check_memorization(req, vpolicy)
            note = "memorization thresholds and action no laxer than required"
        for p in problems:
            result.fail(code, f"requirement {_KIND[code]} ({req.source}): {p}")
        if not problems:
            result.add(code, "pass", note)  # fmt: skip


NOTE_NONE = (
    "conforms to the producer's own policy; no consumer requirement was checked "
    "(--policy-digest, --require)"
)


def requirements_note(result: Result) -> str:
    """What a PASS means for the consumer's bar, in one phrase (the CLI verdict and the report)."""
    scope = result.scope.get("requirements") if isinstance(result.scope, Mapping) else None
    if not (isinstance(scope, Mapping) and scope.get("checked")):
        return NOTE_NONE
    met = [f.code for f in result.findings if f.layer == "requirements" and f.status == "pass"]
    failed = sorted({f.code for f in result.failures if f.layer == "requirements"})
    if failed:
        return f"consumer requirements NOT met ({scope.get('source')}): {', '.join(failed)}"
    return f"meets the consumer's requirements ({scope.get('source')}): {', '.join(met)}"


_KIND = {
    "GT-REQ-POLICY-DIGEST": "policy_digest",
    "GT-REQ-PII": "pii.reject",
    "GT-REQ-LICENSE": "licenses",
    "GT-REQ-CANARIES": "canaries",
    "GT-REQ-MEMORIZATION": "memorization",
    "GT-REQ-REPLAY": "replay",
    "GT-REQ-STRICT": "replay.strict",
}

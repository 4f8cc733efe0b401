"""The admission evaluator: one deterministic function, run by trainer and verifier alike.

An example is judged on two kinds of evidence (spec/policy.md §4):

- `Metadata` is committed in the admission log in the clear (license, source, data
  class, consent, length, canary flag), so anyone can re-run the metadata rules;
- `Findings` come from the content (PII kinds, opt-out match, exact duplicate). They
  are recorded as the producer's claim and re-derived by an auditor with ``--data``.

`decide(policy, metadata, findings)` maps both to every rule's outcome, the verdict
and the depth profile. The verifier re-runs it and compares field by field. An
outcome's detail is a structured value (a reason code and its arguments), never a
formatted string, so another implementation produces the same signed bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .canonical import canonical_json
from .dataset import Example
from .errors import FormatError
from .glob import glob_match
from .pii import find_pii, mask_pii
from .policy import Policy
from .spdx import License, LicenseError

RULES = (
    "canary",
    "license",
    "consent",
    "source",
    "length",
    "pii",
    "optout",
    "duplicate",
    "profile",
)
OUTCOMES = ("pass", "fail", "masked")
# reason -> (rule, its argument names and types): spec/policy.md §4.3
Arg = str | int | list[str]
REASONS: dict[str, tuple[str, dict[str, type]]] = {
    "no-canaries": ("canary", {}),
    "license-invalid": ("license", {"license": str}),
    "license-unclassified": ("license", {"license": str}),
    "license-denied": ("license", {"license": str, "class": str}),
    "license-not-allowed": ("license", {"license": str, "class": str}),
    "consent-required": ("consent", {"dataClass": str}),
    "source-denied": ("source", {"pattern": str}),
    "source-not-allowed": ("source", {}),
    "length-out-of-range": ("length", {"length": int, "min": int, "max": int}),
    "pii-found": ("pii", {"kinds": list}),
    "pii-masked": ("pii", {"kinds": list}),
    "optout": ("optout", {}),
    "duplicate": ("duplicate", {}),
    "no-assignment": ("profile", {}),
}


def _bool(v: object, where: str) -> bool:
    if not isinstance(v, bool):
        raise FormatError(f"{where}: expected a boolean, got {v!r:.40}")
    return v


def _str(v: object, where: str) -> str:
    if not isinstance(v, str):
        raise FormatError(f"{where}: expected a string, got {v!r:.40}")
    return v


@dataclass(frozen=True)
class Metadata:
    license: str  # SPDX identifier as declared by the source
    source: str
    data_class: str
    consent: bool
    length: int  # characters (code points) of the text as trained on
    canary: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 0:
            raise FormatError(
                f"metadata.length: expected a non-negative integer, got {self.length!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "license": self.license,
            "source": self.source,
            "dataClass": self.data_class,
            "consent": self.consent,
            "length": self.length,
            "canary": self.canary,
        }

    @classmethod
    def from_dict(cls, d: object, where: str = "metadata") -> Metadata:
        if not isinstance(d, dict):
            raise FormatError(f"{where}: expected a map")
        keys = {"license", "source", "dataClass", "consent", "length", "canary"}
        if set(d) != keys:
            raise FormatError(
                f"{where}: expected keys {', '.join(sorted(keys))}, got {', '.join(sorted(d))}"
            )
        return cls(
            _str(d["license"], f"{where}.license"),
            _str(d["source"], f"{where}.source"),
            _str(d["dataClass"], f"{where}.dataClass"),
            _bool(d["consent"], f"{where}.consent"),
            d["length"],
            _bool(d["canary"], f"{where}.canary"),
        )


@dataclass(frozen=True)
class Findings:
    pii: tuple[str, ...] = ()  # PII kinds found (sorted, unique)
    optout: bool = False
    duplicate: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"pii": list(self.pii), "optout": self.optout, "duplicate": self.duplicate}

    @classmethod
    def from_dict(cls, d: object, where: str = "findings") -> Findings:
        if not isinstance(d, dict) or set(d) != {"pii", "optout", "duplicate"}:
            raise FormatError(f"{where}: expected keys duplicate, optout, pii")
        pii = d["pii"]
        if (
            not isinstance(pii, list)
            or not all(isinstance(k, str) for k in pii)
            or pii != sorted(set(pii))
        ):
            raise FormatError(f"{where}.pii: expected a sorted list of distinct kinds")
        return cls(
            tuple(pii),
            _bool(d["optout"], f"{where}.optout"),
            _bool(d["duplicate"], f"{where}.duplicate"),
        )


def content_digest(text: str) -> str:
    """Unsalted content digest for opt-out lists and duplicates (never published per example)."""
    return hashlib.sha256(canonical_json(text)).hexdigest()


def inspect_content(policy: Policy, text: str, seen: set[str]) -> tuple[Findings, str]:
    """Findings for ``text`` and the text to train on (PII masked if the policy says so).

    ``seen`` holds the content digests of earlier examples in dataset order; this
    function adds ``text``'s digest to it, so call it once per example, in order.
    """
    digest = content_digest(text)
    duplicate = digest in seen
    seen.add(digest)
    matches = find_pii(text, policy.pii_detect)
    kinds = tuple(sorted({m.kind for m in matches}))
    trained = mask_pii(text, matches) if matches and policy.pii_action == "mask" else text
    return Findings(kinds, digest in policy.optout_digests, duplicate), trained


def _check_detail(rule: str, outcome: str, detail: Mapping[str, Any], where: str) -> None:
    """A detail is ``{}`` on pass, else ``{"reason": R, ...R's arguments}`` (§4.3)."""
    if not isinstance(detail, Mapping) or not all(isinstance(k, str) for k in detail):
        raise FormatError(f"{where}.detail: expected a map, got {detail!r:.40}")
    if outcome == "pass":
        if detail:
            raise FormatError(f"{where}.detail: expected an empty map on pass, got {detail!r:.80}")
        return
    reason = detail.get("reason")
    if not isinstance(reason, str) or reason not in REASONS:
        raise FormatError(f"{where}.detail.reason: expected a reason code, got {reason!r:.40}")
    owner, args = REASONS[reason]
    want = "pii-masked" if outcome == "masked" else None
    if owner != rule or (want and reason != want) or (reason == "pii-masked" and not want):
        raise FormatError(f"{where}.detail.reason: {reason!r} is not a {rule} {outcome} reason")
    keys = set(detail) - {"reason"}
    if keys != set(args):
        raise FormatError(
            f"{where}.detail: expected keys {', '.join(sorted({'reason', *args}))}, "
            f"got {', '.join(sorted(detail))}"
        )
    for k, typ in args.items():
        v = detail[k]
        ok = isinstance(v, typ) and not isinstance(v, bool)
        if typ is list:
            ok = ok and all(isinstance(x, str) for x in v)
        if not ok:
            raise FormatError(f"{where}.detail.{k}: expected {typ.__name__}, got {v!r:.40}")


@dataclass(frozen=True)
class Trained:
    """An example as trained on (spec/format.md §6): masked text, committed content, task fields."""

    text: str  # what content rules, the length rule and memorization probes see
    content: str | Mapping[str, str]  # what the commitment hashes (a JSON string or object)
    fields: Mapping[str, str] = field(default_factory=dict)  # registry Item fields


def inspect_example(policy: Policy, ex: Example, seen: set[str]) -> tuple[Findings, Trained]:
    """`inspect_content` for any dataset form (attest.dataset.FORMS), in dataset order.

    Findings (PII kinds, opt-out, duplicate) are judged on ``ex.text`` (for the
    prompt-response form: prompt + response). PII masking applies to each part on its
    own, so the prompt/response boundary stays where the producer put it.
    """
    findings, masked = inspect_content(policy, ex.text, seen)
    if ex.prompt is None:
        if ex.label is None:
            return findings, Trained(masked, masked)  # the text form: v0.1 commitments
        return findings, Trained(masked, {"text": masked, "label": ex.label}, {"label": ex.label})
    parts = [ex.prompt, ex.response or ""]
    if findings.pii and policy.pii_action == "mask":
        parts = [mask_pii(t, find_pii(t, policy.pii_detect)) for t in parts]
    prompt, response = parts
    return findings, Trained(
        prompt + response, {"prompt": prompt, "response": response}, {"prompt": prompt}
    )


@dataclass(frozen=True)
class Outcome:
    rule: str
    outcome: str  # pass | fail | masked
    detail: Mapping[str, Arg] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rule not in RULES or self.outcome not in OUTCOMES:
            raise FormatError(f"outcome: unknown rule/outcome {self.rule!r}/{self.outcome!r}")
        if self.outcome == "masked" and self.rule != "pii":
            raise FormatError(f"outcome: only the pii rule masks, got {self.rule!r}")
        _check_detail(self.rule, self.outcome, self.detail, "outcome")
        object.__setattr__(self, "detail", _own(self.detail))

    @property
    def reason(self) -> str:
        """The detail's reason code; "" on pass."""
        return str(self.detail.get("reason", ""))

    def to_dict(self) -> dict[str, Any]:
        detail = {k: list(v) if isinstance(v, list) else v for k, v in self.detail.items()}
        return {"rule": self.rule, "outcome": self.outcome, "detail": detail}

    @classmethod
    def from_dict(cls, d: object, where: str = "outcome") -> Outcome:
        if not isinstance(d, dict) or set(d) != {"rule", "outcome", "detail"}:
            raise FormatError(f"{where}: expected keys detail, outcome, rule")
        rule = _str(d["rule"], f"{where}.rule")
        outcome = _str(d["outcome"], f"{where}.outcome")
        if rule not in RULES or outcome not in OUTCOMES:
            raise FormatError(f"{where}: unknown rule/outcome {rule!r}/{outcome!r}")
        _check_detail(rule, outcome, d["detail"], where)
        if outcome == "pass":  # most outcomes of most records: one shared instance a rule
            return passed(rule)
        # Checked just above, with the record's path in the messages: not a second time
        # (the per-value checks were 40% of the verifier's admissions layer).
        o = object.__new__(cls)
        object.__setattr__(o, "rule", rule)
        object.__setattr__(o, "outcome", outcome)
        object.__setattr__(o, "detail", _own(d["detail"]))
        return o


_PASSED: dict[str, Outcome] = {}


def pass_outcome_of(d: object) -> Outcome | None:
    """The shared `passed` outcome when ``d`` is exactly a valid pass outcome's dict
    (``{"rule": R, "outcome": "pass", "detail": {}}``), else None: the common case of a
    record's outcomes, decided without building an error path. Anything else goes
    through `Outcome.from_dict`, which names what is wrong."""
    if type(d) is not dict or len(d) != 3 or d.get("outcome") != "pass":
        return None
    rule, detail = d.get("rule"), d.get("detail")
    if type(rule) is not str or rule not in RULES or type(detail) is not dict or detail:
        return None
    return passed(rule)


def passed(rule: str) -> Outcome:
    """``Outcome(rule, "pass")``, one shared instance per rule (an Outcome is never mutated:
    its detail is a private copy, {} on pass)."""
    o = _PASSED.get(rule)
    if o is None:
        o = _PASSED[rule] = Outcome(rule, "pass")
    return o


def _own(detail: Mapping[str, Any]) -> dict[str, Any]:
    """A private copy: the caller's dict (or list) can no longer change a decision."""
    return {k: list(v) if isinstance(v, list) else v for k, v in detail.items()}


@dataclass(frozen=True)
class Decision:
    admitted: bool
    profile: str | None
    outcomes: tuple[Outcome, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(o.rule for o in self.outcomes if o.outcome == "fail")


def _match_assign(policy: Policy, meta: Metadata, lic: License | None) -> str | None:
    """The first `[[assign]]` rule whose conditions all hold (spec/policy.md §3.10)."""
    fields = {
        "license_class": (policy.leaf_class(lic) if lic else None) or "",
        "data_class": meta.data_class,
        "license": lic.key if lic else None,
    }
    for a in policy.assign:
        if all(
            glob_match(meta.source, v)
            if k == "source"
            else fields[k] == (v.lower() if k == "license" else v)
            for k, v in a.when.items()
        ):
            return a.profile
    return None


def _license_rule(policy: Policy, text: str) -> tuple[License | None, dict[str, Arg]]:
    """(the license the example is used under, {} or the fail detail)."""
    try:
        lic = policy.license_of(text)
    except LicenseError:
        return None, {"reason": "license-invalid", "license": text}
    cls = policy.leaf_class(lic)
    if cls is None:
        return lic, {"reason": "license-unclassified", "license": str(lic)}
    if cls in policy.license_deny:
        return lic, {"reason": "license-denied", "license": str(lic), "class": cls}
    if cls not in policy.license_allow:
        return lic, {"reason": "license-not-allowed", "license": str(lic), "class": cls}
    return lic, {}


def decide(policy: Policy, meta: Metadata, findings: Findings) -> Decision:
    """Apply every rule of ``policy`` in the fixed order of `RULES`. Never raises."""
    out: list[Outcome] = []

    def rule(name: str, ok: bool, detail: dict[str, Arg], masked: bool = False) -> None:
        outcome = "masked" if ok and masked else ("pass" if ok else "fail")
        out.append(passed(name) if outcome == "pass" else Outcome(name, outcome, detail))

    if meta.canary:
        # Canaries are planted by the policy itself; only their number is checked
        # (by the verifier, against canaries.count x repeats) and their profile fixed.
        rule("canary", policy.canaries.count > 0, {"reason": "no-canaries"})
        admitted = policy.canaries.count > 0
        return Decision(admitted, policy.canaries.profile if admitted else None, tuple(out))
    rule("canary", True, {})
    lic, why = _license_rule(policy, meta.license)
    rule("license", not why, why)
    rule(
        "consent",
        meta.consent or meta.data_class not in policy.consent_required,
        {"reason": "consent-required", "dataClass": meta.data_class},
    )
    # deny patterns are a sorted set (§2), so "the first matching" is well defined
    denied = [p for p in policy.source_deny if glob_match(meta.source, p)]
    allowed = any(glob_match(meta.source, p) for p in policy.source_allow)
    rule(
        "source",
        allowed and not denied,
        {"reason": "source-denied", "pattern": denied[0]}
        if denied
        else {"reason": "source-not-allowed"},
    )
    rule(
        "length",
        policy.length_min <= meta.length <= policy.length_max,
        {
            "reason": "length-out-of-range",
            "length": meta.length,
            "min": policy.length_min,
            "max": policy.length_max,
        },
    )
    kinds = list(findings.pii)
    if findings.pii and policy.pii_action == "mask":
        rule("pii", True, {"reason": "pii-masked", "kinds": kinds}, masked=True)
    else:
        rule("pii", not findings.pii, {"reason": "pii-found", "kinds": kinds})
    rule("optout", not findings.optout, {"reason": "optout"})
    rule(
        "duplicate",
        not (findings.duplicate and policy.duplicates == "reject"),
        {"reason": "duplicate"},
    )
    ok = all(o.outcome != "fail" for o in out)
    profile = _match_assign(policy, meta, lic)
    rule("profile", profile is not None, {"reason": "no-assignment"})
    admitted = ok and profile is not None
    return Decision(admitted, profile if admitted else None, tuple(out))

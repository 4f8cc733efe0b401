"""The admission evaluator: one deterministic function, run by trainer and verifier alike.

An example is judged on two kinds of evidence (spec/policy.md §4):

- `Metadata` is committed in the admission log in the clear (license, source, data
  class, consent, length, canary flag), so anyone can re-run the metadata rules;
- `Findings` come from the content (PII kinds, opt-out match, exact duplicate). They
  are recorded as the producer's claim and re-derived by an auditor with ``--data``.

`decide(policy, metadata, findings)` maps both to every rule's outcome, the verdict
and the depth profile. The verifier re-runs it and compares field by field.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .canonical import canonical_json
from .dataset import Example
from .errors import FormatError
from .pii import find_pii, mask_pii
from .policy import Policy

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
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "outcome": self.outcome, "detail": self.detail}

    @classmethod
    def from_dict(cls, d: object, where: str = "outcome") -> Outcome:
        if not isinstance(d, dict) or set(d) != {"rule", "outcome", "detail"}:
            raise FormatError(f"{where}: expected keys detail, outcome, rule")
        o = cls(
            _str(d["rule"], f"{where}.rule"),
            _str(d["outcome"], f"{where}.outcome"),
            _str(d["detail"], f"{where}.detail"),
        )
        if o.rule not in RULES or o.outcome not in OUTCOMES:
            raise FormatError(f"{where}: unknown rule/outcome {o.rule!r}/{o.outcome!r}")
        return o


@dataclass(frozen=True)
class Decision:
    admitted: bool
    profile: str | None
    outcomes: tuple[Outcome, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(o.rule for o in self.outcomes if o.outcome == "fail")


def _match_assign(policy: Policy, meta: Metadata) -> str | None:
    lic_class = policy.license_class(meta.license) or ""
    fields = {
        "license_class": lic_class,
        "data_class": meta.data_class,
        "license": meta.license,
        "source": meta.source,
    }
    for a in policy.assign:
        if all(
            fnmatch.fnmatchcase(fields[k], v) if k == "source" else fields[k] == v
            for k, v in a.when.items()
        ):
            return a.profile
    return None


def decide(policy: Policy, meta: Metadata, findings: Findings) -> Decision:
    """Apply every rule of ``policy`` in the fixed order of `RULES`. Never raises."""
    out: list[Outcome] = []

    def rule(name: str, ok: bool, detail: str = "", masked: bool = False) -> None:
        out.append(
            Outcome(
                name,
                "masked" if ok and masked else ("pass" if ok else "fail"),
                "" if ok and not masked else detail,
            )
        )

    if meta.canary:
        # Canaries are planted by the policy itself; only their number is checked
        # (by the verifier, against canaries.count x repeats) and their profile fixed.
        rule("canary", policy.canaries.count > 0, "the policy plants no canaries")
        admitted = policy.canaries.count > 0
        return Decision(admitted, policy.canaries.profile if admitted else None, tuple(out))
    rule("canary", True)
    cls = policy.license_class(meta.license)
    if cls is None:
        rule("license", False, f"license {meta.license!r} has no class in the policy")
    elif cls in policy.license_deny:
        rule("license", False, f"license class {cls!r} is denied")
    else:
        rule("license", cls in policy.license_allow, f"license class {cls!r} is not allowed")
    rule(
        "consent",
        meta.consent or meta.data_class not in policy.consent_required,
        f"data class {meta.data_class!r} requires consent",
    )
    denied = [p for p in policy.source_deny if fnmatch.fnmatchcase(meta.source, p)]
    allowed = any(fnmatch.fnmatchcase(meta.source, p) for p in policy.source_allow)
    rule(
        "source",
        allowed and not denied,
        f"source matches deny pattern {denied[0]!r}"
        if denied
        else "source matches no allow pattern",
    )
    rule(
        "length",
        policy.length_min <= meta.length <= policy.length_max,
        f"length {meta.length} outside [{policy.length_min}, {policy.length_max}]",
    )
    kinds = ",".join(findings.pii)
    if findings.pii and policy.pii_action == "mask":
        rule("pii", True, f"masked {kinds}", masked=True)
    else:
        rule("pii", not findings.pii, f"contains {kinds}")
    rule("optout", not findings.optout, "content is on the opt-out list")
    rule(
        "duplicate",
        not (findings.duplicate and policy.duplicates == "reject"),
        "exact duplicate of an earlier example",
    )
    ok = all(o.outcome != "fail" for o in out)
    profile = _match_assign(policy, meta)
    rule("profile", profile is not None, "no assignment rule matches")
    admitted = ok and profile is not None
    return Decision(admitted, profile if admitted else None, tuple(out))

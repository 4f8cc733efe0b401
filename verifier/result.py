"""Verification results: every finding collected, `bool(result)` is the verdict.

A finding's ``status`` is "pass", "fail" or "skip". Facts are split the way the
report needs them: ``verified`` facts were recomputed by the verifier from evidence;
``attested`` facts are signed claims of the producer the verifier could not
recompute (e.g. per-example loss values without replay).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .codes import BY_CODE

STATUSES = ("pass", "fail", "skip")


@dataclass(frozen=True)
class Finding:
    code: str
    status: str
    message: str = ""

    def __post_init__(self) -> None:
        if self.code not in BY_CODE:
            raise ValueError(f"unknown check code {self.code!r}")  # programming error, not input
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    @property
    def layer(self) -> str:
        return BY_CODE[self.code].layer

    @property
    def title(self) -> str:
        return BY_CODE[self.code].title

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "layer": self.layer,
            "status": self.status,
            "title": self.title,
            "message": self.message,
        }


@dataclass
class Result:
    """Collects findings while verification runs; frozen in spirit once returned."""

    target: str
    findings: list[Finding] = field(default_factory=list)
    verified: dict[str, Any] = field(default_factory=dict)
    attested: dict[str, Any] = field(default_factory=dict)
    scope: dict[str, Any] = field(
        default_factory=dict
    )  # which layers ran, flags, insecure_* relaxations

    def add(self, code: str, status: str, message: str = "") -> None:
        self.findings.append(Finding(code, status, message))

    def fail(self, code: str, message: str) -> None:
        self.add(code, "fail", message)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "fail"]

    def failed(self, code: str) -> bool:
        return any(f.code == code and f.status == "fail" for f in self.findings)

    def __bool__(self) -> bool:
        # Fail closed: a result with no passing finding at all is not a PASS.
        return not self.failures and any(f.status == "pass" for f in self.findings)

    @property
    def verdict(self) -> str:
        return "PASS" if self else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "target": self.target,
            "scope": self.scope,
            "findings": [f.to_dict() for f in self.findings],
            "verified": self.verified,
            "attested": self.attested,
        }

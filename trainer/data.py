"""The dataset (JSONL) and its admission under the policy (spec/records.md, admissions).

Each dataset line is ``{"text", "license", "source", "data_class", "consent"}``. Every
line gets one AdmissionRecord, admitted or refused; then the policy's canaries follow
as indices n.. (one record per repeat). Commitments are salted with salts derived
from the run secret (attest.commitment), over the text exactly as trained on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from attest.admission import Findings, Metadata, decide, inspect_content
from attest.commitment import Opening, commit, derive_salt
from attest.errors import FormatError, UsageError
from attest.limits import DEFAULT_LIMITS, Limits
from attest.policy import Policy
from attest.records import AdmissionRecord

CANARY_LICENSE = "LicenseRef-govtune-canary"
CANARY_SOURCE = "govtune:canary"
CANARY_CLASS = "canary"
_CANARY_TAG = b"govtune.canary.v1"
FIELDS = {"text": str, "license": str, "source": str, "data_class": str, "consent": bool}


@dataclass(frozen=True)
class Example:
    text: str
    license: str
    source: str
    data_class: str
    consent: bool


def parse_line(line: bytes, lineno: int) -> Example:
    """One JSONL line. Raises FormatError naming the line number."""
    where = f"dataset line {lineno}"
    try:
        d = json.loads(line)
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError(f"{where}: expected a JSON object, got invalid JSON ({e})") from e
    if not isinstance(d, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(d).__name__}")
    missing = set(FIELDS) - set(d)
    if missing:
        raise FormatError(f"{where}: missing {', '.join(sorted(missing))}")
    unknown = set(d) - set(FIELDS)
    if unknown:
        raise FormatError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    for k, typ in FIELDS.items():
        if not isinstance(d[k], typ):
            raise FormatError(f"{where}.{k}: expected {typ.__name__}, got {type(d[k]).__name__}")
    return Example(d["text"], d["license"], d["source"], d["data_class"], d["consent"])


def read_dataset(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> tuple[list[Example], str]:
    """All examples in file order and the file's sha256. Raises UsageError or FormatError."""
    path = Path(path)
    out: list[Example] = []
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                h.update(line)
                if len(line) > limits.dataset_line_max:
                    raise FormatError(
                        f"dataset line {lineno}: longer than {limits.dataset_line_max} bytes"
                    )
                if not line.strip():
                    raise FormatError(
                        f"dataset line {lineno}: expected a JSON object, got an empty line"
                    )
                out.append(parse_line(line, lineno))
    except OSError as e:
        raise UsageError(f"{path}: cannot read dataset: {e.strerror or e}") from e
    return out, h.hexdigest()


@dataclass(frozen=True)
class Canary:
    """One planted canary: its secret (private), its text and its admission indices."""

    secret: str
    text: str
    prefix: str  # the template text before the secret
    indices: tuple[int, ...]


def canary_secret(run_secret: bytes, number: int, digits: int) -> str:
    """Secret digits of canary ``number``: HMAC of the run secret, so never public, re-derivable."""
    mac = hmac.new(run_secret, _CANARY_TAG + struct.pack(">Q", number), hashlib.sha256).digest()
    return str(int.from_bytes(mac, "big") % 10**digits).zfill(digits)


@dataclass
class Admission:
    records: list[AdmissionRecord] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)  # admitted index -> text as trained on
    profiles: dict[int, str] = field(default_factory=dict)  # admitted index -> profile
    canaries: list[Canary] = field(default_factory=list)
    openings: list[Opening] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        admitted = sum(r.admitted for r in self.records)
        return {
            "total": len(self.records),
            "admitted": admitted,
            "refused": len(self.records) - admitted,
            "canaries": sum(r.metadata.canary for r in self.records),
        }


def _record(
    adm: Admission, policy: Policy, run_secret: bytes, meta: Metadata, findings: Findings, text: str
) -> None:
    index = len(adm.records)
    salt = derive_salt(run_secret, index)
    decision = decide(policy, meta, findings)
    adm.records.append(
        AdmissionRecord(
            index,
            commit(salt, text),
            meta,
            findings,
            decision.outcomes,
            decision.admitted,
            decision.profile,
        )
    )
    adm.openings.append(Opening(index, salt))
    if decision.admitted:
        adm.texts[index] = text
        adm.profiles[index] = decision.profile or ""


def admit(policy: Policy, examples: list[Example], run_secret: bytes) -> Admission:
    """Judge every example in order, then plant the policy's canaries. Never raises on content."""
    adm = Admission()
    seen: set[str] = set()
    for ex in examples:
        findings, text = inspect_content(policy, ex.text, seen)
        meta = Metadata(ex.license, ex.source, ex.data_class, ex.consent, len(text))
        _record(adm, policy, run_secret, meta, findings, text)
    c = policy.canaries
    before, _, after = c.template.partition("{secret}")
    for number in range(c.count):
        secret = canary_secret(run_secret, number, c.digits)
        text = before + secret + after
        first = len(adm.records)
        for _ in range(c.repeats):
            # Canaries are the policy's own text: content rules do not apply (admission.decide).
            meta = Metadata(
                CANARY_LICENSE, CANARY_SOURCE, CANARY_CLASS, True, len(text), canary=True
            )
            _record(adm, policy, run_secret, meta, Findings(), text)
        adm.canaries.append(Canary(secret, text, before, tuple(range(first, len(adm.records)))))
    return adm

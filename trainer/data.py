"""The dataset (JSONL) and its admission under the policy (spec/records.md, admissions).

The dataset is read by `attest.dataset.read_dataset` (the verifier's reader too). Every
line gets one AdmissionRecord, admitted or refused; then the policy's canaries follow
as indices n.. (one record per repeat). Commitments are salted with salts derived
from the run secret (attest.commitment), over the text exactly as trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from attest.admission import Findings, Metadata, decide, inspect_example
from attest.canary import canary_metadata, canary_prefix, canary_text
from attest.commitment import Content, Opening, commit, derive_salt
from attest.dataset import Example
from attest.policy import Policy
from attest.progress import Progress, is_enabled
from attest.records import AdmissionRecord


@dataclass(frozen=True)
class Canary:
    """One planted canary: its secret (private), its text and its admission indices."""

    secret: str
    text: str
    prefix: str  # the template text before the secret
    indices: tuple[int, ...]


@dataclass
class Admission:
    records: list[AdmissionRecord] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)  # admitted index -> text as trained on
    profiles: dict[int, str] = field(default_factory=dict)  # admitted index -> profile
    # admitted index -> task fields of registry.Item ({"label": ...} / {"prompt": ...})
    fields: dict[int, Mapping[str, str]] = field(default_factory=dict)
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
    adm: Admission,
    policy: Policy,
    run_secret: bytes,
    meta: Metadata,
    findings: Findings,
    text: str,
    content: Content | None = None,  # default: the text (text form, canaries)
    fields: Mapping[str, str] | None = None,
) -> None:
    index = len(adm.records)
    salt = derive_salt(run_secret, index)
    decision = decide(policy, meta, findings)
    adm.records.append(
        AdmissionRecord(
            index,
            commit(salt, text if content is None else content),
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
        if fields:
            adm.fields[index] = dict(fields)


def admit(policy: Policy, examples: Sequence[Example], run_secret: bytes) -> Admission:
    """Judge every example in order, then plant the policy's canaries. Never raises on content.

    Progress (attest.progress, when the command shows it): nothing for a dataset admitted
    within a second, else a bar or periodic lines."""
    adm = Admission()
    seen: set[str] = set()
    with Progress("admitting", len(examples), unit="examples", quiet=not is_enabled(),
                  delay_s=1.0) as bar:  # fmt: skip
        for ex in examples:
            findings, trained = inspect_example(policy, ex, seen)
            meta = Metadata(ex.license, ex.source, ex.data_class, ex.consent, len(trained.text))
            _record(adm, policy, run_secret, meta, findings, trained.text, trained.content,
                    trained.fields)  # fmt: skip
            bar.advance()
    # The canary texts and metadata are attest.canary's: the verifier re-derives them.
    c = policy.canaries
    before = canary_prefix(c)
    meta = canary_metadata(c)
    for number in range(c.count):
        text = canary_text(run_secret, c, number)
        secret = text[len(before) : len(before) + c.digits]
        first = len(adm.records)
        for _ in range(c.repeats):
            # Canaries are the policy's own text: content rules do not apply (admission.decide).
            _record(adm, policy, run_secret, meta, Findings(), text)
        adm.canaries.append(Canary(secret, text, before, tuple(range(first, len(adm.records)))))
    return adm

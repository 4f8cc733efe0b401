"""The forger: a run's signed evidence, editable, rewritten and re-signed with the producer's key.

The malicious-producer case: the attacker holds the producer's own key, so every
signature in a forged run is valid. `Evidence` loads a run's records and statements,
lets a test edit them, and `write` rebuilds everything a lazy verifier could lean on
(log files with an intact ``prev`` chain via attest.log.LogWriter, log summaries,
heads, counts, the memorization report, weight subjects, policy digests) and re-signs
every statement with attest.envelope.sign_statement. What is left inconsistent is
only the lie itself, which the verifier has to find by its semantics.
`resign_step_log` is the narrow case: a new step log, nothing else recomputed.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attest.bundle import encode_bundle, read_bundle
from attest.envelope import sign_statement, verify_envelope
from attest.keys import load_public_key, load_signer
from attest.log import LogSummary, LogWriter, iter_log
from attest.policy import Policy
from attest.predicates import (
    ADMISSIONS_FILE,
    ADMISSIONS_TYPE,
    MEMORIZATION_TYPE,
    POLICY_FILE,
    POLICY_TYPE,
    STEPS_FILE,
    TRAINING_TYPE,
    file_subject,
    state_root_subject,
)
from attest.statement import Statement, Subject
from attest.tensors import hash_safetensors, state_root

BUNDLE = "bundle.intoto.jsonl"
OURS = (POLICY_TYPE, ADMISSIONS_TYPE, TRAINING_TYPE, MEMORIZATION_TYPE)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def strip_prev(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != "prev"}


@dataclass
class Evidence:
    """A run's signed evidence, editable. Record dicts carry no ``prev`` (LogWriter sets it)."""

    policy_bytes: bytes
    admissions: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    predicates: dict[str, dict[str, Any]]  # predicate type -> predicate (ours only)
    subjects: dict[str, list[Subject]]
    order: list[str]  # predicate types in bundle order ("" marks a foreign envelope)
    foreign: list[dict[str, Any]] = field(default_factory=list)  # envelopes kept verbatim

    @classmethod
    def load(cls, run: Path, pub: Path | None) -> Evidence:
        """Read ``run``'s evidence; with ``pub``, every envelope is verified first."""
        prov = run / "provenance"
        key = None if pub is None else load_public_key(pub)
        predicates: dict[str, dict[str, Any]] = {}
        subjects: dict[str, list[Subject]] = {}
        order: list[str] = []
        foreign: list[dict[str, Any]] = []
        raw_lines = (prov / BUNDLE).read_bytes().splitlines()
        for bl, raw in zip(read_bundle(prov / BUNDLE), raw_lines, strict=True):
            st = (
                Statement.from_payload(bl.envelope.payload)  # the signed bytes
                if key is None
                else verify_envelope(bl.envelope, [key]).statement
            )
            if st.predicate_type in OURS:
                predicates[st.predicate_type] = copy.deepcopy(dict(st.predicate))
                subjects[st.predicate_type] = list(st.subjects)
                order.append(st.predicate_type)
            else:
                foreign.append(json.loads(raw))
                order.append("")
        return cls(
            (prov / POLICY_FILE).read_bytes(),
            [strip_prev(r.value) for r in iter_log(prov / ADMISSIONS_FILE)],
            [strip_prev(r.value) for r in iter_log(prov / STEPS_FILE)],
            predicates,
            subjects,
            order,
            foreign,
        )

    # -- helpers for tests ------------------------------------------------------------

    def step(self, t: int) -> dict[str, Any]:
        """Step record of step ``t`` (1-based; record 0 is the start record)."""
        rec = self.steps[t]
        assert rec["step"] == t
        return rec

    # -- rebuild ----------------------------------------------------------------------

    def write(
        self,
        run: Path,
        signer: Any,
        *,
        steps_raw: bytes | None = None,
        admissions_raw: bytes | None = None,
        recompute_steps: bool = True,
        recompute_final: bool = True,
        recompute_weights: bool = True,
        recount: bool = True,
        remember: bool = True,
        patch_step_log: dict[str, Any] | None = None,
    ) -> None:
        """Write sidecars and a re-signed bundle into ``run``, consistent except for the lie."""
        prov = run / "provenance"
        (prov / POLICY_FILE).write_bytes(self.policy_bytes)
        adm = _write_log(prov / ADMISSIONS_FILE, self.admissions, admissions_raw)
        stp = _write_log(prov / STEPS_FILE, self.steps, steps_raw)
        if patch_step_log:
            stp = LogSummary.from_dict({**stp.to_dict(), **patch_step_log})
        p = self.predicates
        try:
            policy = Policy.from_toml(self.policy_bytes)
            digest: str | None = policy.digest()
        except Exception:  # noqa: BLE001 - a forged policy may be invalid on purpose
            policy, digest = None, None
        for pred in p.values():
            if digest is not None:
                pred["policyDigest"] = digest
        pol = p[POLICY_TYPE]
        if policy is not None:
            pol["policy"] = policy.to_dict()
        self.subjects[POLICY_TYPE] = [
            file_subject(POLICY_FILE, hashlib.sha256(self.policy_bytes).hexdigest())
        ]

        a = p[ADMISSIONS_TYPE]
        a["log"] = adm.to_dict()
        if recount and admissions_raw is None:
            a["counts"] = {
                "total": len(self.admissions),
                "admitted": sum(r.get("decision") == "admit" for r in self.admissions),
                "refused": sum(r.get("decision") != "admit" for r in self.admissions),
                "canaries": sum(bool(r.get("metadata", {}).get("canary")) for r in self.admissions),
            }
        self.subjects[ADMISSIONS_TYPE] = [file_subject(ADMISSIONS_FILE, adm.sha256)]

        t = p[TRAINING_TYPE]
        t["admissionHead"] = adm.head
        t["stepLog"] = stp.to_dict()
        if steps_raw is None:
            if recompute_steps:
                t["steps"] = len(self.steps) - 1
            if "baseStateRoot" in self.steps[0]:
                t["baseStateRoot"] = self.steps[0]["baseStateRoot"].hex()
                t["baseModel"] = {**t["baseModel"], "stateRoot": t["baseStateRoot"]}
            if recompute_final and len(self.steps) > 1:
                t["finalStateRoot"] = self.steps[-1]["stateRoot"].hex()
        weight_subjects = []
        for w in t["weights"]:
            if recompute_weights and (run / w["name"]).exists():
                w["sha256"] = sha256_file(run / w["name"])
            weight_subjects.append(file_subject(w["name"], w["sha256"]))
        for c in t.get("checkpoints", []):
            if recompute_weights and (run / c["file"]).exists():
                c["sha256"] = sha256_file(run / c["file"])
        self.subjects[TRAINING_TYPE] = weight_subjects + [state_root_subject(t["finalStateRoot"])]

        m = p[MEMORIZATION_TYPE]
        m["stepLogHead"] = stp.head
        if remember and steps_raw is None:
            events = [{**e, "step": r["step"]} for r in self.steps[1:] for e in r.get("events", [])]
            m["events"] = events
            m["quarantined"] = sorted({e["example"] for e in events if e["kind"] == "quarantine"})
            m["halted"] = any(e["kind"] == "halt" for e in events)
        self.subjects[MEMORIZATION_TYPE] = list(weight_subjects)
        self.sign_bundle(run, signer)

    def sign_bundle(self, run: Path, signer: Any) -> None:
        """Sign the predicates as they are now (no sidecar rewritten, nothing recomputed)."""
        p = self.predicates
        prov = run / "provenance"
        envelopes: list[dict[str, Any]] = []
        foreign = iter(self.foreign)
        for ptype in self.order:
            if ptype == "":
                envelopes.append(next(foreign))
                continue
            st = Statement(tuple(self.subjects[ptype]), ptype, p[ptype])
            envelopes.append(sign_statement(st, [signer]))
        (prov / BUNDLE).write_bytes(encode_bundle(envelopes))


def _write_log(path: Path, records: list[dict[str, Any]], raw: bytes | None) -> LogSummary:
    if raw is not None:
        path.write_bytes(raw)
        return LogSummary(0, "00" * 32, "00" * 32, hashlib.sha256(raw).hexdigest())
    path.unlink(missing_ok=True)
    with LogWriter(path) as w:
        for r in records:
            w.append(r)
        return w.summary()


def weights_root(path: Path) -> str:
    return state_root(hash_safetensors(path).leaves).hex()


def sign_foreign(signer: Any, predicate_type: str, predicate: dict[str, Any]) -> dict[str, Any]:
    """A validly signed statement of a predicate type govtune does not know."""
    st = Statement(
        (Subject("model.safetensors", {"sha256": "00" * 32}),), predicate_type, predicate
    )
    return sign_statement(st, [signer])


def payload_of(envelope: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(envelope["payload"]))  # type: ignore[no-any-return]


def resign_step_log(
    run: Path, key: Path, records: list[Any], checkpoints: dict[str, str] | None = None
) -> None:
    """Write ``records`` (attest.records objects) as the step log and re-sign every statement.

    Only what commits to the step log follows it (log summary and head, step count, state
    roots); weights, counts and memorization events stay as signed. ``checkpoints`` maps a
    checkpoint file to its new sha256 in the training predicate.
    """
    ev = Evidence.load(run, None)
    ev.steps = [strip_prev(r.to_record()) for r in records]
    for c in ev.predicates[TRAINING_TYPE].get("checkpoints", []):
        c["sha256"] = (checkpoints or {}).get(c["file"], c["sha256"])
    ev.write(run, load_signer(key), recompute_weights=False, recount=False, remember=False)

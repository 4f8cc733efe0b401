"""The four signed statements of a run (CONTEXT.md "The run folder"), and the private folder.

Statements are built from the attest predicate dataclasses, signed once as RFC 8785
bytes (attest.envelope.sign_statement) and written as one bundle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer

from attest.atomic import write_atomic
from attest.bundle import write_bundle
from attest.commitment import Opening
from attest.envelope import sign_statement
from attest.log import LogSummary
from attest.policy import Policy
from attest.predicates import (
    BUNDLE_FILE,
    POLICY_FILE,
    AdmissionsPredicate,
    Checkpoint,
    MemorizationPredicate,
    PolicyPredicate,
    TrainingPredicate,
    build_statement,
    file_subject,
    state_root_subject,
)
from attest.records import Event

WEIGHTS_FILE = "model.safetensors"


def write_private(
    run: Path, run_secret: bytes, openings: Sequence[Opening], canary_texts: Mapping[int, str]
) -> None:
    """private/ (0700): run-secret (0600), openings.jsonl and canaries.jsonl (0600).

    canaries.jsonl holds the planted canaries' texts, which an auditor needs to open
    their commitments and a replay needs to re-run steps that used them.
    """
    priv = run / "private"
    priv.mkdir(mode=0o700, exist_ok=True)
    os.chmod(priv, 0o700)
    write_atomic(priv / "run-secret", run_secret.hex().encode() + b"\n", mode=0o600)
    lines = b"".join(json.dumps(o.to_dict(), sort_keys=True).encode() + b"\n" for o in openings)
    write_atomic(priv / "openings.jsonl", lines, mode=0o600)
    can = b"".join(
        json.dumps({"index": i, "text": t}, sort_keys=True).encode() + b"\n"
        for i, t in sorted(canary_texts.items())
    )
    write_atomic(priv / "canaries.jsonl", can, mode=0o600)


@dataclass(frozen=True)
class RunFacts:
    """Everything the statements say, gathered by the loop."""

    run_id: str
    policy: Policy
    policy_sha256: str
    admissions: LogSummary
    counts: Mapping[str, int]
    dataset: Mapping[str, Any]  # {"sha256", "examples"}
    steps_log: LogSummary
    steps: int
    config: Mapping[str, Any]
    config_digest: str
    environment: Mapping[str, Any]
    base_model: Mapping[str, Any]
    base_state_root: str
    final_state_root: str
    weights: tuple[tuple[str, str], ...]  # (file name in the run folder, sha256 hex) per file
    checkpoints: tuple[Checkpoint, ...]
    events: tuple[tuple[int, Event], ...]  # (step, event) in log order
    quarantined: tuple[int, ...]
    halted: bool
    canaries: tuple[Mapping[str, Any], ...]
    reference: Mapping[str, Any]
    started_on: str
    finished_on: str
    builder: str
    extra: Mapping[str, Any]
    # the released model's other files (config, tokenizer, adapter config): (name, sha256)
    model_files: tuple[tuple[str, str], ...] = ()


def statements(f: RunFacts) -> list[Any]:
    pd = f.policy.digest()
    weights = [file_subject(name, sha) for name, sha in f.weights]
    model_files = [file_subject(name, sha) for name, sha in f.model_files]
    return [
        build_statement(
            [file_subject(POLICY_FILE, f.policy_sha256)],
            PolicyPredicate(f.run_id, pd, f.policy.to_dict()),
        ),
        build_statement(
            [file_subject("admissions.msgpack", f.admissions.sha256)],
            AdmissionsPredicate(f.run_id, pd, f.admissions, dict(f.counts), dict(f.dataset)),
        ),
        build_statement(
            [*weights, *model_files, state_root_subject(f.final_state_root)],
            TrainingPredicate(
                run_id=f.run_id,
                policy_digest=pd,
                base_model=dict(f.base_model),
                dataset=dict(f.dataset),
                admission_head=f.admissions.head,
                config=dict(f.config),
                config_digest=f.config_digest,
                environment=dict(f.environment),
                step_log=f.steps_log,
                steps=f.steps,
                base_state_root=f.base_state_root,
                final_state_root=f.final_state_root,
                weights=tuple({"name": name, "sha256": sha} for name, sha in f.weights),
                model_files=tuple({"name": n, "sha256": sha} for n, sha in f.model_files),
                checkpoints=f.checkpoints,
                started_on=f.started_on,
                finished_on=f.finished_on,
                builder=f.builder,
                extra=dict(f.extra),
            ),
        ),
        build_statement(
            weights,
            MemorizationPredicate(
                f.run_id,
                pd,
                f.steps_log.head,
                tuple({**e.to_record(), "step": t} for t, e in f.events),
                f.quarantined,
                f.halted,
                f.canaries,
                dict(f.reference),
            ),
        ),
    ]


def sign_bundle(run: Path, facts: RunFacts, signer: Signer) -> Path:
    """Sign the four statements and write provenance/bundle.intoto.jsonl. Returns its path."""
    path = run / "provenance" / BUNDLE_FILE
    write_bundle(path, [sign_statement(s, [signer]) for s in statements(facts)])
    return path

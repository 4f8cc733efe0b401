"""spec/ agrees with attest/ and verifier/: schemas validate what the library builds and
reject what it refuses; every check code, type URI, limit and worked example in the
prose matches the code."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import struct
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from attest import canonical_json, commit, derive_salt, keys, merkle, sign_statement
from attest.admission import Findings, Metadata, decide, inspect_content
from attest.errors import FormatError, PolicyError
from attest.limits import DEFAULT_LIMITS
from attest.log import LogSummary, LogWriter, iter_log
from attest.policy import Policy
from attest.predicates import (
    ADMISSIONS_FILE,
    POLICY_FILE,
    REQUIRED_TYPES,
    AdmissionsPredicate,
    Checkpoint,
    MemorizationPredicate,
    PolicyPredicate,
    TrainingPredicate,
    build_statement,
    file_subject,
    parse_predicate,
    state_root_subject,
)
from attest.records import AdmissionRecord, Event, StartRecord, StepRecord
from attest.statement import Statement
from attest.tensors import state_root, tensor_leaf_hash
from verifier.codes import CHECKS

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "spec"
SCHEMAS = SPEC / "schemas"
DEMO_POLICY = ROOT / "trainer" / "data" / "demo-policy.toml"
RUN_ID = "4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a88"


# -- schema plumbing ----------------------------------------------------------


def _load_schemas() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(SCHEMAS.glob("*.schema.json"))}


SCHEMA_DOCS = _load_schemas()
REGISTRY: Registry = Registry().with_resources(
    (doc["$id"], Resource.from_contents(doc)) for doc in SCHEMA_DOCS.values()
)


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(SCHEMA_DOCS[name], registry=REGISTRY)


def errors(name: str, instance: object) -> list[str]:
    return [e.message for e in validator(name).iter_errors(instance)]


def json_view(value: Any) -> Any:
    """The JSON view of a record (spec/records.md §7): bin values as lowercase hex."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: json_view(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_view(v) for v in value]
    return value


def as_json(value: Any) -> Any:
    """What a reader of the canonical JSON sees (2.0 becomes 2, tuples become lists)."""
    return json.loads(canonical_json(value))


def test_expected_schema_files_exist() -> None:
    expected = {
        "common.schema.json",
        "envelope.schema.json",
        "statement.schema.json",
        "policy.schema.json",
        "policy-predicate.schema.json",
        "admission-log-predicate.schema.json",
        "training-run-predicate.schema.json",
        "memorization-report-predicate.schema.json",
        "admission-record.schema.json",
        "start-record.schema.json",
        "step-record.schema.json",
    }
    assert set(SCHEMA_DOCS) == expected


@pytest.mark.parametrize("name", sorted(SCHEMA_DOCS))
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    doc = SCHEMA_DOCS[name]
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].endswith("/" + name)


# -- policy ---------------------------------------------------------------------


def _spec_example_policy() -> bytes:
    text = (SPEC / "policy.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "spec/policy.md must hold exactly one TOML example"
    return blocks[0].encode()


def policy_sources() -> list[tuple[str, bytes]]:
    out = [("spec-example", _spec_example_policy())]
    if DEMO_POLICY.exists():
        out.append(("demo-policy", DEMO_POLICY.read_bytes()))
    return out


EXAMPLE_POLICY = Policy.from_toml(_spec_example_policy())


@pytest.mark.parametrize(("label", "data"), policy_sources(), ids=[s[0] for s in policy_sources()])
def test_policy_to_dict_matches_schema(label: str, data: bytes) -> None:
    policy = Policy.from_toml(data, where=label)
    assert errors("policy.schema.json", as_json(policy.to_dict())) == []


def test_minimal_policy_with_defaults_matches_schema() -> None:
    minimal = (
        b'name = "m"\n[licenses]\nallow = ["permissive"]\n'
        b'[profiles.all]\npatterns = ["*"]\n[[assign]]\nprofile = "all"\n'
    )
    assert errors("policy.schema.json", as_json(Policy.from_toml(minimal).to_dict())) == []


def test_spec_example_policy_digest_is_the_one_printed() -> None:
    text = (SPEC / "policy.md").read_text()
    assert f"Its digest is `{EXAMPLE_POLICY.digest()}`" in text


def test_spec_example_policy_decisions_are_the_ones_printed() -> None:
    p = EXAMPLE_POLICY
    docs = decide(
        p,
        Metadata("MIT", "https://docs.acme.example/faq", "docs", False, 120),
        Findings(("email",)),
    )
    assert (docs.admitted, docs.profile) == (True, "deep")
    assert [o.outcome for o in docs.outcomes if o.outcome != "pass"] == ["masked"]
    chat = decide(
        p, Metadata("CC0-1.0", "hf://datasets/acme/chat", "customer-chat", True, 300), Findings()
    )
    assert (chat.admitted, chat.profile) == (True, "shallow")
    bad = decide(
        p,
        Metadata("GPL-3.0-only", "https://github.com/acme/secrets-x", "customer-chat", False, 3),
        Findings(("credit-card",), True, True),
    )
    assert (bad.admitted, bad.profile) == (False, None)
    assert bad.reasons == ("license", "consent", "source", "length", "optout", "duplicate")
    canary = decide(
        p,
        Metadata("LicenseRef-govtune-canary", "govtune:canary", "canary", True, 44, True),
        Findings(),
    )
    assert (canary.admitted, canary.profile, len(canary.outcomes)) == (True, "canary", 1)


POLICY_NEGATIVE: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("unknown-top-level-key", lambda d: d.update(extra={})),
    ("unknown-nested-key", lambda d: d["pii"].update(mode="x")),
    ("missing-name", lambda d: d.pop("name")),
    ("wrong-version", lambda d: d.update(version="0.2")),
    ("pii-action-unknown", lambda d: d["pii"].update(action="drop")),
    ("pii-kind-unknown", lambda d: d["pii"].update(detect=["ssn"])),
    ("optout-not-hex", lambda d: d["optout"].update(digests=["ABC"])),
    ("empty-allow", lambda d: d["licenses"].update(allow=[])),
    ("length-not-int", lambda d: d["length"].update(min="1")),
    ("quantile-one", lambda d: d["memorization"].update(reference_quantile=1)),
    ("action-unknown", lambda d: d["memorization"].update(action="warn")),
    ("assign-unknown-key", lambda d: d["assign"][0]["when"].update(colour="red")),
    ("template-without-secret", lambda d: d["canaries"].update(template="no secret")),
    ("template-two-secrets", lambda d: d["canaries"].update(template="{secret}{secret}")),
    ("digits-too-many", lambda d: d["canaries"].update(digits=19)),
    ("profile-without-patterns", lambda d: d["profiles"]["deep"].update(patterns=[])),
]


@pytest.mark.parametrize(("label", "mutate"), POLICY_NEGATIVE, ids=[n for n, _ in POLICY_NEGATIVE])
def test_policy_schema_and_reader_both_reject(
    label: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    doc = as_json(EXAMPLE_POLICY.to_dict())
    mutate(doc)
    assert errors("policy.schema.json", doc), f"{label}: schema accepted"
    with pytest.raises(PolicyError):
        Policy.from_dict(doc)


# -- predicates and statements --------------------------------------------------


def _h(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def build_statements() -> dict[str, Statement]:
    pd = EXAMPLE_POLICY.digest()
    weights = file_subject("model.safetensors", _h("weights"))
    config = {"batch_size": 8, "lr": 0.001, "seed": 1234, "steps": 3}
    flag = Event("memorization-flag", 5, "loss-drop", 1.92, 1.5, "loss fell 1.92 nats")
    quarantine = Event("quarantine", 5, "loss-drop", None, None, "policy action quarantine")
    return {
        "policy": build_statement(
            [file_subject(POLICY_FILE, _h("policy.toml"))],
            PolicyPredicate(RUN_ID, pd, EXAMPLE_POLICY.to_dict()),
        ),
        "admission-log": build_statement(
            [file_subject(ADMISSIONS_FILE, _h("adm"))],
            AdmissionsPredicate(
                RUN_ID,
                pd,
                LogSummary(12, _h("head"), _h("root"), _h("adm")),
                {"total": 12, "admitted": 9, "refused": 3, "canaries": 2},
                {"sha256": _h("dataset"), "examples": 10},
            ),
        ),
        "training-run": build_statement(
            [weights, state_root_subject(_h("final"))],
            TrainingPredicate(
                run_id=RUN_ID,
                policy_digest=pd,
                base_model={"name": "tiny", "stateRoot": _h("base")},
                dataset={"sha256": _h("dataset"), "examples": 10},
                admission_head=_h("head"),
                config=config,
                config_digest=hashlib.sha256(canonical_json(config)).hexdigest(),
                environment={
                    "python": "3.11",
                    "torch": "2.13.0+cpu",
                    "deterministic": True,
                    "tolerance": 0.0,
                },
                step_log=LogSummary(4, _h("sh"), _h("sr"), _h("sf")),
                steps=3,
                base_state_root=_h("base"),
                final_state_root=_h("final"),
                weights=({"name": "model.safetensors", "sha256": _h("weights")},),
                checkpoints=(
                    Checkpoint(2, "checkpoints/step-000002.safetensors", _h("c"), _h("cr")),
                ),
                started_on="2026-11-28T21:04:11Z",
                finished_on="2026-11-28T21:19:52Z",
                builder="govtune 0.1.0",
            ),
        ),
        "memorization-report": build_statement(
            [weights],
            MemorizationPredicate(
                RUN_ID,
                pd,
                _h("sh"),
                ({**flag.to_record(), "step": 2}, {**quarantine.to_record(), "step": 2}),
                (5,),
                False,
                ({"index": 10, "exposure": 3.5, "step": 3},),
                {"count": 4, "quantiles": {"0.5": 2.5}},
            ),
        ),
    }


STATEMENTS = build_statements()
SIGNER = keys.generate("ecdsa")


@pytest.mark.parametrize("kind", sorted(STATEMENTS))
def test_signed_statement_matches_envelope_statement_and_predicate_schemas(kind: str) -> None:
    env = sign_statement(STATEMENTS[kind], [SIGNER])
    assert errors("envelope.schema.json", env) == []
    payload = json.loads(base64.b64decode(env["payload"]))
    assert payload["predicateType"] == f"https://govtune.dev/attestation/{kind}/v0.3"
    assert errors("statement.schema.json", payload) == []
    assert errors(f"{kind}-predicate.schema.json", payload["predicate"]) == []


def _mutated(kind: str, mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = as_json(STATEMENTS[kind].to_dict())
    mutate(doc)
    return doc


STATEMENT_NEGATIVE: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    ("policy-missing-runId", "policy", lambda d: d["predicate"].pop("runId")),
    ("policy-digest-uppercase", "policy", lambda d: d["predicate"].update(policyDigest="AB" * 32)),
    ("admissions-missing-log", "admission-log", lambda d: d["predicate"].pop("log")),
    (
        "admissions-count-string",
        "admission-log",
        lambda d: d["predicate"]["counts"].update(total="12"),
    ),
    (
        "admissions-count-bool",
        "admission-log",
        lambda d: d["predicate"]["counts"].update(refused=True),
    ),
    (
        "admissions-log-head-short",
        "admission-log",
        lambda d: d["predicate"]["log"].update(head="00"),
    ),
    ("training-steps-string", "training-run", lambda d: d["predicate"].update(steps="3")),
    ("training-steps-negative", "training-run", lambda d: d["predicate"].update(steps=-1)),
    ("training-missing-weights", "training-run", lambda d: d["predicate"].pop("weights")),
    (
        "training-weight-digest-bad",
        "training-run",
        lambda d: d["predicate"]["weights"][0].update(sha256="x"),
    ),
    (
        "training-checkpoint-no-root",
        "training-run",
        lambda d: d["predicate"]["checkpoints"][0].pop("stateRoot"),
    ),
    (
        "memorization-halted-string",
        "memorization-report",
        lambda d: d["predicate"].update(halted="no"),
    ),
    (
        "memorization-quarantined-bool",
        "memorization-report",
        lambda d: d["predicate"].update(quarantined=[True]),
    ),
    (
        "memorization-events-not-objects",
        "memorization-report",
        lambda d: d["predicate"].update(events=[1]),
    ),
]


@pytest.mark.parametrize(
    ("label", "kind", "mutate"), STATEMENT_NEGATIVE, ids=[n for n, _, _ in STATEMENT_NEGATIVE]
)
def test_predicate_schema_and_parser_both_reject(
    label: str, kind: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    doc = _mutated(kind, mutate)
    assert errors("statement.schema.json", doc), f"{label}: statement schema accepted"
    assert errors(f"{kind}-predicate.schema.json", doc["predicate"]), (
        f"{label}: predicate schema accepted"
    )
    with pytest.raises(FormatError):
        parse_predicate(Statement.from_dict(doc))


SUBJECT_NEGATIVE: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    ("training-without-state-root", "training-run", lambda d: d["subject"].pop(1)),
    (
        "training-two-state-roots",
        "training-run",
        lambda d: d["subject"].append(copy.deepcopy(d["subject"][1])),
    ),
    ("policy-wrong-file", "policy", lambda d: d["subject"][0].update(name="other.toml")),
    ("admissions-two-subjects", "admission-log", lambda d: d["subject"].append(d["subject"][0])),
    ("empty-subject", "policy", lambda d: d.update(subject=[])),
    (
        "wrong-statement-type",
        "policy",
        lambda d: d.update(_type="https://in-toto.io/Statement/v0.1"),
    ),
]


@pytest.mark.parametrize(
    ("label", "kind", "mutate"), SUBJECT_NEGATIVE, ids=[n for n, _, _ in SUBJECT_NEGATIVE]
)
def test_statement_schema_rejects_bad_subjects(
    label: str, kind: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    assert errors("statement.schema.json", _mutated(kind, mutate)), f"{label}: schema accepted"


def test_unknown_predicate_fields_are_ignored_by_schema_and_parser() -> None:
    doc = _mutated("training-run", lambda d: d["predicate"].update(futureField={"x": 1}))
    assert errors("statement.schema.json", doc) == []
    assert parse_predicate(Statement.from_dict(doc)) is not None


def test_unknown_predicate_type_is_a_valid_statement() -> None:
    doc = _mutated("policy", lambda d: d.update(predicateType="https://example.com/other/v1"))
    assert errors("statement.schema.json", doc) == []
    assert parse_predicate(Statement.from_dict(doc)) is None


@pytest.mark.parametrize(
    ("label", "mutate"),
    [
        ("payload-type", lambda e: e.update(payloadType="application/json")),
        ("missing-signatures", lambda e: e.pop("signatures")),
        ("sig-not-base64", lambda e: e["signatures"][0].update(sig="***")),
        # format.md §1.1.3: the unused bits of the last group are zero
        ("sig-nonzero-pad-bits-2", lambda e: e["signatures"][0].update(sig="QR==")),
        ("sig-nonzero-pad-bits-1", lambda e: e["signatures"][0].update(sig="QUJ=")),
        ("payload-url-safe", lambda e: e.update(payload="-_8=")),
        ("keyid-missing", lambda e: e["signatures"][0].pop("keyid")),
    ],
)
def test_envelope_schema_rejects(label: str, mutate: Callable[[dict[str, Any]], None]) -> None:
    env = sign_statement(STATEMENTS["policy"], [SIGNER])
    mutate(env)
    assert errors("envelope.schema.json", env), f"{label}: schema accepted"


@pytest.mark.parametrize("text", ["", "QQ==", "QUI=", "QUJD", "AAECAwQFBgcICQ=="])
def test_envelope_schema_accepts_canonical_base64(text: str) -> None:
    env = sign_statement(STATEMENTS["policy"], [SIGNER])
    env["payload"] = text
    assert not errors("envelope.schema.json", env)
    assert base64.b64encode(base64.b64decode(text)).decode() == text


def test_schema_base64_pattern_is_exactly_canonical_base64() -> None:
    """Every 1- and 2-byte string's encoding matches; every other last character does not."""
    pattern = re.compile(
        json.loads((SPEC / "schemas" / "common.schema.json").read_text())["$defs"]["base64"][
            "pattern"
        ]
    )
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    canonical = {base64.b64encode(bytes([a])).decode() for a in range(256)}
    canonical |= {base64.b64encode(bytes([0x41, b])).decode() for b in range(256)}
    for text in {f"{x}{y}==" for x in "AQ" for y in alphabet} | {f"QU{y}=" for y in alphabet}:
        assert bool(pattern.fullmatch(text)) == (text in canonical), text


@pytest.mark.parametrize("path", sorted((SPEC / "predicates").glob("*.md")), ids=lambda p: p.stem)
def test_predicate_doc_example_parses_and_validates(path: Path) -> None:
    blocks = re.findall(r"```json\n(.*?)```", path.read_text(), re.S)
    assert len(blocks) == 1, f"{path.name}: expected one JSON example"
    doc = json.loads(blocks[0])
    assert doc["predicateType"] == f"https://govtune.dev/attestation/{path.stem}/v0.3"
    assert errors("statement.schema.json", doc) == []
    statement = Statement.from_payload(canonical_json(doc))
    assert parse_predicate(statement) is not None


# -- records ----------------------------------------------------------------------


def write_logs(tmp_path: Path) -> tuple[Path, Path]:
    """Real admission and step logs built with the attest API."""
    policy = EXAMPLE_POLICY
    secret = bytes(range(32))
    seen: set[str] = set()
    texts = [
        (
            "MIT",
            "https://docs.acme.example/a",
            "docs",
            "Write to ops@acme.example for access to the system.",
        ),
        (
            "CC0-1.0",
            "hf://datasets/acme/chat",
            "customer-chat",
            "Thanks, that fixed my login problem!",
        ),
        (
            "GPL-3.0-only",
            "https://github.com/acme/x",
            "docs",
            "Copyleft text that the policy refuses.",
        ),
    ]
    adm = tmp_path / "admissions.msgpack"
    with LogWriter(adm) as w:
        for i, (lic, src, dc, text) in enumerate(texts):
            findings, trained = inspect_content(policy, text, seen)
            meta = Metadata(lic, src, dc, True, len(trained))
            d = decide(policy, meta, findings)
            c = commit(derive_salt(secret, i), trained)
            w.append(
                AdmissionRecord(i, c, meta, findings, d.outcomes, d.admitted, d.profile).to_record()
            )
        canary_meta = Metadata(
            "LicenseRef-govtune-canary", "govtune:canary", "canary", True, 44, True
        )
        d = decide(policy, canary_meta, Findings())
        w.append(
            AdmissionRecord(
                3,
                commit(derive_salt(secret, 3), "x" * 44),
                canary_meta,
                Findings(),
                d.outcomes,
                True,
                d.profile,
            ).to_record()
        )

    names = {"h.3.mlp.w": ("F32", (2,)), "lm_head.w": ("F32", (2,)), "h.0.ln_1.w": ("F32", (2,))}
    leaves = {
        n: tensor_leaf_hash(n, dt, sh, struct.pack("<2f", 0.5, float(i)))
        for i, (n, (dt, sh)) in enumerate(names.items())
    }
    steps = tmp_path / "steps.msgpack"
    with LogWriter(steps) as w:
        w.append(
            StartRecord(
                config_digest=_h("config"),
                policy_digest=policy.digest(),
                base_leaves=leaves,
                base_state_root=state_root(leaves),
                tensors=names,
                profiles=policy.resolve_profiles(sorted(names)),
                trainable=tuple(sorted(names)),
                heldout=(2,),
                extra={"seed": 1234, "mode": "strict-cpu"},
            ).to_record()
        )
        new = dict(leaves, **{"lm_head.w": tensor_leaf_hash("lm_head.w", "F32", (2,), b"\x00" * 8)})
        w.append(
            StepRecord(
                1,
                (0, 1),
                ("deep", "shallow"),
                (2.5, 2.0),
                (0.75, 0.0),
                0.001,
                {"lm_head.w": new["lm_head.w"]},
                state_root(new),
                (
                    Event("memorization-flag", 1, "loss-drop", 1.9, 1.5, "loss fell"),
                    Event("quarantine", 1),
                ),
                {
                    "file": "checkpoints/step-000001.safetensors",
                    "sha256": _h("ck"),
                    "stateRoot": state_root(new).hex(),
                },
                hashlib.sha256(b"rng").digest(),
            ).to_record()
        )
        w.append(
            StepRecord(2, (3,), ("canary",), (3.0,), (0.0,), 0.001, {}, state_root(new)).to_record()
        )
    return adm, steps


def test_real_logs_match_record_schemas(tmp_path: Path) -> None:
    adm, steps = write_logs(tmp_path)
    adm_records = [r.value for r in iter_log(adm)]
    step_records = [r.value for r in iter_log(steps)]
    assert len(adm_records) == 4 and len(step_records) == 3
    for rec in adm_records:
        AdmissionRecord.from_record(rec)
        assert errors("admission-record.schema.json", json_view(rec)) == []
    assert errors("start-record.schema.json", json_view(step_records[0])) == []
    for rec in step_records[1:]:
        StepRecord.from_record(rec)
        assert errors("step-record.schema.json", json_view(rec)) == []


def _first(tmp_path: Path, which: int) -> dict[str, Any]:
    adm, steps = write_logs(tmp_path)
    path = adm if which == 0 else steps
    records = [r.value for r in iter_log(path)]
    return json_view(records[0 if which in (0, 1) else 1])


RECORD_NEGATIVE: list[tuple[str, int, str, Callable[[dict[str, Any]], None]]] = [
    ("admission-unknown-field", 0, "admission-record.schema.json", lambda d: d.update(note="x")),
    (
        "admission-missing-commitment",
        0,
        "admission-record.schema.json",
        lambda d: d.pop("commitment"),
    ),
    (
        "admission-commitment-31-bytes",
        0,
        "admission-record.schema.json",
        lambda d: d.update(commitment="00" * 31),
    ),
    (
        "admission-length-string",
        0,
        "admission-record.schema.json",
        lambda d: d["metadata"].update(length="5"),
    ),
    (
        "admission-unknown-rule",
        0,
        "admission-record.schema.json",
        lambda d: d["outcomes"][0].update(rule="colour"),
    ),
    (
        "admission-refused-with-profile",
        0,
        "admission-record.schema.json",
        lambda d: d.update(decision="refuse"),
    ),
    ("admission-version-2", 0, "admission-record.schema.json", lambda d: d.update(v=2)),
    ("start-missing-heldout", 1, "start-record.schema.json", lambda d: d.pop("heldout")),
    (
        "start-leaf-not-pair",
        1,
        "start-record.schema.json",
        lambda d: d["baseLeaves"][0].append("x"),
    ),
    ("start-root-short", 1, "start-record.schema.json", lambda d: d.update(baseStateRoot="ab")),
    ("step-zero", 2, "step-record.schema.json", lambda d: d.update(step=0)),
    ("step-batch-negative", 2, "step-record.schema.json", lambda d: d.update(batch=[-1, 1])),
    ("step-loss-string", 2, "step-record.schema.json", lambda d: d.update(loss=["2.5", 2.0])),
    (
        "step-event-unknown-kind",
        2,
        "step-record.schema.json",
        lambda d: d["events"][0].update(kind="note"),
    ),
    (
        "step-event-missing-detail",
        2,
        "step-record.schema.json",
        lambda d: d["events"][0].pop("detail"),
    ),
    ("step-rng-bool", 2, "step-record.schema.json", lambda d: d.update(rng=True)),
    ("step-unknown-field", 2, "step-record.schema.json", lambda d: d.update(seed=1)),
]


@pytest.mark.parametrize(
    ("label", "which", "schema", "mutate"),
    RECORD_NEGATIVE,
    ids=[n for n, _, _, _ in RECORD_NEGATIVE],
)
def test_record_schemas_reject(
    tmp_path: Path, label: str, which: int, schema: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    doc = _first(tmp_path, which)
    assert errors(schema, doc) == [], f"{label}: baseline must validate"
    mutate(doc)
    assert errors(schema, doc), f"{label}: schema accepted"


# -- prose agrees with code ---------------------------------------------------------

CODE_RE = re.compile(r"\bGT-[A-Z]+(?:-[A-Z]+)*\b")


def test_every_check_code_is_specified_and_every_specified_code_exists() -> None:
    catalog = {c.code for c in CHECKS}
    in_verification = set(CODE_RE.findall((SPEC / "verification.md").read_text()))
    assert catalog - in_verification == set(), "codes missing from spec/verification.md"
    assert in_verification - catalog == set(), (
        "spec/verification.md names codes not in verifier/codes.py"
    )
    for path in SPEC.rglob("*.md"):
        unknown = set(CODE_RE.findall(path.read_text())) - catalog
        assert unknown == set(), f"{path.relative_to(SPEC)} names unknown codes {sorted(unknown)}"


def test_every_check_code_has_a_table_row_in_its_layer() -> None:
    text = (SPEC / "verification.md").read_text()
    layer_heading = {
        "bundle": "### V1", "policy": "### V2", "admissions": "### V3", "chain": "### V4",
        "memorization": "### V5", "weights": "### V6", "base": "### V7", "data": "### V8",
        "replay": "### V9", "release": "### V10", "requirements": "### V11",
    }  # fmt: skip
    sections = re.split(r"(?=^### )", text, flags=re.M)
    for check in CHECKS:
        section = next(s for s in sections if s.startswith(layer_heading[check.layer]))
        assert f"| `{check.code}` | {check.title} |" in section, check.code


def test_every_predicate_type_has_its_spec_file() -> None:
    docs = {p.name: p.read_text() for p in (SPEC / "predicates").glob("*.md")}
    for uri in REQUIRED_TYPES:
        slug = uri.rsplit("/", 2)[1]
        assert f"Type URI: `{uri}`" in docs[f"{slug}.md"], uri
    declared = {m for text in docs.values() for m in re.findall(r"Type URI: `([^`]+)`", text)}
    assert declared == set(REQUIRED_TYPES)


def test_limits_table_mirrors_attest_limits() -> None:
    text = (SPEC / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([\d,]+)", text, re.M))
    assert set(rows) == {f.name for f in fields(DEFAULT_LIMITS)}
    for name, value in rows.items():
        assert int(value.replace(",", "")) == getattr(DEFAULT_LIMITS, name), name


def test_format_worked_examples_are_correct() -> None:
    text = (SPEC / "format.md").read_text()
    assert merkle.merkle_root([]).hex() in text
    assert merkle.merkle_root([b"a", b"b"]).hex() in text
    assert merkle.merkle_root([b"a", b"b", b"c"]).hex() in text
    w = tensor_leaf_hash("w", "F32", [2], struct.pack("<2f", 1.0, -2.0))
    b = tensor_leaf_hash("b", "F32", [0], b"")
    assert w.hex() in text and b.hex() in text
    assert state_root({"w": w, "b": b}).hex() in text
    salt = derive_salt(bytes(range(32)), 0)
    assert salt.hex() in text
    assert commit(salt, "Hello, world\n").hex() in text
    from attest.canonical import canonical_msgpack

    packed = canonical_msgpack({"b": 1, "a": [True, None, 1.5, -1, 200, b"\x00"]}).hex()
    assert packed == re.search(r"```\n(82 a1 61[^\n]*)\n```", text).group(1).replace(" ", "")  # type: ignore[union-attr]


# -- the shared test vectors (spec/vectors/, generated elsewhere) validate too ----------

VALID_RUNS = sorted((SPEC / "vectors" / "valid").glob("*/run"))


@pytest.mark.parametrize("run", VALID_RUNS, ids=[r.parent.name for r in VALID_RUNS])
def test_valid_vectors_match_schemas(run: Path) -> None:
    prov = run / "provenance"
    govtune = 0
    for n, line in enumerate((prov / "bundle.intoto.jsonl").read_bytes().splitlines(), 1):
        env = json.loads(line)
        assert errors("envelope.schema.json", env) == [], f"line {n}"
        payload = json.loads(base64.b64decode(env["payload"]))
        assert errors("statement.schema.json", payload) == [], f"line {n}"
        govtune += payload["predicateType"] in REQUIRED_TYPES
    assert govtune == len(REQUIRED_TYPES)
    policy = Policy.from_toml((prov / "policy.toml").read_bytes())
    assert errors("policy.schema.json", as_json(policy.to_dict())) == []
    for rec in iter_log(prov / "admissions.msgpack"):
        assert errors("admission-record.schema.json", json_view(rec.value)) == [], rec.index
    for rec in iter_log(prov / "steps.msgpack"):
        schema = "start-record.schema.json" if rec.index == 0 else "step-record.schema.json"
        assert errors(schema, json_view(rec.value)) == [], rec.index


def test_pii_patterns_in_policy_md_are_the_code_patterns() -> None:
    from attest import pii

    text = (SPEC / "policy.md").read_text()
    rows = dict(re.findall(r"^\| `(credit-card|email|phone)` \| `[VE]` \| `(.+?)`[ ,]", text, re.M))
    documented = {k: v.replace("\\|", "|") for k, v in rows.items()}
    assert documented == {
        "credit-card": pii.CARD.pattern,
        "email": pii.EMAIL_LOCAL.pattern + pii.EMAIL_DOMAIN.pattern,
        "phone": pii.PHONE.pattern,
    }
    # the portable subset: no lookaround, no flags, no \d/\w (whose meaning varies by engine)
    for pattern in (pii.CARD, pii.EMAIL_LOCAL, pii.EMAIL_DOMAIN, pii.PHONE):
        assert "(?" not in pattern.pattern and "\\d" not in pattern.pattern
        assert "\\w" not in pattern.pattern and pattern.flags == re.UNICODE
    version = tuple(int(x) for x in pii.UNICODE_VERSION.split("."))
    assert version >= (14, 0, 0) and "**Unicode 14.0.0 or later**" in text
    assert f"{len(pii.confusables()):,} code points" in text

"""govtune predicate types: round trips through signed statements and validation errors."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import fuzz

from attest.canonical import canonical_json
from attest.envelope import parse_envelope, sign_statement, verify_envelope
from attest.errors import FormatError
from attest.log import LogSummary
from attest.predicates import (
    ADMISSIONS_TYPE,
    MEMORIZATION_TYPE,
    POLICY_TYPE,
    REQUIRED_TYPES,
    STATE_ROOT_ALG,
    STATE_ROOT_SUBJECT,
    TRAINING_TYPE,
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
from attest.statement import Statement

RUN = "0123456789abcdef0123456789abcdef"
PD = "11" * 32
LOG = LogSummary(5, "22" * 32, "33" * 32, "44" * 32)


def policy_pred() -> PolicyPredicate:
    return PolicyPredicate(
        RUN, PD, {"version": "0.1", "name": "p", "length": {"min": 1, "max": 10}}
    )


def admissions_pred() -> AdmissionsPredicate:
    return AdmissionsPredicate(
        RUN,
        PD,
        LOG,
        {"total": 5, "admitted": 3, "refused": 2, "canaries": 0},
        {"sha256": "55" * 32, "examples": 5},
    )


def training_pred() -> TrainingPredicate:
    return TrainingPredicate(
        run_id=RUN,
        policy_digest=PD,
        base_model={"name": "tiny", "stateRoot": "66" * 32},
        dataset={"sha256": "55" * 32, "examples": 5},
        admission_head="22" * 32,
        config={"lr": 0.001, "steps": 3, "nested": {"a": [1, 2]}},
        config_digest="77" * 32,
        environment={"python": "3.11", "torch": "2.3"},
        step_log=LOG,
        steps=3,
        base_state_root="66" * 32,
        final_state_root="88" * 32,
        weights=({"name": "model.safetensors", "sha256": "99" * 32},),
        checkpoints=(Checkpoint(2, "checkpoints/step-000002.safetensors", "aa" * 32, "bb" * 32),),
        started_on="2026-01-01T00:00:00Z",
        finished_on="2026-01-01T00:01:00Z",
        builder="govtune 0.1",
        extra={"note": "x"},
    )


def memorization_pred() -> MemorizationPredicate:
    return MemorizationPredicate(
        RUN,
        PD,
        "22" * 32,
        (
            {
                "kind": "quarantine",
                "example": 3,
                "signal": "loss-drop",
                "value": 3.5,
                "threshold": 2.5,
                "detail": "",
                "step": 2,
            },
        ),
        (3,),
        False,
        ({"index": 5, "exposure": 4.25, "step": 3},),
        {"count": 8, "quantiles": {"0.01": 1.5}},
    )


PREDICATES = [
    ("policy", policy_pred, POLICY_TYPE),
    ("admissions", admissions_pred, ADMISSIONS_TYPE),
    ("training", training_pred, TRAINING_TYPE),
    ("memorization", memorization_pred, MEMORIZATION_TYPE),
]


@pytest.mark.parametrize("make,ptype", [c[1:] for c in PREDICATES], ids=[c[0] for c in PREDICATES])
def test_round_trip(make, ptype):
    pred = make()
    d = pred.to_dict()
    snapshot = copy.deepcopy(d)
    assert type(pred).from_dict(d) == pred
    assert d == snapshot
    st = build_statement([file_subject("model.safetensors", "99" * 32)], pred)
    assert st.predicate_type == ptype
    assert parse_predicate(st) == pred
    # through the signed bytes, as a verifier sees it
    assert parse_predicate(Statement.from_payload(canonical_json(st.to_dict()))) == pred


def test_round_trip_through_signature(ecdsa_signer):
    st = build_statement(
        [file_subject("model.safetensors", "99" * 32), state_root_subject("88" * 32)],
        training_pred(),
    )
    signed = verify_envelope(
        parse_envelope(sign_statement(st, [ecdsa_signer])), [ecdsa_signer.public_key]
    )
    assert parse_predicate(signed.statement) == training_pred()
    assert signed.statement.subject(STATE_ROOT_SUBJECT).digest == {STATE_ROOT_ALG: "88" * 32}


def test_unknown_predicate_type_is_ignored():
    st = Statement(
        (file_subject("x", "99" * 32),), "https://slsa.dev/provenance/v1", {"buildType": "x"}
    )
    assert parse_predicate(st) is None


def test_constants():
    assert REQUIRED_TYPES == (POLICY_TYPE, ADMISSIONS_TYPE, TRAINING_TYPE, MEMORIZATION_TYPE)
    assert len(set(REQUIRED_TYPES)) == 4
    assert all(
        t.startswith("https://govtune.dev/attestation/") and t.endswith("/v0.3")
        for t in REQUIRED_TYPES
    )
    assert file_subject("policy.toml", "ab" * 32).to_dict() == {
        "name": "policy.toml",
        "digest": {"sha256": "ab" * 32},
    }


def _with(make, **changes):
    return lambda: make().to_dict() | changes


def _without(make, key):
    return lambda: {k: v for k, v in make().to_dict().items() if k != key}


BAD = [
    (
        "policy-missing-runId",
        _without(policy_pred, "runId"),
        PolicyPredicate,
        r"^policy: missing runId",
    ),
    (
        "policy-runId-int",
        _with(policy_pred, runId=5),
        PolicyPredicate,
        r"policy\.runId: expected str, got int",
    ),
    (
        "policy-digest-upper",
        _with(policy_pred, policyDigest="AB" * 32),
        PolicyPredicate,
        r"policy\.policyDigest: expected 64 lowercase hex digits",
    ),
    (
        "policy-body-list",
        _with(policy_pred, policy=[]),
        PolicyPredicate,
        r"policy\.policy: expected dict, got list",
    ),
    (
        "admissions-count-missing",
        lambda: admissions_pred().to_dict() | {"counts": {"total": 1}},
        AdmissionsPredicate,
        r"admissions\.counts: missing admitted",
    ),
    (
        "admissions-count-bool",
        lambda: (
            admissions_pred().to_dict()
            | {"counts": {"total": True, "admitted": 1, "refused": 0, "canaries": 0}}
        ),
        AdmissionsPredicate,
        r"^admissions\.counts\.total: expected a non-negative integer, got True$",
    ),
    (
        "admissions-count-negative",
        lambda: (
            admissions_pred().to_dict()
            | {"counts": {"total": 1, "admitted": 2, "refused": -1, "canaries": 0}}
        ),
        AdmissionsPredicate,
        r"^admissions\.counts\.refused: expected a non-negative integer, got -1$",
    ),
    (
        "admissions-count-float",
        lambda: (
            admissions_pred().to_dict()
            | {"counts": {"total": 1.0, "admitted": 1, "refused": 0, "canaries": 0}}
        ),
        AdmissionsPredicate,
        r"^admissions\.counts\.total: expected a non-negative integer, got 1\.0$",
    ),
    # runId: 32 lowercase hex digits, checked where every predicate is parsed (not only V1)
    (
        "policy-run-id-short",
        _with(policy_pred, runId="ab" * 15),
        PolicyPredicate,
        r"^policy\.runId: expected 32 lowercase hex digits, got 'abab",
    ),
    (
        "admissions-run-id-upper",
        _with(admissions_pred, runId=RUN.upper()),
        AdmissionsPredicate,
        r"^admissions\.runId: expected 32 lowercase hex digits, got '0123456789ABCDEF",
    ),
    (
        "training-run-id-64",
        _with(training_pred, runId="ab" * 32),
        TrainingPredicate,
        r"^training\.runId: expected 32 lowercase hex digits",
    ),
    (
        "memorization-run-id-newline",
        _with(memorization_pred, runId=RUN + "\n"),
        MemorizationPredicate,
        r"^memorization\.runId: expected 32 lowercase hex digits",
    ),
    (
        "run-id-int",
        _with(policy_pred, runId=1),
        PolicyPredicate,
        r"^policy\.runId: expected str, got int$",
    ),
    (
        "training-checkpoint-step-zero",
        _with(
            training_pred,
            checkpoints=[{"step": 0, "file": "f", "sha256": "aa" * 32, "stateRoot": "bb" * 32}],
        ),
        TrainingPredicate,
        r"^training\.checkpoints\[0\]\.step: expected an integer >= 1, got 0$",
    ),
    (
        "training-checkpoint-step-negative",
        _with(
            training_pred,
            checkpoints=[{"step": -3, "file": "f", "sha256": "aa" * 32, "stateRoot": "bb" * 32}],
        ),
        TrainingPredicate,
        r"^training\.checkpoints\[0\]\.step: expected an integer >= 1, got -3$",
    ),
    (
        "admissions-log-head",
        lambda: admissions_pred().to_dict() | {"log": LOG.to_dict() | {"head": "x"}},
        AdmissionsPredicate,
        r"admissions\.log: log\.head: expected 64 lowercase hex",
    ),
    (
        "admissions-log-missing",
        _without(admissions_pred, "log"),
        AdmissionsPredicate,
        r"admissions: missing log",
    ),
    (
        "training-steps-bool",
        _with(training_pred, steps=True),
        TrainingPredicate,
        r"training\.steps: expected int, got a boolean",
    ),
    (
        "training-steps-negative",
        _with(training_pred, steps=-1),
        TrainingPredicate,
        r"training\.steps: expected a non-negative integer",
    ),
    (
        "training-steps-float",
        _with(training_pred, steps=3.0),
        TrainingPredicate,
        r"training\.steps: expected int, got float",
    ),
    (
        "training-weights-sha",
        _with(training_pred, weights=[{"name": "m", "sha256": "x"}]),
        TrainingPredicate,
        r"training\.weights\[0\]\.sha256: expected 64 lowercase hex",
    ),
    (
        "training-weights-name",
        _with(training_pred, weights=[{"sha256": "99" * 32}]),
        TrainingPredicate,
        r"training\.weights\[0\]: expected \{name, sha256\}",
    ),
    (
        "training-final-root",
        _with(training_pred, finalStateRoot="88" * 31),
        TrainingPredicate,
        r"training\.finalStateRoot: expected 64 lowercase hex",
    ),
    (
        "training-checkpoint-not-object",
        _with(training_pred, checkpoints=[1]),
        TrainingPredicate,
        r"training\.checkpoints\[0\]: expected an object",
    ),
    (
        "training-checkpoint-sha",
        _with(
            training_pred,
            checkpoints=[{"step": 1, "file": "f", "sha256": "z", "stateRoot": "bb" * 32}],
        ),
        TrainingPredicate,
        r"training\.checkpoints\[0\]\.sha256",
    ),
    (
        "training-steplog-missing",
        _without(training_pred, "stepLog"),
        TrainingPredicate,
        r"training: missing stepLog",
    ),
    (
        "training-builder-missing",
        _without(training_pred, "builder"),
        TrainingPredicate,
        r"training: missing builder",
    ),
    (
        "memorization-events-not-objects",
        _with(memorization_pred, events=[1]),
        MemorizationPredicate,
        r"memorization\.events: expected a list of objects",
    ),
    (
        "memorization-canaries-not-objects",
        _with(memorization_pred, canaries=["x"]),
        MemorizationPredicate,
        r"memorization\.canaries: expected a list of objects",
    ),
    (
        "memorization-quarantined-negative",
        _with(memorization_pred, quarantined=[-1]),
        MemorizationPredicate,
        r"memorization\.quarantined: expected a list of non-negative integers",
    ),
    (
        "memorization-halted-int",
        _with(memorization_pred, halted=0),
        MemorizationPredicate,
        r"memorization\.halted: expected bool, got int",
    ),
    (
        "memorization-head",
        _with(memorization_pred, stepLogHead=""),
        MemorizationPredicate,
        r"memorization\.stepLogHead: expected 64 lowercase hex",
    ),
]


@pytest.mark.parametrize("make,cls,match", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_validation_errors(make, cls, match):
    with pytest.raises(FormatError, match=match) as e:
        cls.from_dict(make())
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("make,ptype", [c[1:] for c in PREDICATES], ids=[c[0] for c in PREDICATES])
def test_unknown_fields_are_kept_and_round_trip(make, ptype):
    # STYLE 5 / spec README "Unknown fields": consumers ignore them, but a re-encoding
    # must not drop them (the signed bytes are verified as received, never rebuilt)
    d = make().to_dict() | {"zExtension": {"by": "a newer producer"}, "aFlag": True}
    snapshot = copy.deepcopy(d)
    pred = type(make()).from_dict(d)
    assert d == snapshot  # the caller's dict is not mutated
    assert pred.unrecognized == {"zExtension": {"by": "a newer producer"}, "aFlag": True}
    assert pred.to_dict() == d
    assert canonical_json(pred.to_dict()) == canonical_json(d)
    st = Statement((file_subject("x", "99" * 32),), ptype, d)
    assert parse_predicate(Statement.from_payload(canonical_json(st.to_dict()))) == pred


def test_checkpoint_keeps_unknown_fields_and_checks_step():
    d = {"step": 2, "file": "f", "sha256": "aa" * 32, "stateRoot": "bb" * 32, "note": 1}
    cp = Checkpoint.from_dict(d)
    assert cp.unrecognized == {"note": 1} and cp.to_dict() == d
    with pytest.raises(FormatError, match=r"^checkpoint\.step: expected an integer >= 1, got 0$"):
        Checkpoint(0, "f", "aa" * 32, "bb" * 32)


CONSTRUCTOR_BAD = [
    ("policy-run-id", lambda: PolicyPredicate("x", PD, {}), r"^policy\.runId: expected 32"),
    (
        "admissions-count",
        lambda: AdmissionsPredicate(
            RUN, PD, LOG, {"total": -1, "admitted": 0, "refused": 0, "canaries": 0}, {}
        ),
        r"^admissions\.counts\.total: expected a non-negative integer, got -1$",
    ),
    (
        "training-steps",
        lambda: dataclasses.replace(training_pred(), steps=-2),
        r"^training\.steps: expected a non-negative integer, got -2$",
    ),
    (
        "memorization-run-id",
        lambda: dataclasses.replace(memorization_pred(), run_id=RUN[:-1]),
        r"^memorization\.runId: expected 32 lowercase hex digits",
    ),
]


@pytest.mark.parametrize(
    "make,match", [c[1:] for c in CONSTRUCTOR_BAD], ids=[c[0] for c in CONSTRUCTOR_BAD]
)
def test_constructors_validate(make, match):
    with pytest.raises(FormatError, match=match):
        make()


def test_parse_predicate_raises_for_malformed_known_type():
    st = Statement((file_subject("x", "99" * 32),), TRAINING_TYPE, {"runId": RUN})
    with pytest.raises(FormatError, match=r"^predicate: missing"):
        parse_predicate(st)


# ------------------------------------------------------------------ fuzz: one field replaced


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([c[1] for c in PREDICATES]), st.data())
def test_any_field_replaced_raises_only_format_error(make, data):
    pred = make()
    d = pred.to_dict()
    path = data.draw(st.sampled_from(list(fuzz.paths(d))))
    mutated = fuzz.replace(d, path, data.draw(fuzz.junk))
    if not isinstance(mutated, dict):
        return  # from_dict takes a statement's predicate, always an object
    try:
        type(pred).from_dict(mutated)
    except FormatError as e:
        assert "\n" not in str(e)

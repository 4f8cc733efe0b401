"""The record model: AdmissionRecord, StartRecord, StepRecord, Event."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import fuzz

from attest.admission import Findings, Metadata, Outcome
from attest.canonical import canonical_msgpack, unpack_canonical_msgpack
from attest.errors import FormatError
from attest.log import LogWriter, iter_log
from attest.records import (
    AdmissionRecord,
    Event,
    StartRecord,
    StepRecord,
    parse_step_log_record,
)

L1, L2, ROOT = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


def admission(**kw) -> AdmissionRecord:
    base = dict(
        index=3,
        commitment=b"\x07" * 32,
        metadata=Metadata("MIT", "github.com/a/b", "code", False, 42),
        findings=Findings(("email",), False, False),
        outcomes=(
            Outcome("canary", "pass"),
            Outcome("pii", "masked", {"reason": "pii-masked", "kinds": ["email"]}),
        ),
        admitted=True,
        profile="deep",
    )
    return AdmissionRecord(**(base | kw))


def start(**kw) -> StartRecord:
    base = dict(
        config_digest="aa" * 32,
        policy_digest="bb" * 32,
        base_leaves={"b.w": L2, "a.w": L1},
        base_state_root=ROOT,
        tensors={"b.w": ("F32", (2, 3)), "a.w": ("BF16", (4,))},
        profiles={"deep": ("a.w", "b.w"), "shallow": ("b.w",)},
        trainable=("a.w", "b.w"),
        heldout=(5, 9),
        extra={"seed": 7},
    )
    return StartRecord(**(base | kw))


def step(**kw) -> StepRecord:
    base = dict(
        step=1,
        batch=(0, 3),
        profiles=("deep", "shallow"),
        loss=(2.5, 3.0),
        grad_norm=(0.5, 0.0),
        lr=1e-3,
        changed={"b.w": L2, "a.w": L1},
        state_root=ROOT,
        events=(Event("memorization-flag", 3, "loss-drop", 2.75, 2.5, "visit 2"), Event("halt")),
        checkpoint={
            "file": "checkpoints/step-000001.safetensors",
            "sha256": "cc" * 32,
            "stateRoot": "dd" * 32,
        },
        rng=b"\x09" * 32,
    )
    return StepRecord(**(base | kw))


SAMPLES = [
    ("admission", admission(), AdmissionRecord),
    ("admission-refused", admission(admitted=False, profile=None), AdmissionRecord),
    ("start", start(), StartRecord),
    (
        "start-minimal",
        start(heldout=(), extra={}, base_leaves={}, tensors={}, profiles={}),
        StartRecord,
    ),
    ("step", step(), StepRecord),
    (
        "step-minimal",
        step(
            batch=(),
            profiles=(),
            loss=(),
            grad_norm=(),
            changed={},
            events=(),
            checkpoint=None,
            rng=None,
        ),
        StepRecord,
    ),
]


@pytest.mark.parametrize("rec,cls", [c[1:] for c in SAMPLES], ids=[c[0] for c in SAMPLES])
def test_round_trip_through_canonical_msgpack(rec, cls):
    d = rec.to_record()
    assert cls.from_record(d) == rec
    raw = canonical_msgpack(d)
    back = cls.from_record(unpack_canonical_msgpack(raw))
    assert back == rec
    assert canonical_msgpack(back.to_record()) == raw


def test_golden_admission_record_keys():
    d = admission().to_record()
    assert list(unpack_canonical_msgpack(canonical_msgpack(d))) == [
        "commitment",
        "decision",
        "findings",
        "index",
        "kind",
        "metadata",
        "outcomes",
        "profile",
        "v",
    ]
    assert d["decision"] == "admit" and d["kind"] == "admission" and d["v"] == 1


def test_step_record_changed_is_sorted_pairs():
    assert step().to_record()["changed"] == [["a.w", L1], ["b.w", L2]]
    assert start().to_record()["baseLeaves"] == [["a.w", L1], ["b.w", L2]]


def test_step_log_through_writer(tmp_path):
    path = tmp_path / "steps.msgpack"
    recs = [start(), step(), step(step=2, events=())]
    with LogWriter(path) as w:
        for r in recs:
            w.append(r.to_record())
    got = [parse_step_log_record(r.value, r.index) for r in iter_log(path)]
    assert got == recs


def test_from_record_does_not_mutate():
    for rec, cls in [(admission(), AdmissionRecord), (start(), StartRecord), (step(), StepRecord)]:
        d = rec.to_record() | {"prev": b"\x00" * 32}
        snapshot = copy.deepcopy(d)
        cls.from_record(d)
        assert d == snapshot


def _with(make, **changes):
    return lambda: make().to_record() | changes


def _without(make, key):
    return lambda: {k: v for k, v in make().to_record().items() if k != key}


# (id, record dict factory, class, message)
BAD = [
    ("not-a-map", lambda: [1], AdmissionRecord, r"admission: expected a map, got list"),
    (
        "unknown-field",
        _with(admission, note="hi"),
        AdmissionRecord,
        r"admission: unknown field\(s\) note",
    ),
    (
        "missing-field",
        _without(admission, "commitment"),
        AdmissionRecord,
        r"admission: missing commitment",
    ),
    (
        "wrong-kind",
        _with(admission, kind="step"),
        AdmissionRecord,
        r"admission\.kind: expected 'admission', got 'step'",
    ),
    ("wrong-version", _with(admission, v=2), AdmissionRecord, r"admission\.v: expected 1, got 2"),
    (
        "index-negative",
        _with(admission, index=-1),
        AdmissionRecord,
        r"admission\.index: expected an integer >= 0",
    ),
    (
        "index-bool",
        _with(admission, index=True),
        AdmissionRecord,
        r"admission\.index: expected an integer >= 0, got True",
    ),
    (
        "commitment-short",
        _with(admission, commitment=b"x" * 31),
        AdmissionRecord,
        r"admission\.commitment: expected 32 bytes",
    ),
    (
        "commitment-hex-str",
        _with(admission, commitment="07" * 32),
        AdmissionRecord,
        r"admission\.commitment: expected 32 bytes",
    ),
    (
        "decision",
        _with(admission, decision="maybe"),
        AdmissionRecord,
        r"admission\.decision: expected 'admit' or 'refuse', got 'maybe'",
    ),
    (
        "profile-int",
        _with(admission, profile=1),
        AdmissionRecord,
        r"admission\.profile: expected a string or nil",
    ),
    (
        "outcomes-map",
        _with(admission, outcomes={}),
        AdmissionRecord,
        r"admission\.outcomes: expected a list",
    ),
    (
        "outcome-bad",
        _with(admission, outcomes=[{"rule": "x", "outcome": "pass", "detail": ""}]),
        AdmissionRecord,
        r"admission\.outcomes\[0\]: unknown rule/outcome",
    ),
    (
        "metadata-bad",
        _with(admission, metadata={"license": "MIT"}),
        AdmissionRecord,
        r"admission\.metadata: expected keys",
    ),
    (
        "findings-bad",
        _with(admission, findings={"pii": "email", "optout": False, "duplicate": False}),
        AdmissionRecord,
        r"admission\.findings\.pii: expected a sorted list",
    ),
    ("start-unknown-field", _with(start, seed=1), StartRecord, r"start: unknown field\(s\) seed"),
    (
        "start-missing",
        _without(start, "baseStateRoot"),
        StartRecord,
        r"start: missing baseStateRoot",
    ),
    (
        "start-dup-leaf",
        _with(start, baseLeaves=[["a", L1], ["a", L2]]),
        StartRecord,
        r"start\.baseLeaves\[1\]: duplicate tensor 'a'",
    ),
    (
        "start-leaf-short",
        _with(start, baseLeaves=[["a", b"x"]]),
        StartRecord,
        r"start\.baseLeaves\[0\]: expected 32 bytes",
    ),
    (
        "start-leaf-shape",
        _with(start, baseLeaves=[["a"]]),
        StartRecord,
        r"start\.baseLeaves\[0\]: expected \[name, leaf\]",
    ),
    (
        "start-tensors-bad",
        _with(start, tensors=[["a", "F32"]]),
        StartRecord,
        r"start\.tensors\[0\]: expected \[name, dtype, shape\]",
    ),
    (
        "start-tensor-dim",
        _with(start, tensors=[["a", "F32", [-1]]]),
        StartRecord,
        r"start\.tensors\[0\]\.shape",
    ),
    (
        "start-profiles-list",
        _with(start, profiles=[]),
        StartRecord,
        r"start\.profiles: expected a map",
    ),
    (
        "start-profile-names",
        _with(start, profiles={"p": [1]}),
        StartRecord,
        r"start\.profiles\.p: expected a list of strings",
    ),
    (
        "start-digest-bytes",
        _with(start, configDigest=b"x"),
        StartRecord,
        r"start\.configDigest: expected 64 lowercase hex digits, got b'x'",
    ),
    (
        "start-config-digest-upper",
        _with(start, configDigest="AA" * 32),
        StartRecord,
        r"start\.configDigest: expected 64 lowercase hex digits, got 'AAAA",
    ),
    (
        "start-policy-digest-short",
        _with(start, policyDigest="bb" * 31),
        StartRecord,
        r"start\.policyDigest: expected 64 lowercase hex digits, got 'bbbb",
    ),
    (
        # regression: a repeated tensor name silently collapsed into one map entry
        "start-dup-tensor",
        _with(start, tensors=[["a.w", "BF16", [4]], ["a.w", "F32", [4]], ["b.w", "F32", [2, 3]]]),
        StartRecord,
        r"^start\.tensors\[1\]: duplicate tensor 'a\.w'$",
    ),
    (
        "start-tensors-unsorted",
        _with(start, tensors=[["b.w", "F32", [2, 3]], ["a.w", "BF16", [4]]]),
        StartRecord,
        r"^start\.tensors\[1\]: expected names sorted by UTF-8 bytes, got 'a\.w' after 'b\.w'$",
    ),
    (
        "start-leaves-unsorted",
        _with(start, baseLeaves=[["b.w", L2], ["a.w", L1]]),
        StartRecord,
        r"^start\.baseLeaves\[1\]: expected names sorted by UTF-8 bytes, got 'a\.w' after 'b\.w'$",
    ),
    (
        # UTF-8 byte order (EF BD A1 < F0 9F 98 80), not UTF-16 order, where the surrogate
        # pair of U+1F600 (D83D ...) would sort before U+FF41
        "start-leaves-utf8-order",
        _with(start, baseLeaves=[["\U0001f600", L1], ["\uff41", L2]]),
        StartRecord,
        r"start\.baseLeaves\[1\]: expected names sorted by UTF-8 bytes",
    ),
    (
        "start-unknown-dtype",
        _with(start, tensors=[["a.w", "F31", [4]], ["b.w", "F32", [2, 3]]]),
        StartRecord,
        r"^start\.tensors\[0\]\.dtype: expected a safetensors dtype \(BOOL, U8, .*\), got 'F31'$",
    ),
    (
        "start-leaves-and-tensors-differ",
        _with(start, baseLeaves=[["a.w", L1], ["c.w", L2]]),
        StartRecord,
        r"^start: expected tensors and baseLeaves to name the same tensors, found only in "
        r"tensors \['b\.w'\], only in baseLeaves \['c\.w'\]$",
    ),
    (
        "start-heldout-str",
        _with(start, heldout=["1"]),
        StartRecord,
        r"start\.heldout: expected an integer",
    ),
    ("step-zero", _with(step, step=0), StepRecord, r"step\.step: expected an integer >= 1, got 0"),
    (
        "step-kind",
        _with(step, kind="start"),
        StepRecord,
        r"step\.kind: expected 'step', got 'start'",
    ),
    ("step-unknown", _with(step, weights=[]), StepRecord, r"step: unknown field\(s\) weights"),
    ("step-missing-rng", _without(step, "rng"), StepRecord, r"step: missing rng"),
    (
        "batch-float",
        _with(step, batch=[0, 1.0]),
        StepRecord,
        r"step\.batch: expected an integer >= 0",
    ),
    ("batch-not-list", _with(step, batch=5), StepRecord, r"step\.batch: expected a list"),
    (
        "loss-str",
        _with(step, loss=["1", 2.0]),
        StepRecord,
        r"step\.loss: expected a number, got '1'",
    ),
    (
        "loss-bool",
        _with(step, loss=[True, 2.0]),
        StepRecord,
        r"step\.loss: expected a number, got True",
    ),
    (
        "lengths-differ",
        _with(step, loss=[1.0]),
        StepRecord,
        r"step 1: batch, profiles, loss and gradNorm differ",
    ),
    (
        "changed-unsorted",
        _with(step, changed=[["b", L1], ["a", L2]]),
        StepRecord,
        r"step\.changed\[1\]: expected names sorted and distinct, got 'a' after 'b'",
    ),
    (
        "changed-duplicate",
        _with(step, changed=[["a", L1], ["a", L2]]),
        StepRecord,
        r"step\.changed\[1\]: expected names sorted and distinct",
    ),
    (
        "changed-short-leaf",
        _with(step, changed=[["a", b"x"]]),
        StepRecord,
        r"step\.changed\[0\]: expected 32 bytes",
    ),
    ("changed-map", _with(step, changed={"a": L1}), StepRecord, r"step\.changed: expected a list"),
    (
        "state-root-short",
        _with(step, stateRoot=b"x"),
        StepRecord,
        r"step\.stateRoot: expected 32 bytes",
    ),
    ("rng-short", _with(step, rng=b"x"), StepRecord, r"step\.rng: expected 32 bytes"),
    (
        "checkpoint-list",
        _with(step, checkpoint=[]),
        StepRecord,
        r"^step\.checkpoint: expected nil or a map of file, sha256, stateRoot, got list$",
    ),
    (
        "checkpoint-missing-state-root",
        _with(step, checkpoint={"file": "c.safetensors", "sha256": "cc" * 32}),
        StepRecord,
        r"^step\.checkpoint: expected nil or a map of file, sha256, stateRoot, got \['file', "
        r"'sha256'\]$",
    ),
    (
        "checkpoint-extra-key",
        _with(
            step,
            checkpoint={"file": "c", "sha256": "cc" * 32, "stateRoot": "dd" * 32, "step": 1},
        ),
        StepRecord,
        r"step\.checkpoint: expected nil or a map of file, sha256, stateRoot, got \['file'",
    ),
    (
        "checkpoint-file-int",
        _with(step, checkpoint={"file": 1, "sha256": "cc" * 32, "stateRoot": "dd" * 32}),
        StepRecord,
        r"^step\.checkpoint\.file: expected a non-empty string, got 1$",
    ),
    (
        "checkpoint-sha-bytes",
        _with(step, checkpoint={"file": "c", "sha256": b"\xcc" * 32, "stateRoot": "dd" * 32}),
        StepRecord,
        r"^step\.checkpoint\.sha256: expected 64 lowercase hex digits",
    ),
    (
        "checkpoint-root-upper",
        _with(step, checkpoint={"file": "c", "sha256": "cc" * 32, "stateRoot": "DD" * 32}),
        StepRecord,
        r"^step\.checkpoint\.stateRoot: expected 64 lowercase hex digits",
    ),
    (
        "event-kind",
        _with(step, events=[Event("halt").to_record() | {"kind": "explode"}]),
        StepRecord,
        r"event\.kind: expected one of memorization-flag",
    ),
    (
        "event-missing-key",
        _with(step, events=[{"kind": "halt"}]),
        StepRecord,
        r"step\.events\[0\]: expected keys detail, example, kind, signal, threshold, value",
    ),
    (
        "event-example-negative",
        _with(step, events=[Event("halt").to_record() | {"example": -2}]),
        StepRecord,
        r"step\.events\[0\]\.example: expected an integer >= 0",
    ),
    (
        "event-value-str",
        _with(step, events=[Event("halt").to_record() | {"value": "1"}]),
        StepRecord,
        r"step\.events\[0\]\.value: expected a number",
    ),
    (
        "event-kind-int",
        _with(step, events=[Event("halt").to_record() | {"kind": 1}]),
        StepRecord,
        r"step\.events\[0\]\.kind: expected a string",
    ),
]


@pytest.mark.parametrize("make,cls,match", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_records(make, cls, match):
    with pytest.raises(FormatError, match=match) as e:
        cls.from_record(make())
    assert "\n" not in str(e.value)


def test_constructors_check_what_from_record_checks():
    with pytest.raises(FormatError, match=r"^start\.tensors 'a\.w': expected a safetensors dtype"):
        start(tensors={"a.w": ("float32", (4,)), "b.w": ("F32", (2, 3))})
    with pytest.raises(FormatError, match=r"^start: expected tensors and baseLeaves to name"):
        start(base_leaves={"a.w": L1})
    with pytest.raises(FormatError, match=r"^start\.policyDigest: expected 64 lowercase hex"):
        start(policy_digest="x")
    with pytest.raises(FormatError, match=r"^step 1\.checkpoint: expected nil or a map"):
        step(checkpoint={"file": "c"})


def test_trainer_checkpoint_shape_is_what_readers_accept():
    # trainer/loop.py writes {"file", "sha256", "stateRoot"}; nothing else is accepted
    cp = {
        "file": "checkpoints/step-000002.safetensors",
        "sha256": "ab" * 32,
        "stateRoot": "cd" * 32,
    }
    rec = step(step=2, checkpoint=cp)
    assert StepRecord.from_record(rec.to_record()).checkpoint == cp


def test_parse_step_log_record_dispatch():
    assert parse_step_log_record(start().to_record(), 0) == start()
    assert parse_step_log_record(step().to_record(), 4) == step()
    with pytest.raises(FormatError, match=r"steps\[0\]\.kind: expected 'start', got 'step'"):
        parse_step_log_record(step().to_record(), 0)
    with pytest.raises(FormatError, match=r"steps\[2\]\.kind: expected 'step', got 'start'"):
        parse_step_log_record(start().to_record(), 2)


def test_event_validates_kind():
    with pytest.raises(FormatError, match="event.kind: expected one of"):
        Event("nap")
    e = Event("canary-exposure", 12, "canary-exposure", 17.5, 10.0, "")
    assert Event.from_record(e.to_record()) == e
    assert Event.from_record(e.to_record() | {"value": 17}).value == 17.0


# ------------------------------------------------------------------ fuzz: one field replaced


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([(admission(), AdmissionRecord), (start(), StartRecord), (step(), StepRecord)]),
    st.data(),
)
def test_any_field_replaced_raises_only_format_error(sample, data):
    rec, cls = sample
    d = rec.to_record()
    path = data.draw(st.sampled_from(list(fuzz.paths(d))))
    mutated = fuzz.replace(d, path, data.draw(fuzz.junk))
    try:
        cls.from_record(mutated)
    except FormatError as e:
        assert "\n" not in str(e)

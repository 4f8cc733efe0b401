"""Red team (issue 9), bundle and statement claims: verification.md §4 "the four
statements were signed by the producer and bind one run and one policy", V1 (subjects,
unknown statements, "readable JSON"), format.md §1.2 (statement), §1.4 (bundle).

Written from the spec alone; every forged envelope is signed with the producer's key.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import mutate
import pytest
import tinyrun
from redteam import audit, failing, forge, full, resign

from attest.predicates import MEMORIZATION_TYPE, POLICY_TYPE, TRAINING_TYPE
from attest.statement import Subject
from verifier.api import verify

pytestmark = pytest.mark.slow

CHECKPOINT = "checkpoints/step-000006.safetensors"


def test_honest_run_passes(work: Path, honest: tinyrun.TinyRun) -> None:
    assert full(work, honest), [(f.code, f.message) for f in full(work, honest).failures]
    forge(work, honest, lambda ev: None)  # the forger's identity re-sign: the control
    assert full(work, honest)


from securesystemslib.dsse import Envelope  # noqa: E402

from attest.canonical import canonical_json  # noqa: E402
from attest.keys import load_signer, write_keypair  # noqa: E402

PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUNDLE = "provenance/bundle.intoto.jsonl"


def envelopes(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / BUNDLE).read_bytes().splitlines()]


def write_envelopes(run: Path, envs: list[dict[str, Any]]) -> None:
    (run / BUNDLE).write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in envs))


def sign_raw(payload: bytes, signer: Any, payload_type: str = PAYLOAD_TYPE) -> dict[str, Any]:
    """A DSSE envelope over exactly ``payload`` (no re-serialization), signed by ``signer``."""
    env = Envelope(payload, payload_type, {})
    env.sign(signer)
    return env.to_dict()  # type: ignore[no-any-return]


DUPLICATED = '"predicateType":"https://example.com/x/v1","predicateType":'


def index_of(run: Path, ptype: str) -> int:
    return next(
        i for i, e in enumerate(envelopes(run)) if mutate.payload_of(e)["predicateType"] == ptype
    )


def test_duplicate_predicate_type_key_in_signed_payload(
    work: Path, honest: tinyrun.TinyRun
) -> None:
    # {"predicateType": <foreign>, "predicateType": <training>}: a first-wins reader sees a
    # foreign statement, a last-wins one the training run. Not "readable JSON": must fail.
    i = index_of(work, TRAINING_TYPE)
    envs = envelopes(work)
    body = canonical_json(mutate.payload_of(envs[i])).decode()
    forged = body.replace('"predicateType":', DUPLICATED, 1)
    envs[i] = sign_raw(forged.encode(), mutate.signer(honest))
    write_envelopes(work, envs)
    assert "GT-STMT-FORMAT" in failing(audit(work, honest))


def test_unsigned_envelope_with_duplicate_predicate_type_key(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    # The same trick on an extra envelope signed by a stranger: it is not readable JSON, so it
    # is not an ignorable foreign statement and MUST verify.
    write_keypair(tmp_path / "stranger")
    envs = envelopes(work)
    body = canonical_json(mutate.payload_of(envs[0])).decode()
    forged = body.replace('"predicateType":', DUPLICATED, 1)
    envs.append(sign_raw(forged.encode(), load_signer(tmp_path / "stranger.key")))
    write_envelopes(work, envs)
    assert "GT-SIG-UNTRUSTED" in failing(audit(work, honest))


def test_identical_training_statement_twice(work: Path, honest: tinyrun.TinyRun) -> None:
    envs = envelopes(work)
    envs.append(envs[index_of(work, TRAINING_TYPE)])
    write_envelopes(work, envs)
    assert failing(audit(work, honest)) == {"GT-STMT-DUPLICATE"}


def test_payload_with_trailing_newline(work: Path, honest: tinyrun.TinyRun) -> None:
    i = index_of(work, POLICY_TYPE)
    envs = envelopes(work)
    envs[i] = sign_raw(canonical_json(mutate.payload_of(envs[i])) + b"\n", mutate.signer(honest))
    write_envelopes(work, envs)
    assert failing(audit(work, honest)) == {"GT-STMT-FORMAT"}


def test_payload_type_with_parameters(work: Path, honest: tinyrun.TinyRun) -> None:
    i = index_of(work, POLICY_TYPE)
    envs = envelopes(work)
    envs[i] = sign_raw(
        canonical_json(mutate.payload_of(envs[i])),
        mutate.signer(honest),
        PAYLOAD_TYPE + "; charset=utf-8",
    )
    write_envelopes(work, envs)
    assert "GT-SIG-PAYLOAD-TYPE" in failing(audit(work, honest))


def test_statement_type_of_older_in_toto_version(work: Path, honest: tinyrun.TinyRun) -> None:
    i = index_of(work, POLICY_TYPE)
    envs = envelopes(work)
    st = mutate.payload_of(envs[i])
    st["_type"] = "https://in-toto.io/Statement/v0.1"
    envs[i] = sign_raw(canonical_json(st), mutate.signer(honest))
    write_envelopes(work, envs)
    assert failing(audit(work, honest)) == {"GT-STMT-FORMAT"}


def test_uppercase_hex_subject_digest(work: Path, honest: tinyrun.TinyRun) -> None:
    # Same digest, other spelling: a byte-for-byte comparison elsewhere would miss the file.
    i = index_of(work, POLICY_TYPE)
    envs = envelopes(work)
    st = mutate.payload_of(envs[i])
    st["subject"][0]["digest"]["sha256"] = st["subject"][0]["digest"]["sha256"].upper()
    envs[i] = sign_raw(canonical_json(st), mutate.signer(honest))
    write_envelopes(work, envs)
    assert failing(audit(work, honest)) == {"GT-STMT-FORMAT"}


def test_absolute_subject_name(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        s = ev.subjects[POLICY_TYPE][0]
        ev.subjects[POLICY_TYPE] = [Subject("/" + s.name, dict(s.digest))]

    resign(work, honest, edit)
    assert failing(audit(work, honest)) & {"GT-STMT-FORMAT", "GT-STMT-BINDING"}


def test_two_state_root_subjects(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.subjects[TRAINING_TYPE].append(
            Subject("govtune:state-root", {"govtune-merkle-sha256": "ab" * 32})
        )

    resign(work, honest, edit)
    assert failing(audit(work, honest)) == {"GT-STMT-BINDING"}


def test_state_root_subject_with_extra_algorithm(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.subjects[TRAINING_TYPE] = [
            Subject(s.name, {**s.digest, "sha256": "ab" * 32})
            if s.name == "govtune:state-root"
            else s
            for s in ev.subjects[TRAINING_TYPE]
        ]

    resign(work, honest, edit)
    assert failing(audit(work, honest)) == {"GT-STMT-BINDING"}


def test_memorization_subject_names_other_sha512(work: Path, honest: tinyrun.TinyRun) -> None:
    # Training signs sha256 only; the memorization report adds a sha512 for another file.
    def edit(ev: mutate.Evidence) -> None:
        ev.subjects[MEMORIZATION_TYPE] = [
            Subject(s.name, {**s.digest, "sha512": hashlib.sha512(b"x").hexdigest()})
            for s in ev.subjects[MEMORIZATION_TYPE]
        ]

    resign(work, honest, edit)
    assert failing(audit(work, honest)) == {"GT-STMT-BINDING"}


def test_run_id_in_upper_case(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        for p in ev.predicates.values():
            if "runId" in p:
                p["runId"] = p["runId"].upper()

    resign(work, honest, edit)
    # runId is 32 lowercase hex: a predicate parsing rule or the binding check refuses it.
    assert failing(audit(work, honest)) & {"GT-STMT-FORMAT", "GT-STMT-BINDING"}


def test_same_key_listed_twice_does_not_meet_threshold_two(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    # One producer key, given to the verifier under two file names: not two distinct keys.
    twin = tmp_path / "twin.pub"
    shutil.copyfile(honest.pub, twin)
    result = verify(work, keys=[honest.pub, twin], threshold=2)
    assert not result
    assert failing(result) & {"GT-SIG-INVALID", "GT-SIG-THRESHOLD"}


def test_two_signatures_same_key_in_one_envelope(work: Path, honest: tinyrun.TinyRun) -> None:
    envs = envelopes(work)
    envs[0]["signatures"] = envs[0]["signatures"] * 2
    write_envelopes(work, envs)
    assert failing(audit(work, honest)) == {"GT-BUNDLE-FORMAT"}


def test_crlf_bundle_lines(work: Path, honest: tinyrun.TinyRun) -> None:
    raw = (work / BUNDLE).read_bytes()
    (work / BUNDLE).write_bytes(raw.replace(b"\n", b"\r\n"))
    assert failing(audit(work, honest)) == {"GT-BUNDLE-FORMAT"}


def test_policy_statement_replayed_from_other_run_of_same_producer(
    work: Path, honest: tinyrun.TinyRun, other_run: tinyrun.TinyRun
) -> None:
    # Same policy bytes, same producer: the policy statement of another run (other runId).
    theirs = envelopes(other_run.run)
    mine = envelopes(work)
    j = next(
        k for k, e in enumerate(theirs) if mutate.payload_of(e)["predicateType"] == POLICY_TYPE
    )
    mine[index_of(work, POLICY_TYPE)] = theirs[j]
    write_envelopes(work, mine)
    assert failing(audit(work, honest)) == {"GT-STMT-BINDING"}


def test_memorization_statement_replayed_from_other_run_of_same_producer(
    work: Path, honest: tinyrun.TinyRun, other_run: tinyrun.TinyRun
) -> None:
    theirs = envelopes(other_run.run)
    mine = envelopes(work)
    j = next(
        k
        for k, e in enumerate(theirs)
        if mutate.payload_of(e)["predicateType"] == MEMORIZATION_TYPE
    )
    mine[index_of(work, MEMORIZATION_TYPE)] = theirs[j]
    write_envelopes(work, mine)
    assert "GT-STMT-BINDING" in failing(audit(work, honest))


def test_govtune_lookalike_type_carries_no_weight(work: Path, honest: tinyrun.TinyRun) -> None:
    # A training statement whose type differs only by case is foreign (ignored); the real
    # one is then missing.
    i = index_of(work, TRAINING_TYPE)
    envs = envelopes(work)
    st = mutate.payload_of(envs[i])
    st["predicateType"] = st["predicateType"].replace("govtune.dev", "GOVTUNE.dev")
    envs[i] = sign_raw(canonical_json(st), mutate.signer(honest))
    write_envelopes(work, envs)
    assert "GT-STMT-MISSING" in failing(audit(work, honest))


def test_foreign_statement_covering_a_planted_weight_file(
    work: Path, honest: tinyrun.TinyRun
) -> None:
    # A signed statement of another predicate type names the planted file with its true
    # digest: ignored statements cover nothing.
    planted = work / "pytorch_model.bin"
    planted.write_bytes(b"weights a loader prefers")
    from attest.statement import Statement

    st = Statement(
        (
            Subject(
                "pytorch_model.bin", {"sha256": hashlib.sha256(planted.read_bytes()).hexdigest()}
            ),
        ),
        "https://example.com/attestation/weights/v1",
        {"note": "also released"},
    )
    envs = envelopes(work)
    envs.append(sign_raw(canonical_json(st.to_dict()), mutate.signer(honest)))
    write_envelopes(work, envs)
    assert failing(audit(work, honest)) == {"GT-FILE-UNCOVERED"}


def test_later_govtune_version_statement_covering_a_planted_file(
    work: Path, honest: tinyrun.TinyRun
) -> None:
    planted = work / "model.gguf"
    planted.write_bytes(b"another model")
    from attest.statement import Statement

    st = Statement(
        (Subject("model.gguf", {"sha256": hashlib.sha256(planted.read_bytes()).hexdigest()}),),
        "https://govtune.dev/attestation/training-run/v9.9",
        {"weights": [{"name": "model.gguf"}]},
    )
    envs = envelopes(work)
    envs.append(sign_raw(canonical_json(st.to_dict()), mutate.signer(honest)))
    write_envelopes(work, envs)
    assert failing(audit(work, honest)) == {"GT-FILE-UNCOVERED"}


def test_bundle_of_sixty_five_envelopes(work: Path, honest: tinyrun.TinyRun) -> None:
    envs = envelopes(work)
    filler = mutate.sign_foreign(mutate.signer(honest), "https://example.com/x/v1", {"n": 1})
    write_envelopes(work, envs + [filler] * (65 - len(envs)))
    assert failing(audit(work, honest)) == {"GT-BUNDLE-FORMAT"}


def test_unsigned_statement_of_a_later_govtune_version(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    # A govtune-namespace envelope MUST verify even when this verifier ignores its type.
    write_keypair(tmp_path / "stranger")
    envs = envelopes(work)
    st = mutate.payload_of(envs[index_of(work, TRAINING_TYPE)])
    st["predicateType"] = "https://govtune.dev/attestation/training-run/v9.9"
    envs.append(sign_raw(canonical_json(st), load_signer(tmp_path / "stranger.key")))
    write_envelopes(work, envs)
    assert "GT-SIG-UNTRUSTED" in failing(audit(work, honest))


def test_envelope_with_duplicate_payload_key(work: Path, honest: tinyrun.TinyRun) -> None:
    # {"payload": <a foreign statement>, "payload": <the signed one>, ...}: two readers, two
    # statements. The bundle line is not strict JSON.
    i = index_of(work, POLICY_TYPE)
    envs = envelopes(work)
    decoy = mutate.sign_foreign(mutate.signer(honest), "https://example.com/x/v1", {"n": 1})
    lines = (work / BUNDLE).read_bytes().splitlines(keepends=True)
    body = json.dumps(envs[i])
    assert body.startswith('{"payload": ')
    lines[i] = ('{"payload": ' + json.dumps(decoy["payload"]) + ", " + body[1:] + "\n").encode()
    (work / BUNDLE).write_bytes(b"".join(lines))
    assert failing(audit(work, honest)) == {"GT-BUNDLE-FORMAT"}


def test_payload_base64_without_padding(work: Path, honest: tinyrun.TinyRun) -> None:
    envs = envelopes(work)
    i = next((k for k, e in enumerate(envs) if e["payload"].endswith("=")), None)
    # Payload lengths vary with the run; the fixture's bundle has one that needs padding.
    assert i is not None, "no envelope payload needs base64 padding: the attack has no target"
    envs[i]["payload"] = envs[i]["payload"].rstrip("=")
    write_envelopes(work, envs)
    assert failing(audit(work, honest)) == {"GT-BUNDLE-FORMAT"}


def test_payload_in_url_safe_base64(work: Path, honest: tinyrun.TinyRun) -> None:
    envs = envelopes(work)
    i = next((k for k, e in enumerate(envs) if "+" in e["payload"] or "/" in e["payload"]), None)
    assert i is not None, "no envelope payload uses + or /: the attack has no target"
    envs[i]["payload"] = envs[i]["payload"].replace("+", "-").replace("/", "_")
    write_envelopes(work, envs)
    assert failing(audit(work, honest)) == {"GT-BUNDLE-FORMAT"}

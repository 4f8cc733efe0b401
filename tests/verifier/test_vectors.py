"""Every spec test vector: valid ones PASS, each invalid one FAILs with exactly its code."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from vector_helpers import VECTORS, expected, vector_dirs, verify_kwargs

from verifier import verify
from verifier.codes import CHECKS

VALID = vector_dirs("valid")
INVALID = vector_dirs("invalid")


@pytest.mark.parametrize("vector", VALID, ids=[p.name for p in VALID])
def test_valid_vector_passes(vector: Path) -> None:
    result = verify(vector / "run", **verify_kwargs(vector))
    assert result.verdict == "PASS", [f"{f.code}: {f.message}" for f in result.failures]
    assert not result.failures


@pytest.mark.parametrize("vector", INVALID, ids=[p.name for p in INVALID])
def test_invalid_vector_fails_with_its_code(vector: Path) -> None:
    want = expected(vector)["code"]
    result = verify(vector / "run", **verify_kwargs(vector))
    assert result.verdict == "FAIL"
    assert not result
    assert sorted({f.code for f in result.failures}) == [want], [
        f"{f.code}: {f.message}" for f in result.failures
    ]


def test_every_check_code_has_an_invalid_vector() -> None:
    """Replay checks (V9) need torch and a real run: tests/verifier covers them elsewhere.
    Release checks (V10) need a release folder (model.sig is ECDSA, not deterministic):
    tests/release covers each on a real release. Consumer requirements (V11) judge a valid
    run against the consumer's bar, not a broken bundle: tests/verifier/test_requirements.py
    covers each of them, met and unmet."""
    covered = {expected(v)["code"] for v in INVALID}
    assert covered == {
        c.code for c in CHECKS if c.layer not in ("replay", "release", "requirements")
    }


def test_valid_basic_runs_every_layer_and_skips_nothing(basic: Path) -> None:
    result = verify(basic / "run", **verify_kwargs(basic))
    # a run folder: of V10 only GT-RELEASE-PRIVATE applies (spec/release.md §1)
    assert sorted(f.code for f in result.findings if f.status == "skip") == sorted(
        c.code
        for c in CHECKS
        if c.layer in ("replay", "requirements")
        or (c.layer == "release" and c.code != "GT-RELEASE-PRIVATE")
    )
    assert set(result.scope["layers"]) == {c.layer for c in CHECKS} - {"replay", "requirements"}


def test_verified_facts_of_the_basic_vector(basic: Path) -> None:
    r = verify(basic / "run", **verify_kwargs(basic))
    v = r.verified
    assert v["steps"] == 6 and v["checkpoints"] == 1
    assert v["policy"]["name"] == "govtune-vectors"
    adm = v["admissions"]
    assert (adm["total"], adm["admitted"], adm["refused"], adm["canaries"]) == (14, 8, 6, 2)
    assert adm["refusedByRule"] == {
        "consent": 1,
        "duplicate": 1,
        "length": 1,
        "license": 1,
        "optout": 1,
        "profile": 1,
        "source": 1,
    }
    assert adm["pii"] == {"masked": 1, "rejected": 0, "byKind": {"email": 1}}
    assert adm["byProfile"] == {"canary": 2, "deep": 4, "shallow": 2}
    assert adm["byLicenseClass"]["proprietary"] == {"admitted": 0, "refused": 1}
    assert v["routing"]["violations"] == 0 and v["routing"]["tensorChanges"] == 13
    assert v["routing"]["profiles"]["shallow"]["params"] == 4 + 4 + 4 + 8
    assert v["memorization"] == {"events": 3, "flags": 1, "quarantined": [11], "halted": False}
    assert v["weights"][0]["name"] == "model.safetensors" and v["weights"][0]["bytes"] == 616
    inter = __import__("json").loads((basic / "intermediates.json").read_text())
    assert v["finalStateRoot"] == inter["finalStateRoot"]
    assert v["baseStateRoot"] == inter["baseStateRoot"]
    assert v["keyids"] == [inter["policyStatement"]["keyid"]]
    assert r.attested["lossCurve"][0] == [1, 3.0]
    assert r.attested["canaries"] == [{"exposure": 1.5, "index": 12, "step": 6}]


def test_intermediates_match_attest(basic: Path) -> None:
    """The intermediates of the basic vector recompute from attest alone (DSSE-style vectors)."""
    import base64
    import json

    from attest.canonical import canonical_json, parse_canonical_json
    from attest.tensors import hash_safetensors, state_root

    inter = json.loads((basic / "intermediates.json").read_text())
    d = hash_safetensors(basic / "base" / "model.safetensors")
    assert {n: h.hex() for n, h in d.leaves.items()} == inter["baseLeaves"]
    assert state_root(d.leaves).hex() == inter["baseStateRoot"]
    st = inter["policyStatement"]
    payload = st["canonicalJson"].encode()
    assert canonical_json(parse_canonical_json(payload)) == payload
    assert base64.b64decode(st["envelope"]["payload"]) == payload
    pae = b"DSSEv1 28 application/vnd.in-toto+json %d " % len(payload) + payload
    assert pae.hex() == st["paeHex"]


def test_regenerating_reproduces_the_committed_bytes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(VECTORS / "generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for sub in ("keys", "valid", "invalid"):
        cmp = filecmp.dircmp(VECTORS / sub, tmp_path / sub)
        _assert_same(cmp, VECTORS / sub, tmp_path / sub)


def _assert_same(cmp: filecmp.dircmp[str], a: Path, b: Path) -> None:
    assert not cmp.left_only and not cmp.right_only, (a, cmp.left_only, cmp.right_only)
    for name in cmp.common_files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), a / name
    for name, sub in cmp.subdirs.items():
        _assert_same(sub, a / name, b / name)


def test_a_bug_in_a_check_is_a_fail_not_a_crash(
    basic: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from verifier import checks_chain

    def broken(*_args: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(checks_chain, "check_chain", broken)
    result = verify(basic / "run", **verify_kwargs(basic))
    assert result.verdict == "FAIL"
    [failure] = result.failures
    assert failure.code == "GT-STEP-LOG-FORMAT"  # the chain layer's first code
    assert "internal error in the chain checks (KeyError: 'boom')" in failure.message
    assert result.verified["steps"] is None  # the shape stays stable for the report


def test_result_shape_when_nothing_verifies(tmp_path: Path) -> None:
    (tmp_path / "provenance").mkdir()
    result = verify(
        tmp_path,
        **{
            **verify_kwargs(VECTORS / "valid" / "basic"),
            "base": None,
            "data": None,
            "openings": None,
        },
    )
    assert [f.code for f in result.failures] == ["GT-BUNDLE-MISSING"]
    assert set(result.verified) >= {"runId", "admissions", "routing", "weights", "steps"}
    assert set(result.attested) >= {"environment", "lossCurve", "canaries"}
    assert not result


# The auditor reads the dataset with the trainer's reader (attest.dataset): every line the
# trainer would refuse is a format failure here too, never skipped or reinterpreted.
DATASET_EDITS = [
    (
        "blank-line",
        lambda lines: [lines[0], b"\n", *lines[1:]],
        "dataset.jsonl:2: expected a JSON object, got an empty line",
    ),
    (
        "camel-case-data-class",
        lambda lines: [lines[0].replace(b'"data_class"', b'"dataClass"'), *lines[1:]],
        "dataset.jsonl:1: missing data_class",
    ),
    (
        "duplicate-key",
        lambda lines: (
            [lines[0].replace(b'{"consent":false,', b'{"consent":false,"consent":true,')]
            + lines[1:]
        ),
        "dataset.jsonl:1: duplicate JSON object key 'consent'",
    ),
    (
        "consent-missing",
        lambda lines: [lines[0].replace(b'"consent":false,', b""), *lines[1:]],
        "dataset.jsonl:1: missing consent",
    ),
]


@pytest.mark.parametrize(
    ("edit", "message"), [c[1:] for c in DATASET_EDITS], ids=[c[0] for c in DATASET_EDITS]
)
def test_dataset_line_the_trainer_refuses_is_a_data_format_failure(
    basic: Path, tmp_path: Path, edit: Any, message: str
) -> None:
    kw = verify_kwargs(basic)
    lines = kw["data"].read_bytes().splitlines(keepends=True)
    data = tmp_path / "dataset.jsonl"
    data.write_bytes(b"".join(edit(lines)))
    result = verify(basic / "run", **{**kw, "data": data})
    assert [(f.code, f.message) for f in result.failures] == [("GT-DATA-FORMAT", message)]

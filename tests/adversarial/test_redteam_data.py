"""Red team (issue 9), data and openings claims: verification.md §4 "with V7/V8: ... the
dataset content are the committed ones, and every canary commitment opens to the text the
run secret determines"; V8 (strict openings and run-secret rules), README "Parsing rules".

Written from the spec alone; every forgery is re-signed with the producer's key (the
dataset digest included where the producer ships another dataset file).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mutate
import pytest
import tinyrun
from redteam import audit, failing, forge, full

from attest.predicates import ADMISSIONS_TYPE, TRAINING_TYPE
from verifier.result import Result

pytestmark = pytest.mark.slow

CHECKPOINT = "checkpoints/step-000006.safetensors"


def test_honest_run_passes(work: Path, honest: tinyrun.TinyRun) -> None:
    assert full(work, honest), [(f.code, f.message) for f in full(work, honest).failures]
    forge(work, honest, lambda ev: None)  # the forger's identity re-sign: the control
    assert full(work, honest)


def with_dataset(work: Path, t: tinyrun.TinyRun, tmp_path: Path, text: str) -> Path:
    """A dataset file the producer ships and signs (its sha256 in both statements)."""
    path = tmp_path / "dataset.jsonl"
    path.write_text(text)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    def edit(ev: mutate.Evidence) -> None:
        ev.predicates[ADMISSIONS_TYPE]["dataset"]["sha256"] = digest
        ev.predicates[TRAINING_TYPE]["dataset"]["sha256"] = digest

    forge(work, t, edit)
    return path


def data_audit(work: Path, t: tinyrun.TinyRun, dataset: Path | None = None) -> Result:
    return audit(work, t, data=dataset or t.dataset, openings=work / "private")


def test_duplicate_license_key_in_dataset_line(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    # {"license": "GPL-3.0-only", ..., "license": "MIT"}: a last-wins reader (the one that
    # admitted it) sees MIT, a first-wins reader GPL. Not strict JSON: the data must fail.
    lines = honest.dataset.read_text().splitlines(keepends=True)
    assert '"license": "MIT"' in lines[0]
    lines[0] = lines[0].replace('{"consent"', '{"license": "GPL-3.0-only", "consent"', 1)
    ds = with_dataset(work, honest, tmp_path, "".join(lines))
    assert "GT-DATA-FORMAT" in failing(data_audit(work, honest, ds))


def test_duplicate_text_key_in_dataset_line(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    # A PII text hidden as a first "text" member of an admitted line.
    lines = honest.dataset.read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace('{"consent"', '{"text": "mail jane.doe@example.com", "consent"', 1)
    ds = with_dataset(work, honest, tmp_path, "".join(lines))
    assert "GT-DATA-FORMAT" in failing(data_audit(work, honest, ds))


def test_dataset_with_an_extra_line(work: Path, honest: tinyrun.TinyRun, tmp_path: Path) -> None:
    text = honest.dataset.read_text()
    extra = json.dumps(
        {
            "text": "never admitted",
            "license": "MIT",
            "source": "test:x",
            "data_class": "public",
            "consent": False,
        }
    )
    ds = with_dataset(work, honest, tmp_path, text + extra + "\n")
    assert "GT-DATA-FORMAT" in failing(data_audit(work, honest, ds))


def test_dataset_line_with_nan_member(work: Path, honest: tinyrun.TinyRun, tmp_path: Path) -> None:
    lines = honest.dataset.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace('{"consent"', '{"weight": NaN, "consent"', 1)
    ds = with_dataset(work, honest, tmp_path, "".join(lines))
    assert "GT-DATA-FORMAT" in failing(data_audit(work, honest, ds))


def _openings(work: Path) -> list[str]:
    return (work / "private" / "openings.jsonl").read_text().splitlines(keepends=True)


def test_opening_index_repeated(work: Path, honest: tinyrun.TinyRun) -> None:
    lines = _openings(work)
    (work / "private" / "openings.jsonl").write_text("".join([*lines, lines[0]]))
    assert "GT-DATA-FORMAT" in failing(data_audit(work, honest))


def test_opening_with_an_extra_member(work: Path, honest: tinyrun.TinyRun) -> None:
    lines = _openings(work)
    o = json.loads(lines[0])
    lines[0] = json.dumps({**o, "text": "the real text was another"}) + "\n"
    (work / "private" / "openings.jsonl").write_text("".join(lines))
    assert "GT-DATA-FORMAT" in failing(data_audit(work, honest))


def test_opening_salt_in_upper_case(work: Path, honest: tinyrun.TinyRun) -> None:
    lines = _openings(work)
    o = json.loads(lines[0])
    lines[0] = json.dumps({**o, "salt": o["salt"].upper()}) + "\n"
    (work / "private" / "openings.jsonl").write_text("".join(lines))
    assert "GT-DATA-FORMAT" in failing(data_audit(work, honest))


def test_opening_for_an_index_not_in_the_log(work: Path, honest: tinyrun.TinyRun) -> None:
    lines = _openings(work)
    (work / "private" / "openings.jsonl").write_text(
        "".join(lines) + json.dumps({"index": 999, "salt": "ab" * 32}) + "\n"
    )
    assert "GT-DATA-FORMAT" in failing(data_audit(work, honest))


def test_run_secret_in_upper_case(work: Path, honest: tinyrun.TinyRun) -> None:
    p = work / "private" / "run-secret"
    p.write_text(p.read_text().upper())
    assert failing(data_audit(work, honest)) & {
        "GT-DATA-FORMAT",
        "GT-DATA-CANARY",
        "GT-DATA-COMMITMENT",
    }


def test_run_secret_without_newline(work: Path, honest: tinyrun.TinyRun) -> None:
    p = work / "private" / "run-secret"
    p.write_text(p.read_text().strip())
    assert failing(data_audit(work, honest)) & {"GT-DATA-FORMAT", "GT-DATA-CANARY"}


def test_run_secret_withheld(work: Path, honest: tinyrun.TinyRun) -> None:
    # Without the secret nobody can check what the "canaries" were: fail closed.
    (work / "private" / "run-secret").unlink()
    assert "GT-DATA-CANARY" in failing(data_audit(work, honest))


def test_salt_not_derived_from_run_secret(work: Path, honest: tinyrun.TinyRun) -> None:
    # Record 0 re-committed under a fresh random salt (opening and commitment agree): the
    # salts then no longer come from the secret, so a producer could pick them to grind.
    from attest.commitment import commit

    salt = bytes(range(32))
    text = json.loads(honest.dataset.read_text().splitlines()[0])["text"]

    def edit(ev: mutate.Evidence) -> None:
        ev.admissions[0]["commitment"] = commit(salt, text)

    forge(work, honest, edit)
    lines = _openings(work)
    o = json.loads(lines[0])
    assert o["index"] == 0
    lines[0] = json.dumps({"index": 0, "salt": salt.hex()}) + "\n"
    (work / "private" / "openings.jsonl").write_text("".join(lines))
    assert "GT-DATA-COMMITMENT" in failing(data_audit(work, honest))


def test_consent_flipped_on_personal_record(work: Path, honest: tinyrun.TinyRun) -> None:
    # The personal text's metadata says consent: admitted, a lie only the dataset exposes.
    from attest.admission import Findings, Metadata, decide
    from attest.policy import Policy

    def edit(ev: mutate.Evidence) -> None:
        rec = next(r for r in ev.admissions if r["metadata"]["dataClass"] == "personal")
        rec["metadata"]["consent"] = True
        d = decide(
            Policy.from_toml(ev.policy_bytes),
            Metadata.from_dict(rec["metadata"]),
            Findings.from_dict(rec["findings"]),
        )
        assert d.admitted
        rec["decision"], rec["profile"] = "admit", d.profile
        rec["outcomes"] = [o.to_dict() for o in d.outcomes]
        ev.predicates[TRAINING_TYPE]["extra"]["trainingPool"] += 1  # one more admitted

    forge(work, honest, edit)
    # The metadata are the producer's claim without --data, but the example it admits joins
    # the training pool, so the batches the data order draws are no longer the recorded
    # ones (records.md §5.2): the lie shows even without the dataset.
    assert failing(audit(work, honest)) == {"GT-BATCH-ORDER"}
    assert "GT-DATA-METADATA" in failing(data_audit(work, honest))


def test_length_understated_to_pass_length_rule(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.admissions[0]["metadata"]["length"] += 1

    forge(work, honest, edit)
    assert "GT-DATA-METADATA" in failing(data_audit(work, honest))


def test_canaries_file_is_never_trusted(work: Path, honest: tinyrun.TinyRun) -> None:
    # Control: editing private/canaries.jsonl changes nothing (canary texts are derived).
    p = work / "private" / "canaries.jsonl"
    p.write_text(p.read_text().replace("access code", "access c0de"))
    assert data_audit(work, honest)

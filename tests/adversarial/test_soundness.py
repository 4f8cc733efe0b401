"""Attacks a malicious producer (holding its own signing key) mounts on the v0.2 verifier core.

Issue 9 principles 1 (content, never names), 2 (read once, use what was verified) and 3
(derive, never trust). Each test starts from a copy of the honest tiny run, plants one
lie, re-signs every statement with the producer's own key where the lie touches signed
evidence (support.evidence, "the forger"), and asserts the exact code that catches it;
`test_honest_run_passes` is the control every one of them is measured against.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import mutate
import pytest
import tinyrun
from redteam import forge, resign

from attest.canary import canary_text
from attest.commitment import commit, derive_salt
from attest.policy import Policy
from attest.predicates import ADMISSIONS_TYPE, MEMORIZATION_TYPE, POLICY_TYPE, TRAINING_TYPE
from attest.statement import Subject
from verifier import checks_bundle
from verifier.api import verify
from verifier.result import Result

pytestmark = pytest.mark.slow

CHECKPOINT = "checkpoints/step-000006.safetensors"


def failing(result: Result) -> set[str]:
    return {f.code for f in result.failures}


def audit(run: Path, t: tinyrun.TinyRun, **flags: Any) -> Result:
    return verify(run, keys=[t.pub], **flags)


def full(run: Path, t: tinyrun.TinyRun) -> Result:
    return audit(run, t, base=t.base, data=t.dataset, openings=run / "private")


@pytest.fixture
def work(tmp_path: Path, tiny_run: tinyrun.TinyRun) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(tiny_run.run, dst)
    return dst


def test_honest_run_passes(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    result = full(work, tiny_run)
    assert result, [(f.code, f.message) for f in result.failures]
    # Re-signing through the forger with no lie must pass too (the control of every attack).
    forge(work, tiny_run, lambda ev: None)
    assert full(work, tiny_run)


# -- principle 1: content, never names ------------------------------------------------------


def test_extra_subject_covers_any_file(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    (work / "provenance" / "NOTICE.txt").write_text("anything at all")

    def edit(ev: mutate.Evidence) -> None:
        ev.subjects[POLICY_TYPE].append(Subject("NOTICE.txt", {"sha256": "ab" * 32}))

    resign(work, tiny_run, edit)
    assert failing(audit(work, tiny_run)) == {"GT-STMT-BINDING", "GT-FILE-UNCOVERED"}


def test_planted_file_named_like_subject(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    # A subject "model.safetensors" exists at the top level; a file of that name elsewhere
    # is not covered by it.
    (work / "provenance" / "model.safetensors").write_bytes(b"planted")
    assert failing(audit(work, tiny_run)) == {"GT-FILE-UNCOVERED"}


def test_sha512_mismatch_sha256_match(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    other = hashlib.sha512(b"another file").hexdigest()

    def edit(ev: mutate.Evidence) -> None:
        for ptype in (TRAINING_TYPE, MEMORIZATION_TYPE):
            ev.subjects[ptype] = [
                Subject(s.name, {**s.digest, "sha512": other}) if s.name == "model.safetensors"
                else s
                for s in ev.subjects[ptype]
            ]  # fmt: skip

    resign(work, tiny_run, edit)
    result = audit(work, tiny_run)
    assert failing(result) == {"GT-WEIGHTS-DIGEST"}
    assert any("expected sha512:" in f.message for f in result.failures)


def test_unchecked_digest_algorithm_refused(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        s = ev.subjects[POLICY_TYPE][0]
        ev.subjects[POLICY_TYPE] = [Subject(s.name, {**s.digest, "md5": "0" * 32})]

    resign(work, tiny_run, edit)
    assert failing(audit(work, tiny_run)) == {"GT-STMT-BINDING"}


def test_symlink_in_run_folder(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    (work / CHECKPOINT).unlink()
    os.symlink("../model.safetensors", work / CHECKPOINT)
    assert failing(audit(work, tiny_run)) == {"GT-FILE-TYPE"}


def test_symlinked_folder_in_run_folder(
    work: Path, tiny_run: tinyrun.TinyRun, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "pytorch_model.bin").write_bytes(b"weights a loader may pick up")
    os.symlink(outside, work / "extra")  # os.walk would not descend into it
    assert failing(audit(work, tiny_run)) == {"GT-FILE-TYPE"}


def test_fifo_in_run_folder(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    os.mkfifo(work / "provenance" / "stray")
    done: list[Result] = []
    th = threading.Thread(target=lambda: done.append(audit(work, tiny_run)), daemon=True)
    th.start()
    th.join(120)
    assert done, "verification blocked on a FIFO"
    assert failing(done[0]) == {"GT-FILE-TYPE"}


def test_hard_link_in_run_folder(work: Path, tiny_run: tinyrun.TinyRun, tmp_path: Path) -> None:
    os.link(work / "model.safetensors", tmp_path / "alias.safetensors")  # same inode, 2 links
    assert failing(audit(work, tiny_run)) == {"GT-FILE-TYPE"}


@pytest.mark.parametrize(
    "name",
    [
        "pytorch_model.bin",
        "model-00001-of-00002.safetensors",
        "model.gguf",
        "model.pt",
        "checkpoints/step-000099.safetensors",
        "private/notes.txt",
    ],
)
def test_extra_weight_like_file(work: Path, tiny_run: tinyrun.TinyRun, name: str) -> None:
    shutil.copyfile(work / "model.safetensors", work / name)
    result = audit(work, tiny_run)
    assert failing(result) == {"GT-FILE-UNCOVERED"}
    assert any(name in f.message for f in result.failures)


def test_extra_pytorch_model_bin(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    (work / "pytorch_model.bin").write_bytes(b"\x80\x04weights")
    result = audit(work, tiny_run)
    assert failing(result) == {"GT-FILE-UNCOVERED"}
    assert "weight-like" in result.failures[0].message


def test_release_folder_with_private_files(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    (work / "model.sig").write_text("{}")  # a release folder: private/ must not be there
    result = audit(work, tiny_run)
    assert {"GT-FILE-UNCOVERED", "GT-RELEASE-PRIVATE"} <= failing(result)
    assert any(f.message.startswith("private") for f in result.failures)
    shutil.rmtree(work / "private")
    # without private/ neither code fires; the bogus model.sig still fails V10's OMS check
    after = failing(audit(work, tiny_run))
    assert not {"GT-FILE-UNCOVERED", "GT-RELEASE-PRIVATE"} & after and "GT-RELEASE-OMS" in after


# -- principle 2: read once, verify, use what was verified ----------------------------------


def _swap_after_v1(monkeypatch: pytest.MonkeyPatch, path: Path, data: bytes) -> None:
    real = checks_bundle.check_bundle

    def swapped(ctx: Any) -> Any:
        out = real(ctx)
        path.write_bytes(data)  # a shared folder changing between V1 and the layer that reads
        return out

    monkeypatch.setattr(checks_bundle, "check_bundle", swapped)


def test_steps_log_swapped_after_verification(
    work: Path,
    tiny_run: tinyrun.TinyRun,
    other_run: tinyrun.TinyRun,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = work / "provenance" / "steps.msgpack"
    _swap_after_v1(monkeypatch, steps, (other_run.provenance / "steps.msgpack").read_bytes())
    result = audit(work, tiny_run)
    assert "GT-STEP-LOG-FORMAT" in failing(result)
    assert any("the file changed" in f.message for f in result.failures)
    assert result.verified["steps"] is None


def test_admissions_log_swapped_after_verification(
    work: Path,
    tiny_run: tinyrun.TinyRun,
    other_run: tinyrun.TinyRun,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    adm = work / "provenance" / "admissions.msgpack"
    raw = adm.read_bytes()
    _swap_after_v1(monkeypatch, adm, raw[:-1] + bytes([raw[-1] ^ 1]))
    result = audit(work, tiny_run)
    assert "GT-ADMIT-LOG-FORMAT" in failing(result)
    assert result.verified["admissions"] is None


def test_admission_table_used_after_summary_failure(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.predicates[ADMISSIONS_TYPE]["log"]["merkleRoot"] = "0" * 64

    resign(work, tiny_run, edit)
    result = audit(work, tiny_run)
    assert failing(result) == {"GT-ADMIT-LOG-SUMMARY"}
    assert result.verified["admissions"] is None
    status = {f.code: f.status for f in result.findings}
    # No batch check ran against the unverified table, and nothing downstream of it passed.
    for code in ("GT-BATCH-REFUSED", "GT-BATCH-PROFILE", "GT-ROUTE-VIOLATION", "GT-DATA-FORMAT"):
        assert status.get(code) in ("skip", None), code
    assert status["GT-MEM-EVENTS"] == "skip"


def test_refused_index_reports_only_batch_refused(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        refused = next(r["index"] for r in ev.admissions if r["decision"] == "refuse")
        rec = ev.step(1)
        rec["batch"][0] = refused  # its profile stays the admitted example's

    forge(work, tiny_run, edit)
    codes = failing(audit(work, tiny_run))
    assert "GT-BATCH-REFUSED" in codes and "GT-BATCH-PROFILE" not in codes


# -- principle 3: derive, never trust --------------------------------------------------------


def _policy(work: Path) -> Policy:
    return Policy.from_toml((work / "provenance" / "policy.toml").read_bytes())


def _secret(work: Path) -> bytes:
    return bytes.fromhex((work / "private" / "run-secret").read_text().strip())


def test_refused_pii_text_trained_as_canary(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    """A PII text refused by the policy is committed (and trained) as the canary; the private
    canaries.jsonl holds it, so an auditor reading that file would open the commitment."""
    pii = "mail the maintainer at jane.doe@example.com today"
    secret = _secret(work)

    def edit(ev: mutate.Evidence) -> None:
        for r in ev.admissions:
            if r["metadata"]["canary"]:
                r["commitment"] = commit(derive_salt(secret, r["index"]), pii)

    forge(work, tiny_run, edit)
    canaries = work / "private" / "canaries.jsonl"
    lines = [json.loads(x) for x in canaries.read_text().splitlines()]
    canaries.write_text("".join(json.dumps({**c, "text": pii}) + "\n" for c in lines))
    assert audit(work, tiny_run), "without the openings the commitment is opaque (hiding)"
    result = full(work, tiny_run)
    assert failing(result) == {"GT-DATA-CANARY"}


def test_canary_metadata_not_the_fixed_value(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        for r in ev.admissions:
            if r["metadata"]["canary"]:
                r["metadata"]["source"] = "test:corpus/pii"

    forge(work, tiny_run, edit)
    assert "GT-ADMIT-CANARY-METADATA" in failing(audit(work, tiny_run))


def test_canary_text_is_the_derivation(work: Path) -> None:
    # The trainer planted exactly the derived text (one rule for both sides).
    c = _policy(work).canaries
    lines = [json.loads(x) for x in (work / "private" / "canaries.jsonl").read_text().splitlines()]
    assert {x["text"] for x in lines} == {canary_text(_secret(work), c, 0)}


def test_memorization_report_understates_exposure(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        for c in ev.predicates[MEMORIZATION_TYPE]["canaries"]:
            c["exposure"] = 0.0

    resign(work, tiny_run, edit)
    result = audit(work, tiny_run)
    assert failing(result) == {"GT-MEM-EVENTS"}
    assert any("canaries" in f.message for f in result.failures)


def test_canary_exposure_measurement_dropped(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    # The exposure event (and what it would flag) erased from the log; the report follows.
    def edit(ev: mutate.Evidence) -> None:
        last = ev.steps[-1]
        last["events"] = [e for e in last["events"] if e["kind"] != "canary-exposure"]
        ev.predicates[MEMORIZATION_TYPE]["canaries"] = []

    forge(work, tiny_run, edit)
    assert failing(audit(work, tiny_run)) == {"GT-MEM-SIGNAL"}


def test_heldout_set_not_derived(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        start = ev.steps[0]
        trained = {x for r in ev.steps[1:] for x in r["batch"]}
        start["heldout"] = sorted(trained)[: len(start["heldout"])]  # hide trained examples

    forge(work, tiny_run, edit)
    result = audit(work, tiny_run)
    assert failing(result) == {"GT-CHAIN-HELDOUT"}


def test_reference_count_not_the_heldout_set(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.predicates[MEMORIZATION_TYPE]["reference"]["count"] = 0

    resign(work, tiny_run, edit)
    assert failing(audit(work, tiny_run)) == {"GT-MEM-EVENTS"}


def test_tensor_table_disagrees_with_header(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        table = ev.steps[0]["tensors"]
        name, dtype, shape = table[0]
        table[0] = [name, dtype, [int(shape[0]) * 2, *shape[1:]] if shape else [2]]

    forge(work, tiny_run, edit)
    result = audit(work, tiny_run, base=tiny_run.base)
    assert failing(result) == {"GT-WEIGHTS-TENSORS", "GT-BASE-TENSORS"}
    assert result.verified["parameters"] is None  # counts come only from verified shapes


def test_parameter_count_from_verified_shapes(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    from attest.tensors import hash_safetensors

    result = audit(work, tiny_run)
    d = hash_safetensors(work / "model.safetensors")
    want = 0
    for t in d.tensors:
        n = 1
        for x in t.shape:
            n *= x
        want += n
    assert result.verified["parameters"] == want


def test_checkpoint_withheld_from_schedule(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    # Fewer checkpoints, fewer replayable intervals: the schedule is the signed config's.
    (work / CHECKPOINT).unlink()

    def edit(ev: mutate.Evidence) -> None:
        ev.step(6)["checkpoint"] = None
        ev.predicates[TRAINING_TYPE]["checkpoints"] = []

    forge(work, tiny_run, edit)
    result = audit(work, tiny_run)
    assert failing(result) == {"GT-CHECKPOINT-DIGEST"}
    assert any("checkpoint_every" in f.message for f in result.failures)

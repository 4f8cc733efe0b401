"""V9 replay: honest runs reproduce bitwise; forged records are caught by re-execution.

Real tiny runs trained in-process (tests/verifier/forge.py), real signatures, real
checkpoints. Each attack first shows that every structural check passes (only replay
can catch it), then that replay fails it with GT-REPLAY-STEP and says where.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import need

need("torch")

import forge  # noqa: E402

from attest.bundle import read_bundle  # noqa: E402
from attest.errors import UsageError  # noqa: E402
from attest.log import iter_log  # noqa: E402
from attest.predicates import STEPS_FILE, TRAINING_TYPE  # noqa: E402
from attest.statement import Statement  # noqa: E402
from verifier import verify  # noqa: E402
from verifier.cli import main as cli_main  # noqa: E402
from verifier.replay_select import parse_nonce, replay_seed, run_seconds, select_steps  # noqa: E402

ALL = 10_000  # more than any test run's steps: every step is selected


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> forge.Run:
    return forge.build(tmp_path_factory.mktemp("honest"))


def _copy(run: forge.Run, dest: Path) -> forge.Run:
    """A copy of the run's folder; the producer key stays where it is (shared by runs)."""
    shutil.copytree(run.folder, dest)
    return dataclasses.replace(run, folder=dest, run=dest / "run", dataset=dest / "dataset.jsonl")


def _verify(run: forge.Run, replay: int = 0, **kw):  # type: ignore[no-untyped-def]
    return verify(
        run.run, keys=[run.pub], data=run.dataset, openings=run.openings, replay=replay, **kw
    )


def _failed_codes(result) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in result.failures}


def _messages(result, code: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.message for f in result.failures if f.code == code]


def _signed_head(run: forge.Run) -> tuple[str, int]:
    for line in read_bundle(run.run / "provenance" / "bundle.intoto.jsonl"):
        st = Statement.from_payload(line.envelope.payload)
        if st.predicate_type == TRAINING_TYPE:
            return st.predicate["stepLog"]["head"], st.predicate["steps"]
    raise AssertionError("no training statement")


def _training_environment(run: forge.Run) -> dict:  # type: ignore[type-arg]
    for line in read_bundle(run.run / "provenance" / "bundle.intoto.jsonl"):
        st = Statement.from_payload(line.envelope.payload)
        if st.predicate_type == TRAINING_TYPE:
            return dict(st.predicate["environment"])
    raise AssertionError("no training statement")


# -- selection ----------------------------------------------------------------------------


def _spec_selection(head_hex: str, steps: int, n: int, nonce: bytes = b"") -> list[int]:
    """spec/verification.md §V9.1, written out again from the text."""
    seed = hashlib.sha256(
        b"govtune.replay.v1" + bytes.fromhex(head_hex) + steps.to_bytes(8, "big") + nonce
    ).digest()
    out: list[int] = []
    k = 0
    limit = 2**64 - (2**64 % steps)
    while len(out) < min(n, steps):
        u = int.from_bytes(
            hashlib.sha256(b"govtune.replay.draw.v1" + seed + k.to_bytes(8, "big")).digest()[:8],
            "big",
        )
        k += 1
        if u < limit and 1 + u % steps not in out:
            out.append(1 + u % steps)
    return out


@pytest.mark.parametrize(("steps", "n"), [(1, 1), (12, 3), (12, 12), (12, 40), (1000, 7), (3, 0)])
def test_selection_is_recomputable_from_the_spec(steps: int, n: int) -> None:
    head = hashlib.sha256(b"some head").hexdigest()
    got = select_steps(replay_seed(head, steps), steps, n)
    assert got == _spec_selection(head, steps, n)
    assert len(got) == len(set(got)) == min(n, steps)
    assert all(1 <= s <= steps for s in got)


def test_selection_depends_on_the_head_and_the_auditor_nonce() -> None:
    a, b = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()
    assert select_steps(replay_seed(a, 1000), 1000, 5) != select_steps(
        replay_seed(b, 1000), 1000, 5
    )
    assert select_steps(replay_seed(a, 1000, b"x"), 1000, 5) == _spec_selection(a, 1000, 5, b"x")
    assert select_steps(replay_seed(a, 1000, b"x"), 1000, 5) != select_steps(
        replay_seed(a, 1000), 1000, 5
    )


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, verifier.replay\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'trainer')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_replay_without_torch_is_a_one_line_usage_error(honest: forge.Run) -> None:
    block = (
        "import sys\n"
        "class B:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('No module named ' + repr(name))\n"
        "sys.meta_path.insert(0, B())\n"
        "from verifier.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = [
        "verify",
        str(honest.run),
        "--key",
        str(honest.pub),
        "--data",
        str(honest.dataset),
        "--openings",
        str(honest.openings),
        "--replay",
        "2",
    ]
    out = subprocess.run(
        [sys.executable, "-c", block, *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--replay: needs PyTorch" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


# -- honest runs --------------------------------------------------------------------------


def test_honest_run_replays_bitwise_in_strict_mode(honest: forge.Run) -> None:
    result = _verify(honest, ALL)
    assert result, [f"{f.code}: {f.message}" for f in result.failures]
    rep = result.verified["replay"]
    assert rep["mode"] == "bitwise" and rep["tolerance"] is None
    assert rep["selected"] == list(range(1, honest.steps_done + 1))
    assert [x["step"] for x in rep["results"]] == rep["selected"]
    assert all(x["ok"] for x in rep["results"])
    # Checkpoints every 4 steps: each step replays from the checkpoint before it.
    assert {x["step"]: x["fromCheckpoint"] for x in rep["results"]}[6] == 4
    assert rep["intervals"] == [[0, 4], [4, 8], [8, 12]]
    assert rep["steps"] == list(range(1, honest.steps_done + 1))  # one pass per interval
    assert rep["coverage"] == 1.0 and rep["detectionProbability"] == 1.0
    # The generator state before each step matches the recorded digest (trainer.leaves).
    assert rep["rng"] == {"checked": honest.steps_done, "matched": honest.steps_done}
    # The replayed batches include a PII-masked example and the planted canaries.
    trained = {x for rec in forge.read_steps(honest.run)[1:] for x in rec.batch}
    assert {forge.MASKED_INDEX, *forge.canary_indices(honest.run)} <= trained
    assert {f.code: f.status for f in result.findings if f.layer == "replay"} == {
        "GT-REPLAY-SELECT": "pass",
        "GT-REPLAY-CHECKPOINT": "pass",
        "GT-REPLAY-STEP": "pass",
        "GT-REPLAY-ENVIRONMENT": "pass",
        "GT-REPLAY-INPUT": "pass",
    }
    assert "replay" in result.scope["layers"]


def test_sampled_steps_are_the_ones_the_signed_head_selects(honest: forge.Run) -> None:
    result = _verify(honest, 3)
    assert result
    rep = result.verified["replay"]
    head, steps = _signed_head(honest)
    nonce = bytes.fromhex(rep["nonce"])  # drawn from the OS: no --replay-nonce given
    assert rep["nonceSource"] == "os" and len(nonce) == 16
    assert rep["seed"] == replay_seed(head, steps, nonce).hex()
    assert rep["selected"] == sorted(_spec_selection(head, steps, 3, nonce))
    # Whole intervals: each selected step's interval between stored states is re-executed.
    stored = [0, 4, 8, 12]
    for s in rep["selected"]:
        a = max(x for x in stored if x < s)
        assert [a, min(x for x in stored if x >= s)] in rep["intervals"]
    # Layout: three intervals of 4 of 12 steps, 3 draws: 1 - C(8,3)/C(12,3).
    assert rep["detectionProbability"] == pytest.approx(1 - 56 / 220)
    # The top-Q interval (largest L2 distance between stored states) is replayed too.
    assert len(rep["topQ"]) == 1 and rep["topQ"][0]["toStep"] in {x["step"] for x in rep["results"]}
    assert set(rep["selected"]) <= {x["step"] for x in rep["results"]}


@pytest.fixture(scope="module")
def tolerant(tmp_path_factory: pytest.TempPathFactory, honest: forge.Run) -> forge.Run:
    return forge.build(tmp_path_factory.mktemp("tolerant"), deterministic=False, tolerance=1e-6,
                       key_from=honest)  # fmt: skip


def test_tolerant_run_is_replayed_bitwise_unless_the_auditor_sets_a_tolerance(
    tolerant: forge.Run,
) -> None:
    run = tolerant
    # The trainer calibrated a tolerance on an honest reproduction of its first step
    # (trainer.calibration); it is informational: the default replay is bitwise.
    env = _training_environment(run)
    cal = env["toleranceCalibration"]
    assert cal["factor"] == 10.0 and cal["observed"] >= 0
    assert env["tolerance"] == max(cal["observed"] * cal["factor"], 1e-6)
    result = _verify(run, ALL)
    assert result, [f"{f.code}: {f.message}" for f in result.failures]
    assert result.verified["replay"]["mode"] == "bitwise"
    result = _verify(run, ALL, replay_tolerance=1e-6)
    assert result, [f"{f.code}: {f.message}" for f in result.failures]
    rep = result.verified["replay"]
    assert rep["mode"] == "tolerant"
    assert rep["tolerance"] == {"value": 1e-6, "chosenBy": "auditor"}
    assert all(x["ok"] for x in rep["results"])


# -- attacks ------------------------------------------------------------------------------


def _forge_one_loss(run: forge.Run, step: int) -> int:
    """Forge step ``step``: batch[0]'s recorded loss raised by 0.01 (small: no memorization
    flag changes), chain re-hashed and re-signed with the producer's key. Losses are
    attested without replay (the batch itself is derived, GT-BATCH-ORDER), so only replay
    can tell. Returns the example whose loss was rewritten."""
    records = forge.read_steps(run.run)
    rec = records[step]
    records[step] = dataclasses.replace(rec, loss=(rec.loss[0] + 0.01, *rec.loss[1:]))
    forge.resign_steps(run.run, run.key, records)
    structural = _verify(run)  # every structural check passes: only replay can tell
    assert structural, [f"{f.code}: {f.message}" for f in structural.failures]
    return int(rec.batch[0])


def test_forged_loss_resigned_by_producer_is_caught_by_replay(
    honest: forge.Run, tmp_path: Path
) -> None:
    run = _copy(honest, tmp_path / "forged")
    step = 6
    other = _forge_one_loss(run, step)
    result = _verify(run, ALL)
    assert not result
    assert _failed_codes(result) == {"GT-REPLAY-STEP"}
    (msg,) = _messages(result, "GT-REPLAY-STEP")
    assert msg.startswith(f"step {step}: batch[0] = example {other}: expected loss ")
    assert "replayed from checkpoints/step-000004.safetensors" in msg
    ok = {x["step"]: x["ok"] for x in result.verified["replay"]["results"]}
    assert ok[step] is False and ok[step - 1] is True  # bitwise: steps before it reproduced


def test_forged_loss_in_tolerant_mode_is_caught_by_its_losses(
    tolerant: forge.Run, tmp_path: Path
) -> None:
    run = _copy(tolerant, tmp_path / "forged-tolerant")
    other = _forge_one_loss(run, 6)
    result = _verify(run, ALL, replay_tolerance=1e-6)
    assert _failed_codes(result) == {"GT-REPLAY-STEP"}
    (msg,) = _messages(result, "GT-REPLAY-STEP")
    assert msg.startswith(f"step 6: batch[0] = example {other}: expected loss ")
    assert "tolerance 1e-06" in msg
    bad = {x["step"] for x in result.verified["replay"]["results"] if not x["ok"]}
    assert bad == {
        5,
        6,
        7,
        8,
    }  # tolerant: nothing in the interval holding the forgery is vouched for


def test_step_trained_on_refused_content_is_caught_by_replay(
    honest: forge.Run, tmp_path: Path
) -> None:
    step = 5
    run = forge.build(
        tmp_path / "refused",
        key_from=honest,
        loss_wrap=lambda fn: forge.swap_at_step(fn, step, 0, forge.REFUSED_TEXT),
    )
    structural = _verify(run)
    assert structural, [f"{f.code}: {f.message}" for f in structural.failures]

    result = _verify(run, ALL)
    assert _failed_codes(result) == {"GT-REPLAY-STEP"}
    (msg,) = _messages(result, "GT-REPLAY-STEP")
    recorded = forge.read_steps(run.run)[step].batch[0]
    assert msg.startswith(f"step {step}: batch[0] = example {recorded}: expected loss ")
    bad = {x["step"] for x in result.verified["replay"]["results"] if not x["ok"]}
    assert bad == {5, 6, 7, 8}  # the interval after the divergence cannot be vouched for


def test_missing_checkpoint_fails_with_a_clear_message(honest: forge.Run, tmp_path: Path) -> None:
    run = _copy(honest, tmp_path / "nockpt")
    (run.run / "checkpoints" / "step-000004.safetensors").unlink()
    result = _verify(run, ALL)
    assert _failed_codes(result) == {"GT-REPLAY-CHECKPOINT"}
    (msg,) = _messages(result, "GT-REPLAY-CHECKPOINT")
    assert msg.startswith(
        "checkpoints/step-000004.safetensors (checkpoint of step 4): expected the file (sha256 "
    )
    assert "found no file" in msg
    # Steps 5..8 are still replayed, from the base: the audit loses no coverage, only time.
    rep = {x["step"]: x for x in result.verified["replay"]["results"]}
    assert rep[6]["fromCheckpoint"] == 0 and all(x["ok"] for x in rep.values())


def test_tampered_checkpoint_fails_its_digest(honest: forge.Run, tmp_path: Path) -> None:
    run = _copy(honest, tmp_path / "tampered")
    path = run.run / "checkpoints" / "step-000008.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # a bit in the last tensor's data: still a valid safetensors file
    path.write_bytes(bytes(data))
    result = _verify(run, ALL)
    # V6 already fails the shipped file (GT-CHECKPOINT-DIGEST); replay refuses to start from it.
    assert _failed_codes(result) == {"GT-CHECKPOINT-DIGEST", "GT-REPLAY-CHECKPOINT"}
    (msg,) = _messages(result, "GT-REPLAY-CHECKPOINT")
    assert msg.startswith(
        "checkpoints/step-000008.safetensors (checkpoint of step 8): expected sha256 "
    )
    assert json.dumps(result.verified["replay"])  # the result stays JSON-serializable


def test_forged_canaries_file_is_never_read(honest: forge.Run, tmp_path: Path) -> None:
    """Canary texts are derived from the run secret (policy.md §7): a canaries.jsonl that
    names other texts (say a refused one) changes nothing, in V8 and in replay."""
    run = _copy(honest, tmp_path / "badcanary")
    path = run.openings / "canaries.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines, "the honest run plants canaries"
    for x in lines:
        x["text"] = "call me at +1 212 555 0100, my card is 4111 1111 1111 1111"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = _verify(run, ALL)
    assert result, [f.to_dict() for f in result.failures]
    assert result.verified["replay"]["steps"], "steps were re-executed"


def test_replay_on_text_that_does_not_open_its_commitment_fails(
    honest: forge.Run, tmp_path: Path
) -> None:
    run = _copy(honest, tmp_path / "badtext")
    lines = run.dataset.read_text().splitlines()
    # A dataset example some step trained on (canary indices follow the dataset's lines).
    trained = next(x for r in iter_log(run.run / "provenance" / STEPS_FILE) if r.index >= 1
                   for x in r.value["batch"] if x < len(lines))  # fmt: skip
    edited = json.loads(lines[trained])
    edited["text"] = edited["text"] + " (edited after the run)"
    lines[trained] = json.dumps(edited)
    run.dataset.write_text("\n".join(lines) + "\n")
    result = _verify(run, ALL)
    assert "GT-DATA-COMMITMENT" in _failed_codes(result)
    assert not result
    (msg,) = _messages(result, "GT-REPLAY-STEP")
    assert msg.startswith("cannot read the texts to replay: example ")
    assert "expected the commitment to open to the text as trained on" in msg


def test_replay_without_data_is_a_usage_error(honest: forge.Run) -> None:
    with pytest.raises(UsageError) as e:
        verify(honest.run, keys=[honest.pub], replay=2)
    assert str(e.value) == (
        "--replay 2: needs --data FILE and --openings DIR (replay trains on the opened "
        "example texts)"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--replay", "2"], "govtune: error: --replay 2: needs --data FILE and --openings DIR"),
        (["--replay", "2", "--replay-nonce", "zz", "--data", "D", "--openings", "O"],
         "govtune: error: --replay-nonce: expected hex digits, found 'zz'"),
        (["--replay", "2", "--replay-top", "-1", "--data", "D", "--openings", "O"],
         "govtune: error: --replay-top: expected a count >= 0, found -1"),
    ],
    ids=["no-data", "nonce-not-hex", "negative-top"],
)  # fmt: skip
def test_bad_replay_flags_exit_2_before_any_work(
    honest: forge.Run, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [str(honest.dataset) if f == "D" else str(honest.openings) if f == "O" else f
             for f in flags]  # fmt: skip
    code = cli_main(["verify", str(honest.run), "--key", str(honest.pub), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(message), err


def test_parse_nonce() -> None:
    assert parse_nonce(None) == parse_nonce("") == b""
    assert parse_nonce("00ff") == b"\x00\xff"
    for bad in ("abc", "0x00", "gg", "00" * 65):
        with pytest.raises(UsageError):
            parse_nonce(bad)


def test_auditor_nonce_and_top_q_drive_the_selection(honest: forge.Run) -> None:
    # --replay 1 --replay-top 0 --replay-nonce: one step, drawn with the auditor's nonce.
    code = cli_main(["verify", str(honest.run), "--key", str(honest.pub), "--data",
                     str(honest.dataset), "--openings", str(honest.openings), "--replay", "1",
                     "--replay-top", "0", "--replay-nonce", "c0ffee", "--quiet"])  # fmt: skip
    assert code == 0
    result = _verify(honest, 1, replay_top=0, replay_nonce="c0ffee")
    assert result
    rep = result.verified["replay"]
    head, steps = _signed_head(honest)
    assert rep["nonce"] == "c0ffee" and result.scope["flags"]["replayNonce"] == "c0ffee"
    assert rep["seed"] == replay_seed(head, steps, b"\xc0\xff\xee").hex()
    assert rep["selected"] == _spec_selection(head, steps, 1, b"\xc0\xff\xee")
    assert rep["topQ"] == [] and [x["step"] for x in rep["results"]] == rep["selected"]


def test_forged_optimizer_state_in_a_checkpoint_is_caught(
    honest: forge.Run, tmp_path: Path
) -> None:
    # A producer controlling a checkpoint's AdamW moments could steer the steps after it;
    # the moments are bound only by the file digest, so the forger re-signs that too.
    run = _copy(honest, tmp_path / "optim")
    records = forge.read_steps(run.run)
    name = forge.forge_optimizer_state(run.run, 8, records)
    forge.resign_steps(run.run, run.key, records, {name: records[8].checkpoint["sha256"]})
    structural = _verify(run)
    assert structural, [f"{f.code}: {f.message}" for f in structural.failures]

    result = _verify(run, ALL)
    assert _failed_codes(result) == {"GT-REPLAY-STEP"}
    msgs = _messages(result, "GT-REPLAY-STEP")
    # The pass ending at step 8 finds the moments differ; the pass starting there diverges.
    assert any(
        m.startswith(f"step 8: expected {name}'s optimizer state 'optim/exp_avg/") for m in msgs
    )
    assert any(m.startswith("step 9: ") and f"replayed from {name}" in m for m in msgs)


def test_report_shows_which_steps_were_replayed_and_how_they_were_chosen(honest: forge.Run) -> None:
    from verifier.report import build_report

    result = _verify(honest, 3)
    (section,) = [s for s in build_report(result)["sections"] if s["id"] == "replay"]
    assert section["status"] == "verified"
    (table,) = section["tables"]
    rep = result.verified["replay"]
    assert [row[0] for row in table["rows"]] == [str(x["step"]) for x in rep["results"]]
    assert {row[1] for row in table["rows"]} <= {"random", "topQ", "random+topQ"}
    assert all(row[3] == "reproduced" for row in table["rows"])
    items = {i["label"]: i for i in section["items"]}
    assert items["Selection seed"]["value"] == rep["seed"]
    # Without --replay the report says so: not requested, never verified.
    (plain,) = [s for s in build_report(_verify(honest))["sections"] if s["id"] == "replay"]
    assert plain["status"] == "not requested"


# -- the producer cannot relax replay (issue 9 §4) and replay reads once (§2) --------------


def _resign_environment(run: forge.Run, **changes: Any) -> None:
    """Re-sign the training statement with its environment changed (the producer's key)."""
    from support.evidence import Evidence

    from attest.keys import load_signer

    ev = Evidence.load(run.run, None)
    ev.predicates[TRAINING_TYPE]["environment"].update(changes)
    ev.write(run.run, load_signer(run.key), recompute_weights=False, recount=False,
             remember=False)  # fmt: skip


def test_claimed_tolerance_does_not_relax_replay(honest: forge.Run, tmp_path: Path) -> None:
    run = _copy(honest, tmp_path / "claims-tolerant")
    other = _forge_one_loss(run, 6)
    # The forger claims a nondeterministic run with a huge tolerance; the config says
    # strict and no calibration exists.
    _resign_environment(run, deterministic=False, mode="tolerant", tolerance=1000)
    assert _verify(run), "structural layers do not judge the replay environment"
    result = _verify(run, ALL)
    assert _failed_codes(result) == {"GT-REPLAY-ENVIRONMENT", "GT-REPLAY-STEP"}
    env_msgs = _messages(result, "GT-REPLAY-ENVIRONMENT")
    want = "training-run environment.mode: expected 'strict' (config.deterministic = true)"
    assert any(m.startswith(want) and m.endswith("found 'tolerant'") for m in env_msgs)
    assert any("a strict run records tolerance 0 and no calibration" in m for m in env_msgs)
    assert result.verified["replay"]["mode"] == "bitwise"  # the claim loosened nothing
    (msg,) = _messages(result, "GT-REPLAY-STEP")
    assert msg.startswith(f"step 6: batch[0] = example {other}: expected loss ")
    assert _verify(honest, ALL)  # the honest run still passes


def test_forged_calibration_is_refused(tolerant: forge.Run, tmp_path: Path) -> None:
    run = _copy(tolerant, tmp_path / "forged-calibration")
    _resign_environment(run, tolerance=1000)  # the calibration says ~1e-6
    result = _verify(run, 2)
    assert _failed_codes(result) == {"GT-REPLAY-ENVIRONMENT"}
    (msg,) = _messages(result, "GT-REPLAY-ENVIRONMENT")
    assert msg.startswith("training-run environment.tolerance: expected ")
    assert msg.endswith("found 1000")


def test_rewritten_losses_caught_in_tolerant_mode(honest: forge.Run, tmp_path: Path) -> None:
    run = _copy(honest, tmp_path / "losses")
    records = forge.read_steps(run.run)
    rec = records[7]
    forged = (rec.loss[0] + 0.01, *rec.loss[1:])  # small: no memorization flag changes
    records[7] = dataclasses.replace(rec, loss=forged)
    forge.resign_steps(run.run, run.key, records)
    structural = _verify(run)
    assert structural, [f"{f.code}: {f.message}" for f in structural.failures]
    result = _verify(run, ALL, replay_tolerance=1e-3)
    assert _failed_codes(result) == {"GT-REPLAY-STEP"}
    (msg,) = _messages(result, "GT-REPLAY-STEP")
    assert msg.startswith(f"step 7: batch[0] = example {rec.batch[0]}: expected loss {forged[0]!r}")
    assert _verify(honest, ALL, replay_tolerance=1e-3)


def test_rewritten_grad_norm_caught_by_replay(honest: forge.Run, tmp_path: Path) -> None:
    run = _copy(honest, tmp_path / "gradnorm")
    records = forge.read_steps(run.run)
    rec = records[3]
    assert rec.grad_norm is not None and all(g > 0 for g in rec.grad_norm)  # computed, not 0.0
    records[3] = dataclasses.replace(rec, grad_norm=(rec.grad_norm[0] * 2, *rec.grad_norm[1:]))
    forge.resign_steps(run.run, run.key, records)
    assert _verify(run)
    result = _verify(run, ALL)
    assert _failed_codes(result) == {"GT-REPLAY-STEP"}
    (msg,) = _messages(result, "GT-REPLAY-STEP")
    assert msg.startswith(f"step 3: batch[0] = example {rec.batch[0]}: expected gradNorm ")


def test_forged_step_inside_interval_caught(honest: forge.Run, tmp_path: Path) -> None:
    run = _copy(honest, tmp_path / "edge")
    other = _forge_one_loss(run, 5)  # the first step after checkpoint 4
    head, steps = _signed_head(run)
    # An auditor nonce whose single draw is step 8, the far edge of the interval 4..8.
    nonces = (k.to_bytes(2, "big") for k in range(1 << 16))
    nonce = next(x for x in nonces if select_steps(replay_seed(head, steps, x), steps, 1) == [8])
    result = _verify(run, 1, replay_top=0, replay_nonce=nonce.hex())
    rep = result.verified["replay"]
    assert rep["selected"] == [8] and rep["intervals"] == [[4, 8]]
    assert _failed_codes(result) == {"GT-REPLAY-STEP"}
    (msg,) = _messages(result, "GT-REPLAY-STEP")
    assert msg.startswith(f"step 5: batch[0] = example {other}: expected loss ")
    assert rep["steps"] == [5]  # stopped at the first difference
    assert _verify(honest, 1, replay_top=0, replay_nonce=nonce.hex())


def test_steps_log_swapped_before_replay(
    honest: forge.Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import verifier.replay as replay_mod

    run = _copy(honest, tmp_path / "swap-honest")
    forged = _copy(honest, tmp_path / "swap-forged")
    _forge_one_loss(forged, 6)
    steps = run.run / "provenance" / "steps.msgpack"
    real = replay_mod.replay_inputs

    def swap_after_verification(ctx):  # type: ignore[no-untyped-def]
        got = real(ctx)  # the chain layer verified the honest log; now the file changes
        shutil.copyfile(forged.run / "provenance" / "steps.msgpack", steps)
        return got

    monkeypatch.setattr(replay_mod, "replay_inputs", swap_after_verification)
    result = _verify(run, ALL)
    assert _failed_codes(result) == {"GT-REPLAY-INPUT"}
    (msg,) = _messages(result, "GT-REPLAY-INPUT")
    assert msg.startswith("steps.msgpack: expected sha256 ")
    assert msg.endswith("the file changed after verification")
    assert result.verified["replay"]["steps"] == []  # nothing was re-executed on it
    assert result.verified["replay"]["detectionProbability"] == 0.0
    monkeypatch.undo()
    assert _verify(honest, ALL)


def test_nonce_drawn_from_os_and_recorded(
    honest: forge.Run, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _verify(honest, 2), _verify(honest, 2)
    ra, rb = a.verified["replay"], b.verified["replay"]
    assert ra["nonceSource"] == rb["nonceSource"] == "os"
    assert ra["nonce"] != rb["nonce"] and len(bytes.fromhex(ra["nonce"])) == 16
    head, steps = _signed_head(honest)
    assert ra["seed"] == replay_seed(head, steps, bytes.fromhex(ra["nonce"])).hex()
    # Passing the recorded nonce repeats the audit exactly.
    again = _verify(honest, 2, replay_nonce=ra["nonce"]).verified["replay"]
    assert again["nonceSource"] == "auditor"
    assert (again["seed"], again["selected"], again["intervals"]) == (
        ra["seed"], ra["selected"], ra["intervals"])  # fmt: skip
    # The CLI prints the drawn nonce.
    code = cli_main(["verify", str(honest.run), "--key", str(honest.pub), "--data",
                     str(honest.dataset), "--openings", str(honest.openings), "--replay", "1",
                     "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0
    line = next(x for x in err.splitlines() if x.startswith("replay nonce: "))
    nonce = line.split()[2]
    assert bytes.fromhex(nonce) and f"--replay-nonce {nonce}" in line


# -- what the auditor sees (issue 14) --------------------------------------------------------


def test_replay_says_what_it_will_re_execute_and_shows_progress(
    honest: forge.Run, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _verify(honest, ALL, progress=True)
    assert result
    err = capsys.readouterr().err
    # The estimate needs a recorded span of a second or more (RFC 3339 seconds); a fast
    # machine trains the fixture's run within one second, and then the plan says so.
    at = result.attested
    timed = run_seconds(str(at["startedOn"]), str(at["finishedOn"])) is not None
    tail = r"estimated (\d+m\d\ds) \(12 x " if timed else r"no time estimate \("
    plan = re.search(r"^replay: re-executing (\d+) of (\d+) step\(s\) in 3 interval\(s\) "
                     r"\(0->4, 4->8, 8->12\), loading 3 stored state\(s\) \(base, "
                     r"checkpoints/\S+, checkpoints/\S+\); " + tail,
                     err, re.M)  # fmt: skip
    assert plan, err
    assert plan.group(1) == plan.group(2) == str(honest.steps_done)
    if timed:
        assert "an estimate" in err and "producer's mean step time" in err
    # a log (not a TTY): the closing progress line after the plan, nothing per step
    done = re.search(rf"^replaying: {honest.steps_done}/{honest.steps_done} steps \(100%\)", err,
                     re.M)  # fmt: skip
    assert done and done.start() > plan.start(), err
    assert err.count("replaying:") == 1


def test_replay_is_silent_without_progress(
    honest: forge.Run, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _verify(honest, 1)  # a library call (and --format json / --quiet): stderr stays quiet
    assert "replay" not in capsys.readouterr().err


def test_replay_plan_estimate_scales_the_recorded_mean_step_time() -> None:
    from verifier.replay_select import plan_text, run_seconds

    seconds = run_seconds("2026-01-01T00:00:00Z", "2026-01-01T00:10:00Z")
    assert seconds == 600.0
    text = plan_text([(0, 50), (100, 150)], ["base", "checkpoints/step-100"], 250, seconds)
    # 100 steps at 600 s / 250 steps = 2.4 s each
    assert text.startswith("replay: re-executing 100 of 250 step(s) in 2 interval(s) "
                           "(0->50, 100->150), loading 2 stored state(s)")  # fmt: skip
    assert "estimated 4m00s (100 x 2.4 s" in text and "an estimate" in text
    assert run_seconds("", "2026-01-01T00:10:00Z") is None
    assert run_seconds("2026-01-01T00:10:00Z", "2026-01-01T00:00:00Z") is None
    assert "no time estimate" in plan_text([(0, 4)], ["base"], 4, None)

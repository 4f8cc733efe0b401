"""Red team (issue 9), replay claims: verification.md §4 "Whether the recorded changes are
what the recorded batches produce is shown only by replaying sampled steps", V9 (every
compared value: losses, gradNorm, changed set and leaves, the stored state ending each
interval and, at a checkpoint, every AdamW tensor).

Each lie here is consistent for the structural layers (the plain audit passes: the stated
limit), and must be caught by replaying every step (`--replay n`, a fixed auditor nonce).
Written from the spec alone; every forgery is re-signed with the producer's key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mutate
import pytest
import tinyrun
from redteam import audit, failing, forge, full
from support import need

from attest.predicates import TRAINING_TYPE
from verifier.result import Result

pytestmark = pytest.mark.slow

CHECKPOINT = "checkpoints/step-000006.safetensors"


def test_honest_run_passes(work: Path, honest: tinyrun.TinyRun) -> None:
    assert full(work, honest), [(f.code, f.message) for f in full(work, honest).failures]
    forge(work, honest, lambda ev: None)  # the forger's identity re-sign: the control
    assert full(work, honest)


need("torch")

NONCE = "00112233445566778899aabbccddeeff"


def replay_all(work: Path, t: tinyrun.TinyRun) -> Result:
    n = mutate.Evidence.load(work, None).predicates[TRAINING_TYPE]["steps"]
    return full(work, t, replay=n, replay_nonce=NONCE)


def test_honest_run_passes_a_full_replay(work: Path, honest: tinyrun.TinyRun) -> None:
    result = replay_all(work, honest)
    assert result, [(f.code, f.message) for f in result.failures]


def test_loss_raised_to_hide_a_drop(work: Path, honest: tinyrun.TinyRun) -> None:
    # The first loss-drop flag's example: its loss at that step rewritten to its previous
    # value: no drop, no flag, no quarantine; every flag still follows from the
    # (rewritten) recorded losses.
    def edit(ev: mutate.Evidence) -> None:
        flagged = [
            (t, e["example"])
            for t in range(1, len(ev.steps))
            for e in ev.step(t)["events"]
            if e["kind"] == "memorization-flag" and e.get("signal") == "loss-drop"
        ]
        assert flagged, "the tiny run has a loss-drop flag to hide"
        # The last step's: hiding an earlier quarantine leaves the example eligible, and the
        # data order would draw it again (GT-BATCH-ORDER) before replay is needed.
        t, x = flagged[-1]
        assert t == len(ev.steps) - 1, "the tiny run's last step flags a loss drop"
        before = max(p for p in range(1, t) if x in ev.step(p)["batch"])
        prev = ev.step(before)["loss"][ev.step(before)["batch"].index(x)]
        rec = ev.step(t)
        rec["loss"][rec["batch"].index(x)] = prev
        rec["events"] = [e for e in rec["events"] if e["example"] != x]

    forge(work, honest, edit)
    assert audit(work, honest)  # the stated limit: losses are attested without replay
    assert "GT-REPLAY-STEP" in failing(replay_all(work, honest))


def test_checkpoint_adam_moments_tampered(work: Path, honest: tinyrun.TinyRun) -> None:
    # The checkpoint's optimizer state (outside its state root) rewritten and re-signed.
    path = work / CHECKPOINT
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    name = next(k for k in sorted(header) if k.startswith("optim/exp_avg/"))
    b, _ = header[name]["data_offsets"]
    raw[8 + n + b : 8 + n + b + 4] = b"\x00\x00\x80\x3f"  # 1.0f, a moment no step made
    path.write_bytes(bytes(raw))
    digest = hashlib.sha256(raw).hexdigest()

    def edit(ev: mutate.Evidence) -> None:
        ev.step(6)["checkpoint"]["sha256"] = digest  # the training statement follows (forger)

    forge(work, honest, edit)
    assert audit(work, honest)  # bound only by the file digest, as stated
    assert "GT-REPLAY-STEP" in failing(replay_all(work, honest))


def test_learning_rate_rewritten(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.step(3)["lr"] = 25.0

    forge(work, honest, edit)
    # Caught before replay since the merge: V4 re-derives every rate from the signed
    # schedule (GT-CHAIN-LR), and replay runs only on a verified chain.
    assert failing(audit(work, honest)) == {"GT-CHAIN-LR"}
    assert "GT-CHAIN-LR" in failing(replay_all(work, honest))


def test_grad_norm_rewritten(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        rec = ev.step(2)
        rec["gradNorm"] = [g * 0.5 for g in rec["gradNorm"]]

    forge(work, honest, edit)
    assert audit(work, honest)
    assert "GT-REPLAY-STEP" in failing(replay_all(work, honest))


def test_environment_claims_a_huge_tolerance(work: Path, honest: tinyrun.TinyRun) -> None:
    # A re-signed nondeterministic claim must not loosen the auditor's bitwise replay.
    def edit(ev: mutate.Evidence) -> None:
        env = ev.predicates[TRAINING_TYPE]["environment"]
        env.update({"deterministic": False, "mode": "tolerant", "tolerance": 1000})

    forge(work, honest, edit)
    result = replay_all(work, honest)
    assert "GT-REPLAY-ENVIRONMENT" in failing(result)
    assert result.to_dict()["verified"]["replay"]["mode"] == "bitwise"

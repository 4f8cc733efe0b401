"""Red team (issue 9), step chain, batches and routing: verification.md §4 "the step log is
complete and contiguous and uses only admitted, non-held-out, non-quarantined examples,
each under its admitted profile; every parameter change is allowed by some batch
example's profile", records.md §5 (step record, checkpoint file).

Written from the spec alone; every forgery is re-signed with the producer's key by the
forger (tests/support/evidence.py), which keeps the log chain, summaries and heads intact.
"""

from __future__ import annotations

import json
from pathlib import Path

import mutate
import pytest
import tinyrun
from redteam import all_surface, audit, failing, forge, full, step_where

from attest.predicates import TRAINING_TYPE

pytestmark = pytest.mark.slow

CHECKPOINT = "checkpoints/step-000006.safetensors"


def test_honest_run_passes(work: Path, honest: tinyrun.TinyRun) -> None:
    assert full(work, honest), [(f.code, f.message) for f in full(work, honest).failures]
    forge(work, honest, lambda ev: None)  # the forger's identity re-sign: the control
    assert full(work, honest)


def leaves_before(ev: mutate.Evidence, t: int) -> dict[str, bytes]:
    """name -> leaf hash of the state before step ``t`` (base leaves updated by steps < t)."""
    leaves = {name: leaf for name, leaf in ev.steps[0]["baseLeaves"]}
    for rec in ev.steps[1:t]:
        for name, leaf in rec["changed"]:
            leaves[name] = leaf
    return leaves


def admitted_profile(ev: mutate.Evidence, index: int) -> str:
    return str(ev.admissions[index]["profile"])


def test_quarantined_example_reused_next_step(work: Path, honest: tinyrun.TinyRun) -> None:
    # Step s quarantines example x; step s + 1 trains it again.
    def edit(ev: mutate.Evidence) -> None:
        s = step_where(ev, lambda r: any(e["kind"] == "quarantine" for e in r["events"]))
        x = next(e["example"] for e in ev.step(s)["events"] if e["kind"] == "quarantine")
        rec = ev.step(s + 1)
        rec["batch"][0], rec["profiles"][0] = x, admitted_profile(ev, x)

    forge(work, honest, edit)
    assert "GT-BATCH-QUARANTINED" in failing(audit(work, honest))


def test_batch_chosen_by_the_producer(work: Path, honest: tinyrun.TinyRun) -> None:
    # Every member admitted, under its profile, none held out or quarantined: but the
    # producer picked the example (an admitted one of the same profile that this step's
    # data order did not draw), e.g. to train a favourite example more often.
    def edit(ev: mutate.Evidence) -> None:
        rec = ev.step(2)
        prof = rec["profiles"][0]
        x = next(int(r["index"]) for r in ev.admissions
                 if r["decision"] != "refuse" and r["profile"] == prof
                 and not r["metadata"]["canary"] and int(r["index"]) not in rec["batch"]
                 and int(r["index"]) not in ev.steps[0]["heldout"])  # fmt: skip
        rec["batch"][0] = x

    forge(work, honest, edit)
    assert failing(audit(work, honest)) == {"GT-BATCH-ORDER"}


def test_heldout_member_trained(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        x = ev.steps[0]["heldout"][0]
        rec = ev.step(1)
        rec["batch"][0], rec["profiles"][0] = x, admitted_profile(ev, x)

    forge(work, honest, edit)
    assert "GT-BATCH-HELDOUT" in failing(audit(work, honest))


def test_heldout_set_emptied_to_free_its_members(work: Path, honest: tinyrun.TinyRun) -> None:
    # The start record claims no held-out set; a held-out member is trained.
    def edit(ev: mutate.Evidence) -> None:
        x = ev.steps[0]["heldout"][0]
        ev.steps[0]["heldout"] = []
        rec = ev.step(1)
        rec["batch"][0], rec["profiles"][0] = x, admitted_profile(ev, x)

    forge(work, honest, edit)
    assert {"GT-CHAIN-HELDOUT", "GT-BATCH-HELDOUT"} <= failing(audit(work, honest))


def test_negative_batch_index(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.step(1)["batch"][0] = -1

    forge(work, honest, edit)
    assert failing(audit(work, honest)) & {"GT-STEP-LOG-FORMAT", "GT-BATCH-REFUSED"}


def test_batch_index_beyond_the_admission_log(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.step(1)["batch"][0] = 2**40

    forge(work, honest, edit)
    assert "GT-BATCH-REFUSED" in failing(audit(work, honest))


def test_surface_example_recorded_with_deep_profile(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        rec = ev.step(step_where(ev, all_surface))
        rec["profiles"][0] = "deep"

    forge(work, honest, edit)
    assert "GT-BATCH-PROFILE" in failing(audit(work, honest))


def test_noop_change_of_tensor_outside_batch_profiles(work: Path, honest: tinyrun.TinyRun) -> None:
    # A consistent forgery: an all-surface step lists a deep-only tensor as changed, with
    # the leaf it already had, so every state root stays right. Routing alone must catch it.
    def edit(ev: mutate.Evidence) -> None:
        s = step_where(ev, all_surface)
        rec = ev.step(s)
        leaves = leaves_before(ev, s)
        names = {n for n, _ in rec["changed"]}
        deep_only = next(n for n in sorted(leaves) if n.startswith("blocks.0.") and n not in names)
        rec["changed"] = sorted([*rec["changed"], [deep_only, leaves[deep_only]]])

    forge(work, honest, edit)
    assert failing(audit(work, honest)) == {"GT-ROUTE-VIOLATION"}


def test_changed_names_not_sorted(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        rec = ev.step(2)
        rec["changed"] = list(reversed(rec["changed"]))

    forge(work, honest, edit)
    assert "GT-STEP-LOG-FORMAT" in failing(audit(work, honest))


def test_changed_name_repeated_with_two_leaves(work: Path, honest: tinyrun.TinyRun) -> None:
    # The same tensor twice with different leaves: which one is the state?
    def edit(ev: mutate.Evidence) -> None:
        rec = ev.step(2)
        name, leaf = rec["changed"][0]
        rec["changed"].insert(0, [name, bytes(32)])

    forge(work, honest, edit)
    assert "GT-STEP-LOG-FORMAT" in failing(audit(work, honest))


def test_changed_name_with_zero_width_space(work: Path, honest: tinyrun.TinyRun) -> None:
    # "lm_head.weight\u200b" looks like the real tensor in any report.
    def edit(ev: mutate.Evidence) -> None:
        rec = ev.step(3)
        rec["changed"] = sorted(
            [
                [n + "\u200b", leaf] if n.startswith("lm_head") else [n, leaf]
                for n, leaf in rec["changed"]
            ]
        )

    forge(work, honest, edit)
    assert "GT-ROUTE-UNKNOWN" in failing(audit(work, honest))


def test_grad_norm_shorter_than_batch(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        rec = ev.step(2)
        assert rec["gradNorm"] is not None
        rec["gradNorm"] = rec["gradNorm"][:-1]

    forge(work, honest, edit)
    assert "GT-STEP-LOG-FORMAT" in failing(audit(work, honest))


def test_learning_rate_inflated_at_one_step(work: Path, honest: tinyrun.TinyRun) -> None:
    # Closed at merge: GT-CHAIN-LR re-derives every step's rate from the signed schedule.
    def edit(ev: mutate.Evidence) -> None:
        assert ev.predicates[TRAINING_TYPE]["config"]["lr"] == ev.step(3)["lr"]
        ev.step(3)["lr"] = 25.0  # 1250x the signed config's lr

    forge(work, honest, edit)
    assert failing(audit(work, honest)) == {"GT-CHAIN-LR"}


@pytest.mark.xfail(
    strict=True,
    reason="STATED LIMIT (verification.md §4): gradient norms are attested without --replay; "
    "an all-zero gradNorm passes V1-V8 and is caught only by replay (test_replay.py "
    "test_rewritten_grad_norm_caught_by_replay)",
)
def test_grad_norm_placeholder_zeros(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        for rec in ev.steps[1:]:
            rec["gradNorm"] = [0.0] * len(rec["batch"])

    forge(work, honest, edit)
    assert not audit(work, honest)


def test_step_log_cut_short_and_resigned(work: Path, honest: tinyrun.TinyRun) -> None:
    # The last steps dropped; every summary and the final root re-signed to the shorter log.
    def edit(ev: mutate.Evidence) -> None:
        del ev.steps[-3:]

    forge(work, honest, edit)
    assert "GT-WEIGHTS-ROOT" in failing(audit(work, honest))


def test_checkpoint_path_escapes_run_folder(work: Path, honest: tinyrun.TinyRun) -> None:
    # The signed checkpoint moved outside the run folder, named through "..": a reader that
    # follows the name reads a file no folder listing saw.
    (work / CHECKPOINT).rename(work.parent / "step-000006.safetensors")

    def edit(ev: mutate.Evidence) -> None:
        bad = "checkpoints/../../step-000006.safetensors"
        ev.step(6)["checkpoint"]["file"] = bad
        ev.predicates[TRAINING_TYPE]["checkpoints"][0]["file"] = bad

    forge(work, honest, edit)
    assert "GT-CHECKPOINT-DIGEST" in failing(audit(work, honest))


def _add_tensor(path: Path, name: str, dtype: str = "F32", data: bytes = b"\0\0\0\0") -> None:
    """Append one tensor entry to a safetensors file (header rewritten, buffer extended)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    buf = raw[8 + n :]
    header[name] = {
        "dtype": dtype,
        "shape": [len(data) // 4],
        "data_offsets": [len(buf), len(buf) + len(data)],
    }
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(len(h).to_bytes(8, "little") + h + buf + data)


def test_checkpoint_with_tensor_outside_optim_and_rng(work: Path, honest: tinyrun.TinyRun) -> None:
    # A signed checkpoint smuggling another tensor (a loader's "extra" weight).
    _add_tensor(work / CHECKPOINT, "optimizer.evil")
    forge(work, honest, lambda ev: None)  # re-sign its sha256
    assert failing(audit(work, honest)) == {"GT-CHECKPOINT-DIGEST"}


def test_checkpoint_with_optim_lookalike_prefix(work: Path, honest: tinyrun.TinyRun) -> None:
    _add_tensor(work / CHECKPOINT, "optim\u2215exp_avg\u2215evil")  # U+2215 DIVISION SLASH
    forge(work, honest, lambda ev: None)
    assert failing(audit(work, honest)) == {"GT-CHECKPOINT-DIGEST"}


def test_checkpoint_missing_from_step_record(work: Path, honest: tinyrun.TinyRun) -> None:
    # The training statement lists the checkpoint; the step record no longer names it.
    def edit(ev: mutate.Evidence) -> None:
        ev.step(6)["checkpoint"] = None

    forge(work, honest, edit)
    assert "GT-CHECKPOINT-DIGEST" in failing(audit(work, honest))


def test_empty_batch_changes_tensors(work: Path, honest: tinyrun.TinyRun) -> None:
    # A step that trained on nothing yet changed the model: no profile allows any change.
    def edit(ev: mutate.Evidence) -> None:
        rec = ev.step(4)
        for key in ("batch", "profiles", "loss"):
            rec[key] = []
        rec["gradNorm"] = None if rec["gradNorm"] is None else []

    forge(work, honest, edit)
    assert failing(audit(work, honest)) & {"GT-ROUTE-VIOLATION", "GT-STEP-LOG-FORMAT"}

"""Red team (issue 9), memorization claims: verification.md §4 "every memorization flag
(loss drop, reference quantile, canary exposure) is exactly what the recorded values and
the policy's thresholds imply, the policy's action was taken on every flag, and the
memorization report equals the step log"; V5.

Written from the spec alone; every forgery is re-signed with the producer's key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mutate
import pytest
import tinyrun
from redteam import audit, failing, forge, full, resign, set_policy

from attest.predicates import MEMORIZATION_TYPE

pytestmark = pytest.mark.slow

CHECKPOINT = "checkpoints/step-000006.safetensors"


def test_honest_run_passes(work: Path, honest: tinyrun.TinyRun) -> None:
    assert full(work, honest), [(f.code, f.message) for f in full(work, honest).failures]
    forge(work, honest, lambda ev: None)  # the forger's identity re-sign: the control
    assert full(work, honest)


def flag_events(rec: dict[str, Any], x: int) -> list[dict[str, Any]]:
    return [e for e in rec["events"] if e["example"] == x and e["kind"] != "canary-exposure"]


def flagged(ev: mutate.Evidence, last: bool = False) -> tuple[int, int]:
    """(step, example) of the first (or last) memorization flag of the honest run."""
    recs = ev.steps[1:][::-1] if last else ev.steps[1:]
    for rec in recs:
        for e in rec["events"]:
            if e["kind"] == "memorization-flag":
                return int(rec["step"]), int(e["example"])
    raise AssertionError("the honest run flags nothing")


def test_flag_and_quarantine_delayed_to_last_step(work: Path, honest: tinyrun.TinyRun) -> None:
    # The first loss drop reported only at the end, as if it came late. The example it
    # quarantines stays eligible meanwhile, so the data order may draw it again
    # (GT-BATCH-ORDER, V4) before V5 compares the flag with the losses (GT-MEM-SIGNAL).
    def edit(ev: mutate.Evidence) -> None:
        s, x = flagged(ev)
        moved = flag_events(ev.step(s), x)
        ev.step(s)["events"] = [e for e in ev.step(s)["events"] if e not in moved]
        last = ev.steps[-1]
        last["events"] = moved + last["events"]

    forge(work, honest, edit)
    got = failing(audit(work, honest))
    assert got and got <= {"GT-MEM-SIGNAL", "GT-BATCH-ORDER"}, got


def test_flag_kept_quarantine_dropped(work: Path, honest: tinyrun.TinyRun) -> None:
    # At the last step, so that no later batch shows the example still eligible: only
    # the policy's action is missing.
    def edit(ev: mutate.Evidence) -> None:
        s, x = flagged(ev, last=True)
        rec = ev.step(s)
        assert s == ev.steps[-1]["step"]
        rec["events"] = [
            e for e in rec["events"] if not (e["kind"] == "quarantine" and e["example"] == x)
        ]

    forge(work, honest, edit)
    assert failing(audit(work, honest)) == {"GT-MEM-ACTION"}


def test_quarantine_of_an_example_never_flagged(work: Path, honest: tinyrun.TinyRun) -> None:
    # Quarantine a held-out member (never in a batch): an action without its flag.
    def edit(ev: mutate.Evidence) -> None:
        x = ev.steps[0]["heldout"][0]
        ev.step(1)["events"].append(
            {
                "kind": "quarantine",
                "example": x,
                "signal": "loss-drop",
                "value": 1.0,
                "threshold": 0.02,
                "detail": "x",
            }
        )

    forge(work, honest, edit)
    assert "GT-MEM-ACTION" in failing(audit(work, honest))


def test_halt_in_a_middle_step(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        s, x = flagged(ev)
        assert s < ev.steps[-1]["step"]
        flag = flag_events(ev.step(s), x)[0]
        ev.step(s)["events"].append({**flag, "kind": "halt"})

    forge(work, honest, edit)
    assert "GT-MEM-ACTION" in failing(audit(work, honest))


def test_flag_threshold_misreported(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        s, x = flagged(ev)
        for e in flag_events(ev.step(s), x):
            e["threshold"] = 0.5

    forge(work, honest, edit)
    assert "GT-MEM-SIGNAL" in failing(audit(work, honest))


def test_flag_value_understated(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        s, x = flagged(ev)
        for e in flag_events(ev.step(s), x):
            e["value"] = 0.0201

    forge(work, honest, edit)
    assert "GT-MEM-SIGNAL" in failing(audit(work, honest))


def test_flags_reordered_within_step(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        rec = ev.step(7)
        pairs = [rec["events"][i : i + 2] for i in range(0, len(rec["events"]), 2)]
        rec["events"] = [e for p in reversed(pairs) for e in p]

    forge(work, honest, edit)
    assert "GT-MEM-SIGNAL" in failing(audit(work, honest))


def test_report_claims_halted(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.predicates[MEMORIZATION_TYPE]["halted"] = True

    resign(work, honest, edit)
    assert failing(audit(work, honest)) == {"GT-MEM-EVENTS"}


def test_report_quarantine_list_understated(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.predicates[MEMORIZATION_TYPE]["quarantined"].remove(29)

    resign(work, honest, edit)
    assert failing(audit(work, honest)) == {"GT-MEM-EVENTS"}


def test_report_event_detail_reworded(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.predicates[MEMORIZATION_TYPE]["events"][0]["detail"] = "nothing to see"

    resign(work, honest, edit)
    assert failing(audit(work, honest)) == {"GT-MEM-EVENTS"}


def test_report_event_with_extra_member(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.predicates[MEMORIZATION_TYPE]["events"][0]["reviewed"] = "ok"

    resign(work, honest, edit)
    assert failing(audit(work, honest)) & {"GT-MEM-EVENTS", "GT-STMT-FORMAT"}


def test_canary_exposure_measured_at_a_non_evaluation_step(
    work: Path, honest: tinyrun.TinyRun
) -> None:
    def edit(ev: mutate.Evidence) -> None:
        last = ev.steps[-1]
        exp = [e for e in last["events"] if e["kind"] == "canary-exposure"]
        assert exp
        ev.step(5)["events"].extend(exp)

    forge(work, honest, edit)
    assert "GT-MEM-SIGNAL" in failing(audit(work, honest))


def test_canary_exposure_threshold_invented(work: Path, honest: tinyrun.TinyRun) -> None:
    # exposure_max is 0 (disabled): the event's threshold must be nil, not a reassuring 1000.
    def edit(ev: mutate.Evidence) -> None:
        for e in ev.steps[-1]["events"]:
            if e["kind"] == "canary-exposure":
                e["threshold"] = 1000.0

    forge(work, honest, edit)
    assert "GT-MEM-SIGNAL" in failing(audit(work, honest))


def test_loss_drop_threshold_relaxed_after_training(work: Path, honest: tinyrun.TinyRun) -> None:
    # The policy re-signed with loss_drop_max = 5: the logged flags no longer follow from it.
    def edit(ev: mutate.Evidence) -> None:
        set_policy(ev, "loss_drop_max = 0.02", "loss_drop_max = 5.0")

    forge(work, honest, edit)
    assert "GT-MEM-SIGNAL" in failing(audit(work, honest))


def test_action_weakened_to_flag_after_training(work: Path, honest: tinyrun.TinyRun) -> None:
    # action "flag": the logged quarantine events are no longer the policy's action.
    def edit(ev: mutate.Evidence) -> None:
        set_policy(ev, 'action = "quarantine"', 'action = "flag"')

    forge(work, honest, edit)
    assert "GT-MEM-ACTION" in failing(audit(work, honest))

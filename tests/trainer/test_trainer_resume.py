"""`--resume`: a crashed run continues from its last checkpoint to the same result."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import need
from trainer_fixtures import Interrupted, Run, make_run

from attest.errors import UsageError
from attest.log import iter_log
from attest.records import StepRecord


def _step_records(run: Path) -> list[dict[str, object]]:
    out = []
    for r in iter_log(run / "provenance" / "steps.msgpack"):
        if r.index:
            rec = StepRecord.from_record(r.value).to_record()
            out.append(rec)
    return out


def test_resume_after_crash_reaches_the_uninterrupted_result(tmp_path: Path) -> None:
    secret = bytes(range(32))  # same salts and canaries in both runs
    whole = make_run(tmp_path / "whole", run_secret=secret)
    with pytest.raises(Interrupted):
        make_run(tmp_path / "crashed", crash_at=8, run_secret=secret)
    assert not (tmp_path / "crashed" / "run" / "provenance" / "bundle.intoto.jsonl").exists()
    resumed = make_run(tmp_path / "crashed", resume=True)
    assert resumed.result.final_state_root == whole.result.final_state_root
    assert resumed.result.quarantined == whole.result.quarantined
    assert _step_records(resumed.out) == _step_records(whole.out)  # same steps, bit for bit
    records = list(iter_log(resumed.out / "provenance" / "steps.msgpack"))  # the chain holds
    assert len(records) == 13


def test_resume_of_a_finished_run_is_refused(tiny: Run) -> None:
    with pytest.raises(UsageError, match="already finished"):
        make_run(tiny.folder, resume=True)


def test_resumed_run_verifies(tmp_path: Path) -> None:
    api = need("verifier.api")
    with pytest.raises(Interrupted):
        make_run(tmp_path, crash_at=7)
    resumed = make_run(tmp_path, resume=True)
    result = api.verify(resumed.out, keys=[resumed.pub])
    assert bool(result), [f for f in result.findings if f.status == "fail"]

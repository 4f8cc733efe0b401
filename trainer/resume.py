"""Resume an interrupted run from its last checkpoint and its durable step records.

The step log is cut back to the record of the last checkpoint (records after it
describe states that cannot be restored), the checkpoint's weights, AdamW state and
RNG are loaded, and everything else the loop keeps in memory is re-derived from the
records: the data order (re-drawn and compared batch by batch), quarantines, flags,
last losses, canary exposures, checkpoints and the current tensor leaves.

Known approximation: the held-out reference is re-measured on the checkpoint's model,
so a resume that does not fall on an evaluation step may flag differently than an
uninterrupted run would have.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attest.errors import FormatError, GovtuneError, UsageError
from attest.log import LogWriter, iter_log
from attest.order import DataOrder
from attest.predicates import STEPS_FILE, Checkpoint
from attest.records import Event, StartRecord, StepRecord, parse_step_log_record
from attest.tensors import state_root

from .checkpoint import load_checkpoint
from .engine import StepEngine
from .memorization import LossFn, Monitor


@dataclass
class Restored:
    log: LogWriter | None  # None: a rank other than a distributed run's lead (reads only)
    step: int  # last step whose state is restored (0 = the base)
    run_id: str
    current: dict[str, bytes]
    checkpoints: list[Checkpoint]
    events: list[tuple[int, Event]]
    recorded_root: bytes | None = None  # the last checkpointed step's recorded state root


def resumable(out: Path) -> bool:
    """True when the step log holds at least its whole start record and the secret exists."""
    path = Path(out) / "provenance" / STEPS_FILE
    if not path.exists() or not (Path(out) / "private" / "run-secret").exists():
        return False
    try:
        return any(True for _ in iter_log(path, allow_torn_tail=True))
    except FormatError:
        return True  # a damaged log: let restore() report it rather than overwrite evidence


def last_durable_step(out: Path) -> int:
    """The step a resume restarts after: the last checkpointed step in the step log (0 =
    the base; records after it are cut on resume). Raises FormatError for a damaged log."""
    path = Path(out) / "provenance" / STEPS_FILE
    last = 0
    if not path.exists():
        return last
    for rec in iter_log(path, allow_torn_tail=True):
        parsed = parse_step_log_record(rec.value, rec.index)
        if isinstance(parsed, StepRecord) and parsed.checkpoint is not None:
            last = max(last, parsed.step)
    return last


def read_run_secret(out: Path) -> bytes:
    try:
        return bytes.fromhex((Path(out) / "private" / "run-secret").read_text().strip())
    except (OSError, ValueError) as e:
        raise UsageError(f"{out}: cannot resume: no readable private/run-secret") from e


def restore(
    out: Path,
    fresh: StartRecord,
    engine: StepEngine,
    order: DataOrder,
    monitor: Monitor,
    loss_fn: LossFn,
    eval_every: int,
    *,
    write: bool = True,
) -> Restored:
    """`read_records` then `load_restored`, in one process. Raises UsageError (nothing to
    resume, or another world size) or GovtuneError (the run does not match). ``write=False``:
    read the log and checkpoint only, open no log."""
    got = read_records(out, fresh, order, monitor, eval_every, write=write)
    load_restored(out, got, engine, monitor, loss_fn)
    if write:
        got.log = LogWriter(Path(out) / "provenance" / STEPS_FILE, resume=True)
    return got


def read_records(
    out: Path,
    fresh: StartRecord,
    order: DataOrder,
    monitor: Monitor,
    eval_every: int,
    *,
    write: bool = True,
) -> Restored:
    """Compare the run's start record with ``fresh``, re-derive the data order, quarantines,
    flags and leaves up to the last checkpoint, and (``write``) cut the log there; no torch
    state is touched, so no collective runs here. -> Restored with ``log`` None.
    Raises UsageError (nothing to resume, or another world size) or GovtuneError (the run
    does not match)."""
    path = Path(out) / "provenance" / STEPS_FILE
    if not path.exists():
        raise UsageError(f"{out}: cannot resume: no {STEPS_FILE}")
    records: list[tuple[Any, int]] = []
    for rec in iter_log(path, allow_torn_tail=True):
        records.append((parse_step_log_record(rec.value, rec.index), rec.end))
    if not records:
        raise UsageError(f"{out}: cannot resume: the step log is empty")
    start = records[0][0]
    assert isinstance(start, StartRecord)
    for field in (
        "config_digest",
        "policy_digest",
        "base_state_root",
        "heldout",
        "profiles",
        "model",
    ):
        if getattr(start, field) != getattr(fresh, field):
            raise GovtuneError(f"resume: start record {field} differs from this config and model")
    was, now = start.extra.get("distributed"), fresh.extra.get("distributed")
    if was != now:  # the split rule depends on the world size: records.md §5.3
        raise UsageError(
            f"{out}: cannot resume: expected world size {_world(was)} (as the run was started"
            f"{'' if isinstance(was, dict) else ', in one process'}), found {_world(now)}"
            + (
                ""
                if _world(was) != _world(now)
                else f" with another backend or reduce ({now!r:.80})"
            )
        )
    steps: list[StepRecord] = [r for r, _ in records[1:]]
    last_cp = max((s.step for s in steps if s.checkpoint is not None), default=0)
    if bundle_exists(out):
        raise UsageError(f"{out}: the run is already finished and signed; nothing to resume")
    keep_end = records[last_cp][1]
    if write:
        for stale in (Path(out) / "checkpoints").glob(".*.tmp"):  # a checkpoint write cut short
            stale.unlink()
        with open(path, "r+b") as f:  # cut records past the last checkpoint: states are lost
            f.truncate(keep_end)
            os.fsync(f.fileno())
    current = dict(start.base_leaves)
    checkpoints: list[Checkpoint] = []
    events: list[tuple[int, Event]] = []
    for s in steps[:last_cp]:
        batch = order.next_batch(monitor.quarantined)
        if tuple(batch) != s.batch:
            raise GovtuneError(f"resume: step {s.step}: re-derived batch differs from the record")
        current.update(s.changed)
        for ex, loss in zip(s.batch, s.loss, strict=True):
            monitor.last_loss[ex] = loss
        for e in s.events:
            events.append((s.step, e))
            monitor.replay_event(s.step, e)
        if eval_every and s.step % eval_every == 0:
            monitor.skip_candidates()
        if s.checkpoint is not None:
            cp = s.checkpoint
            checkpoints.append(Checkpoint(s.step, cp["file"], cp["sha256"], cp["stateRoot"]))
    recorded = steps[last_cp - 1].state_root if last_cp else None
    run_id = str(start.extra.get("runId", ""))
    return Restored(None, last_cp, run_id, current, checkpoints, events, recorded)


def load_restored(
    out: Path, got: Restored, engine: StepEngine, monitor: Monitor, loss_fn: LossFn
) -> None:
    """Load ``got``'s checkpoint into ``engine``, check its state root against the records and
    re-measure the held-out reference. Under FSDP (trainer/fsdp.py) both the load's hashing
    and the reference forward are collectives: every rank calls this, in the same order.
    Raises GovtuneError when the checkpoint is not the recorded state; UsageError/FormatError
    for an unreadable checkpoint."""
    if got.step:
        load_checkpoint(Path(out) / got.checkpoints[-1].file, engine)
        root = engine.state_root()  # load_state re-hashed the loaded tensors (full tensors)
        if root != got.recorded_root or root != state_root(got.current):
            raise GovtuneError(f"resume: checkpoint of step {got.step} does not match its record")
    monitor.evaluate_reference(engine.model, loss_fn)


def _world(distributed: object) -> object:
    """The world size of a start record's ``extra.distributed`` (absent: one process)."""
    return distributed.get("worldSize", "?") if isinstance(distributed, dict) else 1


def bundle_exists(out: Path) -> bool:
    return (Path(out) / "provenance" / "bundle.intoto.jsonl").exists()

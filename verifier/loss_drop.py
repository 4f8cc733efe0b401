"""V5 GT-MEM-SIGNAL: re-derive the loss-drop memorization flags from the recorded losses.

The loss-drop signal (policy.md §6; trainer/memorization.py ``Monitor.observe``) is a
pure function of the per-example losses the step log records, so the verifier does
not have to take the producer's word for it. For each step, for each batch example
in order: ``prev`` = the last recorded loss of that example; it is flagged when
``loss_drop_max > 0`` and ``prev - loss > loss_drop_max``, unless that example was
already flagged by ``loss-drop`` or is quarantined; under action ``quarantine`` the
flag quarantines it at once (a repeat later in the same batch is then not flagged).
The recorded ``loss-drop`` flags of the step must equal the re-derived ones exactly
(example, order, ``value = prev - loss``, ``threshold = loss_drop_max``); their actions
are GT-MEM-ACTION's.

Memory is O(examples seen): the last loss (and its step) per example, 16 bytes each in
blocks of ``LastLoss.BLOCK`` examples allocated on first touch, and the flagged set.
The recorded losses themselves are the producer's claim; replay (V9) re-executes
sampled steps and compares them bit for bit, which is what makes them trustworthy.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from attest.policy import Memorization
from attest.records import StepRecord

from .context import MAX_MESSAGES

SIGNAL = "loss-drop"
FLAG = "memorization-flag"

_Flag = tuple[int, float | None, float | None]  # (example, value, threshold)


def _f(x: float) -> float:
    """The float the trainer records: finite, never -0.0 (trainer.memorization._f)."""
    v = float(x) + 0.0
    return v if math.isfinite(v) else 0.0


class LastLoss(Mapping[int, tuple[float, int]]):
    """``example -> (last recorded loss, its step)`` as two flat arrays per block of
    ``BLOCK`` consecutive indices, allocated when an example of the block is first seen.

    A dict of a million examples costs ~200 bytes each (key, tuple, float, int objects);
    this costs 16 (float64 kept exactly, the comparisons are bitwise the dict's). Step 0
    marks "never seen", so an index whose step is outside 1..2^63-1 (only a log that fails
    GT-CHAIN-GAP has one) or that is negative lives in a small side dict instead.
    Iteration is in ascending index order (what SignalCheck scans)."""

    BLOCK = 1 << 14

    def __init__(self) -> None:
        self._blocks: dict[int, tuple[array[float], array[int]]] = {}
        self._side: dict[int, tuple[float, int]] = {}
        self._n = 0

    def set(self, x: int, loss: float, step: int) -> None:
        b, o = divmod(x, self.BLOCK)
        if x >= 0 and 1 <= step < 2**63:
            blk = self._blocks.get(b)
            if blk is None:
                blk = self._blocks[b] = (array("d", bytes(8 * self.BLOCK)),
                                         array("q", bytes(8 * self.BLOCK)))  # fmt: skip
            if blk[1][o] == 0 and self._side.pop(x, None) is None:
                self._n += 1
            blk[0][o], blk[1][o] = loss, step
            return
        blk = self._blocks.get(b) if x >= 0 else None
        if blk is not None and blk[1][o] != 0:
            blk[1][o] = 0  # moves to the side dict
        elif x not in self._side:
            self._n += 1
        self._side[x] = (loss, step)

    def get(self, x: object, default: Any = None) -> Any:
        if not isinstance(x, int):
            return default
        if x >= 0:
            blk = self._blocks.get(x // self.BLOCK)
            if blk is not None:
                o = x % self.BLOCK
                if blk[1][o] != 0:
                    return (blk[0][o], blk[1][o])
        return self._side.get(x, default)

    def __getitem__(self, x: object) -> tuple[float, int]:
        v = self.get(x)
        if v is None:
            raise KeyError(x)
        return v  # type: ignore[no-any-return]

    def __contains__(self, x: object) -> bool:
        return self.get(x) is not None

    def __len__(self) -> int:
        return self._n

    def _dense(self) -> Iterator[int]:
        for b in sorted(self._blocks):
            steps, base = self._blocks[b][1], b * self.BLOCK
            for o in range(self.BLOCK):
                if steps[o]:
                    yield base + o

    def __iter__(self) -> Iterator[int]:
        return heapq.merge(self._dense(), sorted(self._side))


class LossDropCheck:
    """Streams step records; collects (capped) GT-MEM-SIGNAL failure messages."""

    def __init__(self, mem: Memorization) -> None:
        self.max = float(mem.loss_drop_max)
        self.quarantine = mem.action == "quarantine"
        self.last = LastLoss()  # example -> (last loss, its step)
        self.flagged: dict[int, int] = {}  # example -> step of its loss-drop flag
        self.flags = 0  # re-derived flags
        self.count = 0  # failures
        self.messages: list[str] = []

    def _fail(self, message: str) -> None:
        self.count += 1
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(message)

    def step(self, rec: StepRecord, quarantined: Collection[int]) -> None:
        """Check one step; ``quarantined`` = examples quarantined by events of earlier steps."""
        s = rec.step
        want: list[_Flag] = []
        why: dict[int, str] = {}  # example -> why a flag was (or was not) expected
        local: set[int] = set()  # quarantined by this step's re-derived flags
        for x, loss in zip(rec.batch, rec.loss, strict=True):
            before = self.last.get(x)
            self.last.set(x, float(loss), s)
            if before is None:
                why.setdefault(x, "its first visit")
                continue
            prev, ps = before
            drop = prev - float(loss)
            seen = f"loss {prev!r} at step {ps} -> {float(loss)!r}, drop {drop!r}"
            if not (self.max > 0 and drop > self.max):
                why.setdefault(x, f"{seen} <= loss_drop_max {self.max:g}")
                continue
            if x in self.flagged:
                why.setdefault(x, f"already flagged by loss-drop at step {self.flagged[x]}")
                continue
            if x in quarantined or x in local:
                why.setdefault(x, "already quarantined")
                continue
            self.flagged[x] = s
            self.flags += 1
            if self.quarantine:
                local.add(x)
            want.append((x, _f(drop), _f(self.max)))
            why[x] = f"{seen} > loss_drop_max {self.max:g}"
        got: list[_Flag] = [
            (e.example, e.value, e.threshold)
            for e in rec.events
            if e.kind == FLAG and e.signal == SIGNAL and e.example is not None
        ]
        if got != want:
            self._diff(s, want, got, why)

    def _diff(self, s: int, want: list[_Flag], got: list[_Flag], why: dict[int, str]) -> None:
        wanted = {x: (v, t) for x, v, t in want}
        found: dict[int, list[tuple[float | None, float | None]]] = {}
        for x, v, t in got:
            found.setdefault(x, []).append((v, t))
        reported = False
        for x, v, t in want:
            if x not in found:
                self._fail(
                    f"step {s}: example {x}: expected a loss-drop memorization-flag "
                    f"(re-derived from the recorded losses: {why[x]}), found none"
                )
                reported = True
            elif found[x][0] != (v, t):
                gv, gt = found[x][0]
                self._fail(
                    f"step {s}: example {x}: loss-drop flag expected value {v!r} and threshold "
                    f"{t!r} (re-derived), found value {gv!r} and threshold {gt!r}"
                )
                reported = True
        for x, vts in found.items():
            extra = len(vts) - (1 if x in wanted else 0)
            if extra > 0:
                reason = why.get(x, "the example is not in the batch")
                self._fail(
                    f"step {s}: example {x}: expected no loss-drop memorization-flag "
                    f"(re-derived from the recorded losses: {reason}), found "
                    f"{extra} more than expected"
                )
                reported = True
        if not reported:
            self._fail(
                f"step {s}: expected the loss-drop flags in batch order "
                f"{[x for x, _, _ in want]}, found {[x for x, _, _ in got]}"
            )

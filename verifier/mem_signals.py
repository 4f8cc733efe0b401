"""V5 GT-MEM-SIGNAL: re-derive the reference-quantile and canary-exposure flags.

The loss-drop flags are verifier/loss_drop.py's. The other two signals of policy.md §6
fire only at evaluation points (every ``eval_every`` steps and the last step), from
values the log records (each example's last loss; each canary's exposure event) and
thresholds the policy fixes (``exposure_max``) or one number per evaluation (the
reference quantile ``q``, over held-out losses the log does not hold). So the
verifier re-derives, per evaluation step, exactly which flags must be there:

- one ``canary-exposure`` event per canary (its first admission index, threshold
  ``exposure_max`` or nil when 0), at evaluation steps only; when its value exceeds the
  threshold, a ``canary-exposure`` flag for every record of that canary not already
  flagged by that signal nor quarantined;
- all ``reference-quantile`` flags of a step share one threshold ``q``; then every
  example seen so far whose last recorded loss is below ``q`` (ascending index, not
  already flagged by that signal nor quarantined) is flagged with value = that loss,
  and none other; at the last step ``q`` is the report's reference quantile, so an
  evaluation without a flag cannot hide one either.

What stays attested: the exposure values and, before the last evaluation, a ``q`` at
which nothing was flagged. Memory: O(examples + canaries x evaluations).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from attest.policy import Policy
from attest.records import StepRecord

from .context import MAX_MESSAGES

RQ = "reference-quantile"
CE = "canary-exposure"
FLAG = "memorization-flag"

_Ev = tuple[str, int | None, str, float | None, float | None]  # kind, example, signal, value, thr


def _num(v: float) -> float:
    return float(v) + 0.0


class SignalCheck:
    """Streams step records after LossDropCheck; collects (capped) GT-MEM-SIGNAL failures."""

    def __init__(
        self,
        policy: Policy,
        canary_groups: Sequence[tuple[int, ...]],
        heldout: Collection[int],
        last: Mapping[int, tuple[float, int]],
    ) -> None:
        mem = policy.memorization
        self.rq = float(mem.reference_quantile) if len(heldout) else 0.0
        self.exposure_max = float(mem.exposure_max)
        self.eval_every = mem.eval_every
        self.quarantine = mem.action == "quarantine"
        self.groups = list(canary_groups)
        self.last = last  # example -> (last recorded loss, its step): LossDropCheck's map
        self.flagged: set[tuple[int, str]] = set()
        self.exposures: list[dict[str, Any]] = []  # {"index", "exposure", "step"}, log order
        self.evaluations = 0
        self.off_schedule: int | None = None  # an evaluation that must turn out to be the last
        self.last_eval: tuple[int, float | None] | None = None  # (step, its q or None)
        self.count = 0
        self.messages: list[str] = []

    def _fail(self, message: str) -> None:
        self.count += 1
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(message)

    def step(self, rec: StepRecord, quarantined: Collection[int]) -> None:
        """``quarantined``: examples quarantined by events of earlier steps."""
        s = rec.step
        if self.off_schedule is not None:
            self._fail(
                f"step {self.off_schedule}: expected evaluation events only every "
                f"{self.eval_every or 'no'} step(s) and at the last step, found them at a step "
                f"followed by step {s}"
            )
            self.off_schedule = None
        got: list[_Ev] = [
            (e.kind, e.example, e.signal, e.value, e.threshold)
            for e in rec.events
            if (e.kind == FLAG and e.signal in (RQ, CE)) or e.kind == CE
        ]
        scheduled = bool(self.eval_every) and s % self.eval_every == 0
        if not got and not scheduled:
            return
        if not scheduled:
            self.off_schedule = s
        self.evaluations += 1
        # Examples quarantined before this evaluation: earlier steps, and this step's loss-drop
        # actions (the trainer's online signal runs before its evaluation).
        local = set(quarantined) | {
            e.example
            for e in rec.events
            if e.kind == "quarantine" and e.signal == "loss-drop" and e.example is not None
        }
        want: list[_Ev] = []
        qs = {t for k, _x, sig, _v, t in got if k == FLAG and sig == RQ and t is not None}
        q: float | None = None
        if len(qs) > 1:
            self._fail(f"step {s}: expected one reference-quantile threshold, found {sorted(qs)}")
        elif qs and self.rq <= 0:
            self._fail(f"step {s}: expected no reference-quantile flag (signal off), found some")
        elif qs:
            q = next(iter(qs))
        if q is not None:
            want += self._rq_flags(q, local)
        self.last_eval = (s, q)
        thr = self.exposure_max if self.exposure_max > 0 else None
        recorded = {x: v for k, x, _sig, v, _t in got if k == CE}
        for g in self.groups:
            first = g[0]
            if first not in recorded:
                self._fail(
                    f"step {s}: expected a canary-exposure event for canary {first} at this "
                    f"evaluation, found none"
                )
                continue
            value = recorded[first]
            want.append((CE, first, CE, value, thr))
            self.exposures.append({"index": first, "exposure": value, "step": s})
            if thr is not None and value is not None and value > thr:
                for x in g:
                    if (x, CE) in self.flagged or x in local:
                        continue
                    self.flagged.add((x, CE))
                    if self.quarantine:
                        local.add(x)
                    want.append((FLAG, x, CE, _num(value), _num(thr)))
        if got != want:
            self._diff(s, want, got)

    def _rq_flags(self, q: float, local: set[int]) -> list[_Ev]:
        out: list[_Ev] = []
        for x in sorted(self.last):
            loss = self.last[x][0]
            if loss < q and (x, RQ) not in self.flagged and x not in local:
                self.flagged.add((x, RQ))
                if self.quarantine:
                    local.add(x)
                out.append((FLAG, x, RQ, _num(loss), _num(q)))
        return out

    def _diff(self, s: int, want: list[_Ev], got: list[_Ev]) -> None:
        missing = [w for w in want if w not in got]
        extra = [g for g in got if g not in want]
        if missing:
            k, x, sig, v, t = missing[0]
            self._fail(
                f"step {s}: expected a {k} event of example {x} by {sig} (value {v!r}, threshold "
                f"{t!r}; re-derived), found none ({len(missing)} missing)"
            )
        if extra:
            k, x, sig, v, t = extra[0]
            self._fail(
                f"step {s}: expected no {k} event of example {x} by {sig} (value {v!r}, threshold "
                f"{t!r}): not re-derived ({len(extra)} extra)"
            )
        if not missing and not extra:
            self._fail(f"step {s}: expected the evaluation events in the trainer's order, found "
                       "another order")  # fmt: skip

    def finish(self, last_step: int, report_q: float | None, quarantined: Collection[int]) -> None:
        """After the last step: it must have been an evaluation (when there are canaries), and
        at it ``q`` is the report's reference quantile (``report_q``; None = not reported)."""
        self.off_schedule = None  # an off-schedule evaluation at the last step is the last one
        evaluated_last = self.last_eval is not None and self.last_eval[0] == last_step
        if last_step and self.groups and not evaluated_last:
            self._fail(
                f"step {last_step}: expected canary-exposure events at the last step (an "
                f"evaluation point), found none"
            )
        if not (evaluated_last and self.rq > 0 and report_q is not None):
            return
        assert self.last_eval is not None
        q = self.last_eval[1]
        if q is not None and q != report_q:
            self._fail(
                f"step {last_step}: expected the reference-quantile threshold to be the report's "
                f"reference quantile {report_q!r}, found {q!r}"
            )
        elif q is None:
            below = [
                x
                for x in sorted(self.last)
                if self.last[x][0] < report_q and (x, RQ) not in self.flagged
                and x not in quarantined
            ]  # fmt: skip
            if below:
                self._fail(
                    f"step {last_step}: expected reference-quantile flags for examples "
                    f"{below[:5]} (last loss below the reported quantile {report_q!r}), found none"
                )

"""Memorization detection and the policy's action (DESIGN.md, "Memorization detection").

Signals:
- ``loss-drop``: an example's loss before the step fell by more than
  ``loss_drop_max`` nats since its previous visit (the Proof-of-Training-Data signal,
  Choi et al. 2023);
- ``reference-quantile``: an example's loss fell below the ``reference_quantile`` of the
  losses of held-out admitted examples (never trained on), refreshed at evaluation points;
- ``canary-exposure``: exposure = log2|R| - log2 rank of a planted canary among the
  candidate space R of 10**digits secrets (Carlini et al. 2019, "The Secret Sharer").
  The rank is estimated from ``candidates`` sampled alternatives by scaling:
  rank ~= |R| * (1 + #lower) / (1 + candidates), so the estimate saturates at
  log2(1 + candidates) bits; a policy's exposure_max must stay below that.

A signal over its threshold is recorded as a ``memorization-flag`` event; the action
then adds ``quarantine`` (the example never enters a later batch) or ``halt``.
Each example is flagged at most once per signal, keeping the log bounded.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence

import torch
from torch import nn

from attest.canonical import canonical_json
from attest.policy import Canaries, Memorization
from attest.records import Event

from .data import Canary

LossFn = Callable[[nn.Module, Sequence[str]], torch.Tensor]
REPORT_QUANTILES = (0.01, 0.05, 0.25, 0.5)


def _f(x: float) -> float:
    """A float canonical msgpack accepts: finite, and never -0.0."""
    v = float(x) + 0.0
    return v if math.isfinite(v) else 0.0


class Monitor:
    def __init__(
        self,
        mem: Memorization,
        canaries_policy: Canaries,
        canaries: Sequence[Canary],
        heldout: dict[int, str],
        run_secret: bytes,
    ) -> None:
        self.mem = mem
        self.cpol = canaries_policy
        self.canaries = list(canaries)
        self.heldout = heldout
        self.last_loss: dict[int, float] = {}
        self.flagged: set[tuple[int, str]] = set()
        self.quarantined: set[int] = set()
        self.halted = False
        self.reference: list[float] = []
        self.exposures: list[dict[str, object]] = []
        # Candidate secrets are private: sampled from a generator keyed by the run secret.
        seed = int.from_bytes(
            hashlib.sha256(b"govtune.candidates.v1" + run_secret).digest()[:8], "big"
        )
        self._rng = random.Random(seed)

    # -- the online signals, from the losses the training forward computed anyway --

    def observe(self, batch: Sequence[int], losses: Sequence[float]) -> list[Event]:
        """The loss-drop signal, from the losses the training forward computed anyway."""
        events: list[Event] = []
        for ex, loss in zip(batch, losses, strict=True):
            prev = self.last_loss.get(ex)
            self.last_loss[ex] = loss
            drop = self.mem.loss_drop_max
            if drop > 0 and prev is not None and prev - loss > drop:
                detail = f"loss {prev:.4f} -> {loss:.4f} nats since the last visit"
                events += self._trigger(ex, "loss-drop", prev - loss, drop, detail)
        return events

    def reference_threshold(self) -> float | None:
        if self.mem.reference_quantile <= 0 or not self.reference:
            return None
        return quantile(self.reference, self.mem.reference_quantile)

    # -- the periodic evaluation: held-out reference refresh and canary exposure --

    @torch.no_grad()
    def evaluate_reference(self, model: nn.Module, loss_fn: LossFn) -> None:
        """Refresh the held-out loss distribution (the reference for the quantile signal)."""
        if self.heldout:
            was = model.training
            model.eval()
            try:
                texts = [self.heldout[i] for i in sorted(self.heldout)]
                self.reference = [float(x) for x in _chunked(model, loss_fn, texts)]
            finally:
                model.train(was)

    @torch.no_grad()
    def evaluate(self, step: int, model: nn.Module, loss_fn: LossFn) -> list[Event]:
        """Reference refresh, reference-quantile check, canary exposure after ``step``.

        Each example's most recent training loss (measured before its step, so by an
        older model) is compared with the held-out losses of the current model: a stale
        loss can only be higher, so the check errs towards not flagging.
        """
        self.evaluate_reference(model, loss_fn)
        events: list[Event] = []
        q = self.reference_threshold()
        if q is not None:
            for ex in sorted(self.last_loss):
                loss = self.last_loss[ex]
                if loss < q:
                    detail = (
                        f"last loss below the {_number(self.mem.reference_quantile)} quantile of "
                        f"{len(self.reference)} held-out losses"
                    )
                    events += self._trigger(ex, "reference-quantile", loss, q, detail)
        was = model.training
        model.eval()
        try:
            for c in self.canaries:
                exposure = self.exposure(model, loss_fn, c)
                thr = self.mem.exposure_max if self.mem.exposure_max > 0 else None
                first = c.indices[0]
                self.exposures.append({"index": first, "exposure": _f(exposure), "step": step})
                events.append(
                    Event(
                        "canary-exposure",
                        first,
                        "canary-exposure",
                        _f(exposure),
                        thr,
                        f"rank estimated from {self.cpol.candidates} candidates",
                    )
                )
                if thr is not None and exposure > thr:
                    for ex in c.indices:
                        events += self._trigger(
                            ex,
                            "canary-exposure",
                            exposure,
                            thr,
                            "canary exposure over the policy maximum",
                        )
            return events
        finally:
            model.train(was)

    def _candidates(self, c: Canary) -> list[str]:
        digits, space = self.cpol.digits, 10**self.cpol.digits
        cands: list[str] = []
        while len(cands) < self.cpol.candidates:
            s = str(self._rng.randrange(space)).zfill(digits)
            if s != c.secret:
                cands.append(s)
        return cands

    def skip_candidates(self) -> None:
        """Advance the candidate generator past one evaluation (resume)."""
        for c in self.canaries:
            self._candidates(c)

    def replay_event(self, step: int, e: Event) -> None:
        """Re-apply a recorded event to the monitor's state (resume)."""
        if e.kind == "memorization-flag" and e.example is not None:
            self.flagged.add((e.example, e.signal))
        elif e.kind == "quarantine" and e.example is not None:
            self.quarantined.add(e.example)
        elif e.kind == "halt":
            self.halted = True
        elif e.kind == "canary-exposure":
            self.exposures.append({"index": e.example, "exposure": e.value, "step": step})

    def exposure(self, model: nn.Module, loss_fn: LossFn, c: Canary) -> float:
        digits, n = self.cpol.digits, self.cpol.candidates
        space = 10**digits
        cands = self._candidates(c)
        tail = c.text[len(c.prefix) + digits :]
        texts = [c.text] + [c.prefix + s + tail for s in cands]
        # Same byte length for every candidate: the mean loss orders them as the summed NLL does.
        losses = _chunked(model, loss_fn, texts)
        lower = int((losses[1:] < losses[0]).sum())
        rank = space * (1 + lower) / (1 + n)
        return math.log2(space) - math.log2(max(rank, 1.0))

    def _trigger(
        self, ex: int, signal: str, value: float, threshold: float, detail: str
    ) -> list[Event]:
        if (ex, signal) in self.flagged or ex in self.quarantined:
            return []
        self.flagged.add((ex, signal))
        events = [Event("memorization-flag", ex, signal, _f(value), _f(threshold), detail)]
        if self.mem.action == "quarantine":
            self.quarantined.add(ex)
            events.append(
                Event("quarantine", ex, signal, _f(value), _f(threshold), "never used again")
            )
        elif self.mem.action == "halt" and not self.halted:
            self.halted = True
            events.append(
                Event("halt", ex, signal, _f(value), _f(threshold), "training stopped by policy")
            )
        return events

    def reference_summary(self) -> dict[str, object]:
        qs = sorted(
            set(REPORT_QUANTILES)
            | ({self.mem.reference_quantile} if self.mem.reference_quantile > 0 else set())
        )
        return {
            "count": len(self.reference),
            "quantiles": {_number(q): _f(quantile(self.reference, q)) for q in qs}
            if self.reference
            else {},
        }


def _number(q: float) -> str:
    """``q`` as signed text: its RFC 8785 spelling (shortest round-trip, ECMAScript rules).

    Not ``format(q, "g")``: that is Python's and keeps 6 digits, so 0.0500001 and 0.05
    would be one key (spec/predicates/memorization-report.md).
    """
    return canonical_json(q).decode("ascii")


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), in pure Python."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _chunked(
    model: nn.Module, loss_fn: LossFn, texts: Sequence[str], size: int = 256
) -> torch.Tensor:
    return torch.cat(
        [loss_fn(model, texts[i : i + size]).detach() for i in range(0, len(texts), size)]
    )

"""GT-MEM-SIGNAL: the loss-drop flags re-derived from recorded losses (verifier/loss_drop.py).

Table-driven over hand-made step records: each case is a list of steps
(batch, losses, the loss-drop flags recorded as (example, value)), a policy, and the
failure messages expected (a prefix of each, in order; none for a consistent log).
The end-to-end cases (a real run, the spec vectors) are in tests/adversarial and
test_vectors.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from attest.policy import Memorization
from attest.records import Event, StepRecord
from verifier.loss_drop import LossDropCheck

Step = tuple[list[int], list[float], list[tuple[int, float]]]


def _record(s: int, batch: list[int], loss: list[float], flags: list[Event]) -> StepRecord:
    n = len(batch)
    return StepRecord(
        s, tuple(batch), ("deep",) * n, tuple(loss), (0.0,) * n, 0.1, {}, b"\0" * 32, tuple(flags)
    )


def _flag(x: int, value: float, threshold: float = 1.0, signal: str = "loss-drop") -> Event:
    return Event("memorization-flag", x, signal, value, threshold, "")


@dataclass
class Case:
    steps: list[Step]
    want: list[str] = field(default_factory=list)
    action: str = "quarantine"
    loss_drop_max: float = 1.0
    quarantined_before: dict[int, set[int]] = field(default_factory=dict)  # step -> Q


CASES = {
    "first visit never flags": Case([([0, 1], [9.0, 9.0], [])]),
    "drop over the threshold flags": Case([([0], [5.0], []), ([0], [3.5], [(0, 1.5)])]),
    "drop equal to the threshold does not flag": Case([([0], [5.0], []), ([0], [4.0], [])]),
    "each example is flagged once": Case(
        [([0], [9.0], []), ([0], [7.0], [(0, 2.0)]), ([0], [5.0], [])], action="flag"
    ),
    "prev is the last visit, not the first": Case(
        [([0], [5.0], []), ([0], [4.5], []), ([0], [4.0], [])]
    ),
    "a repeat in the same batch uses the earlier loss": Case(
        [([0], [5.0], []), ([0, 0], [4.5, 3.0], [(0, 1.5)])], action="flag"
    ),
    "loss_drop_max 0 disables the signal": Case(
        [([0], [9.0], []), ([0], [1.0], [])], loss_drop_max=0.0
    ),
    "quarantined by another signal: not flagged": Case(
        [([0], [9.0], []), ([0], [1.0], [])], quarantined_before={2: {0}}
    ),
    "other signals are not this check's": Case(
        [([0], [5.0], []), ([0], [4.9], [])],
    ),
    "erased flag": Case(
        [([0, 1], [5.0, 5.0], []), ([1, 0], [4.8, 2.0], [])],
        [
            "step 2: example 0: expected a loss-drop memorization-flag (re-derived from the "
            "recorded losses: loss 5.0 at step 1 -> 2.0, drop 3.0 > loss_drop_max 1), found none"
        ],
    ),  # fmt: skip
    "invented flag at a first visit": Case(
        [([0], [5.0], [(0, 2.0)])],
        [
            "step 1: example 0: expected no loss-drop memorization-flag (re-derived from the "
            "recorded losses: its first visit), found 1 more than expected"
        ],
    ),  # fmt: skip
    "invented flag for an example not in the batch": Case(
        [([0], [5.0], [(7, 2.0)])],
        [
            "step 1: example 7: expected no loss-drop memorization-flag (re-derived from the "
            "recorded losses: the example is not in the batch)"
        ],
    ),  # fmt: skip
    "flag repeated": Case(
        [([0], [5.0], []), ([0], [3.0], [(0, 2.0)]), ([0], [1.0], [(0, 2.0)])],
        [
            "step 3: example 0: expected no loss-drop memorization-flag (re-derived from the "
            "recorded losses: already flagged by loss-drop at step 2)"
        ],
        action="flag",
    ),  # fmt: skip
    "value rewritten": Case(
        [([0], [5.0], []), ([0], [3.0], [(0, 9.0)])],
        [
            "step 2: example 0: loss-drop flag expected value 2.0 and threshold 1.0 (re-derived), "
            "found value 9.0 and threshold 1.0"
        ],
    ),  # fmt: skip
    "flags out of batch order": Case(
        [([0, 1], [5.0, 5.0], []), ([0, 1], [3.0, 3.0], [(1, 2.0), (0, 2.0)])],
        ["step 2: expected the loss-drop flags in batch order [0, 1], found [1, 0]"],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_loss_drop_rederivation(name: str) -> None:
    case = CASES[name]
    check = LossDropCheck(Memorization(action=case.action, loss_drop_max=case.loss_drop_max))
    for s, (batch, loss, flags) in enumerate(case.steps, 1):
        events = [_flag(x, v) for x, v in flags]
        if name == "other signals are not this check's":
            events.append(_flag(0, 0.1, 0.5, "reference-quantile"))
        check.step(_record(s, batch, loss, events), case.quarantined_before.get(s, set()))
    assert check.count == len(case.want), check.messages
    for got, want in zip(check.messages, case.want, strict=True):
        assert got.startswith(want), got


def test_failures_are_counted_past_the_message_cap() -> None:
    check = LossDropCheck(Memorization(action="flag", loss_drop_max=1.0))
    for s in range(1, 31):
        check.step(_record(s, [s], [5.0], [_flag(s, 2.0)]), set())
    assert check.count == 30 and len(check.messages) == 10


def test_the_result_counts_what_the_messages_leave_out() -> None:
    from verifier.context import Tally
    from verifier.result import Result

    check = LossDropCheck(Memorization(action="flag", loss_drop_max=1.0))
    for s in range(1, 13):
        check.step(_record(s, [s], [5.0], [_flag(s, 2.0)]), set())
    result = Result("run")
    t = Tally(result, ("GT-MEM-SIGNAL",))
    t.fail_all("GT-MEM-SIGNAL", check.messages, check.count)
    t.flush()
    messages = [f.message for f in result.failures]
    assert len(messages) == 11 and messages[-1] == "... and 2 more failure(s) of this check"

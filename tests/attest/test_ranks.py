"""attest.ranks: the split rule of distributed runs (spec/records.md §5.3) and its record."""

from __future__ import annotations

import pytest

from attest.errors import FormatError
from attest.ranks import Distributed, positions, ranks_for
from attest.records import StepRecord

CASES = {
    "even": (4, 2, (0, 0, 1, 1)),
    "uneven: the later rank takes the extra": (5, 2, (0, 0, 1, 1, 1)),
    "three ranks": (7, 3, (0, 0, 1, 1, 2, 2, 2)),
    "fewer examples than ranks: empty slices": (2, 4, (1, 3)),
    "one process": (3, 1, (0, 0, 0)),
    "empty batch": (0, 2, ()),
}


@pytest.mark.parametrize("batch,world,want", CASES.values(), ids=CASES.keys())
def test_ranks_for(batch: int, world: int, want: tuple[int, ...]) -> None:
    assert ranks_for(batch, world) == want
    # positions partitions the batch into contiguous slices, in rank order
    flat = [j for r in range(world) for j in positions(batch, world, r)]
    assert flat == list(range(batch))
    assert (
        max(len(positions(batch, world, r)) for r in range(world))
        - min(len(positions(batch, world, r)) for r in range(world))
        <= 1
    )


@pytest.mark.parametrize(
    "args,match",
    [
        ((4, 0), r"worldSize: expected an integer in \[1, 65536\], got 0"),
        ((4, True), r"worldSize: expected an integer"),
        ((-1, 2), r"batch size: expected an integer >= 0, got -1"),
    ],
)
def test_bad_split_arguments(args: tuple[int, int], match: str) -> None:
    with pytest.raises(FormatError, match=match):
        ranks_for(*args)


def test_positions_rejects_a_rank_outside_the_world() -> None:
    with pytest.raises(FormatError, match=r"rank: expected an integer in \[0, 2\), got 2"):
        positions(4, 2, 2)


def test_distributed_round_trip_and_refusals() -> None:
    d = Distributed(2, "gloo")
    assert Distributed.from_dict(d.to_dict()) == d
    with pytest.raises(FormatError, match=r"distributed: expected keys"):
        Distributed.from_dict({**d.to_dict(), "extra": 1})
    with pytest.raises(FormatError, match=r"distributed.split: expected 'contiguous-v1'"):
        Distributed.from_dict({**d.to_dict(), "split": "strided"})


def _step(**kw: object) -> StepRecord:
    args: dict = dict(step=1, batch=(3, 4), profiles=("a", "b"), loss=(1.0, 2.0), grad_norm=None,
                      lr=0.1, changed={}, state_root=b"\0" * 32)  # fmt: skip
    args.update(kw)
    return StepRecord(**args)  # type: ignore[arg-type]


def test_step_record_ranks_are_optional_and_round_trip() -> None:
    single = _step()
    assert "ranks" not in single.to_record()  # single-process records unchanged
    assert StepRecord.from_record(single.to_record()) == single
    dist = _step(ranks=(0, 1))
    assert dist.to_record()["ranks"] == [0, 1]
    assert StepRecord.from_record(dist.to_record()) == dist
    with pytest.raises(FormatError, match=r"step 1: expected 2 ranks \(one per batch example\)"):
        _step(ranks=(0,))
    with pytest.raises(FormatError, match=r"ranks\[1\]: expected an integer >= 0"):
        StepRecord.from_record({**dist.to_record(), "ranks": [0, -1]})

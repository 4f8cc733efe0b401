"""How a distributed run splits each global batch across its ranks (spec/records.md §5.3).

One rule, one implementation: the trainer (trainer/dist.py) gives rank ``r`` exactly
the positions `positions(B, W, r)` of each global batch, and the verifier
(verifier/checks_dist.py) checks that the recorded ``ranks`` follow `ranks_for(B, W)`.

Rule ``contiguous-v1``: with global batch size ``B`` and world size ``W``, rank ``r``
trains the contiguous positions ``[floor(r·B/W), floor((r+1)·B/W))`` of the batch, in
batch order. Every position belongs to exactly one rank, slice sizes differ by at most
one, and a rank whose slice is empty (``B < W``) contributes zero gradients.

    >>> ranks_for(5, 2)
    (0, 0, 1, 1, 1)
    >>> list(positions(5, 2, 1))
    [2, 3, 4]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import FormatError

SPLIT = "contiguous-v1"
REDUCE = "allreduce-sum-per-signature-v1"  # trainer/dist.py: one SUM per gradient group
REDUCE_FSDP = "reducescatter-sum-fsdp2-v1"  # trainer/fsdp.py: FSDP2's reduce-scatter, SUM
REDUCES = (REDUCE, REDUCE_FSDP)
WORLD_MAX = 1 << 16  # ranks; beyond any real data-parallel job, bounds a forged value


def _check(batch: int, world: int) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise FormatError(f"batch size: expected an integer >= 0, got {batch!r:.40}")
    if isinstance(world, bool) or not isinstance(world, int) or not 1 <= world <= WORLD_MAX:
        raise FormatError(f"worldSize: expected an integer in [1, {WORLD_MAX}], got {world!r:.40}")


def positions(batch: int, world: int, rank: int) -> range:
    """The batch positions rank ``rank`` trains. Raises FormatError on bad arguments."""
    _check(batch, world)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world:
        raise FormatError(f"rank: expected an integer in [0, {world}), got {rank!r:.40}")
    return range(rank * batch // world, (rank + 1) * batch // world)


def ranks_for(batch: int, world: int) -> tuple[int, ...]:
    """``ranks[j]`` = the rank that trains position ``j``. Raises FormatError."""
    _check(batch, world)
    return tuple(r for r in range(world) for _ in positions(batch, world, r))


@dataclass(frozen=True)
class Distributed:
    """The start record's ``extra.distributed`` (records.md §4): how the run was split."""

    world_size: int
    backend: str  # "gloo" (CPU) or "nccl" (CUDA)
    split: str = SPLIT
    reduce: str = REDUCE

    def __post_init__(self) -> None:
        _check(0, self.world_size)
        if not isinstance(self.backend, str) or not self.backend:
            raise FormatError(f"distributed.backend: expected a name, got {self.backend!r:.40}")
        if self.split != SPLIT:
            raise FormatError(f"distributed.split: expected {SPLIT!r}, got {self.split!r:.40}")
        if self.reduce not in REDUCES:
            raise FormatError(
                f"distributed.reduce: expected one of {REDUCES}, got {self.reduce!r:.40}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "worldSize": self.world_size,
            "backend": self.backend,
            "split": self.split,
            "reduce": self.reduce,
        }

    @classmethod
    def from_dict(cls, d: object, where: str = "distributed") -> Distributed:
        """Raises FormatError naming ``where`` for a missing key, an unknown one or a bad value."""
        if not isinstance(d, Mapping):
            raise FormatError(f"{where}: expected a map, got {type(d).__name__}")
        d = dict(d)
        keys = {"worldSize", "backend", "split", "reduce"}
        if set(d) != keys:
            raise FormatError(
                f"{where}: expected keys {', '.join(sorted(keys))}, got {', '.join(sorted(d))}"
            )
        try:
            return cls(d["worldSize"], d["backend"], d["split"], d["reduce"])
        except FormatError as e:
            raise FormatError(f"{where}: {e}") from e


__all__ = [
    "REDUCE",
    "REDUCES",
    "REDUCE_FSDP",
    "SPLIT",
    "WORLD_MAX",
    "Distributed",
    "positions",
    "ranks_for",
]

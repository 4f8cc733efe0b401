"""Data order: seeded epochs over the training pool, skipping quarantined examples.

The order is a pure function of (pool, seed, the quarantines so far), so a replay or a
resume re-derives every batch; the seed is recorded in the start record's ``extra``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class DataOrder:
    def __init__(self, pool: Sequence[int], seed: int, batch_size: int) -> None:
        self.pool = list(pool)
        self.seed = seed
        self.batch_size = batch_size
        self.epoch = -1
        self._perm: list[int] = []
        self._pos = 0

    def _next_epoch(self) -> None:
        self.epoch += 1
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self._perm = [self.pool[i] for i in torch.randperm(len(self.pool), generator=g).tolist()]
        self._pos = 0

    def live(self, excluded: set[int]) -> int:
        """Examples still eligible for a batch."""
        return len(set(self.pool) - excluded)

    def next_batch(self, excluded: set[int]) -> list[int]:
        """Up to batch_size distinct examples not in ``excluded``; [] when none is left."""
        want = min(self.batch_size, self.live(excluded))
        batch: list[int] = []
        while len(batch) < want:
            if self._pos >= len(self._perm):
                self._next_epoch()
            ex = self._perm[self._pos]
            self._pos += 1
            if ex not in excluded and ex not in batch:
                batch.append(ex)
        return batch

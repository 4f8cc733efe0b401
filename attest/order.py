"""The data order: which examples form each batch, derived, never taken on trust.

The order is a pure function of the training pool, the signed seed, the batch size and
the quarantines so far (spec/records.md §5 "Data order"). The trainer draws its batches
with :class:`DataOrder` and the verifier re-derives every batch with the very same code,
so a producer cannot choose which examples go into which step. It is defined by
SHA-256 alone so that another language gets the same answer (v0.1 used
``torch.randperm``, which only PyTorch can reproduce). Example::

    >>> order = DataOrder([3, 5, 8, 9], seed=7, batch_size=3)
    >>> order.next_batch(set())
    [8, 5, 3]
    >>> order.next_batch({9})
    [3, 5, 8]
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence

from .errors import FormatError

_ORDER_TAG = b"govtune.order.v1"


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**63:
        raise FormatError(f"config.seed: expected a 64-bit signed integer, got {seed!r:.40}")


def epoch_order(seed: int, epoch: int, pool: Iterable[int]) -> list[int]:
    """Epoch ``epoch``'s permutation of ``pool``: its distinct indices sorted by
    SHA-256("govtune.order.v1" || int64be(seed) || uint64be(epoch) || uint64be(index))
    (compared as byte strings). Raises FormatError for a seed outside 64 bits."""
    _check_seed(seed)
    prefix = _ORDER_TAG + struct.pack(">qQ", seed, epoch)
    return [i for _, i in sorted((hashlib.sha256(prefix + struct.pack(">Q", i)).digest(), i)
                                 for i in set(pool))]  # fmt: skip


class DataOrder:
    """Seeded epochs over the training pool, skipping excluded (quarantined) examples.

    ``next_batch(excluded)`` returns up to ``batch_size`` distinct examples not in
    ``excluded``, taken in epoch order; an epoch that runs out mid-batch continues
    into the next epoch's order (an example already in the batch is skipped there).
    It returns [] once no example is eligible. Raises FormatError for a bad seed or a
    batch size < 1.
    """

    def __init__(self, pool: Sequence[int], seed: int, batch_size: int) -> None:
        _check_seed(seed)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise FormatError(f"config.batch_size: expected an integer >= 1, got {batch_size!r}")
        self.pool = sorted(set(pool))
        self.seed = seed
        self.batch_size = batch_size
        self.epoch = -1
        self._perm: list[int] = []
        self._pos = 0

    def _next_epoch(self) -> None:
        self.epoch += 1
        self._perm = epoch_order(self.seed, self.epoch, self.pool)
        self._pos = 0

    def live(self, excluded: set[int] | frozenset[int]) -> int:
        """Examples still eligible for a batch."""
        return len(set(self.pool) - set(excluded))

    def next_batch(self, excluded: set[int] | frozenset[int]) -> list[int]:
        """The next batch (see the class docstring)."""
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

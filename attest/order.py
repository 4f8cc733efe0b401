"""The data order: which examples form each batch, derived, never taken on trust.

The order is a pure function of the training pool, the signed seed, the batch size and
the quarantines so far (spec/records.md §5.2 "Data order"). The trainer draws its
batches with :class:`DataOrder` and the verifier re-derives every batch with the very
same code (`GT-BATCH-ORDER`), so a producer cannot choose which examples go into which
step. It is defined by SHA-256 alone so that another language gets the same answer
(v0.2 drafts used ``torch.randperm``, which only PyTorch reproduces). Example::

    >>> order = DataOrder([3, 5, 8, 9], seed=7, batch_size=3)
    >>> order.next_batch(set())
    [8, 5, 3]
    >>> order.next_batch({9})
    [3, 5, 8]

`ranking` is also the rule of the held-out set and the evaluation split (attest/canary.py).
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from array import array
from collections.abc import Collection, Iterable, Sequence

from .errors import FormatError

ORDER = "sha256-epoch-rank-v1"  # the start record's ``extra.order`` (records.md §5.2)
_ORDER_TAG = b"govtune.order.v1"


def check_seed(seed: object) -> int:
    """``seed`` as a signed 64-bit integer. Raises FormatError for anything else."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**63:
        raise FormatError(f"config.seed: expected a 64-bit signed integer, got {seed!r:.40}")
    return seed


def ranking(prefix: bytes, pool: Iterable[int], *, distinct: bool = False) -> list[int]:
    """The distinct indices of ``pool`` sorted by SHA-256(prefix || uint64be(index)),
    compared as byte strings (ties, which SHA-256 makes vanishingly rare, by index).
    ``distinct``: the caller vouches that ``pool`` has no repeats (no set is built)."""
    sha = hashlib.sha256
    pack = struct.Struct(">Q").pack
    # cost: one SHA-256 per index. Memory: one int per index, (first 8 digest bytes << 64
    # | index), sorted as is (a (digest, index) tuple per index would be ~150 bytes); runs
    # with equal first 8 bytes are then put in full-digest order, and the keys become the
    # indices in place.
    keys = sorted(
        (int.from_bytes(sha(prefix + pack(i)).digest()[:8], "big") << 64) | i
        for i in (pool if distinct else set(pool))
    )
    low = (1 << 64) - 1
    j = 0
    while j < len(keys):
        end = j + 1
        while end < len(keys) and keys[end] >> 64 == keys[j] >> 64:
            end += 1
        if end - j > 1:
            keys[j:end] = sorted(
                keys[j:end], key=lambda k: (sha(prefix + pack(k & low)).digest(), k)
            )
        for m in range(j, end):
            keys[m] &= low
        j = end
    return keys


def epoch_order(seed: int, epoch: int, pool: Iterable[int], *, distinct: bool = False) -> list[int]:
    """Epoch ``epoch``'s permutation of ``pool``: its distinct indices ranked by
    SHA-256("govtune.order.v1" || int64be(seed) || uint64be(epoch) || uint64be(index)).
    Raises FormatError for a seed outside 64 bits or a negative epoch."""
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < 2**64:
        raise FormatError(f"data order: expected an epoch >= 0, got {epoch!r:.40}")
    prefix = _ORDER_TAG + struct.pack(">qQ", check_seed(seed), epoch)
    return ranking(prefix, pool, distinct=distinct)


class DataOrder:
    """Seeded epochs over the training pool, skipping excluded (quarantined) examples.

    ``next_batch(excluded)`` returns up to ``batch_size`` distinct examples not in
    ``excluded``, taken in epoch order; an epoch that runs out mid-batch continues
    into the next epoch's order (an example already in the batch is skipped there).
    It returns [] once no example is eligible. ``excluded`` only grows during a run
    (quarantines are final). Raises FormatError for a bad seed or a batch size < 1.
    """

    def __init__(self, pool: Sequence[int], seed: int, batch_size: int) -> None:
        check_seed(seed)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise FormatError(f"config.batch_size: expected an integer >= 1, got {batch_size!r}")
        # 8 bytes an example for the pool and 8 for the epoch's order (a verifier holds
        # both for a million-example pool).
        self.pool = array("q", sorted(set(pool)))
        self.seed = seed
        self.batch_size = batch_size
        self.epoch = -1
        self._perm = array("q")
        self._pos = 0

    def _next_epoch(self) -> None:
        self.epoch += 1
        self._perm = array("q", epoch_order(self.seed, self.epoch, self.pool, distinct=True))
        self._pos = 0

    def _member(self, x: int) -> bool:
        k = bisect.bisect_left(self.pool, x)
        return k < len(self.pool) and self.pool[k] == x

    def live(self, excluded: Collection[int]) -> int:
        """Examples still eligible for a batch (cost: O(|excluded| log |pool|))."""
        return len(self.pool) - sum(1 for x in set(excluded) if self._member(x))

    def next_batch(self, excluded: Collection[int]) -> list[int]:
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


__all__ = ["ORDER", "DataOrder", "check_seed", "epoch_order", "ranking"]

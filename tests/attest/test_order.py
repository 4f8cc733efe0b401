"""attest/order.py: the data order is a pure, language-neutral function (records.md §5)."""

from __future__ import annotations

import hashlib
import struct

import pytest

from attest.errors import FormatError
from attest.order import DataOrder, epoch_order


def test_epoch_order_is_the_sha256_ranking() -> None:
    pool = [4, 1, 9, 16, 25]
    key = {
        i: hashlib.sha256(
            b"govtune.order.v1" + struct.pack(">qQ", -3, 2) + struct.pack(">Q", i)
        ).digest()
        for i in pool
    }
    assert epoch_order(-3, 2, pool) == sorted(pool, key=key.__getitem__)
    assert epoch_order(-3, 2, pool) != epoch_order(-3, 3, pool)  # epochs differ
    assert epoch_order(-3, 2, pool + pool) == epoch_order(-3, 2, pool)  # a set, not a list


def test_golden_batches() -> None:
    # Golden values: another implementation of records.md §5 must produce exactly these.
    order = DataOrder([3, 5, 8, 9], seed=7, batch_size=3)
    assert order.next_batch(set()) == [8, 5, 3]
    assert order.next_batch({9}) == [3, 5, 8]  # the epoch ran out: continues into epoch 1
    assert order.epoch == 1


def test_every_example_once_per_epoch_and_never_excluded() -> None:
    pool = list(range(0, 40, 2))
    order = DataOrder(pool, seed=123, batch_size=4)
    seen = [x for _ in range(5) for x in order.next_batch(set())]
    assert sorted(seen) == pool  # 5 batches x 4 = one full epoch, each example once
    batch = order.next_batch({0, 2, 4})
    assert len(batch) == 4 and not {0, 2, 4} & set(batch) and len(set(batch)) == 4


def test_small_pool_and_empty() -> None:
    order = DataOrder([1, 2], seed=0, batch_size=8)
    assert sorted(order.next_batch(set())) == [1, 2]  # at most the live examples, distinct
    assert order.next_batch({1, 2}) == []
    assert DataOrder([], seed=0, batch_size=2).next_batch(set()) == []


@pytest.mark.parametrize(
    ("seed", "batch", "match"),
    [
        (2**63, 2, "config.seed: expected a 64-bit signed integer"),
        (True, 2, "config.seed"),
        (0, 0, "config.batch_size: expected an integer >= 1, got 0"),
    ],
)
def test_bad_parameters(seed: int, batch: int, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        DataOrder([1], seed=seed, batch_size=batch)


def test_ranking_breaks_ties_in_the_first_eight_digest_bytes_by_the_whole_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The sort keys on the first 8 digest bytes; a run of equal ones must still come out in
    # whole-digest order. SHA-256 never collides there in practice, so force it: a digest
    # whose first 8 bytes are constant.
    import attest.order as order

    real = hashlib.sha256

    class Prefixed:
        def __init__(self, data: bytes) -> None:
            self._d = bytes(8) + real(data).digest()[8:]

        def digest(self) -> bytes:
            return self._d

    monkeypatch.setattr(order.hashlib, "sha256", Prefixed)
    pool = [7, 3, 11, 2, 19, 5]
    want = sorted(pool, key=lambda i: (Prefixed(b"p" + struct.pack(">Q", i)).digest(), i))
    assert order.ranking(b"p", pool) == want
    assert want != sorted(pool)  # the tie-break really reorders

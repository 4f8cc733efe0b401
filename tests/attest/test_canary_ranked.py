"""attest.canary: the streaming held-out and evaluation draws equal the spec's sort."""

from __future__ import annotations

import hashlib
import struct

from hypothesis import given
from hypothesis import strategies as st

from attest.canary import eval_indices, heldout_indices


def _spec_draw(tag: bytes, seed: int, pool: list[int], k: int) -> tuple[int, ...]:
    """records.md §4 read literally: sort every (digest, index) of the set, keep k, ascending."""
    prefix = tag + struct.pack(">q", seed)
    ranked = sorted((hashlib.sha256(prefix + struct.pack(">Q", i)).digest(), i) for i in set(pool))
    return tuple(sorted(i for _, i in ranked[:k]))


@given(
    st.integers(-(2**63), 2**63 - 1),
    st.lists(st.integers(0, 400), max_size=300),  # repeats included: the pool is a set
    st.integers(0, 80),
)
def test_draws_equal_the_spec_sort(seed: int, pool: list[int], k: int) -> None:
    assert heldout_indices(seed, pool, k) == _spec_draw(b"govtune.heldout.v1", seed, pool, k)
    assert eval_indices(seed, iter(pool), k) == _spec_draw(b"govtune.eval.v1", seed, pool, k)


def test_a_million_index_pool_streams() -> None:
    # A generator, never a list: the draw keeps k entries, not the pool.
    got = heldout_indices(7, (i for i in range(200_000)), 5)
    assert len(got) == 5 and list(got) == sorted(got)

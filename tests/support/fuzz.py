"""Replace one field of a parsed document with junk: parsers must fail only with their own error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=5,
)


def paths(v: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into ``v`` (dict keys, list indices), the empty path first."""
    yield prefix
    if isinstance(v, dict):
        for k in v:
            yield from paths(v[k], (*prefix, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from paths(x, (*prefix, i))


def replace(v: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``v`` with the value at ``path`` replaced by ``new`` (``v`` is not changed)."""
    if not path:
        return new
    v = dict(v) if isinstance(v, dict) else list(v)
    v[path[0]] = replace(v[path[0]], path[1:], new)
    return v

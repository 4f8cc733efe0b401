"""Canonical encodings: RFC 8785 JSON for signed payloads, canonical msgpack for records.

Signed bytes are produced once and kept as bytes (spec/format.md §2). A reader
accepts a document only if re-encoding its parsed value gives back the very same
bytes, which rejects every non-canonical variant (key order, duplicate keys, number
spelling, float widths) with one rule.
"""

from __future__ import annotations

import json
import math
import re
from itertools import chain
from typing import Any

import msgpack
import rfc8785

from .errors import FormatError
from .limits import DEFAULT_LIMITS, Limits

# The format's one rule beyond RFC 8785 (spec/format.md §2.2, after I-JSON, RFC 7493
# §2.2): no JSON number, integer or float, exceeds 2^53 - 1 in magnitude. Every binary64
# that large is an integer, and RFC 8785 spells 1e16 as 10000000000000000, which many
# readers take for an exact integer it is not. Such values are decimal strings instead.
# A stock RFC 8785 library serializes them; this writer refuses and the reader rejects.
JSON_SAFE_INT = 2**53 - 1


def _check_json_value(value: Any, where: str, depth: int, limits: Limits) -> None:
    # ``depth`` counts the arrays/objects enclosing ``value``: the top level is 0 and a
    # container at depth d is nesting level d + 1, so `[]` has 1 level (spec/format.md §2.1).
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if abs(value) > JSON_SAFE_INT:
            raise FormatError(
                f"{where}: integer {value} exceeds 2^53-1; write it as a decimal string"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FormatError(f"{where}: expected a finite number, got {value!r}")
        if abs(value) > JSON_SAFE_INT:
            raise FormatError(
                f"{where}: number {value!r} exceeds 2^53-1 in magnitude; "
                "write it as a decimal string"
            )
        return
    if isinstance(value, dict | list | tuple) and depth >= limits.json_depth_max:
        raise FormatError(f"{where}: nesting deeper than {limits.json_depth_max} levels")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise FormatError(f"{where}: expected string object keys, got {type(k).__name__}")
            _check_json_value(v, f"{where}.{k}", depth + 1, limits)
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_json_value(v, f"{where}[{i}]", depth + 1, limits)
        return
    raise FormatError(f"{where}: expected a JSON value, got {type(value).__name__}")


def canonical_json(value: Any, *, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Encode ``value`` as RFC 8785 canonical JSON bytes.

    Raises FormatError for values JSON cannot carry exactly (NaN, big integers, bytes).
    """
    _check_json_value(value, "$", 0, limits)
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        raise FormatError(f"$: cannot canonicalize: {e}") from e


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise FormatError(f"duplicate JSON object key {k!r}")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise FormatError(f"expected a finite JSON number, got {name}")


def _json_depth_ok(data: bytes | str, limit: int) -> bool:
    # Python's json module recurses per nesting level; bound the depth before it
    # parses, so 100,000 nested brackets give a FormatError, not a RecursionError.
    depth = 0
    in_str = False
    esc = False
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def parse_json(data: bytes | str, *, where: str = "$", limits: Limits = DEFAULT_LIMITS) -> Any:
    """Parse strict JSON: UTF-8, no duplicate keys, no NaN/Infinity, bounded depth.

    Raises FormatError.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError(f"{where}: expected UTF-8 JSON, got invalid byte at {e.start}") from e
    else:
        text = data
    if not _json_depth_ok(text, limits.json_depth_max):
        raise FormatError(f"{where}: JSON nested deeper than {limits.json_depth_max} levels")
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except FormatError as e:
        raise FormatError(f"{where}: {e}") from e
    except (ValueError, RecursionError) as e:
        raise FormatError(f"{where}: expected JSON, got {type(e).__name__}: {e}") from e


def parse_canonical_json(data: bytes, *, where: str = "$", limits: Limits = DEFAULT_LIMITS) -> Any:
    """Parse JSON bytes and require them to be exactly RFC 8785 canonical.

    Raises FormatError.
    """
    value = parse_json(data, where=where, limits=limits)
    try:
        encoded = canonical_json(value, limits=limits)
    except FormatError as e:  # e.g. an integer past 2^53: name the document, not "$"
        raise FormatError(f"{where}{str(e).removeprefix('$')}") from e
    if encoded != data:
        raise FormatError(f"{where}: expected RFC 8785 canonical JSON, got another encoding")
    return value


# ---------------------------------------------------------------------------
# Canonical msgpack (spec/format.md §3)
#
# Allowed types: nil, bool, int (-2^63 .. 2^64-1), float64 (finite, not -0.0),
# str (UTF-8), bin, array, map with str keys sorted by their UTF-8 bytes.
# Every value uses its shortest msgpack encoding; floats are always float64.
#
# Two encoders, one rule. The per-value walk (`_walk_msgpack_value`) is the reference:
# it normalizes (sorts keys, turns tuples into lists) and names the exact path of a
# refused value. The fast path (`_fast_msgpack`) handles the common case, a value that
# is already in canonical shape (what a decoder hands back for canonical bytes, and
# what record writers build): one container-only pass with C-level type checks, one
# C `packb`, one regex over the bytes for a bad float. It returns bytes only where the
# walk would return the very same bytes, and None otherwise; on None the walk decides,
# so every refusal and its message stay those of the walk (tests/attest/test_canonical.py
# checks both agree on generated values). Measured on the demo's records:
# docs/PERFORMANCE.md, "canonical msgpack".

# A float64 is 0xcb + 8 big-endian bytes, so every NaN/±Infinity (exponent all ones)
# and -0.0 in an encoding is a match of this pattern. A match inside a str or bin is a
# false positive, which only sends the value to the walk.
_BAD_FLOAT64 = re.compile(rb"\xcb(?:[\x7f\xff][\xf0-\xff]|\x80\x00{7})", re.DOTALL)
_MSGPACK_SCALARS = frozenset({type(None), bool, int, float, str, bytes})
_MSGPACK_CONTAINERS = frozenset({list, dict})
_MSGPACK_PLAIN = _MSGPACK_SCALARS | _MSGPACK_CONTAINERS


# Key tuples already found to be str keys in UTF-8 order. Records repeat the same few
# key sets (every outcome map of every admission record has the same keys), so most maps
# cost one tuple and one set lookup. Bounded: past the cap new tuples are checked, not kept.
_SORTED_KEYS: set[tuple[str, ...]] = set()
_SORTED_KEYS_MAX = 4096


def _keys_in_order(keys: tuple[Any, ...]) -> bool:
    if keys in _SORTED_KEYS:
        return True
    if set(map(type, keys)) - {str} or list(keys) != sorted(keys):
        return False
    if len(_SORTED_KEYS) < _SORTED_KEYS_MAX:
        _SORTED_KEYS.add(keys)
    return True


def _canonical_shape(value: Any, depth_max: int) -> bool:
    """True if ``value`` has only exact allowed types, str keys in UTF-8 order, bounded depth.

    Level by level (breadth first), with the iteration in C: the members of all
    containers of one level are type-checked together by one ``set(map(type, ...))``,
    and the key tuples of all maps of a level are looked up in one set operation, so
    a list of 53 two-item lists or nine outcome maps cost one pass each, not one per
    container. Python compares str by code point, and UTF-8 preserves code point
    order, so ``sorted(keys)`` is the spec's UTF-8 byte order.
    """
    kind = type(value)
    if kind is dict:
        dicts, lists = [value], []
    elif kind is list:
        dicts, lists = [], [value]
    else:
        return kind in _MSGPACK_SCALARS
    depth = 0  # depth of this level's containers; their members sit at depth + 1
    while True:
        if dicts:
            keysets = set(map(tuple, dicts))
            if not keysets <= _SORTED_KEYS and not all(map(_keys_in_order, keysets)):
                return False
            members = list(chain(chain.from_iterable(map(dict.values, dicts)), *lists))
        else:
            members = list(chain.from_iterable(lists))
        if not members:
            return True
        if depth >= depth_max:
            return False
        types = set(map(type, members))
        if not types <= _MSGPACK_PLAIN:
            return False
        dicts = [m for m in members if type(m) is dict] if dict in types else []
        lists = [m for m in members if type(m) is list] if list in types else []
        if not dicts and not lists:
            return True
        depth += 1


def _fast_msgpack(value: Any, limits: Limits) -> bytes | None:
    """The canonical bytes of an already-canonical-shaped ``value``, or None (ask the walk)."""
    if not _canonical_shape(value, limits.msgpack_depth_max):
        return None
    try:
        data: bytes = msgpack.packb(value, use_bin_type=True, use_single_float=False)
    except (TypeError, ValueError, OverflowError):  # e.g. an int past 2^64: the walk names it
        return None
    if _BAD_FLOAT64.search(data):
        return None
    return data


def _walk_msgpack_value(value: Any, where: str, depth: int, limits: Limits) -> Any:
    if depth > limits.msgpack_depth_max:
        raise FormatError(f"{where}: nesting deeper than {limits.msgpack_depth_max}")
    if value is None or isinstance(value, bool | str | bytes):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise FormatError(f"{where}: integer {value} out of msgpack range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FormatError(f"{where}: expected a finite float, got {value!r}")
        if value == 0.0 and math.copysign(1.0, value) < 0:
            raise FormatError(f"{where}: expected no negative zero, got -0.0")
        return value
    if isinstance(value, msgpack.ExtType):
        # ExtType is a namedtuple: without this it would silently encode as an array.
        raise FormatError(f"{where}: type ExtType has no canonical msgpack form (no ext types)")
    if isinstance(value, list | tuple):
        return [
            _walk_msgpack_value(v, f"{where}[{i}]", depth + 1, limits) for i, v in enumerate(value)
        ]
    if isinstance(value, dict):
        out = {}
        for k in sorted(value, key=lambda k: k.encode("utf-8") if isinstance(k, str) else b""):
            if not isinstance(k, str):
                raise FormatError(f"{where}: expected string map keys, got {type(k).__name__}")
            out[k] = _walk_msgpack_value(value[k], f"{where}.{k}", depth + 1, limits)
        return out
    raise FormatError(f"{where}: type {type(value).__name__} has no canonical msgpack form")


def _walk_msgpack(value: Any, limits: Limits) -> bytes:
    """The reference encoder: normalize value by value, then pack. Raises FormatError."""
    normalized = _walk_msgpack_value(value, "$", 0, limits)
    data: bytes = msgpack.packb(normalized, use_bin_type=True, use_single_float=False)
    return data


def canonical_msgpack(value: Any, *, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Encode ``value`` in canonical msgpack. Raises FormatError."""
    fast = _fast_msgpack(value, limits)
    return fast if fast is not None else _walk_msgpack(value, limits)


def unpack_canonical_msgpack(
    data: bytes, *, where: str = "$", limits: Limits = DEFAULT_LIMITS
) -> Any:
    """Decode one canonical msgpack value occupying all of ``data``. Raises FormatError."""
    if len(data) > limits.record_max:
        raise FormatError(f"{where}: record of {len(data)} bytes exceeds {limits.record_max}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
        )
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as e:
        raise FormatError(
            f"{where}: expected one msgpack value, got {type(e).__name__}: {e}"
        ) from e
    require_canonical_msgpack(value, data, where=where, limits=limits)
    return value


def require_canonical_msgpack(
    value: Any, data: bytes, *, where: str = "$", limits: Limits = DEFAULT_LIMITS
) -> None:
    """Raise FormatError unless ``data`` is the canonical encoding of ``value``."""
    encoded = _fast_msgpack(value, limits)
    if encoded is None:
        try:
            encoded = _walk_msgpack(value, limits)
        except FormatError as e:  # e.g. a NaN inside record 7: name the record, not "$"
            raise FormatError(f"{where}{str(e).removeprefix('$')}") from e
    if encoded != data:
        raise FormatError(f"{where}: expected canonical msgpack, got another encoding")

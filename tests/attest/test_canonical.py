"""Canonical JSON (RFC 8785) and canonical msgpack: golden bytes, refusals, properties."""

from __future__ import annotations

import math
import struct

import msgpack
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from attest.canonical import (
    canonical_json,
    canonical_msgpack,
    parse_canonical_json,
    parse_json,
    require_canonical_msgpack,
    unpack_canonical_msgpack,
)
from attest.errors import FormatError
from attest.limits import Limits

# --------------------------------------------------------------------------- JSON golden bytes

JSON_GOLDEN = [
    ("key-order", {"b": 1, "a": 2}, b'{"a":2,"b":1}'),
    (
        "nested-key-order",
        {"z": {"y": 1, "x": [3, {"b": 0, "a": 0}]}},
        b'{"z":{"x":[3,{"a":0,"b":0}],"y":1}}',
    ),
    # RFC 8785 §3.2.3 sorts by UTF-16 code units: U+1F600 (D83D DE00) before U+E000.
    ("utf16-key-order", {"\ue000": 1, "\U0001f600": 2}, '{"\U0001f600":2,"\ue000":1}'.encode()),
    ("non-ascii-raw-utf8", {"z": 1, "é": 2}, '{"z":1,"é":2}'.encode()),
    ("escapes", 'a\x01/"\\', b'"a\\u0001/\\"\\\\"'),
    ("control-and-line-separator", "\x1f\x7f\u2028", '"\\u001f\x7f\u2028"'.encode()),
    ("int-2^53-1", 2**53 - 1, b"9007199254740991"),
    ("int-minus-2^53-1", -(2**53 - 1), b"-9007199254740991"),
    ("float-integral", 1.0, b"1"),
    ("float-minus-zero", -0.0, b"0"),
    ("float-0.1", 0.1, b"0.1"),
    ("float-1e-7", 1e-7, b"1e-7"),
    ("float-2^53-1", 2.0**53 - 1, b"9007199254740991"),
    ("float-1e-300", 1e-300, b"1e-300"),
    ("float-smallest-subnormal", 5e-324, b"5e-324"),
    ("float-below-2^53", 4503599627370496.5, b"4503599627370496"),  # binary64 rounds .5 away
    ("bool-null", [True, False, None], b"[true,false,null]"),
    ("tuple-as-array", (1, 2), b"[1,2]"),
    ("empty", {"a": [], "b": {}}, b'{"a":[],"b":{}}'),
]


@pytest.mark.parametrize(
    "value,expected", [c[1:] for c in JSON_GOLDEN], ids=[c[0] for c in JSON_GOLDEN]
)
def test_canonical_json_golden(value, expected):
    assert canonical_json(value) == expected


JSON_REFUSED = [
    ("int-2^53", 2**53, r"integer 9007199254740992 exceeds 2\^53-1"),
    ("int-minus-2^53", -(2**53), r"exceeds 2\^53-1"),
    ("nan", math.nan, r"expected a finite number, got nan"),
    # spec/format.md §2.2: no number exceeds 2^53 - 1 in magnitude, however it is spelled.
    # RFC 8785 prints 2.0**53 as "9007199254740992" and 1e16 as "10000000000000000", which
    # read back as integers past 2^53; 1e21 and up get an exponent but are refused alike.
    ("float-2^53", 2.0**53, r"number 9007199254740992.0 exceeds 2\^53-1 in magnitude"),
    ("float-2^60", {"x": 2.0**60}, r"\$\.x: number .* exceeds 2\^53-1 in magnitude"),
    ("float-1e16", 1e16, r"number 1e\+16 exceeds 2\^53-1 in magnitude"),
    ("float-1e21", 1e21, r"number 1e\+21 exceeds 2\^53-1 in magnitude"),
    ("float-minus-1e300", -1e300, r"number -1e\+300 exceeds 2\^53-1 in magnitude"),
    ("inf", {"x": math.inf}, r"\$\.x: expected a finite number, got inf"),
    ("bytes", {"a": [b"x"]}, r"\$\.a\[0\]: expected a JSON value, got bytes"),
    ("int-key", {1: "a"}, r"expected string object keys, got int"),
    ("set", {1, 2}, r"expected a JSON value, got set"),
    ("lone-surrogate", "\ud800", r"cannot canonicalize"),
]


@pytest.mark.parametrize(
    "value,match", [c[1:] for c in JSON_REFUSED], ids=[c[0] for c in JSON_REFUSED]
)
def test_canonical_json_refuses(value, match):
    with pytest.raises(FormatError, match=match):
        canonical_json(value)


def test_canonical_json_depth_bound():
    deep: object = 1
    for _ in range(5):
        deep = [deep]
    assert canonical_json(deep, limits=Limits(json_depth_max=5)) == b"[[[[[1]]]]]"
    with pytest.raises(FormatError, match="nesting deeper than 4"):
        canonical_json(deep, limits=Limits(json_depth_max=4))


PARSE_JSON_BAD = [
    ("duplicate-key", b'{"a":1,"a":2}', r"duplicate JSON object key 'a'"),
    ("nested-duplicate-key", b'{"x":{"a":1,"a":1}}', r"duplicate JSON object key 'a'"),
    ("nan-literal", b'{"a":NaN}', r"expected a finite JSON number, got NaN"),
    ("infinity-literal", b"[Infinity]", r"got Infinity"),
    ("invalid-utf8", b'"\xff"', r"expected UTF-8 JSON, got invalid byte at 1"),
    ("truncated", b'{"a":', r"expected JSON, got JSONDecodeError"),
    ("trailing-garbage", b"{} x", r"expected JSON"),
    ("deep-nesting", b"[" * 100_000 + b"]" * 100_000, r"JSON nested deeper than 64"),
]


@pytest.mark.parametrize(
    "data,match", [c[1:] for c in PARSE_JSON_BAD], ids=[c[0] for c in PARSE_JSON_BAD]
)
def test_parse_json_refuses(data, match):
    with pytest.raises(FormatError, match=match) as e:
        parse_json(data, where="doc")
    assert str(e.value).startswith("doc: ")
    assert "\n" not in str(e.value)


def test_parse_json_brackets_inside_strings_do_not_count_as_depth():
    doc = b'{"a":"' + b"[" * 1000 + b'"}'
    assert parse_json(doc) == {"a": "[" * 1000}


NON_CANONICAL_JSON = [
    ("unsorted-keys", b'{"b":1,"a":2}'),
    ("whitespace", b'{"a": 1}'),
    ("trailing-newline", b'{"a":1}\n'),
    ("float-spelling", b"1.0"),
    ("exponent-spelling", b"1E2"),
    ("escaped-non-ascii", b'"\\u00e9"'),
    ("escaped-slash", b'"\\/"'),
    ("leading-zero-fraction", b"0.10"),
    ("big-int", b"9007199254740992"),
    # spec/format.md §2.1
    ("byte-order-mark", b"\xef\xbb\xbf{}"),
    ("escaped-duplicate-key", b'{"a":1,"\\u0061":2}'),
    ("escaped-lone-surrogate", b'"\\ud800"'),
    ("minus-zero", b"-0"),
    ("number-that-does-not-round-trip", b"4503599627370496.5"),
    ("float-1e21", b"1e+21"),
    ("float-1e16-spelled-as-integer", b"10000000000000000"),
]


@pytest.mark.parametrize(
    "data", [c[1] for c in NON_CANONICAL_JSON], ids=[c[0] for c in NON_CANONICAL_JSON]
)
def test_parse_canonical_json_rejects_variants(data):
    with pytest.raises(FormatError, match=r"^payload: "):
        parse_canonical_json(data, where="payload")


def test_parse_canonical_json_accepts_canonical():
    assert parse_canonical_json(b'{"a":[1,"\xc3\xa9",true,null],"b":0.5}') == {
        "a": [1, "é", True, None],
        "b": 0.5,
    }


# --------------------------------------------------------------------------- msgpack golden bytes

MSGPACK_GOLDEN = [
    ("nil", None, b"\xc0"),
    ("true", True, b"\xc3"),
    ("false", False, b"\xc2"),
    ("zero", 0, b"\x00"),
    ("fixint-127", 127, b"\x7f"),
    ("uint8-128", 128, b"\xcc\x80"),
    ("uint16-256", 256, b"\xcd\x01\x00"),
    ("uint32-2^16", 2**16, b"\xce\x00\x01\x00\x00"),
    ("uint64-2^32", 2**32, b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00"),
    ("uint64-2^53", 2**53, b"\xcf\x00\x20\x00\x00\x00\x00\x00\x00"),
    ("uint64-max", 2**64 - 1, b"\xcf" + b"\xff" * 8),
    ("negfixint--1", -1, b"\xff"),
    ("negfixint--32", -32, b"\xe0"),
    ("int8--33", -33, b"\xd0\xdf"),
    ("int16--129", -129, b"\xd1\xff\x7f"),
    ("int64-min", -(2**63), b"\xd3\x80" + b"\x00" * 7),
    ("float64-1.5", 1.5, b"\xcb" + struct.pack(">d", 1.5)),
    ("float64-0.0", 0.0, b"\xcb" + b"\x00" * 8),
    ("float64-0.1", 0.1, b"\xcb" + struct.pack(">d", 0.1)),
    ("str-utf8", "é", b"\xa2\xc3\xa9"),
    ("str-empty", "", b"\xa0"),
    ("str8-32", "x" * 32, b"\xd9\x20" + b"x" * 32),
    ("bin", b"\x00\x01", b"\xc4\x02\x00\x01"),
    ("array", [1, "a"], b"\x92\x01\xa1a"),
    ("tuple-as-array", (1, 2), b"\x92\x01\x02"),
    ("map-sorted", {"b": 1, "a": 2}, b"\x82\xa1a\x02\xa1b\x01"),
    # keys sort by UTF-8 bytes: "Z" (5a) < "a" (61) < "é" (c3 a9)
    ("map-utf8-order", {"é": 0, "a": 0, "Z": 0}, b"\x83\xa1Z\x00\xa1a\x00\xa2\xc3\xa9\x00"),
    (
        "map-utf8-vs-utf16",
        {"\U0001f600": 0, "\ue000": 0},
        b"\x82\xa3\xee\x80\x80\x00\xa4\xf0\x9f\x98\x80\x00",
    ),
]


@pytest.mark.parametrize(
    "value,expected", [c[1:] for c in MSGPACK_GOLDEN], ids=[c[0] for c in MSGPACK_GOLDEN]
)
def test_canonical_msgpack_golden(value, expected):
    assert canonical_msgpack(value) == expected
    decoded = unpack_canonical_msgpack(expected)
    assert canonical_msgpack(decoded) == expected


MSGPACK_REFUSED = [
    ("minus-zero", -0.0, r"expected no negative zero, got -0.0"),
    ("nan", {"x": math.nan}, r"\$\.x: expected a finite float, got nan"),
    ("inf", [math.inf], r"\$\[0\]: expected a finite float, got inf"),
    ("int-2^64", 2**64, r"integer 18446744073709551616 out of msgpack range"),
    ("int-below-int64", -(2**63) - 1, r"out of msgpack range"),
    ("int-key", {1: 2}, r"expected string map keys, got int"),
    ("bytes-key", {b"k": 2}, r"expected string map keys, got bytes"),
    ("set", {1}, r"type set has no canonical msgpack form"),
    ("bytearray", bytearray(b"x"), r"type bytearray has no canonical msgpack form"),
    # regression: ExtType is a tuple and was encoded as the array [code, data]
    ("ext-type", msgpack.ExtType(5, b"ab"), r"^\$: type ExtType has no canonical msgpack form"),
    (
        "nested-ext-type",
        {"a": [1, msgpack.ExtType(127, b"\x00" * 4)]},
        r"^\$\.a\[1\]: type ExtType has no canonical msgpack form",
    ),
    ("timestamp", msgpack.Timestamp(0, 0), r"type Timestamp has no canonical msgpack form"),
]


@pytest.mark.parametrize(
    "value,match", [c[1:] for c in MSGPACK_REFUSED], ids=[c[0] for c in MSGPACK_REFUSED]
)
def test_canonical_msgpack_refuses(value, match):
    with pytest.raises(FormatError, match=match):
        canonical_msgpack(value)


def test_canonical_msgpack_depth_bound():
    v: object = 0
    for _ in range(17):
        v = [v]
    with pytest.raises(FormatError, match="nesting deeper than 16"):
        canonical_msgpack(v)
    assert canonical_msgpack(v[0]) == b"\x91" * 16 + b"\x00"  # type: ignore[index]


NON_CANONICAL_MSGPACK = [
    ("uint16-for-1", b"\xcd\x00\x01", "canonical"),
    ("int8-for-positive-1", b"\xd0\x01", "canonical"),
    ("uint64-for-small", b"\xcf" + (5).to_bytes(8, "big"), "canonical"),
    ("int16-for--1", b"\xd1\xff\xff", "canonical"),
    ("float32", b"\xca" + struct.pack(">f", 1.5), "canonical"),
    ("float64-nan", b"\xcb" + struct.pack(">d", math.nan), "rec: expected a finite float"),
    ("float64-inf", b"\xcb" + struct.pack(">d", math.inf), "rec: expected a finite float"),
    ("float64-minus-zero", b"\xcb" + struct.pack(">d", -0.0), "rec: expected no negative zero"),
    ("str8-for-short-str", b"\xd9\x01a", "canonical"),
    ("bin16-for-short-bin", b"\xc5\x00\x01a", "canonical"),
    ("array16-for-short-array", b"\xdc\x00\x01\x01", "canonical"),
    ("map16-for-short-map", b"\xde\x00\x01\xa1a\x01", "canonical"),
    ("unsorted-map-keys", b"\x82\xa1b\x01\xa1a\x02", "canonical"),
    ("duplicate-map-keys", b"\x82\xa1a\x01\xa1a\x02", "canonical"),
    ("int-map-key", b"\x81\x01\x02", "expected one msgpack value"),
    ("bin-map-key", b"\x81\xc4\x01k\x02", "rec: expected string map keys, got bytes"),
    ("ext-fixext1", b"\xd4\x01\x00", "rec: type ExtType has no canonical msgpack form"),
    ("ext8", b"\xc7\x02\x05ab", "rec: type ExtType has no canonical msgpack form"),
    ("timestamp-ext", b"\xd6\xff\x00\x00\x00\x00", "canonical msgpack"),
    ("invalid-utf8-str", b"\xa1\xff", "expected one msgpack value"),
    ("never-used-byte-c1", b"\xc1", "expected one msgpack value"),
    ("trailing-bytes", b"\x01\x02", "expected one msgpack value"),
    ("truncated-array", b"\x92\x01", "expected one msgpack value"),
    ("empty", b"", "expected one msgpack value"),
    ("nested-100000-deep", b"\x91" * 100_000 + b"\x00", "expected one msgpack value"),
    ("nested-17-deep", b"\x91" * 17 + b"\x00", "nesting deeper than 16"),
    ("huge-str32-claim", b"\xdb\xff\xff\xff\xffabc", "expected one msgpack value"),
]


@pytest.mark.parametrize(
    "data,match", [c[1:] for c in NON_CANONICAL_MSGPACK], ids=[c[0] for c in NON_CANONICAL_MSGPACK]
)
def test_unpack_canonical_msgpack_rejects(data, match):
    with pytest.raises(FormatError, match=match) as e:
        unpack_canonical_msgpack(data, where="rec")
    assert str(e.value).startswith("rec")
    assert "\n" not in str(e.value)


def test_unpack_canonical_msgpack_size_bound():
    data = canonical_msgpack(b"x" * 100)
    assert unpack_canonical_msgpack(data, limits=Limits(record_max=len(data))) == b"x" * 100
    with pytest.raises(FormatError, match=f"record of {len(data)} bytes exceeds {len(data) - 1}"):
        unpack_canonical_msgpack(data, limits=Limits(record_max=len(data) - 1))


def test_require_canonical_msgpack_compares_bytes():
    require_canonical_msgpack({"a": 1}, b"\x81\xa1a\x01")
    with pytest.raises(FormatError, match="expected canonical msgpack, got another encoding"):
        require_canonical_msgpack({"a": 1}, b"\x81\xa1a\xcc\x01")


# --------------------------------------------------------------------------- properties

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(-(2.0**53) + 1, 2.0**53 - 1, allow_nan=False)
    | st.text(alphabet=st.characters(exclude_categories=("Cs",)))
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)

msgpack_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: not (f == 0 and math.copysign(1, f) < 0)
    )
    | st.text()
    | st.binary(max_size=40)
)
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _reversed_dicts(v):
    """The same value with every dict's insertion order reversed."""
    if isinstance(v, dict):
        return {k: _reversed_dicts(v[k]) for k in reversed(list(v))}
    if isinstance(v, list):
        return [_reversed_dicts(x) for x in v]
    return v


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_json_round_trip_and_reencode_invariance(v):
    data = canonical_json(v)
    back = parse_canonical_json(data)
    assert back == v
    assert canonical_json(back) == data
    assert canonical_json(_reversed_dicts(v)) == data


@settings(max_examples=150, deadline=None)
@given(msgpack_values)
def test_msgpack_round_trip_and_reencode_invariance(v):
    data = canonical_msgpack(v)
    back = unpack_canonical_msgpack(data)
    assert back == v
    assert canonical_msgpack(back) == data
    assert canonical_msgpack(_reversed_dicts(v)) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_msgpack_decoder_raises_only_format_error(data):
    try:
        value = unpack_canonical_msgpack(data)
    except FormatError:
        return
    assert canonical_msgpack(value) == data  # whatever is accepted is canonical


@settings(max_examples=150, deadline=None)
@given(msgpack_values, st.data())
def test_msgpack_mutation_is_rejected_or_canonical(v, data):
    raw = bytearray(canonical_msgpack(v))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        value = unpack_canonical_msgpack(bytes(raw))
    except FormatError:
        return
    assert canonical_msgpack(value) == bytes(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_json_decoder_raises_only_format_error(data):
    try:
        value = parse_canonical_json(data)
    except FormatError:
        return
    assert canonical_json(value) == data


# --------------------------------------------------------------------------- fast path = walk
# canonical_msgpack and require_canonical_msgpack take a fast path (one C pack, a
# container-only type pass, a regex for bad floats) and fall back to the per-value walk
# of v0.1 (`_walk_msgpack`, the reference) for anything else. These tests hold the two
# to the same answers, bytes and refusal messages alike. (Importing the private walk is
# deliberate: it is the oracle.)

from attest.canonical import _walk_msgpack  # noqa: E402
from attest.limits import DEFAULT_LIMITS  # noqa: E402


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except FormatError as e:
        return ("refused", str(e))


def _require(value, data, where="$"):
    return require_canonical_msgpack(value, data, where=where)


def _reference_require(value, data, where="$"):
    """v0.1's require_canonical_msgpack, written with the walk alone."""
    try:
        encoded = _walk_msgpack(value, DEFAULT_LIMITS)
    except FormatError as e:
        raise FormatError(f"{where}{str(e).removeprefix('$')}") from e
    if encoded != data:
        raise FormatError(f"{where}: expected canonical msgpack, got another encoding")


awkward_scalars = (
    msgpack_scalars
    | st.sampled_from(
        [
            math.nan,
            -math.nan,
            math.inf,
            -math.inf,
            -0.0,
            2**64,
            -(2**63) - 1,
            bytearray(b"x"),
            msgpack.ExtType(1, b"a"),
            msgpack.Timestamp(1, 0),
            (1, 2),
            {1: 2},
            {b"k": 1},
            {"b": 1, "a": 2},
            True,
        ]
    )
    # bytes that contain the float64 NaN / -0.0 patterns: the fast path's false positives
    | st.sampled_from([b"\xcb\x7f\xf8" + b"\x00" * 6, b"\xcb\x80" + b"\x00" * 7])
)
awkward_values = st.recursive(
    awkward_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=20,
)


def _nested(depth, leaf):
    v = leaf
    for _ in range(depth):
        v = [v]
    return v


@settings(max_examples=200, deadline=None)
@given(awkward_values)
def test_fast_encoder_agrees_with_the_walk(v):
    assert _outcome(canonical_msgpack, v) == _outcome(_walk_msgpack, v, DEFAULT_LIMITS)


@settings(max_examples=150, deadline=None)
@given(awkward_values)
def test_fast_require_agrees_with_the_walk(v):
    try:
        data = _walk_msgpack(v, DEFAULT_LIMITS)
    except FormatError:
        data = b"\xc0"
    assert _outcome(_require, v, data) == _outcome(_reference_require, v, data)
    # and on the decoded value, as a reader sees it
    decoded = msgpack.unpackb(data, raw=False, strict_map_key=False)
    assert _outcome(_require, decoded, data, "rec") == _outcome(
        _reference_require, decoded, data, "rec"
    )


@settings(max_examples=150, deadline=None)
@given(msgpack_values, st.data())
def test_fast_reader_agrees_with_the_walk_on_mutated_bytes(v, data):
    raw = bytearray(canonical_msgpack(v))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        value = msgpack.unpackb(bytes(raw), raw=False, strict_map_key=True)
    except Exception:  # noqa: BLE001 - undecodable: both readers refuse before the check
        return
    got = _outcome(_require, value, bytes(raw), "rec")
    assert got == _outcome(_reference_require, value, bytes(raw), "rec")


@pytest.mark.parametrize(
    "value",
    [
        _nested(16, 0),
        _nested(17, 0),
        _nested(17, []),
        _nested(18, []),
        {"a": _nested(16, 1)},
        {"a": _nested(15, {"b": 1})},
        {"a": _nested(16, {"b": 1})},
        [[1.5, -0.0], [b"\xcb\x80" + bytes(7)]],
        {"z": 1, "\U0001f600": 2, "\ue000": 3},
        [{"b": 1, "a": 1}],
        [msgpack.Timestamp(0, 0)],
    ],
    ids=[
        "depth-16",
        "depth-17",
        "empty-at-16",
        "empty-at-17",
        "map-depth-17",
        "map-in-list-depth-16",
        "map-in-list-depth-17",
        "minus-zero-beside-lookalike",
        "non-bmp-keys",
        "unsorted-nested",
        "timestamp-in-list",
    ],
)
def test_fast_path_edge_cases_agree_with_the_walk(value):
    assert _outcome(canonical_msgpack, value) == _outcome(_walk_msgpack, value, DEFAULT_LIMITS)
    ok, got = _outcome(_walk_msgpack, value, DEFAULT_LIMITS)
    if ok == "ok":
        decoded = msgpack.unpackb(got, raw=False)
        assert _outcome(unpack_canonical_msgpack, got) == ("ok", decoded)


# --------------------------------------------------------------------------- stock RFC 8785
# attest.canonical is the stock `rfc8785` package plus the format's checks (spec/format.md
# §2): within the format both give the same bytes; past it, the stock library serializes
# what the format refuses, and the reader rejects those bytes.

STOCK_SAME = [c for c in JSON_GOLDEN if not isinstance(c[1], tuple)]


@pytest.mark.parametrize("value", [c[1] for c in STOCK_SAME], ids=[c[0] for c in STOCK_SAME])
def test_stock_rfc8785_gives_the_same_bytes_within_the_format(value):
    assert rfc8785.dumps(value) == canonical_json(value)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_stock_rfc8785_agrees_on_every_value_the_format_allows(v):
    assert rfc8785.dumps(v) == canonical_json(v)


STOCK_ONLY = [
    ("1e16", 1e16, b"10000000000000000"),
    ("2^53-float", 2.0**53, b"9007199254740992"),
    ("1e21", 1e21, b"1e+21"),
    ("minus-1e300", -1e300, b"-1e+300"),
]


@pytest.mark.parametrize("value,stock", [c[1:] for c in STOCK_ONLY], ids=[c[0] for c in STOCK_ONLY])
def test_unsafe_number_a_stock_jcs_digests_is_refused_by_writer_and_reader(value, stock):
    assert rfc8785.dumps(value) == stock  # the stock library serializes it ...
    with pytest.raises(FormatError, match=r"exceeds 2\^53-1"):
        canonical_json(value)  # ... the format's writer refuses it ...
    doc = b'{"n":' + stock + b"}"
    with pytest.raises(FormatError, match=r"^payload\.n: .*exceeds 2\^53-1"):
        parse_canonical_json(doc, where="payload")  # ... and its reader rejects the bytes


def test_stock_rfc8785_refuses_the_unsafe_integer_but_not_the_float_of_equal_value():
    """The gap the format closes: the same bytes come from 2.0**53, which the stock library
    writes, and from 2**53, which it refuses."""
    with pytest.raises(rfc8785.IntegerDomainError):
        rfc8785.dumps(2**53)
    assert rfc8785.dumps(2.0**53) == b"9007199254740992"


def _nest(levels: int) -> list:
    v: list = []
    for _ in range(levels - 1):
        v = [v]
    return v


def test_json_depth_counts_the_top_level_in_writer_and_reader_alike():
    """spec/format.md §2.1: `[]` is 1 level; 64 levels pass, 65 fail, even when the innermost
    array is empty (the writer used to count only the values inside containers)."""
    ok = canonical_json(_nest(64))
    assert ok == b"[" * 64 + b"]" * 64
    assert parse_canonical_json(ok) == _nest(64)
    with pytest.raises(FormatError, match="nesting deeper than 64 levels"):
        canonical_json(_nest(65))
    with pytest.raises(FormatError, match="JSON nested deeper than 64 levels"):
        parse_canonical_json(b"[" * 65 + b"]" * 65)
    assert canonical_json({"a": 1}, limits=Limits(json_depth_max=1)) == b'{"a":1}'
    with pytest.raises(FormatError, match=r"\$\.a: nesting deeper than 1 levels"):
        canonical_json({"a": {}}, limits=Limits(json_depth_max=1))
    assert canonical_json(7, limits=Limits(json_depth_max=0)) == b"7"  # a scalar has depth 0

"""Hash-chained sidecar logs: round trips, summaries, torn tails, tampering, bounds."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attest.canonical import canonical_msgpack
from attest.digest import CHUNK
from attest.errors import FormatError, UsageError
from attest.limits import Limits
from attest.log import GENESIS, LogSummary, LogWriter, iter_log, summarize_log
from attest.merkle import merkle_root


def records(n: int) -> list[dict]:
    return [{"kind": "test", "i": i, "text": f"record {i} é", "x": i / 4} for i in range(n)]


def write_log(path, n: int = 6):
    with LogWriter(path) as w:
        hashes = [w.append(r) for r in records(n)]
        summary = w.summary()
    return hashes, summary


def raws(path) -> list[bytes]:
    return [r.raw for r in iter_log(path)]


def test_round_trip_and_chain(tmp_path):
    path = tmp_path / "log.msgpack"
    hashes, summary = write_log(path)
    got = list(iter_log(path))
    assert [r.index for r in got] == list(range(6))
    assert [r.hash for r in got] == hashes
    prev = GENESIS
    for rec, expected in zip(got, records(6), strict=True):
        assert rec.value == expected | {"prev": prev}
        assert rec.raw == canonical_msgpack(expected | {"prev": prev})
        assert rec.hash == hashlib.sha256(rec.raw).digest()
        prev = rec.hash
    assert got[-1].end == path.stat().st_size


def test_summary_equals_streaming_merkle_and_sha(tmp_path):
    path = tmp_path / "log.msgpack"
    hashes, summary = write_log(path, 9)
    data = path.read_bytes()
    assert summary == summarize_log(path)
    assert summary.count == 9
    assert summary.head == hashes[-1].hex()
    assert summary.merkle_root == merkle_root(hashes).hex()
    assert summary.sha256 == hashlib.sha256(data).hexdigest()


def test_empty_log(tmp_path):
    path = tmp_path / "empty.msgpack"
    with LogWriter(path) as w:
        s = w.summary()
    assert s == summarize_log(path)
    assert s == LogSummary(
        0, "00" * 32, hashlib.sha256(b"").hexdigest(), hashlib.sha256(b"").hexdigest()
    )


def test_writer_refuses_existing_log(tmp_path):
    path = tmp_path / "log.msgpack"
    write_log(path, 2)
    before = path.read_bytes()
    with pytest.raises(
        UsageError, match="log.msgpack: already exists; use resume to continue a log"
    ):
        LogWriter(path)
    assert path.read_bytes() == before


def test_writer_sets_prev_and_does_not_mutate(tmp_path):
    rec = {"a": 1, "prev": b"forged"}
    with LogWriter(tmp_path / "l") as w:
        w.append(rec)
    assert rec == {"a": 1, "prev": b"forged"}
    assert next(iter_log(tmp_path / "l")).value["prev"] == GENESIS


def test_writer_refuses_unencodable_record(tmp_path):
    with LogWriter(tmp_path / "l") as w:
        with pytest.raises(FormatError, match="expected a finite float, got nan"):
            w.append({"loss": float("nan")})
        w.append({"ok": 1})
    assert summarize_log(tmp_path / "l").count == 1  # nothing half-written


def test_truncated_tail_is_format_error(tmp_path):
    path = tmp_path / "log.msgpack"
    write_log(path, 4)
    r = raws(path)
    cut = sum(map(len, r[:3])) + 5
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(
        FormatError,
        match=rf"log.msgpack: record 3 at byte {cut - 5} is truncated \(5 bytes of it\)",
    ):
        summarize_log(path)


@pytest.mark.parametrize("torn", [1, 7, -1], ids=["one-byte", "seven-bytes", "all-but-one-byte"])
def test_resume_cuts_torn_tail_and_matches_uninterrupted(tmp_path, torn):
    full = tmp_path / "full.msgpack"
    _, expected = write_log(full, 8)

    path = tmp_path / "crashed.msgpack"
    with LogWriter(path) as w:
        for r in records(8)[:5]:
            w.append(r)
    data = path.read_bytes()
    sixth = canonical_msgpack(records(8)[5] | {"prev": hashlib.sha256(raws(path)[-1]).digest()})
    path.write_bytes(data + sixth[: torn if torn > 0 else len(sixth) + torn])  # crash mid-write
    with pytest.raises(FormatError, match="record 5 at byte"):
        summarize_log(path)

    with LogWriter(path, resume=True) as w:
        assert w.count == 5
        assert path.stat().st_size == len(data)  # torn bytes cut
        for r in records(8)[5:]:
            w.append(r)
        assert w.summary() == expected
    assert summarize_log(path) == expected
    assert path.read_bytes() == full.read_bytes()


def test_resume_of_intact_and_missing_log(tmp_path):
    path = tmp_path / "log.msgpack"
    _, expected = write_log(path, 3)
    with LogWriter(path, resume=True) as w:
        assert w.summary() == expected
    with LogWriter(tmp_path / "new.msgpack", resume=True) as w:
        assert w.count == 0


def test_resume_refuses_corrupt_log(tmp_path):
    path = tmp_path / "log.msgpack"
    write_log(path, 3)
    r = raws(path)
    path.write_bytes(r[1] + r[0] + r[2])
    with pytest.raises(
        FormatError, match="log.msgpack: cannot resume: log.msgpack: record 0: prev expected"
    ):
        LogWriter(path, resume=True)


def _edit(raw: bytes, **changes) -> bytes:
    from attest.canonical import unpack_canonical_msgpack

    return canonical_msgpack(unpack_canonical_msgpack(raw) | changes)


# (id, transform of the list of raw records, index named in the error)
TAMPER = [
    ("edited-record", lambda r: r[:2] + [_edit(r[2], text="changed")] + r[3:], 3),
    ("edited-first-record", lambda r: [_edit(r[0], i=99)] + r[1:], 1),
    ("duplicated-record", lambda r: r[:3] + [r[2]] + r[3:], 3),
    ("swapped-records", lambda r: r[:2] + [r[3], r[2]] + r[4:], 2),
    ("deleted-record", lambda r: r[:2] + r[3:], 2),
    ("deleted-first-record", lambda r: r[1:], 0),
    ("rollback-reordered-tail", lambda r: r[:4] + [r[5], r[4]], 4),
    ("prev-forged-to-genesis", lambda r: r[:1] + [_edit(r[1], prev=GENESIS)] + r[2:], 1),
    ("prev-not-bytes", lambda r: [_edit(r[0], prev="00" * 32)] + r[1:], 0),
    ("prev-missing", lambda r: [canonical_msgpack({"i": 0})] + r[1:], 0),
]


@pytest.mark.parametrize("transform,index", [c[1:] for c in TAMPER], ids=[c[0] for c in TAMPER])
def test_tampered_log_names_the_record(tmp_path, transform, index):
    path = tmp_path / "log.msgpack"
    write_log(path, 6)
    path.write_bytes(b"".join(transform(raws(path))))
    with pytest.raises(FormatError, match=rf"^log.msgpack: record {index}: prev expected") as e:
        summarize_log(path)
    assert "\n" not in str(e.value)


def test_edited_last_record_changes_every_summary_field(tmp_path):
    """The last record has no successor to break; the signed summary is what catches it."""
    path = tmp_path / "log.msgpack"
    _, signed = write_log(path, 6)
    r = raws(path)
    path.write_bytes(b"".join(r[:5] + [_edit(r[5], text="changed")]))
    forged = summarize_log(path)
    assert forged.count == signed.count
    assert forged.head != signed.head
    assert forged.merkle_root != signed.merkle_root
    assert forged.sha256 != signed.sha256


NON_CANONICAL = [
    # {"i": 1, "prev": GENESIS} written in non-canonical ways
    (
        "unsorted-keys",
        b"\x82\xa4prev\xc4\x20" + GENESIS + b"\xa1i\x01",
        "expected canonical msgpack",
    ),
    (
        "non-shortest-int",
        b"\x82\xa1i\xcd\x00\x01\xa4prev\xc4\x20" + GENESIS,
        "expected canonical msgpack",
    ),
    (
        "float32",
        b"\x82\xa1i\xca" + struct.pack(">f", 1.5) + b"\xa4prev\xc4\x20" + GENESIS,
        "expected canonical msgpack",
    ),
    (
        "nan",
        b"\x82\xa1i\xcb" + struct.pack(">d", float("nan")) + b"\xa4prev\xc4\x20" + GENESIS,
        "expected a finite float, got nan",
    ),
    ("str-prev", b"\x82\xa1i\x01\xa4prev\xd9\x20" + b"0" * 32, "prev expected"),
    (
        "ext-type",
        b"\x82\xa1i\xd4\x01\x00\xa4prev\xc4\x20" + GENESIS,
        "i: type ExtType has no canonical msgpack form",
    ),
    ("not-a-map", b"\x92\x01\x02", "expected a map, got list"),
    ("int-map-key", b"\x81\x01\x01", "malformed msgpack"),
    ("invalid-byte", b"\xc1", "malformed msgpack"),
]


@pytest.mark.parametrize(
    "data,match", [c[1:] for c in NON_CANONICAL], ids=[c[0] for c in NON_CANONICAL]
)
def test_non_canonical_record_rejected(tmp_path, data, match):
    path = tmp_path / "log.msgpack"
    path.write_bytes(data)
    with pytest.raises(FormatError, match=rf"^log.msgpack: record 0.*{match}"):
        summarize_log(path)


@pytest.mark.parametrize(
    "prefix",
    [
        b"\xc6\xff\xff\xff\xff",
        b"\xdb\xff\xff\xff\xff",
        b"\xdd\xff\xff\xff\xff",
        b"\xdf\xff\xff\xff\xff",
        b"\xc6\x00\x01\x00\x00",
    ],
    ids=["bin32-2^32", "str32-2^32", "array32-2^32", "map32-2^32", "bin32-64KiB"],
)
def test_huge_length_prefix_refused(tmp_path, prefix):
    """A length claim past the record bound is refused at the bound, not after 4 GiB."""
    path = tmp_path / "log.msgpack"
    path.write_bytes(prefix + bytes(5000))
    with pytest.raises(FormatError, match=r"^log.msgpack: record 0 at byte 0.*(exceeds|malformed)"):
        summarize_log(path, limits=Limits(record_max=1024))


def test_huge_length_prefix_alone_is_truncated(tmp_path):
    path = tmp_path / "log.msgpack"
    path.write_bytes(b"\xc6\xff\xff\xff\xff")
    with pytest.raises(FormatError, match="record 0 at byte 0 is truncated"):
        summarize_log(path)


def test_record_bound_is_per_record_not_per_file(tmp_path):
    """Regression: the unpacker buffer was capped at record_max, so any log larger than one
    record bound (or a record straddling read chunks) was refused."""
    path = tmp_path / "log.msgpack"
    _, summary = write_log(path, 40)
    assert path.stat().st_size > 1000
    limits = Limits(record_max=128)
    assert summarize_log(path, limits=limits) == summary


def test_records_straddling_read_chunks(tmp_path):
    """Records that cross the reader's 1 MiB chunk boundaries come back byte-exact."""
    path = tmp_path / "big.msgpack"
    with LogWriter(path) as w:
        for i in range(260):
            w.append({"i": i, "blob": bytes([i % 256]) * 7001})
        summary = w.summary()
    assert path.stat().st_size > 1.5 * CHUNK
    assert summarize_log(path) == summary
    assert summarize_log(path, limits=Limits(record_max=8000)) == summary
    assert [r.value["i"] for r in iter_log(path)] == list(range(260))


def test_deeply_nested_record_refused(tmp_path):
    path = tmp_path / "deep.msgpack"
    path.write_bytes(b"\x91" * 100_000 + b"\x00")
    with pytest.raises(FormatError, match=r"^deep.msgpack: record 0"):
        summarize_log(path)


def test_record_over_bound_refused(tmp_path):
    path = tmp_path / "log.msgpack"
    with LogWriter(path) as w:
        w.append({"a": 1})
        w.append({"blob": bytes(300)})
    first = len(raws(path)[0])
    with pytest.raises(
        FormatError, match=rf"log.msgpack: record 1 at byte {first} exceeds 200 bytes"
    ):
        summarize_log(path, limits=Limits(record_max=200))
    with (
        LogWriter(tmp_path / "w.msgpack", limits=Limits(record_max=200)) as w,
        pytest.raises(FormatError, match="exceeds 200"),
    ):
        w.append({"blob": bytes(300)})


def test_records_max(tmp_path):
    path = tmp_path / "log.msgpack"
    write_log(path, 3)
    assert summarize_log(path, limits=Limits(records_max=3)).count == 3
    with pytest.raises(FormatError, match="expected at most 2 records, found more"):
        summarize_log(path, limits=Limits(records_max=2))


def test_record_past_records_max_is_never_yielded(tmp_path):
    # regression: record number records_max + 1 was yielded, then the error raised
    path = tmp_path / "log.msgpack"
    write_log(path, 3)
    seen = []
    with pytest.raises(FormatError) as e:
        for rec in iter_log(path, limits=Limits(records_max=2)):
            seen.append(rec.index)
    assert seen == [0, 1]
    second_end = sum(len(r) for r in raws(path)[:2])
    assert str(e.value) == (
        f"log.msgpack: record 2 at byte {second_end}: expected at most 2 records, found more"
    )


def test_missing_log_is_format_error(tmp_path):
    with pytest.raises(FormatError, match="none.msgpack: cannot read"):
        summarize_log(tmp_path / "none.msgpack")


def test_log_summary_model():
    s = LogSummary(3, "ab" * 32, "cd" * 32, "ef" * 32)
    assert s.to_dict() == {
        "count": 3,
        "head": "ab" * 32,
        "merkleRoot": "cd" * 32,
        "sha256": "ef" * 32,
    }
    assert LogSummary.from_dict(s.to_dict()) == s
    with pytest.raises(FormatError, match="stepLog: missing merkleRoot"):
        LogSummary.from_dict({"count": 3, "head": "ab" * 32, "sha256": "ef" * 32}, "stepLog")
    with pytest.raises(FormatError, match=r"stepLog: log\.head: expected 64 lowercase hex digits"):
        LogSummary.from_dict(s.to_dict() | {"head": "AB" * 32}, "stepLog")
    with pytest.raises(FormatError, match="log.count: expected a non-negative integer, got -1"):
        LogSummary(-1, "ab" * 32, "cd" * 32, "ef" * 32)
    with pytest.raises(FormatError, match="log.count: expected a non-negative integer, got True"):
        LogSummary(True, "ab" * 32, "cd" * 32, "ef" * 32)
    with pytest.raises(FormatError, match="log: expected an object"):
        LogSummary.from_dict([])


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=80), st.integers(0, 2))
def test_any_bytes_raise_only_format_error(tmp_path, garbage, keep):
    """A valid prefix of records followed by arbitrary bytes: FormatError or a valid log."""
    path = tmp_path / "fuzz.msgpack"
    path.unlink(missing_ok=True)
    with LogWriter(path) as w:
        for r in records(keep):
            w.append(r)
    path.write_bytes(path.read_bytes() + garbage)
    try:
        summary = summarize_log(path)
    except FormatError as e:
        assert "\n" not in str(e)
        return
    assert summary.count >= keep

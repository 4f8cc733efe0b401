"""Sidecar logs: append-only streams of canonical msgpack records, hash-chained.

Each record is one canonical msgpack map (spec/format.md §3) whose ``prev`` field
holds the SHA-256 of the previous record's bytes as stored (32 zero bytes for the
first). A statement commits to the log by `LogSummary`: record count, head hash,
the RFC 9162 Merkle root over record hashes, and the file's sha256, so an auditor
can prove one record with an inclusion proof instead of the whole log.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from .canonical import canonical_msgpack, require_canonical_msgpack
from .digest import CHUNK, check_hex32
from .errors import FormatError, UsageError
from .limits import DEFAULT_LIMITS, Limits
from .merkle import MerkleBuilder

GENESIS = bytes(32)


def record_hash(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


@dataclass(frozen=True)
class LogSummary:
    count: int
    head: str  # hex record hash of the last record (GENESIS hex if empty)
    merkle_root: str  # hex RFC 9162 root over record hashes (as leaf data)
    sha256: str  # hex digest of the whole file

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 0:
            raise FormatError(f"log.count: expected a non-negative integer, got {self.count!r}")
        for name in ("head", "merkle_root", "sha256"):
            check_hex32(getattr(self, name), f"log.{name}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "head": self.head,
            "merkleRoot": self.merkle_root,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, d: object, where: str = "log") -> LogSummary:
        if not isinstance(d, dict):
            raise FormatError(f"{where}: expected an object")
        try:
            return cls(d["count"], d["head"], d["merkleRoot"], d["sha256"])
        except KeyError as e:
            raise FormatError(f"{where}: missing {e.args[0]}") from e
        except FormatError as e:
            raise FormatError(f"{where}: {e}") from e


class LogWriter:
    """Append records to a log file; `sync()` makes everything written so far durable.

    With ``resume=True`` an existing log is read back (validating it), a torn last
    record left by a crash is cut off, and appending continues after the last whole one.
    """

    def __init__(
        self, path: Path, *, resume: bool = False, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.path = Path(path)
        self.limits = limits
        self.count = 0
        self.head = GENESIS
        self._merkle = MerkleBuilder()
        self._sha = hashlib.sha256()
        if resume and self.path.exists():
            good = 0
            try:
                for rec in iter_log(self.path, limits=limits, allow_torn_tail=True):
                    self._absorb(rec.raw, rec.hash)
                    good = rec.end
            except FormatError as e:
                raise FormatError(f"{self.path.name}: cannot resume: {e}") from e
            with open(self.path, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
        elif self.path.exists():
            raise UsageError(f"{self.path}: already exists; use resume to continue a log")
        try:
            self._f = open(self.path, "ab")
        except OSError as e:
            raise UsageError(f"{self.path}: cannot write: {e.strerror or e}") from e
        self.records: list[dict[str, Any]] = []

    def _absorb(self, raw: bytes, h: bytes) -> None:
        self.count += 1
        self.head = h
        self._merkle.add(h)
        self._sha.update(raw)

    def append(self, record: dict[str, Any]) -> bytes:
        """Set ``prev``, encode canonically, append. Returns the record hash."""
        rec = dict(record)
        rec["prev"] = self.head
        raw = canonical_msgpack(rec, limits=self.limits)
        if len(raw) > self.limits.record_max:
            raise FormatError(f"record of {len(raw)} bytes exceeds {self.limits.record_max}")
        try:
            self._f.write(raw)
        except OSError as e:
            raise UsageError(f"{self.path}: cannot write: {e.strerror or e}") from e
        h = record_hash(raw)
        self._absorb(raw, h)
        return h

    def sync(self) -> None:
        """Flush and fsync: records appended so far survive a crash."""
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as e:
            raise UsageError(f"{self.path}: cannot write: {e.strerror or e}") from e

    def summary(self) -> LogSummary:
        return LogSummary(
            self.count, self.head.hex(), self._merkle.root().hex(), self._sha.hexdigest()
        )

    def close(self) -> None:
        self.sync()
        self._f.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class LogRecord:
    index: int  # 0-based position in the log
    raw: bytes
    hash: bytes
    value: dict[str, Any]
    end: int  # byte offset just past this record


def iter_log(
    path: Path, *, limits: Limits = DEFAULT_LIMITS, allow_torn_tail: bool = False
) -> Iterator[LogRecord]:
    """Stream records, checking canonical form and the ``prev`` chain. Raises FormatError.

    Memory stays bounded by one record (``limits.record_max``) whatever the log length.
    A torn final record is an error unless ``allow_torn_tail`` (used by resume only).
    """
    path = Path(path)
    where = path.name
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        use_list=True,
        # One whole record plus one read chunk: the buffer bound is not the record bound.
        max_buffer_size=limits.record_max + CHUNK,
    )
    buf = bytearray()
    base = 0  # file offset of buf[0]
    last = 0  # file offset just past the last whole record
    prev = GENESIS
    index = 0
    try:
        f = open(path, "rb")
    except OSError as e:
        raise FormatError(f"{where}: cannot read: {e.strerror or e}") from e
    with f:
        while True:
            chunk = f.read(CHUNK)
            if chunk:
                buf += chunk
                try:
                    unpacker.feed(chunk)
                except msgpack.BufferFull as e:
                    raise FormatError(
                        f"{where}: record at byte {last} exceeds {limits.record_max} bytes"
                    ) from e
            try:
                for value in unpacker:
                    end = unpacker.tell()
                    # Refuse record number records_max + 1 before yielding it: a caller
                    # must never act on a record past the bound.
                    if index >= limits.records_max:
                        raise FormatError(
                            f"{where}: record {index} at byte {last}: expected at most "
                            f"{limits.records_max} records, found more"
                        )
                    if end - last > limits.record_max:
                        msg = f"record {index} at byte {last} exceeds {limits.record_max} bytes"
                        raise FormatError(f"{where}: {msg}")
                    raw = bytes(buf[last - base : end - base])
                    rec = _check_record(value, raw, prev, f"{where}: record {index}", limits)
                    yield LogRecord(index, raw, prev := record_hash(raw), rec, end)
                    index += 1
                    last = end
            except (ValueError, TypeError, msgpack.UnpackException) as e:
                raise FormatError(
                    f"{where}: record {index} at byte {last}: malformed msgpack ({e})"
                ) from e
            del buf[: last - base]
            base = last
            if len(buf) > limits.record_max:  # an unfinished record already over the bound
                raise FormatError(
                    f"{where}: record {index} at byte {last} exceeds {limits.record_max} bytes"
                )
            if not chunk:
                break
    if buf:
        if allow_torn_tail:
            return
        raise FormatError(
            f"{where}: record {index} at byte {last} is truncated ({len(buf)} bytes of it)"
        )


def _check_record(
    value: Any, raw: bytes, prev: bytes, where: str, limits: Limits
) -> dict[str, Any]:
    require_canonical_msgpack(value, raw, where=where, limits=limits)
    if not isinstance(value, dict):
        raise FormatError(f"{where}: expected a map, got {type(value).__name__}")
    got = value.get("prev")
    if got != prev:
        shown = got.hex()[:16] if isinstance(got, bytes) else repr(got)[:20]
        raise FormatError(f"{where}: prev expected {prev.hex()[:16]}…, got {shown}…")
    return value


def summarize_log(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> LogSummary:
    """Read a whole log and return its summary. Raises FormatError."""
    merkle = MerkleBuilder()
    sha = hashlib.sha256()
    head = GENESIS
    for rec in iter_log(path, limits=limits):
        merkle.add(rec.hash)
        sha.update(rec.raw)
        head = rec.hash
    return LogSummary(merkle.count, head.hex(), merkle.root().hex(), sha.hexdigest())

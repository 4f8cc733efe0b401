"""SHA-256 helpers: hex digests, streamed file digests, and digest-set checks."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import FormatError
from .progress import for_bytes

CHUNK = 1 << 20  # bytes read per call when streaming a file
_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_stream(
    f: BinaryIO, size: int | None = None, tick: Callable[[int], None] | None = None
) -> str:
    """Hash ``size`` bytes (or all that remain) of an open binary file.

    ``tick(n)`` is called with each chunk's length (progress). Raises FormatError when the
    file ends before ``size`` bytes."""
    h = hashlib.sha256()
    remaining = size
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while remaining is None or remaining > 0:
        want = CHUNK if remaining is None else min(CHUNK, remaining)
        n = f.readinto(view[:want])  # type: ignore[attr-defined]
        if not n:
            if remaining:
                raise FormatError(f"expected {remaining} more bytes, got end of file")
            break
        h.update(view[:n])
        if tick is not None:
            tick(n)
        if remaining is not None:
            remaining -= n
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """The file's SHA-256 (hex); byte progress for a big file (attest.progress). Raises OSError."""
    with (
        open(path, "rb") as f,
        for_bytes(f"hashing {path.name}", os.fstat(f.fileno()).st_size) as bar,
    ):
        return sha256_stream(f, tick=bar.advance)


def check_hex32(value: object, where: str) -> str:
    """Return ``value`` if it is a lowercase 64-hex-digit SHA-256; else FormatError."""
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise FormatError(f"{where}: expected 64 lowercase hex digits, got {value!r:.80}")
    return value


def check_bytes32(value: object, where: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise FormatError(f"{where}: expected 32 bytes, got {value!r:.80}")
    return value

"""Weight hashing: govtune's leaf + file digests against one hashlib.sha256 stream, same files.

Figures are speeds (MB/s, higher is better) measured interleaved in one process; the
ratio is govtune's speed over the single stream's. Also measured, as the machine's own
ceiling: two concurrent sha256 streams over the two halves of the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from attest.digest import CHUNK
from attest.errors import FormatError
from attest.tensors import default_workers, hash_safetensors, hash_safetensors_files

from .runner import Figure, interleave, timed
from .synthetic import MIB, write_shards, write_weights

SECTION = "weight hashing"


def sha256_stream(paths: Sequence[Path]) -> None:
    """The baseline: one hashlib.sha256 per file, one after the other, 1 MiB reads."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while n := f.readinto(buf):
                h.update(view[:n])
        h.hexdigest()


def two_streams(path: Path) -> None:
    """The 2-core ceiling: two sha256 streams over the two halves of one file, in parallel."""
    size = os.path.getsize(path)
    half = size // 2

    def run(lo: int, hi: int) -> None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            f.seek(lo)
            left = hi - lo
            while left:
                chunk = f.read(min(CHUNK, left))
                h.update(chunk)
                left -= len(chunk)

    t = threading.Thread(target=run, args=(0, half))
    t.start()
    run(half, size)
    t.join()


def _speed(nbytes: int, times: Sequence[float]) -> tuple[float, ...]:
    return tuple(nbytes / MIB / t for t in times)


def _checked(results: list[object]) -> None:
    for r in results:
        if isinstance(r, FormatError):
            raise r


def figures(tmp: Path, sizes_mib: Sequence[int], shards: tuple[int, int], runs: int,
            command: str) -> list[Figure]:  # fmt: skip
    out: list[Figure] = []
    workers = default_workers()
    for mib in sizes_mib:
        path = tmp / f"w{mib}.safetensors"
        write_weights(path, mib)
        nbytes = path.stat().st_size
        try:
            label = f"{mib / 1024:g} GiB" if mib >= 1024 else f"{mib} MiB"
            base, mine = interleave(
                timed(lambda p=path: sha256_stream([p])),
                timed(lambda p=path: hash_safetensors(p)),
                runs,
            )
            out.append(
                Figure(
                    SECTION,
                    f"one {label} file: leaf + file digests ({workers} threads)",
                    "MB/s",
                    _speed(nbytes, mine),
                    _speed(nbytes, base),
                    baseline="hashlib.sha256, one stream over the file",
                    lower_is_better=False,
                    target=">= 1.6",
                    target_value=1.6,
                    command=command,
                    note="time ratio: one file's whole-file sha256 is a single stream",
                )
            )
            out.append(
                Figure(
                    SECTION,
                    f"one {label} file: bytes digested per second (leaf + file = 2 x file)",
                    "MB/s",
                    _speed(2 * nbytes, mine),
                    _speed(nbytes, base),
                    baseline="hashlib.sha256, one stream over the file",
                    lower_is_better=False,
                    command=command,
                    note="the same runs as the row above, counting both digests' bytes",
                )
            )
            base, mine = interleave(
                timed(lambda p=path: sha256_stream([p])),
                timed(lambda p=path: hash_safetensors(p, with_file_digest=False)),
                runs,
            )
            out.append(
                Figure(
                    SECTION,
                    f"one {label} file: leaf digests only (--base, checkpoints' roots)",
                    "MB/s",
                    _speed(nbytes, mine),
                    _speed(nbytes, base),
                    baseline="hashlib.sha256, one stream over the file",
                    lower_is_better=False,
                    command=command,
                )
            )
            base, mine = interleave(
                timed(lambda p=path: sha256_stream([p])),
                timed(lambda p=path: two_streams(p)),
                runs,
            )
            out.append(
                Figure(
                    SECTION,
                    f"one {label} file: machine ceiling, two sha256 streams over its halves",
                    "MB/s",
                    _speed(nbytes, mine),
                    _speed(nbytes, base),
                    baseline="hashlib.sha256, one stream over the file",
                    lower_is_better=False,
                    command=command,
                    note="not govtune: what two cores give two independent streams",
                )
            )
        finally:
            path.unlink()
    n, shard_mib = shards
    folder = tmp / "shards"
    paths = write_shards(folder, n, shard_mib)
    nbytes = sum(p.stat().st_size for p in paths)
    try:
        base, mine = interleave(
            timed(lambda: sha256_stream(paths)),
            timed(lambda: _checked(hash_safetensors_files(paths))),  # type: ignore[arg-type]
            runs,
        )
        out.append(
            Figure(
                SECTION,
                f"folder of {n} x {shard_mib} MiB shards: leaf + file digests, files in parallel",
                "MB/s",
                _speed(nbytes, mine),
                _speed(nbytes, base),
                baseline="hashlib.sha256, one stream per file, one file after the other",
                lower_is_better=False,
                target=">= 1.6",
                target_value=1.6,
                command=command,
            )
        )
    finally:
        for p in paths:
            p.unlink()
        folder.rmdir()
    return out

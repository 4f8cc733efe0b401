"""Tensor leaf hashes and state roots, computed straight from safetensors bytes.

The safetensors layout (its README, "Format"): an 8-byte little-endian header
length N, N bytes of JSON header, then one byte buffer. Each header entry names a
dtype, a shape and ``data_offsets`` [begin, end) into the buffer. This module reads
that layout with hashlib alone (no torch, no numpy) and streams the buffer, so a
model larger than memory hashes in constant space (spec/format.md §5).

Leaf hash of one tensor (spec/format.md §5.1)::

    meta = canonical_json({"dtype": D, "name": NAME, "shape": [..]})
    leaf = SHA-256("govtune.tensor.v1\\x00" || u64be(len(meta)) || meta || raw bytes)

State root: the RFC 9162 Merkle root over the leaf hashes sorted by tensor name
(UTF-8 byte order).
"""

from __future__ import annotations

import hashlib
import os
import queue
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .canonical import canonical_json, parse_json
from .digest import CHUNK
from .errors import FormatError
from .limits import DEFAULT_LIMITS, Limits
from .merkle import root_of_leaf_hashes
from .progress import for_bytes

TENSOR_TAG = b"govtune.tensor.v1\x00"

# Bytes per element for the dtypes of the safetensors spec.
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # offset into the data buffer, bytes
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def leaf_prefix(name: str, dtype: str, shape: Sequence[int]) -> bytes:
    meta = canonical_json({"dtype": dtype, "name": name, "shape": list(shape)})
    return TENSOR_TAG + struct.pack(">Q", len(meta)) + meta


def tensor_leaf_hash(
    name: str, dtype: str, shape: Sequence[int], data: bytes | memoryview
) -> bytes:
    """Leaf hash of one tensor from its raw little-endian bytes."""
    h = hashlib.sha256(leaf_prefix(name, dtype, shape))
    h.update(data)
    return h.digest()


def state_root(leaves: Mapping[str, bytes]) -> bytes:
    """Merkle root over tensor leaf hashes sorted by name (UTF-8 byte order).

    Python orders str by code point, which is the UTF-8 byte order, so plain
    ``sorted`` gives the spec's order without encoding every name (the verifier
    computes one state root per step). No memo of leaf or node hashes: a full
    fine-tune changes every tensor at every step, where a cache only adds misses.
    """
    sha = hashlib.sha256
    return root_of_leaf_hashes([sha(b"\x00" + leaves[n]).digest() for n in sorted(leaves)])


def read_header(
    f, file_size: int, *, where: str, limits: Limits = DEFAULT_LIMITS
) -> tuple[int, list[TensorInfo]]:  # type: ignore[no-untyped-def]
    """Parse and check a safetensors header. Returns (buffer offset, tensors by offset).

    Every check of the safetensors README "Notes" is enforced: JSON header, known
    dtypes, offsets matching shape x dtype size, no overlaps, no holes, and a buffer
    that ends exactly at the end of the file. Raises FormatError.
    """
    raw = f.read(8)
    if len(raw) != 8:
        raise FormatError(f"{where}: expected an 8-byte header length, got {len(raw)} bytes")
    (n,) = struct.unpack("<Q", raw)
    if n > limits.safetensors_header_max:
        raise FormatError(
            f"{where}: header of {n} bytes exceeds the cap of {limits.safetensors_header_max}"
        )
    if 8 + n > file_size:
        raise FormatError(f"{where}: header claims {n} bytes but the file has {file_size - 8}")
    header_bytes = f.read(n)
    if len(header_bytes) != n:
        raise FormatError(f"{where}: expected {n} header bytes, got {len(header_bytes)}")
    if not header_bytes.startswith(b"{"):
        raise FormatError(f"{where}: expected the header to start with '{{'")
    header = parse_json(header_bytes, where=f"{where}:header", limits=limits)
    if not isinstance(header, dict):
        raise FormatError(f"{where}: expected a JSON object header")
    if len(header) > limits.safetensors_tensors_max:
        raise FormatError(
            f"{where}: {len(header)} header entries exceed {limits.safetensors_tensors_max}"
        )
    tensors: list[TensorInfo] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise FormatError(f"{where}: __metadata__ must map strings to strings")
            continue
        tensors.append(_tensor_info(name, entry, f"{where}:{name!r}", limits))
    tensors.sort(key=lambda t: (t.begin, t.end))
    pos = 0
    for t in tensors:
        if t.begin != pos:
            kind = "overlaps" if t.begin < pos else "leaves a hole before"
            raise FormatError(f"{where}: tensor {t.name!r} {kind} offset {pos}")
        pos = t.end
    buffer_start = 8 + n
    if buffer_start + pos != file_size:
        raise FormatError(
            f"{where}: tensors cover {pos} buffer bytes, the file has {file_size - buffer_start}"
        )
    return buffer_start, tensors


def _tensor_info(name: str, entry: object, where: str, limits: Limits) -> TensorInfo:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise FormatError(f"{where}: expected keys dtype, shape, data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:  # a list/dict dtype is unhashable
        raise FormatError(f"{where}: unknown dtype {dtype!r:.40}")
    if (
        not isinstance(shape, list)
        or len(shape) > limits.tensor_ndim_max
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise FormatError(
            f"{where}: expected shape as a list of non-negative ints, got {shape!r:.80}"
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise FormatError(f"{where}: expected data_offsets [begin, end], got {offsets!r:.80}")
    count = 1
    for d in shape:
        count *= d
    if offsets[1] - offsets[0] != count * DTYPE_SIZES[dtype]:
        raise FormatError(
            f"{where}: shape {shape} of {dtype} needs {count * DTYPE_SIZES[dtype]} bytes, "
            f"data_offsets give {offsets[1] - offsets[0]}"
        )
    return TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])


@dataclass(frozen=True)
class SafetensorsDigest:
    """What the verifier learns from one safetensors file."""

    sha256: str  # of the whole file
    size: int  # bytes
    leaves: dict[str, bytes]  # tensor name -> leaf hash
    tensors: tuple[TensorInfo, ...]


def default_workers() -> int:
    """Hashing threads to use: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def hash_safetensors(
    path: Path,
    *,
    with_file_digest: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> SafetensorsDigest:
    """Read a safetensors file once for its tensor leaf hashes and its whole-file sha256.

    Both digests come from the very same bytes (no second read that a concurrent
    writer could make disagree): one reader feeds each chunk to the file digest and
    to its tensor's leaf hash. hashlib releases the GIL on large updates, so hashing
    runs on ``workers`` threads (default: the usable CPUs): the file digest has a
    thread of its own, and the tensors are spread over the remaining ones (balanced by
    bytes; one tensor's hash is sequential and stays on one thread). The whole-file
    sha256 is one sequential stream, so with it a file never hashes faster than one
    core; without it (``with_file_digest=False``, e.g. for base weights) the leaves of
    a many-tensor file hash on every core. Memory is bounded: at most
    ``_QUEUE_CHUNKS`` chunks of ``CHUNK`` bytes wait per thread, whatever the file size.
    Raises FormatError (also when unreadable).
    """
    where = str(path.name)
    workers = default_workers() if workers is None else max(1, workers)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start, tensors = read_header(f, size, where=where, limits=limits)
            if not with_file_digest and workers >= 2 and len(tensors) > 1:
                # No file digest: no byte needs two hashers, so each thread reads and hashes
                # its own tensors (no hand-off queues, which cost a GIL round trip a chunk).
                with for_bytes(f"hashing {where}", size) as bar:
                    bar.advance(start)
                    leaves = _hash_tensors_apart(
                        f.fileno(), start, tensors, where, workers, bar.advance
                    )
                return SafetensorsDigest("", size, leaves, tuple(tensors))
            f.seek(0)
            head = f.read(start)
            file_lane = _Lane() if with_file_digest else None
            file_h = hashlib.sha256(head)
            # Threads left for leaves once the file digest has one. With one or none,
            # the reader hashes leaves itself (a thread handoff would only add cost).
            spare = workers - 1 if with_file_digest else workers
            lanes = [_Lane() for _ in range(spare)] if spare >= 2 and len(tensors) > 1 else []
            try:
                # attest.progress: byte progress for a big file in a command, else silent
                with for_bytes(f"hashing {where}", size) as bar:
                    bar.advance(start)
                    leaves = _hash_tensors(
                        f, start, tensors, where, file_lane, file_h, lanes, bar.advance
                    )
            finally:
                for lane in ([file_lane] if file_lane else []) + lanes:
                    lane.close()
            file_sha = file_h.hexdigest() if with_file_digest else ""
    except OSError as e:
        raise FormatError(f"{where}: cannot read: {e.strerror or e}") from e
    return SafetensorsDigest(file_sha, size, leaves, tuple(tensors))


def hash_safetensors_files(
    paths: Sequence[Path],
    *,
    with_file_digest: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> list[SafetensorsDigest | FormatError]:
    """`hash_safetensors` of several files (e.g. the shards of a model) in parallel.

    Returns one entry per path, in order: the digest, or the FormatError that file
    raised, so a caller can report every bad file, not only the first. Files run
    concurrently, each with its share of the threads. A file with its whole-file
    digest keeps two threads busy (reader + leaves, file digest), so on 2 cores files
    go one at a time; running two at once there measured 0.76x of one stream against
    0.99x one by one (four hashing threads thrash two cores).
    """
    workers = default_workers() if workers is None else max(1, workers)
    per_file = 2 if with_file_digest else 1
    at_once = max(1, min(len(paths), workers // per_file))
    if at_once == 1:
        return [_digest_or_error(p, with_file_digest, limits, workers) for p in paths]
    each = max(1, workers // at_once)
    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="govtune-hash") as pool:
        return list(pool.map(lambda p: _digest_or_error(p, with_file_digest, limits, each), paths))


def _digest_or_error(
    path: Path, with_file_digest: bool, limits: Limits, workers: int
) -> SafetensorsDigest | FormatError:
    try:
        return hash_safetensors(
            path, with_file_digest=with_file_digest, limits=limits, workers=workers
        )
    except FormatError as e:
        return e


def _hash_tensors(
    f: BinaryIO,
    start: int,
    tensors: Sequence[TensorInfo],
    where: str,
    file_lane: _Lane | None,
    file_h: hashlib._Hash,
    lanes: Sequence[_Lane],
    tick: Callable[[int], None],
) -> dict[str, bytes]:
    f.seek(start)  # tensors start here, whether or not the header went to the file digest
    hashers = {t.name: hashlib.sha256(leaf_prefix(t.name, t.dtype, t.shape)) for t in tensors}
    lane_of = _balance(tensors, len(lanes))
    for t in tensors:
        h = hashers[t.name]
        lane = lanes[lane_of[t.name]] if lanes else None
        remaining = t.nbytes
        while remaining:
            # A fresh bytes object per read: immutable, so safe to share between threads.
            chunk = f.read(min(CHUNK, remaining))
            if not chunk:
                raise FormatError(f"{where}: tensor {t.name!r} truncated")
            if file_lane:
                file_lane.put(file_h, chunk)
            if lane:
                lane.put(h, chunk)
            else:
                h.update(chunk)
            remaining -= len(chunk)
            tick(len(chunk))
    for lane in lanes:
        lane.drain()
    if file_lane:
        file_lane.drain()
    return {name: h.digest() for name, h in hashers.items()}


def _hash_tensors_apart(
    fd: int, start: int, tensors: Sequence[TensorInfo], where: str, workers: int,
    tick: Callable[[int], None],
) -> dict[str, bytes]:  # fmt: skip
    """Leaf hashes with ``workers`` threads, each reading (``os.pread``) and hashing the
    tensors `_balance` gives it; every byte is still read once, by one thread."""
    n = min(workers, len(tensors))
    lane_of = _balance(tensors, n)
    lock = threading.Lock()
    out: dict[str, bytes] = {}

    def run(lane: int) -> None:
        for t in tensors:
            if lane_of[t.name] != lane:
                continue
            h = hashlib.sha256(leaf_prefix(t.name, t.dtype, t.shape))
            pos, end = start + t.begin, start + t.end
            while pos < end:
                chunk = os.pread(fd, min(CHUNK, end - pos), pos)
                if not chunk:
                    raise FormatError(f"{where}: tensor {t.name!r} truncated")
                h.update(chunk)
                pos += len(chunk)
                with lock:
                    tick(len(chunk))
            with lock:
                out[t.name] = h.digest()

    with ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="govtune-hash") as pool:
        futures = [pool.submit(run, lane) for lane in range(1, n)]
        run(0)  # this thread takes the first lane
        for f in futures:
            f.result()  # a lane's FormatError or OSError, raised here
    return {t.name: out[t.name] for t in tensors}


def _balance(tensors: Sequence[TensorInfo], n: int) -> dict[str, int]:
    return balance({t.name: t.nbytes for t in tensors}, n)


def balance(sizes: Mapping[str, int], n: int) -> dict[str, int]:
    """Assign each name to one of ``n`` lanes, largest first to the least loaded lane (the
    hashing threads here and the trainer's, trainer/engine.py)."""
    if n <= 1:
        return dict.fromkeys(sizes, 0)
    load = [0] * n
    out: dict[str, int] = {}
    for name in sorted(sizes, key=lambda k: -sizes[k]):
        i = load.index(min(load))
        out[name] = i
        load[i] += sizes[name]
    return out


_QUEUE_CHUNKS = 8  # chunks waiting per hashing thread: bounds memory at 8 x CHUNK each


class _Lane:
    """A hashing thread: applies ``hasher.update(chunk)`` in the order the items were put.

    The queue is bounded, so a reader faster than the hash blocks instead of buffering
    the file. Items of one hasher always go to one lane, so its updates stay in order.
    """

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[hashlib._Hash, bytes] | None] = queue.Queue(_QUEUE_CHUNKS)
        self._t = threading.Thread(target=self._run, daemon=True, name="govtune-hash-lane")
        self._t.start()

    def _run(self) -> None:
        while (item := self._q.get()) is not None:
            item[0].update(item[1])
            self._q.task_done()
        self._q.task_done()

    def put(self, hasher: hashlib._Hash, chunk: bytes) -> None:
        self._q.put((hasher, chunk))

    def drain(self) -> None:
        """Wait until every chunk put so far has been hashed."""
        self._q.join()

    def close(self) -> None:
        self._q.put(None)
        self._t.join()

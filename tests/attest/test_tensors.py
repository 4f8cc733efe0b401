"""Tensor leaf hashes and state roots from safetensors files, and lying headers."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import need

from attest.digest import CHUNK
from attest.errors import FormatError
from attest.limits import Limits
from attest.merkle import merkle_root
from attest.tensors import (
    hash_safetensors,
    hash_safetensors_files,
    leaf_prefix,
    state_root,
    tensor_leaf_hash,
)


def write_st(
    path: Path, tensors: list[tuple[str, str, list[int], bytes]], *, metadata=None
) -> Path:
    """A safetensors file built by hand (the README layout), tensors in the given order."""
    header: dict = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    pos = 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + len(raw)]}
        pos += len(raw)
    return write_raw(path, json.dumps(header).encode(), b"".join(t[3] for t in tensors))


def write_raw(path: Path, header: bytes, buffer: bytes, *, claimed: int | None = None) -> Path:
    n = len(header) if claimed is None else claimed
    path.write_bytes(struct.pack("<Q", n) + header + buffer)
    return path


def spec_leaf(name: str, dtype: str, shape: list[int], raw: bytes) -> bytes:
    """spec/format.md §5.1 written out: tag, u64be meta length, canonical meta, raw bytes."""
    meta = json.dumps(
        {"dtype": dtype, "name": name, "shape": shape},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    ).encode()
    return hashlib.sha256(
        b"govtune.tensor.v1\x00" + struct.pack(">Q", len(meta)) + meta + raw
    ).digest()


# --------------------------------------------------------------------------- golden values


def test_leaf_hash_golden():
    raw = struct.pack("<2f", 1.0, -2.0)
    assert leaf_prefix("w", "F32", [2]) == (
        b"govtune.tensor.v1\x00"
        + (38).to_bytes(8, "big")
        + b'{"dtype":"F32","name":"w","shape":[2]}'
    )
    assert tensor_leaf_hash("w", "F32", [2], raw).hex() == (
        "8a180edf602582bb157ae9ccb12e2b42e4e64c5c1871c82135953d0b345d69f4"
    )
    assert tensor_leaf_hash("w", "F32", (2,), memoryview(raw)) == spec_leaf("w", "F32", [2], raw)


LEAF_DISTINCT = [
    ("name", ("v", "F32", [2])),
    ("dtype", ("w", "I32", [2])),
    ("shape", ("w", "F32", [1, 2])),
    ("shape-transposed", ("w", "F32", [2, 1])),
]


@pytest.mark.parametrize("args", [c[1] for c in LEAF_DISTINCT], ids=[c[0] for c in LEAF_DISTINCT])
def test_leaf_hash_binds_metadata(args):
    raw = bytes(8)
    assert tensor_leaf_hash(*args, raw) != tensor_leaf_hash("w", "F32", [2], raw)


def test_state_root_sorts_names_by_utf8_bytes():
    leaves = {"\U0001f600": b"1" * 32, "b": b"2" * 32, "\ue000": b"3" * 32, "a": b"4" * 32}
    # UTF-8: a (61) < b (62) < U+E000 (ee..) < U+1F600 (f0..); UTF-16 would swap the last two
    expected = merkle_root([leaves["a"], leaves["b"], leaves["\ue000"], leaves["\U0001f600"]])
    assert state_root(leaves) == expected
    assert state_root(dict(reversed(list(leaves.items())))) == expected
    assert state_root({}) == merkle_root([])


# --------------------------------------------------------------------------- files by hand

TENSORS = [
    ("z.bias", "F32", [3], struct.pack("<3f", 0.5, -1.0, 2.0)),
    ("a.weight", "BF16", [2, 2], bytes(range(8))),
    ("emb", "I64", [2], struct.pack("<2q", -(2**62), 7)),
    ("empty", "F32", [0, 4], b""),
    ("flag", "BOOL", [], b"\x01"),
]


def test_hash_handwritten_file(tmp_path):
    path = write_st(tmp_path / "m.safetensors", TENSORS, metadata={"format": "pt"})
    d = hash_safetensors(path)
    assert d.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert d.size == path.stat().st_size
    assert d.leaves == {n: spec_leaf(n, dt, sh, raw) for n, dt, sh, raw in TENSORS}
    assert [t.name for t in d.tensors] == [
        "z.bias",
        "a.weight",
        "emb",
        "empty",
        "flag",
    ]  # by offset
    assert state_root(d.leaves) == merkle_root([d.leaves[n] for n in sorted(d.leaves)])
    assert hash_safetensors(path, with_file_digest=False).sha256 == ""


def test_hash_streams_across_chunks(tmp_path):
    big = bytes(range(256)) * ((CHUNK + CHUNK // 2) // 256)  # 1.5 chunks
    tensors = [("a", "U8", [len(big)], big), ("b", "U8", [3], b"xyz")]
    path = write_st(tmp_path / "big.safetensors", tensors)
    d = hash_safetensors(path)
    assert d.leaves["a"] == spec_leaf("a", "U8", [len(big)], big)
    assert d.leaves["b"] == spec_leaf("b", "U8", [3], b"xyz")


def test_zero_sized_tensors_share_an_offset(tmp_path):
    path = write_raw(
        tmp_path / "z.safetensors",
        json.dumps(
            {
                "a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
                "b": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]},
                "c": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
            }
        ).encode(),
        b"\x07",
    )
    assert set(hash_safetensors(path).leaves) == {"a", "b", "c"}


def test_header_with_trailing_spaces_is_accepted(tmp_path):
    header = json.dumps({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}).encode()
    path = write_raw(tmp_path / "pad.safetensors", header + b"    ", b"\x01")
    assert hash_safetensors(path).leaves["a"] == spec_leaf("a", "U8", [1], b"\x01")


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def _hdr(**entries) -> bytes:
    return json.dumps(entries).encode()


# (id, header bytes, buffer, claimed header length or None, message regex)
LYING = [
    (
        "size-larger-than-shape",
        _hdr(w=_entry(offsets=(0, 12))),
        bytes(12),
        None,
        r"'w': shape \[2\] of F32 needs 8 bytes, data_offsets give 12",
    ),
    (
        "size-smaller-than-shape",
        _hdr(w=_entry(shape=(3,))),
        bytes(8),
        None,
        r"needs 12 bytes, data_offsets give 8",
    ),
    (
        "overlap",
        _hdr(a=_entry(), b=_entry(offsets=(4, 12))),
        bytes(12),
        None,
        r"tensor 'b' overlaps offset 8",
    ),
    (
        "hole",
        _hdr(a=_entry(), b=_entry(offsets=(12, 20))),
        bytes(20),
        None,
        r"tensor 'b' leaves a hole before offset 8",
    ),
    (
        "hole-at-start",
        _hdr(a=_entry(offsets=(4, 12))),
        bytes(12),
        None,
        r"tensor 'a' leaves a hole before offset 0",
    ),
    (
        "trailing-bytes",
        _hdr(a=_entry()),
        bytes(9),
        None,
        r"tensors cover 8 buffer bytes, the file has 9",
    ),
    (
        "truncated-buffer",
        _hdr(a=_entry()),
        bytes(7),
        None,
        r"tensors cover 8 buffer bytes, the file has 7",
    ),
    (
        "header-length-beyond-file",
        _hdr(a=_entry()),
        bytes(8),
        10_000,
        r"header claims 10000 bytes but the file has",
    ),
    (
        "huge-header-claim-1e12",
        _hdr(a=_entry()),
        bytes(8),
        10**12,
        r"header of 1000000000000 bytes exceeds the cap of 16777216",
    ),
    (
        # 16 MiB, deliberately below the safetensors crate's 100 MB (attest/limits.py)
        "header-one-byte-over-16MiB",
        _hdr(a=_entry()),
        bytes(8),
        16 * 1024 * 1024 + 1,
        r"header of 16777217 bytes exceeds the cap of 16777216",
    ),
    ("bad-dtype", _hdr(a=_entry(dtype="F31")), bytes(8), None, r"unknown dtype 'F31'"),
    # regression: an unhashable dtype raised a raw TypeError from the dict lookup
    ("list-dtype", _hdr(a=_entry(dtype=["F32"])), bytes(8), None, r"unknown dtype \['F32'\]"),
    ("dict-dtype", _hdr(a=_entry(dtype={"x": 1})), bytes(8), None, r"unknown dtype"),
    (
        "duplicate-keys",
        b'{"a":' + json.dumps(_entry()).encode() + b',"a":' + json.dumps(_entry()).encode() + b"}",
        bytes(8),
        None,
        r"duplicate JSON object key 'a'",
    ),
    (
        "negative-offset",
        _hdr(a=_entry(offsets=(-8, 0))),
        bytes(8),
        None,
        r"expected data_offsets \[begin, end\], got \[-8, 0\]",
    ),
    ("reversed-offsets", _hdr(a=_entry(offsets=(8, 0))), bytes(8), None, r"expected data_offsets"),
    ("float-offsets", _hdr(a=_entry(offsets=(0.0, 8.0))), bytes(8), None, r"expected data_offsets"),
    ("three-offsets", _hdr(a=_entry(offsets=(0, 4, 8))), bytes(8), None, r"expected data_offsets"),
    (
        "negative-dim",
        _hdr(a=_entry(shape=(-2,))),
        bytes(8),
        None,
        r"expected shape as a list of non-negative ints, got \[-2\]",
    ),
    ("bool-dim", _hdr(a=_entry(shape=(True, 2))), bytes(8), None, r"expected shape as a list"),
    (
        "too-many-dims",
        _hdr(a=_entry(shape=(1,) * 17 + (2,))),
        bytes(8),
        None,
        r"expected shape as a list",
    ),
    (
        "missing-key",
        json.dumps({"a": {"dtype": "F32", "shape": [2]}}).encode(),
        bytes(8),
        None,
        r"'a': expected keys dtype, shape, data_offsets",
    ),
    (
        "extra-key",
        json.dumps({"a": _entry() | {"x": 1}}).encode(),
        bytes(8),
        None,
        r"expected keys dtype, shape, data_offsets",
    ),
    ("entry-not-object", _hdr(a=[1, 2]), b"", None, r"expected keys dtype"),
    (
        "metadata-not-strings",
        json.dumps({"__metadata__": {"k": 1}}).encode(),
        b"",
        None,
        r"__metadata__ must map strings to strings",
    ),
    ("header-not-object", b'["a"]', b"", None, r"expected the header to start with"),
    ("header-not-json", b'{"a":', b"", None, r"expected JSON"),
    ("header-not-utf8", b'{"\xff":1}', b"", None, r"expected UTF-8 JSON"),
    (
        "header-deep-nesting",
        b'{"a":' + b"[" * 200 + b"]" * 200 + b"}",
        b"",
        None,
        r"nested deeper than 64",
    ),
]


@pytest.mark.parametrize(
    "header,buffer,claimed,match", [c[1:] for c in LYING], ids=[c[0] for c in LYING]
)
def test_lying_header_raises_format_error(tmp_path, header, buffer, claimed, match):
    path = write_raw(tmp_path / "lie.safetensors", header, buffer, claimed=claimed)
    with pytest.raises(FormatError, match=match) as e:
        hash_safetensors(path)
    msg = str(e.value)
    assert msg.startswith("lie.safetensors")
    assert "\n" not in msg


def test_too_many_entries(tmp_path):
    path = write_st(tmp_path / "n.safetensors", [(f"t{i}", "U8", [1], b"x") for i in range(3)])
    assert len(hash_safetensors(path, limits=Limits(safetensors_tensors_max=3)).leaves) == 3
    with pytest.raises(FormatError, match="3 header entries exceed 2"):
        hash_safetensors(path, limits=Limits(safetensors_tensors_max=2))


@pytest.mark.parametrize(
    "content", [b"", b"\x01\x02\x03"], ids=["empty-file", "shorter-than-length"]
)
def test_file_shorter_than_header_length(tmp_path, content):
    path = tmp_path / "short.safetensors"
    path.write_bytes(content)
    with pytest.raises(
        FormatError, match=rf"expected an 8-byte header length, got {len(content)} bytes"
    ):
        hash_safetensors(path)


def test_missing_file_is_format_error(tmp_path):
    with pytest.raises(FormatError, match="nope.safetensors: cannot read"):
        hash_safetensors(tmp_path / "nope.safetensors")


def test_truncated_file_every_cut(tmp_path):
    path = write_st(tmp_path / "t.safetensors", TENSORS)
    data = path.read_bytes()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(FormatError):
            hash_safetensors(path)


# --------------------------------------------------------------------------- real files (torch)


def _raw(t) -> bytes:
    import torch

    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def test_torch_save_file_leaves_match(tmp_path):
    torch = need("torch")
    st_torch = need("safetensors.torch")
    g = torch.Generator().manual_seed(0)
    tensors = {
        "h.0.mlp.w": torch.randn(4, 3, generator=g),
        "h.0.mlp.b": torch.randn(3, generator=g),
        "emb": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "half": torch.randn(2, 2, generator=g).to(torch.bfloat16),
        "f16": torch.randn(5, generator=g).to(torch.float16),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 2),
        "scalar": torch.tensor(3.5),
    }
    dtypes = {
        torch.float32: "F32",
        torch.int64: "I64",
        torch.bfloat16: "BF16",
        torch.float16: "F16",
        torch.bool: "BOOL",
    }
    path = tmp_path / "model.safetensors"
    st_torch.save_file(tensors, str(path))
    d = hash_safetensors(path)
    expected = {
        n: tensor_leaf_hash(n, dtypes[t.dtype], list(t.shape), _raw(t)) for n, t in tensors.items()
    }
    assert d.leaves == expected
    assert d.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert state_root(d.leaves) == merkle_root([expected[n] for n in sorted(expected)])

    # one changed element changes exactly that tensor's leaf and the root
    tensors2 = dict(tensors)
    tensors2["h.0.mlp.b"] = tensors["h.0.mlp.b"].clone()
    tensors2["h.0.mlp.b"][1] += 1.0
    path2 = tmp_path / "model2.safetensors"
    st_torch.save_file(tensors2, str(path2))
    d2 = hash_safetensors(path2)
    assert {n for n in d.leaves if d.leaves[n] != d2.leaves[n]} == {"h.0.mlp.b"}
    assert state_root(d2.leaves) != state_root(d.leaves)


def test_torch_file_with_lying_header_is_refused(tmp_path):
    torch = need("torch")
    st_torch = need("safetensors.torch")
    path = tmp_path / "real.safetensors"
    st_torch.save_file({"a": torch.ones(4), "b": torch.zeros(2)}, str(path))
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["a"]["shape"] = [3]  # lies about the size of 'a'
    write_raw(path, json.dumps(header).encode(), data[8 + n :])
    with pytest.raises(
        FormatError, match=r"'a': shape \[3\] of F32 needs 12 bytes, data_offsets give 16"
    ):
        hash_safetensors(path)


# --------------------------------------------------------------------------- fuzz

_json_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**66), 2**66)
    | st.floats(allow_nan=False)
    | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=4,
)
_entry_st = (
    st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(["F32", "U8", "BF16", "I64", "X"]) | _json_junk,
            "shape": st.lists(st.integers(-1, 4), max_size=3) | _json_junk,
            "data_offsets": st.lists(st.integers(-2, 40), min_size=2, max_size=2) | _json_junk,
        }
    )
    | _json_junk
)
_header_st = st.dictionaries(st.text(max_size=4), _entry_st, max_size=4)
_settings = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_settings
@given(_header_st, st.binary(max_size=48))
def test_any_json_header_raises_only_format_error(tmp_path, header, buffer):
    path = write_raw(tmp_path / "fuzz.safetensors", json.dumps(header).encode(), buffer)
    try:
        d = hash_safetensors(path)
    except FormatError as e:
        assert "\n" not in str(e)
        return
    assert sum(t.nbytes for t in d.tensors) == len(buffer)  # accepted: tensors tile the buffer


@_settings
@given(st.binary(max_size=64))
def test_any_bytes_raise_only_format_error(tmp_path, data):
    path = tmp_path / "bytes.safetensors"
    path.write_bytes(data)
    try:
        hash_safetensors(path)
    except FormatError as e:
        assert "\n" not in str(e)


# --------------------------------------------------------------------------- parallel hashing
# hash_safetensors spreads tensors over hashing threads and hash_safetensors_files runs
# files concurrently; the results must be those of one serial reader, whatever the
# thread count, and memory must stay bounded by the queues, not the file.


def _mixed_tensors(seed: int) -> list[tuple[str, str, list[int], bytes]]:
    """Tensors from empty to over two read chunks, in a shuffled name order."""
    import random

    rnd = random.Random(seed)
    sizes = [0, 1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 3, 4096, 12, CHUNK // 3]
    rnd.shuffle(sizes)
    return [
        (f"t{rnd.randrange(10**6)}.{i}", "U8", [n], rnd.randbytes(n)) for i, n in enumerate(sizes)
    ]


def _serial_leaves(tensors):
    return {n: spec_leaf(n, dt, sh, raw) for n, dt, sh, raw in tensors}


@pytest.mark.parametrize("workers", [1, 2, 3, 5, 16])
@pytest.mark.parametrize("with_file_digest", [True, False])
def test_parallel_hashing_equals_serial(tmp_path, workers, with_file_digest):
    tensors = _mixed_tensors(workers)
    path = write_st(tmp_path / "m.safetensors", tensors)
    d = hash_safetensors(path, with_file_digest=with_file_digest, workers=workers)
    assert d.leaves == _serial_leaves(tensors)
    want = hashlib.sha256(path.read_bytes()).hexdigest() if with_file_digest else ""
    assert d.sha256 == want


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_hash_files_equals_one_by_one(tmp_path, workers):
    paths = []
    for i in range(4):
        paths.append(write_st(tmp_path / f"shard-{i}.safetensors", _mixed_tensors(10 + i)))
    bad = write_raw(tmp_path / "bad.safetensors", b'{"a":{"dtype":"U8"}}', b"")
    paths.insert(2, bad)
    got = hash_safetensors_files(paths, workers=workers)
    assert len(got) == len(paths)
    for p, d in zip(paths, got, strict=True):
        if p == bad:
            assert isinstance(d, FormatError)
            assert "bad.safetensors" in str(d)
        else:
            assert d == hash_safetensors(p, workers=1)
    assert hash_safetensors_files([]) == []


@pytest.mark.parametrize("with_file_digest", [True, False])
def test_file_cut_while_hashing_stops_every_thread(tmp_path, monkeypatch, with_file_digest):
    # The file shrinks after its header was checked (a concurrent writer): the reader
    # runs out mid-tensor, raises, and every hashing thread is stopped and joined.
    import threading

    import attest.tensors as tensors_mod

    path = write_st(tmp_path / "m.safetensors", _mixed_tensors(3))
    real = tensors_mod.read_header

    def header_then_cut(f, size, **kw):
        out = real(f, size, **kw)
        os.truncate(path, size - CHUNK)
        return out

    monkeypatch.setattr(tensors_mod, "read_header", header_then_cut)
    before = threading.active_count()
    with pytest.raises(FormatError, match="truncated"):
        hash_safetensors(path, with_file_digest=with_file_digest, workers=4)
    assert threading.active_count() == before


def test_parallel_hashing_memory_is_bounded(tmp_path):
    # 96 MiB of tensors hashed on 4 threads: the queues hold at most 8 chunks per thread,
    # so peak RSS grows by far less than the file (measured in a child process).
    import subprocess
    import sys
    import textwrap

    mib = 1 << 20
    header = {
        f"w{i}": {
            "dtype": "U8",
            "shape": [16 * mib],
            "data_offsets": [i * 16 * mib, (i + 1) * 16 * mib],
        }
        for i in range(6)
    }
    h = json.dumps(header).encode()
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + 96 * mib)  # sparse: no disk traffic
    code = textwrap.dedent(
        """
        import resource, sys
        from pathlib import Path
        from attest.tensors import hash_safetensors
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for fd in (True, False):
            d = hash_safetensors(Path(sys.argv[1]), with_file_digest=fd, workers=4)
            assert len(d.leaves) == 6
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    grew_mib = int(out.stdout.strip())
    assert grew_mib < 48, f"peak RSS grew by {grew_mib} MiB hashing a 96 MiB file"

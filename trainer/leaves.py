"""Leaf hashes of live torch tensors, byte-identical to attest.tensors on the saved file.

The raw bytes are read in place through ctypes (no copy, no numpy). safetensors stores
little-endian data; on a little-endian host the in-memory bytes of a contiguous CPU
tensor are exactly those bytes.
"""

from __future__ import annotations

import ctypes
import hashlib
import sys
from collections.abc import Iterable, Mapping

import torch

from attest.errors import UsageError
from attest.tensors import tensor_leaf_hash

DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip

if sys.byteorder != "little":  # pragma: no cover - every supported torch host is little-endian
    raise UsageError(
        "trainer: expected a little-endian host (safetensors stores little-endian bytes)"
    )


def dtype_name(t: torch.Tensor) -> str:
    try:
        return DTYPES[t.dtype]
    except KeyError as e:
        raise UsageError(f"tensor dtype {t.dtype}: expected one of the safetensors dtypes") from e


def raw_bytes(t: torch.Tensor) -> memoryview | bytes:
    """The tensor's raw bytes: a zero-copy view for a contiguous CPU tensor, else a copy.

    The view borrows the caller's storage: keep ``t`` alive while the view is in use.
    """
    n = t.numel() * t.element_size()
    if n == 0:
        return b""
    if t.device.type != "cpu" or not t.is_contiguous():
        c = t.detach().cpu().contiguous()
        return ctypes.string_at(c.data_ptr(), n)  # copies while `c` is alive
    return memoryview((ctypes.c_char * n).from_address(t.data_ptr())).cast("B")


def sha256_tensor(t: torch.Tensor) -> bytes:
    """SHA-256 of a tensor's raw bytes (e.g. the RNG state recorded before each step)."""
    return hashlib.sha256(raw_bytes(t)).digest()  # `t` is alive for the whole call


def leaf(name: str, t: torch.Tensor) -> bytes:
    return tensor_leaf_hash(name, dtype_name(t), tuple(t.shape), raw_bytes(t))


def leaves(
    tensors: Mapping[str, torch.Tensor], names: Iterable[str] | None = None
) -> dict[str, bytes]:
    """Leaf hash per tensor (of ``names`` only, if given)."""
    keys = tensors.keys() if names is None else names
    return {n: leaf(n, tensors[n]) for n in keys}


def tensor_table(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {n: (dtype_name(t), tuple(t.shape)) for n, t in tensors.items()}

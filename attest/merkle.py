"""Merkle trees in the style of RFC 9162 §2.1 (Certificate Transparency v2).

Leaves and interior nodes are domain-separated (0x00 / 0x01 prefixes) so a leaf can
never be passed off as a node. The tree over n leaves splits at the largest power
of two below n, which lets `MerkleBuilder` fold a stream of leaves with O(log n)
memory: the verifier never holds a whole log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .errors import FormatError

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    n = len(hashes)
    if n == 1:
        return hashes[0]
    k = _split(n)
    return node_hash(_root_of_hashes(hashes[:k]), _root_of_hashes(hashes[k:]))


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 §2.1.1 over the given leaf data.

    A list or tuple is folded level by level (`root_of_leaf_hashes`); any other
    iterable is streamed through `MerkleBuilder` in O(log n) memory.
    """
    if isinstance(leaves, list | tuple):
        return root_of_leaf_hashes([leaf_hash(x) for x in leaves])
    b = MerkleBuilder()
    for leaf in leaves:
        b.add(leaf)
    return b.root()


def root_of_leaf_hashes(
    hashes: Sequence[bytes], node: Callable[[bytes, bytes], bytes] | None = None
) -> bytes:
    """MTH of RFC 9162 §2.1.1 from the leaf hashes ``SHA-256(0x00 || d)``, level by level.

    Pairing neighbours from the left and carrying an odd last node up unchanged gives
    the same tree as the recursive split at the largest power of two (every left
    subtree is perfect), with one list per level and no recursion: this is what the
    verifier runs once per step for the state root (spec/format.md §5.2). ``node``
    replaces `node_hash` (e.g. by a memoized one); it must compute the same function.
    """
    level = list(hashes)
    if not level:
        return EMPTY_ROOT
    pair = node or node_hash
    while len(level) > 1:
        odd = level[-1] if len(level) % 2 else None
        level = list(map(pair, level[0:-1:2], level[1::2]))
        if odd is not None:
            level.append(odd)
    return level[0]


class MerkleBuilder:
    """Incremental RFC 9162 root: add leaves one at a time, O(log n) memory."""

    def __init__(self) -> None:
        # (size, hash) of perfect subtrees, sizes strictly decreasing left to right.
        self._stack: list[tuple[int, bytes]] = []
        self.count = 0

    def add(self, data: bytes) -> None:
        self.add_leaf_hash(leaf_hash(data))

    def add_leaf_hash(self, h: bytes) -> None:
        size = 1
        while self._stack and self._stack[-1][0] == size:
            _, left = self._stack.pop()
            h = node_hash(left, h)
            size *= 2
        self._stack.append((size, h))
        self.count += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        # Perfect subtrees hang off the right spine: fold right to left.
        h = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


@dataclass(frozen=True)
class InclusionProof:
    """Audit path for leaf ``index`` in a tree of ``size`` leaves (RFC 9162 §2.1.3)."""

    index: int
    size: int
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        for name in ("index", "size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):  # True is an int in Python
                raise FormatError(f"proof.{name}: expected an integer, got {v!r:.40}")
        if not 0 <= self.index < self.size:
            raise FormatError(f"proof: expected 0 <= index < size, got {self.index}/{self.size}")
        for i, h in enumerate(self.path):
            if not isinstance(h, bytes) or len(h) != 32:
                raise FormatError(f"proof.path[{i}]: expected 32 bytes")

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "size": self.size, "path": [h.hex() for h in self.path]}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> InclusionProof:
        try:
            index, size, path = d["index"], d["size"], d["path"]
            if (
                isinstance(index, bool)
                or isinstance(size, bool)
                or not isinstance(index, int)
                or not isinstance(size, int)
            ):
                raise FormatError(
                    f"proof: expected integer index and size, got {index!r:.20}/{size!r:.20}"
                )
            return cls(index, size, tuple(bytes.fromhex(h) for h in path))  # type: ignore[attr-defined]
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"proof: malformed ({e})") from e


def inclusion_proof(leaves: Sequence[bytes], index: int) -> InclusionProof:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1 for leaf data ``leaves``."""
    hashes = [leaf_hash(x) for x in leaves]
    if not 0 <= index < len(hashes):
        raise FormatError(f"proof: index {index} outside a tree of {len(hashes)} leaves")

    def path(m: int, d: Sequence[bytes]) -> list[bytes]:
        n = len(d)
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return path(m, d[:k]) + [_root_of_hashes(d[k:])]
        return path(m - k, d[k:]) + [_root_of_hashes(d[:k])]

    return InclusionProof(index, len(hashes), tuple(path(index, hashes)))


def verify_inclusion(leaf: bytes, proof: InclusionProof, root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``leaf`` sit at ``proof.index`` under ``root``?"""
    fn, sn = proof.index, proof.size - 1
    r = leaf_hash(leaf)
    for p in proof.path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root

"""RFC 9162 Merkle trees: known vectors, the recursive definition, inclusion proofs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attest.errors import FormatError
from attest.merkle import (
    EMPTY_ROOT,
    InclusionProof,
    MerkleBuilder,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    root_of_leaf_hashes,
    verify_inclusion,
)


def mth(leaves: list[bytes]) -> bytes:
    """MTH of RFC 9162 §2.1.1, written straight from the text."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


# The RFC 6962 / certificate-transparency reference test leaves and roots.
CT_LEAVES = [
    b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57", bytes(range(0x60, 0x70)),
]  # fmt: skip
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("n", range(1, 9), ids=[f"ct-{n}-leaves" for n in range(1, 9)])
def test_rfc6962_reference_roots(n):
    assert merkle_root(CT_LEAVES[:n]).hex() == CT_ROOTS[n - 1]


def test_empty_root_is_sha256_of_nothing():
    assert merkle_root([]) == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_package_docstring_root():
    assert merkle_root([b"a", b"b"]).hex() == (
        "b137985ff484fb600db93107c77b0365c80d78f5b429ded0fd97361d077999eb"
    )


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 7, 8, 9, 16, 17, 31, 33, 64, 100])
def test_root_matches_recursive_definition(n):
    leaves = [i.to_bytes(2, "big") for i in range(n)]
    assert merkle_root(leaves) == mth(leaves)


def test_builder_add_leaf_hash_equals_add():
    a, b = MerkleBuilder(), MerkleBuilder()
    for i in range(13):
        a.add(bytes([i]))
        b.add_leaf_hash(leaf_hash(bytes([i])))
    assert a.root() == b.root() == mth([bytes([i]) for i in range(13)])
    assert a.count == 13


def test_second_preimage_interior_node_as_leaf():
    """Attack: present the concatenated children of a node as one leaf (domain separation)."""
    leaves = [b"a", b"b", b"c", b"d"]
    forged = [leaf_hash(b"a") + leaf_hash(b"b"), leaf_hash(b"c") + leaf_hash(b"d")]
    assert merkle_root(forged) != merkle_root(leaves)
    assert node_hash(leaf_hash(b"a"), leaf_hash(b"b")) != leaf_hash(forged[0])


@pytest.mark.parametrize("n", range(1, 34))
def test_every_inclusion_proof_verifies(n):
    leaves = [f"leaf-{i}".encode() for i in range(n)]
    root = merkle_root(leaves)
    for i in range(n):
        proof = inclusion_proof(leaves, i)
        assert proof.size == n and proof.index == i
        assert verify_inclusion(leaves[i], proof, root)
        # another leaf at this position does not verify
        assert not verify_inclusion(leaves[(i + 1) % n] + b"x", proof, root)


def _tampered(proof: InclusionProof, **kw) -> InclusionProof:
    d = {"index": proof.index, "size": proof.size, "path": proof.path} | kw
    return InclusionProof(d["index"], d["size"], tuple(d["path"]))


TAMPER = [
    ("wrong-index", lambda p: _tampered(p, index=(p.index + 1) % p.size)),
    ("path-truncated", lambda p: _tampered(p, path=p.path[:-1])),
    ("path-extended", lambda p: _tampered(p, path=p.path + (bytes(32),))),
    (
        "path-element-flipped",
        lambda p: _tampered(p, path=(bytes([p.path[0][0] ^ 1]) + p.path[0][1:],) + p.path[1:]),
    ),
    ("path-reversed", lambda p: _tampered(p, path=tuple(reversed(p.path)))),
]


@pytest.mark.parametrize("tamper", [t[1] for t in TAMPER], ids=[t[0] for t in TAMPER])
def test_tampered_proof_does_not_verify(tamper):
    leaves = [f"x{i}".encode() for i in range(11)]
    root = merkle_root(leaves)
    for i in (0, 5, 9, 10):
        proof = tamper(inclusion_proof(leaves, i))
        assert not verify_inclusion(leaves[i], proof, root)


def test_proof_against_root_of_other_size_does_not_verify():
    leaves = [f"x{i}".encode() for i in range(12)]
    for n in (5, 8, 12):
        proof = inclusion_proof(leaves[:n], 2)
        for m in range(3, 13):
            ok = verify_inclusion(leaves[2], proof, merkle_root(leaves[:m]))
            assert ok == (m == n)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40, unique=True), st.data())
def test_proofs_property(leaves, data):
    n = len(leaves)
    root = merkle_root(leaves)
    assert root == mth(leaves)
    i = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(leaves, i)
    assert verify_inclusion(leaves[i], proof, root)
    assert InclusionProof.from_dict(proof.to_dict()) == proof
    j = data.draw(st.integers(0, n - 1))
    if j != i:
        assert not verify_inclusion(leaves[j], proof, root)  # another leaf
        assert not verify_inclusion(leaves[i], _tampered(proof, index=j), root)
    m = data.draw(st.integers(1, n))
    if m != n and i < m:
        assert not verify_inclusion(leaves[i], proof, merkle_root(leaves[:m]))  # another size
        assert not verify_inclusion(leaves[i], inclusion_proof(leaves[:m], i), root)


PROOF_BAD = [
    ("index-equals-size", lambda: InclusionProof(3, 3, ()), r"expected 0 <= index < size, got 3/3"),
    ("negative-index", lambda: InclusionProof(-1, 3, ()), r"got -1/3"),
    (
        "short-path-hash",
        lambda: InclusionProof(0, 2, (b"x" * 31,)),
        r"proof\.path\[0\]: expected 32 bytes",
    ),
    (
        "str-path-hash",
        lambda: InclusionProof(0, 2, ("00" * 32,)),
        r"proof\.path\[0\]: expected 32 bytes",
    ),
    (
        "from-dict-missing",
        lambda: InclusionProof.from_dict({"index": 0, "size": 1}),
        r"proof: malformed",
    ),
    (
        "from-dict-str-index",
        lambda: InclusionProof.from_dict({"index": "0", "size": 1, "path": []}),
        r"expected integer index and size",
    ),
    (
        # regression: True was index 1 (bool is an int in Python)
        "from-dict-bool-index",
        lambda: InclusionProof.from_dict({"index": True, "size": 2, "path": ["00" * 32]}),
        r"^proof: expected integer index and size, got True/2$",
    ),
    (
        "from-dict-bool-size",
        lambda: InclusionProof.from_dict({"index": 0, "size": True, "path": []}),
        r"^proof: expected integer index and size, got 0/True$",
    ),
    (
        "constructor-bool-index",
        lambda: InclusionProof(False, 2, (b"x" * 32,)),
        r"^proof\.index: expected an integer, got False$",
    ),
    (
        "from-dict-bad-hex",
        lambda: InclusionProof.from_dict({"index": 0, "size": 2, "path": ["zz"]}),
        r"proof: malformed",
    ),
    (
        "index-outside-tree",
        lambda: inclusion_proof([b"a"], 1),
        r"index 1 outside a tree of 1 leaves",
    ),
]


@pytest.mark.parametrize("make,match", [c[1:] for c in PROOF_BAD], ids=[c[0] for c in PROOF_BAD])
def test_malformed_proofs_raise_format_error(make, match):
    with pytest.raises(FormatError, match=match):
        make()


@pytest.mark.parametrize("n", [*range(0, 70), 127, 128, 129, 255, 256, 257, 1000])
def test_level_by_level_root_equals_the_builder(n):
    # root_of_leaf_hashes (lists, the state root) and MerkleBuilder (streams, the logs)
    # are two ways to the one RFC 9162 root.
    leaves = [hashlib.sha256(b"%d" % i).digest() for i in range(n)]
    b = MerkleBuilder()
    for x in leaves:
        b.add(x)
    assert root_of_leaf_hashes([leaf_hash(x) for x in leaves]) == b.root()
    assert merkle_root(leaves) == b.root()
    assert merkle_root(iter(leaves)) == b.root()

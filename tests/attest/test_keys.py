"""Producer keys: PEM files, permissions, loading, and refusals."""

from __future__ import annotations

import base64
import hashlib
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attest import keys
from attest.envelope import parse_envelope, sign_statement, verify_envelope
from attest.errors import FormatError, UsageError
from attest.limits import Limits
from attest.statement import Statement, Subject

ST = Statement((Subject("m", {"sha256": "cd" * 32}),), "https://example.com/k/v1", {"k": True})


@pytest.mark.parametrize("key_type", ["ecdsa", "ed25519"])
def test_write_keypair_and_load(tmp_path, key_type):
    priv, pub = keys.write_keypair(tmp_path / "producer", key_type)
    assert (priv.name, pub.name) == ("producer.key", "producer.pub")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    signer = keys.load_signer(priv)
    public = keys.load_public_key(pub)
    assert keys.keyid(signer.public_key) == keys.keyid(public)
    assert public.keytype == {"ecdsa": "ecdsa", "ed25519": "ed25519"}[key_type]
    signed = verify_envelope(parse_envelope(sign_statement(ST, [signer])), [public])
    assert signed.keyids == (public.keyid,)
    assert keys.public_pem(public) == pub.read_bytes()


def test_default_key_type_is_ecdsa_p256(tmp_path):
    priv, _ = keys.write_keypair(tmp_path / "p")
    key = serialization.load_pem_private_key(priv.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


def test_private_key_mode_ignores_umask(tmp_path):
    old = os.umask(0)
    try:
        priv, _ = keys.write_keypair(tmp_path / "u")
    finally:
        os.umask(old)
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600


@pytest.mark.parametrize("existing", ["k.key", "k.pub"])
def test_refuses_to_overwrite(tmp_path, existing):
    (tmp_path / existing).write_bytes(b"keep me")
    with pytest.raises(
        UsageError, match=f"{existing}: already exists; refusing to overwrite a key"
    ):
        keys.write_keypair(tmp_path / "k")
    assert (tmp_path / existing).read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]  # nothing else written


def test_force_overwrites(tmp_path):
    priv, _ = keys.write_keypair(tmp_path / "k")
    first = priv.read_bytes()
    keys.write_keypair(tmp_path / "k", force=True)
    assert priv.read_bytes() != first
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600


def test_missing_folder(tmp_path):
    with pytest.raises(UsageError, match="expected an existing folder"):
        keys.write_keypair(tmp_path / "no" / "k")


def test_unknown_key_type():
    with pytest.raises(UsageError, match="key type: expected one of ecdsa, ed25519, got 'rsa'"):
        keys.generate("rsa")


def _rsa_pem() -> bytes:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _encrypted_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )


SIGNER_BAD = [
    ("garbage", lambda pub: b"not a key", "expected an unencrypted PKCS#8 PEM private key"),
    (
        "truncated-pem",
        lambda pub: b"-----BEGIN PRIVATE KEY-----\nMIGH\n",
        "expected an unencrypted PKCS#8",
    ),
    ("public-key-as-private", lambda pub: pub, "expected an unencrypted PKCS#8 PEM private key"),
    ("encrypted", lambda pub: _encrypted_pem(), "expected an unencrypted PKCS#8 PEM private key"),
    ("rsa", lambda pub: _rsa_pem(), "expected an ECDSA or ed25519 private key"),
]


@pytest.mark.parametrize(
    "content,match", [c[1:] for c in SIGNER_BAD], ids=[c[0] for c in SIGNER_BAD]
)
def test_load_signer_bad_pem(tmp_path, content, match):
    _, pub = keys.write_keypair(tmp_path / "good")
    path = tmp_path / "bad.key"
    path.write_bytes(content(pub.read_bytes()))
    with pytest.raises(FormatError, match=match) as e:
        keys.load_signer(path)
    assert "BEGIN" not in str(e.value)  # never echo key material
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "content",
    [b"garbage", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", None],
    ids=["garbage", "bad-base64-body", "private-key-as-public"],
)
def test_load_public_key_bad_pem(tmp_path, content):
    priv, _ = keys.write_keypair(tmp_path / "good")
    path = tmp_path / "bad.pub"
    path.write_bytes(priv.read_bytes() if content is None else content)
    with pytest.raises(FormatError, match=r"bad.pub: expected a PEM public key") as e:
        keys.load_public_key(path)
    assert "PRIVATE" not in str(e.value)


def test_load_public_key_refuses_rsa(tmp_path):
    path = tmp_path / "rsa.pub"
    rsa_key = serialization.load_pem_private_key(_rsa_pem(), password=None)
    path.write_bytes(
        rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(
        FormatError, match="rsa.pub: expected an ECDSA or ed25519 public key, got RSA"
    ):
        keys.load_public_key(path)


@pytest.mark.parametrize(
    "loader", [keys.load_signer, keys.load_public_key], ids=["signer", "public"]
)
def test_missing_key_file_is_usage_error(tmp_path, loader):
    with pytest.raises(UsageError, match="nope.pem: key file not found"):
        loader(tmp_path / "nope.pem")


@pytest.mark.parametrize(
    "loader", [keys.load_signer, keys.load_public_key], ids=["signer", "public"]
)
def test_oversized_key_file(tmp_path, loader):
    path = tmp_path / "huge.pem"
    path.write_bytes(b"x" * 200)
    with pytest.raises(FormatError, match="key file of 200 bytes exceeds 100"):
        loader(path, limits=Limits(key_file_max=100))


def test_key_path_is_a_folder(tmp_path):
    with pytest.raises(UsageError, match="expected a key file, found a folder"):
        keys.load_signer(tmp_path)


# -- the keyid rule (spec/format.md §1.1.2) ------------------------------------------------


@pytest.mark.parametrize("key_type", ["ecdsa", "ed25519"])
def test_keyid_is_sha256_of_the_spelled_out_key_object(tmp_path, key_type):
    _, pub = keys.write_keypair(tmp_path / "k", key_type)
    key = keys.load_public_key(pub)
    data = keys.keyid_input(key)
    assert hashlib.sha256(data).hexdigest() == keys.keyid(key) == key.keyid
    if key_type == "ecdsa":
        # the PEM goes in verbatim: raw line feeds, final one included, nothing escaped
        assert data == (
            b'{"keytype":"ecdsa","keyval":{"public":"'
            + pub.read_bytes()
            + b'"},"scheme":"ecdsa-sha2-nistp256"}'
        )
        assert data.count(b"\n") == pub.read_bytes().count(b"\n") == 4
    else:
        raw = serialization.load_pem_public_key(pub.read_bytes()).public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        assert data == b'{"keytype":"ed25519","keyval":{"public":"%s"},"scheme":"ed25519"}' % (
            raw.hex().encode()
        )


PEM_SPELLINGS = [
    ("crlf", lambda pem: pem.replace(b"\n", b"\r\n")),
    ("no-final-newline", lambda pem: pem.rstrip(b"\n")),
    ("text-around", lambda pem: b"producer key of run 7\n" + pem + b"\n\n"),
]


@pytest.mark.parametrize("spell", [c[1] for c in PEM_SPELLINGS], ids=[c[0] for c in PEM_SPELLINGS])
def test_keyid_depends_on_the_key_not_on_the_pem_file_text(tmp_path, spell):
    _, pub = keys.write_keypair(tmp_path / "k")
    other = tmp_path / "other.pub"
    other.write_bytes(spell(pub.read_bytes()))
    assert keys.load_public_key(other).keyid == keys.load_public_key(pub).keyid


def test_keyid_of_a_compressed_point_key_is_that_of_its_uncompressed_form(tmp_path):
    priv = ec.generate_private_key(ec.SECP256R1())
    spki = priv.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    compressed = priv.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    # SubjectPublicKeyInfo with the 33-byte compressed point: the 27-byte algorithm prefix
    # of the uncompressed form, with the BIT STRING and SEQUENCE lengths shortened by 32.
    head = bytearray(spki[:26])
    head[1] -= 32
    head[24] -= 32
    der = bytes(head) + compressed
    pem = b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END PUBLIC KEY-----\n"
    (tmp_path / "c.pub").write_bytes(pem)
    (tmp_path / "u.pub").write_bytes(
        priv.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert (
        keys.load_public_key(tmp_path / "c.pub").keyid
        == keys.load_public_key(tmp_path / "u.pub").keyid
    )


def _p384(tmp_path, public: bool):
    k = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / ("p384.pub" if public else "p384.key")
    path.write_bytes(
        k.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if public
        else k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_load_public_key_refuses_other_curves(tmp_path):
    with pytest.raises(
        FormatError, match=r"p384.pub: expected an ECDSA key on P-256, got curve secp384r1"
    ):
        keys.load_public_key(_p384(tmp_path, True))


def test_load_signer_refuses_other_curves(tmp_path):
    with pytest.raises(
        FormatError, match=r"p384.key: expected an ECDSA key on P-256, got curve secp384r1"
    ):
        keys.load_signer(_p384(tmp_path, False))

"""Producer keys: generation, PEM files, and loading as securesystemslib signers/keys.

ECDSA P-256 is the default for interoperability with OpenSSF model signing;
ed25519 is the alternative. Private keys are PKCS#8 PEM written with mode 0600 and
never enter a bundle or a log.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.signer import CryptoSigner, SSlibKey

from .atomic import write_atomic
from .errors import FormatError, UsageError
from .limits import DEFAULT_LIMITS, Limits

KEY_TYPES = ("ecdsa", "ed25519")


def generate(key_type: str = "ecdsa") -> CryptoSigner:
    if key_type == "ecdsa":
        return CryptoSigner.generate_ecdsa()
    if key_type == "ed25519":
        return CryptoSigner.generate_ed25519()
    raise UsageError(f"key type: expected one of {', '.join(KEY_TYPES)}, got {key_type!r}")


def public_pem(key: SSlibKey) -> bytes:
    return key._crypto_key().public_bytes(  # securesystemslib exposes no public accessor
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_keypair(
    prefix: Path, key_type: str = "ecdsa", *, force: bool = False
) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (PKCS#8 PEM, 0600) and ``PREFIX.pub``. Returns both paths.

    Raises UsageError if either exists (unless ``force``) or cannot be written.
    """
    prefix = Path(prefix)
    priv, pub = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    if not force:
        for p in (priv, pub):
            if p.exists():
                raise UsageError(f"{p}: already exists; refusing to overwrite a key")
    if not prefix.parent.is_dir():
        raise UsageError(f"{prefix.parent}: expected an existing folder")
    signer = generate(key_type)
    write_atomic(priv, signer.private_bytes, mode=0o600)
    write_atomic(pub, public_pem(signer.public_key), mode=0o644)
    return priv, pub


def require_key_file(path: Path) -> None:
    """Raises UsageError unless ``path`` is a file: the one check of a key path, so a command
    can refuse a missing key or a folder before any work."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: expected a key file, found a folder")
    if not path.is_file():
        raise UsageError(f"{path}: key file not found")


def _read_key_file(path: Path, limits: Limits) -> bytes:
    path = Path(path)
    require_key_file(path)
    try:
        size = os.stat(path).st_size
        if size > limits.key_file_max:
            raise FormatError(f"{path}: key file of {size} bytes exceeds {limits.key_file_max}")
        return path.read_bytes()
    except FileNotFoundError as e:
        raise UsageError(f"{path}: key file not found") from e
    except OSError as e:
        raise UsageError(f"{path}: cannot read key file: {e.strerror or e}") from e


def _check_curve(key: object, path: Path) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and not (
        isinstance(key.curve, ec.SECP256R1)
    ):
        raise FormatError(f"{path}: expected an ECDSA key on P-256, got curve {key.curve.name}")


def load_public_key(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> SSlibKey:
    """Load a PEM public key. Raises UsageError (missing) or FormatError (malformed)."""
    data = _read_key_file(path, limits)
    try:
        crypto_key = serialization.load_pem_public_key(data)
        # Fail closed on other algorithms (RSA, DSA, P-384...): securesystemslib would
        # accept them, and spec/format.md §1.1.1 allows P-256 and ed25519 only.
        if not isinstance(crypto_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            found = type(crypto_key).__name__
            raise FormatError(f"{path}: expected an ECDSA or ed25519 public key, got {found}")
        _check_curve(crypto_key, path)
        return SSlibKey.from_crypto(crypto_key)
    except FormatError:
        raise
    except (ValueError, TypeError) as e:
        raise FormatError(f"{path}: expected a PEM public key (ECDSA or ed25519), got {e}") from e
    except Exception as e:  # noqa: BLE001 - cryptography raises library-specific types
        raise FormatError(f"{path}: expected a PEM public key, got {type(e).__name__}") from e


def load_signer(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> CryptoSigner:
    """Load a PKCS#8 PEM private key as a signer. Raises UsageError or FormatError."""
    data = _read_key_file(path, limits)
    try:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise FormatError(f"{path}: expected an ECDSA or ed25519 private key")
        _check_curve(private, path)
        return CryptoSigner(private)
    except FormatError:
        raise
    except Exception as e:  # noqa: BLE001 - cryptography also raises UnsupportedAlgorithm, InternalError
        # Never echo key material: the message names the file, not its content.
        raise FormatError(f"{path}: expected an unencrypted PKCS#8 PEM private key") from e


def keyid_input(key: SSlibKey) -> bytes:
    """The bytes whose SHA-256 is the keyid (spec/format.md §1.1.2), spelled out.

    securesystemslib computes the keyid from the same object with its own canonical JSON,
    which escapes only ``"`` and ``\\``: the PEM's line feeds stay raw 0x0A bytes. Neither
    character occurs in a hex key or a PEM, so the bytes are plain concatenation.
    Raises FormatError for a key type the format does not allow.
    """
    if (key.keytype, key.scheme) not in (("ecdsa", "ecdsa-sha2-nistp256"), ("ed25519", "ed25519")):
        raise FormatError(f"key: expected ecdsa or ed25519, got {key.keytype}/{key.scheme}")
    public = public_pem(key).decode("ascii") if key.keytype == "ecdsa" else key.keyval["public"]
    return (
        f'{{"keytype":"{key.keytype}","keyval":{{"public":"{public}"}},"scheme":"{key.scheme}"}}'
    ).encode("ascii")


def keyid(key: SSlibKey) -> str:
    """The key's keyid: hex SHA-256 of `keyid_input` (securesystemslib's default keyid)."""
    return key.keyid

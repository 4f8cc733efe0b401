"""OpenSSF model signing (OMS) v1.0 signature of a whole folder, ``model.sig`` (spec/release.md §4).

The file is a Sigstore bundle v0.3 (``application/vnd.dev.sigstore.bundle.v0.3+json``) with
public-key verification material (``publicKey.hint`` = sha256 of the signer's PEM public
key, no transparency log entries) and a DSSE envelope over an in-toto Statement of
predicate type ``https://model_signing/signature/v1.0``: one subject (the folder's name,
sha256 over the resources' raw digests in order) and a predicate listing every file's
sha256 under the "files" serialization. This is the format model-signing 1.1.1 writes
and reads with ``model_signing sign key`` / ``verify key`` (its ``_signing/signing.py``,
``sign_ec_key.py`` and ``_serialization/file.py``).

Written here rather than through model-signing's Python API because (a) the verifier and
its single-file binary must not carry model-signing's sigstore/protobuf stack; (b) the
statement is signed once as RFC 8785 bytes with the same DSSE code as every govtune
envelope (attest.envelope), while model-signing serializes through protobuf JSON; and
(c) co-signing needs more than one DSSE signature, which its API cannot add. model-signing
verifies only ``signatures[0]`` against the ``--public_key`` it is given, so the first
signature is the OMS signer's (the publisher of the folder) and any further ones are
govtune co-signatures checked by `govtune verify --threshold`. The tests run
model-signing's own CLI on what this module writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, Key, SSlibKey

from attest.atomic import write_atomic
from attest.canonical import parse_json
from attest.digest import sha256_file
from attest.envelope import parse_envelope, sign_statement, verify_envelope
from attest.errors import FormatError, UsageError, VerificationError
from attest.keys import public_pem
from attest.layout import RELEASE_LAYOUT
from attest.limits import DEFAULT_LIMITS, Limits
from attest.statement import Statement, Subject

PREDICATE_TYPE = "https://model_signing/signature/v1.0"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGNATURE_FILE = RELEASE_LAYOUT.signature
# model_signing's default ignore list, in the order its CLI writes it. A signature may
# name only these (a producer-chosen ignore list could hide a file from the manifest).
IGNORE_PATHS = RELEASE_LAYOUT.oms_ignored
OMS_SCHEMES = ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
MAX_FILES = 100_000  # files in one signed folder
MAX_SIGNATURE_BYTES = 64 * 1024 * 1024  # model.sig: one manifest line per file


def _sort_key(name: str) -> tuple[str, ...]:
    # model-signing sorts manifest items as pathlib paths, i.e. by their parts:
    # "a/b" sorts before "a.txt" (the string order would put it after).
    return tuple(name.split("/"))


def list_files(folder: Path, *, max_files: int = MAX_FILES) -> list[str]:
    """Every regular file under ``folder`` that OMS signs (IGNORE_PATHS left out), sorted.

    Raises FormatError for a symbolic link or a special file (model-signing refuses
    symlinks unless told otherwise; a FIFO or device is never model content) or past
    ``max_files``.
    """
    root = Path(folder)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        keep = []
        for d in sorted(dirnames):
            rel = rel_dir + d
            if rel in IGNORE_PATHS:
                continue
            if os.path.islink(os.path.join(dirpath, d)):
                raise FormatError(f"{rel}: expected a folder or a regular file, found a symlink")
            keep.append(d)
        dirnames[:] = keep
        for fn in sorted(filenames):
            rel = rel_dir + fn
            if rel in IGNORE_PATHS:
                continue
            mode = os.lstat(os.path.join(dirpath, fn)).st_mode
            if not stat.S_ISREG(mode):
                kind = "a symlink" if stat.S_ISLNK(mode) else "a special file"
                raise FormatError(f"{rel}: expected a regular file, found {kind}")
            out.append(rel)
            if len(out) > max_files:
                raise FormatError(f"{root.name}: more than {max_files} files")
    return sorted(out, key=_sort_key)


def manifest(folder: Path) -> dict[str, str]:
    """File name -> sha256 hex of every signed file. Raises FormatError (see list_files)."""
    return {name: sha256_file(Path(folder) / name) for name in list_files(folder)}


def root_digest(files: Mapping[str, str]) -> str:
    """sha256 over the raw digests in manifest order (model-signing's subject digest)."""
    h = hashlib.sha256()
    for name in sorted(files, key=_sort_key):
        h.update(bytes.fromhex(files[name]))
    return h.hexdigest()


def oms_statement(model_name: str, files: Mapping[str, str]) -> Statement:
    resources = [
        {"name": n, "digest": files[n], "algorithm": "sha256"} for n in sorted(files, key=_sort_key)
    ]
    predicate = {
        "serialization": {
            "method": "files",
            "hash_type": "sha256",
            "allow_symlinks": False,
            "ignore_paths": list(IGNORE_PATHS),
        },
        "resources": resources,
    }
    return Statement(
        (Subject(model_name, {"sha256": root_digest(files)}),), PREDICATE_TYPE, predicate
    )


def _key_hint(key: SSlibKey) -> str:
    return hashlib.sha256(public_pem(key)).hexdigest()


def _require_oms_key(signer: CryptoSigner, where: str) -> None:
    scheme = signer.public_key.scheme
    if scheme not in OMS_SCHEMES:
        raise UsageError(
            f"{where}: OMS v1.0 key signatures take ECDSA P-256/P-384/P-521 keys, "
            f"found a {scheme} key"
        )


def sign_folder(
    folder: Path, signers: Sequence[CryptoSigner], model_name: str | None = None
) -> Statement:
    """Write ``folder/model.sig`` over every file of ``folder``; the first signer is the OMS
    signer (named in the verification material), the others co-sign the same envelope.

    Raises UsageError (no signer, a non-ECDSA OMS signer) or FormatError (see list_files).
    """
    if not signers:
        raise UsageError("model.sig: expected at least one signing key, got none")
    _require_oms_key(signers[0], SIGNATURE_FILE)
    root = Path(folder)
    # The subject's name is informative only (model-signing never compares it).
    st = oms_statement(model_name or root.resolve().name, manifest(root))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": _key_hint(signers[0].public_key)},
            "tlogEntries": [],
        },
        "dsseEnvelope": sign_statement(st, list(signers)),
    }
    # model-signing keeps signatures[0] as the one it checks: sign_statement keeps order.
    write_atomic(root / SIGNATURE_FILE, json.dumps(bundle, indent=2).encode() + b"\n")
    return st


@dataclass(frozen=True)
class OmsSignature:
    """A parsed ``model.sig`` (not yet verified): the bundle and its envelope."""

    hint: str
    envelope: Envelope
    raw: Mapping[str, Any]

    @classmethod
    def read(cls, path: Path, *, limits: Limits = DEFAULT_LIMITS) -> OmsSignature:
        """Parse a Sigstore bundle v0.3 with public-key material. Raises FormatError."""
        where = Path(path).name
        try:
            size = os.stat(path).st_size
            if size > MAX_SIGNATURE_BYTES:
                raise FormatError(f"{where}: {size} bytes exceed {MAX_SIGNATURE_BYTES}")
            data = Path(path).read_bytes()
        except OSError as e:
            raise FormatError(f"{where}: cannot read: {e.strerror or e}") from e
        obj = parse_json(data, where=where, limits=limits)
        if not isinstance(obj, dict):
            raise FormatError(f"{where}: expected a Sigstore bundle object")
        if obj.get("mediaType") != BUNDLE_MEDIA_TYPE:
            raise FormatError(
                f"{where}.mediaType: expected {BUNDLE_MEDIA_TYPE}, "
                f"found {obj.get('mediaType')!r:.80}"
            )
        vm = obj.get("verificationMaterial")
        pk = vm.get("publicKey") if isinstance(vm, dict) else None
        hint = pk.get("hint") if isinstance(pk, dict) else None
        if not isinstance(hint, str):
            raise FormatError(
                f"{where}.verificationMaterial: expected publicKey.hint (public-key material), "
                "found none"
            )
        env = parse_envelope(obj.get("dsseEnvelope"), where=f"{where}.dsseEnvelope")
        return cls(hint, env, MappingProxyType(obj))


@dataclass(frozen=True)
class VerifiedOms:
    """What a verified model.sig says: file -> sha256, and who signed."""

    model_name: str
    files: Mapping[str, str]
    keyids: tuple[str, ...]
    oms_keyid: str | None  # the trusted key named by the verification material


def verify_signature(sig: OmsSignature, keys: Sequence[Key], threshold: int = 1) -> VerifiedOms:
    """Check model.sig's envelope (``threshold`` distinct trusted keys), its first signature
    (the one model-signing checks) by the key its verification material names, and the
    predicate (root digest, serialization, ignore list).

    Raises VerificationError with GT-RELEASE-OMS, or FormatError.
    """
    code = "GT-RELEASE-OMS"
    try:
        signed = verify_envelope(sig.envelope, keys, threshold, where=SIGNATURE_FILE)
    except VerificationError as e:
        raise VerificationError(code, e.message) from e
    by_hint = {_key_hint(k): k for k in keys if isinstance(k, SSlibKey)}
    first = sig.raw["dsseEnvelope"]["signatures"][0]["keyid"]
    oms_key = by_hint.get(sig.hint)
    if oms_key is None or oms_key.keyid != first or first not in signed.keyids:
        raise VerificationError(
            code,
            f"{SIGNATURE_FILE}: expected the first signature by the trusted key its "
            f"verification material names (hint {sig.hint[:16]}), found "
            f"{'no such trusted key' if oms_key is None else 'another signer first'}",
        )
    if oms_key.scheme not in OMS_SCHEMES:  # model-signing could not check it
        raise VerificationError(
            code,
            f"{SIGNATURE_FILE}: expected the OMS signer's key to be ECDSA P-256/P-384/P-521, "
            f"found {oms_key.scheme}",
        )
    st = signed.statement
    if st.predicate_type != PREDICATE_TYPE:
        raise VerificationError(
            code,
            f"{SIGNATURE_FILE}: expected predicateType {PREDICATE_TYPE}, found "
            f"{st.predicate_type!r:.80}",
        )
    files = _resources(st)
    if len(st.subjects) != 1 or st.subjects[0].digest.get("sha256") != root_digest(files):
        raise VerificationError(
            code,
            f"{SIGNATURE_FILE}: expected one subject whose sha256 is the resources' root "
            f"digest {root_digest(files)[:16]}…, found another",
        )
    return VerifiedOms(st.subjects[0].name, MappingProxyType(files), signed.keyids, oms_key.keyid)


def _resources(st: Statement) -> dict[str, str]:
    code = "GT-RELEASE-OMS"
    pred = st.predicate
    ser = pred.get("serialization")
    if (
        not isinstance(ser, dict)
        or ser.get("method") != "files"
        or ser.get("hash_type") != ("sha256")
    ):
        raise VerificationError(
            code,
            f"{SIGNATURE_FILE}: expected the 'files' serialization with sha256, found {ser!r:.120}",
        )
    if ser.get("allow_symlinks") is not False:
        raise VerificationError(code, f"{SIGNATURE_FILE}: expected allow_symlinks false")
    ignored = ser.get("ignore_paths", [])
    if (
        not isinstance(ignored, list)
        or not set(ignored) <= set(IGNORE_PATHS)
        or (SIGNATURE_FILE not in ignored)
    ):
        raise VerificationError(
            code,
            f"{SIGNATURE_FILE}: expected ignore_paths within {list(IGNORE_PATHS)} and "
            f"naming {SIGNATURE_FILE}, found {ignored!r:.200}",
        )
    res = pred.get("resources")
    if not isinstance(res, list):
        raise VerificationError(code, f"{SIGNATURE_FILE}: expected a resources list")
    files: dict[str, str] = {}
    for i, r in enumerate(res):
        ok = (
            isinstance(r, dict)
            and isinstance(r.get("name"), str)
            and r.get("algorithm") == "sha256"
            and isinstance(r.get("digest"), str)
            and len(r["digest"]) == 64
            and all(c in "0123456789abcdef" for c in r["digest"])
        )
        if (
            not ok
            or r["name"] in files
            or r["name"].startswith("/")
            or ".." in r["name"].split("/")
        ):
            raise VerificationError(
                code,
                f"{SIGNATURE_FILE}: resources[{i}]: expected a unique relative name with "
                f"a sha256 digest, found {r!r:.120}",
            )
        files[r["name"]] = r["digest"]
    return files

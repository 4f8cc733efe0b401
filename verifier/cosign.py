"""Co-signing: `govtune sign RUN_OR_RELEASE --key KEY2` (spec/release.md §5).

A co-signer (a reviewer, a compliance officer) adds their signature to every envelope of
the provenance bundle: the same payload bytes, one more DSSE signature, so
`govtune verify --key A --key B --threshold 2` is met. In a release, the bundle's bytes
change, so model.sig (whose manifest lists the bundle's digest) is signed anew over the
folder by the keys given here, the first being the OMS signer (and the ML-BOM's
reference to the bundle gets the new digest): an OMS signature is over
one manifest, and a signature over the old manifest cannot survive the new bundle. The
co-signer thereby also becomes the release's publisher for model-signing's CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from securesystemslib.signer import CryptoSigner

from attest.atomic import write_atomic
from attest.bundle import read_bundle, write_bundle
from attest.canonical import parse_json
from attest.digest import sha256_file
from attest.errors import FormatError, UsageError
from attest.layout import RELEASE_LAYOUT
from attest.predicates import BUNDLE_FILE
from attest.statement import Statement

from . import mlbom, oms


def cosign_bundle(folder: Path, signers: Sequence[CryptoSigner]) -> int:
    """Add each signer's signature to every envelope of ``folder/provenance``'s bundle.

    Each payload must be a canonical in-toto statement (never sign what cannot be read).
    Returns the number of envelopes. Raises UsageError (no bundle, already signed by a
    key) or FormatError (a malformed bundle line or payload).
    """
    if not signers:
        raise UsageError("sign: expected at least one --key")
    path = Path(folder) / RELEASE_LAYOUT.provenance_dir / BUNDLE_FILE
    if not path.is_file():
        raise UsageError(f"{path}: expected a run or release bundle, found no such file")
    envelopes = []
    for bl in read_bundle(path):
        Statement.from_payload(bl.envelope.payload, where=f"{path.name}:{bl.line}")
        env = bl.envelope
        for s in signers:
            if s.public_key.keyid in env.signatures:
                raise UsageError(
                    f"{path.name}:{bl.line}: already signed by keyid {s.public_key.keyid[:16]}; "
                    "a co-signature must come from another key"
                )
            env.sign(s)
        envelopes.append(env.to_dict())
    write_bundle(path, envelopes)
    return len(envelopes)


def cosign(folder: Path, signers: Sequence[CryptoSigner]) -> str:
    """Co-sign a run or a release folder. Returns a one-line summary. Raises as above."""
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"{root}: expected a run or release folder")
    n = cosign_bundle(root, signers)
    bom = root / RELEASE_LAYOUT.bom
    if bom.is_file():  # its attestation reference names the bundle's digest
        doc = parse_json(bom.read_bytes(), where=RELEASE_LAYOUT.bom)
        if not isinstance(doc, dict):
            raise FormatError(f"{RELEASE_LAYOUT.bom}: expected a JSON object")
        bundle = root / RELEASE_LAYOUT.provenance_dir / BUNDLE_FILE
        mlbom.rebind_bundle(doc, sha256_file(bundle))
        write_atomic(bom, mlbom.encode(doc))
    if (root / RELEASE_LAYOUT.signature).exists():
        oms.sign_folder(root, signers)
        return f"co-signed {n} envelope(s) and re-signed {RELEASE_LAYOUT.signature} in {root}"
    return f"co-signed {n} envelope(s) in {root}"

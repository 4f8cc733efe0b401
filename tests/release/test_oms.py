"""model.sig on a small folder: the format model-signing reads, and forged signatures refused."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import need

from attest.canonical import canonical_json
from attest.envelope import sign_statement
from attest.errors import UsageError, VerificationError
from attest.keys import load_public_key, load_signer, write_keypair
from attest.statement import Statement
from verifier import oms


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    m = tmp_path / "m"
    (m / "a").mkdir(parents=True)
    (m / "a" / "b").write_text("nested\n")
    (m / "a.txt").write_text("top\n")  # sorts after a/b by path parts, before it as a string
    (m / ".gitattributes").write_text("*.bin lfs\n")  # ignored, as OMS ignores it
    write_keypair(tmp_path / "k")
    return m


def _key(folder: Path) -> tuple[Path, Path]:
    return folder.parent / "k.key", folder.parent / "k.pub"


def test_model_signing_accepts_and_order_matches(folder: Path) -> None:
    need("model_signing")
    key, pub = _key(folder)
    st = oms.sign_folder(folder, [load_signer(key)])
    assert [r["name"] for r in st.predicate["resources"]] == ["a/b", "a.txt"]
    p = subprocess.run(
        [sys.executable, "-m", "model_signing", "verify", "key", str(folder), "--signature",
         str(folder / "model.sig"), "--public_key", str(pub)], capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    signed = oms.verify_signature(
        oms.OmsSignature.read(folder / "model.sig"), [load_public_key(pub)]
    )
    assert dict(signed.files) == oms.manifest(folder)


def _forge(folder: Path, edit) -> None:  # type: ignore[no-untyped-def]
    """Re-sign model.sig's statement after ``edit(predicate)`` with the same key."""
    key, _ = _key(folder)
    path = folder / "model.sig"
    bundle = json.loads(path.read_text())
    st = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    edit(st)
    bundle["dsseEnvelope"] = sign_statement(Statement.from_dict(st), [load_signer(key)])
    path.write_text(json.dumps(bundle))


@pytest.mark.parametrize(
    "label, edit, message",
    [
        ("ignore list hides a folder",
         lambda st: st["predicate"]["serialization"]["ignore_paths"].append("private"),
         "ignore_paths"),
        ("resource escapes the folder",
         lambda st: st["predicate"]["resources"].append(
             {"name": "../x", "digest": "0" * 64, "algorithm": "sha256"}), "resources"),
        ("root digest does not match",
         lambda st: st["subject"][0]["digest"].update(sha256="0" * 64), "root digest"),
        ("symlinks allowed",
         lambda st: st["predicate"]["serialization"].update(allow_symlinks=True), "allow_symlinks"),
        ("other predicate type", lambda st: st.update(predicateType="https://example.com/x"),
         "predicateType"),
    ],
)  # fmt: skip
def test_forged_model_sig(folder: Path, label: str, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    key, pub = _key(folder)
    oms.sign_folder(folder, [load_signer(key)])
    _forge(folder, edit)
    with pytest.raises(VerificationError, match=message) as e:
        oms.verify_signature(oms.OmsSignature.read(folder / "model.sig"), [load_public_key(pub)])
    assert e.value.code == "GT-RELEASE-OMS", label


def test_first_signature_must_be_the_hinted_key(folder: Path, tmp_path: Path) -> None:
    key, pub = _key(folder)
    write_keypair(tmp_path / "other")
    other = load_signer(tmp_path / "other.key")
    oms.sign_folder(folder, [other, load_signer(key)])  # hint names "other"
    with pytest.raises(VerificationError, match="verification material"):
        oms.verify_signature(oms.OmsSignature.read(folder / "model.sig"), [load_public_key(pub)])


def test_ed25519_cannot_sign_model_sig(folder: Path, tmp_path: Path) -> None:
    write_keypair(tmp_path / "ed", "ed25519")
    with pytest.raises(UsageError, match="ECDSA"):
        oms.sign_folder(folder, [load_signer(tmp_path / "ed.key")])


def test_model_sig_by_ed25519_key_refused(folder: Path, tmp_path: Path) -> None:
    """Built around the signer's check: model-signing cannot verify such a model.sig."""
    key, _ = _key(folder)
    write_keypair(tmp_path / "ed", "ed25519")
    ed = load_signer(tmp_path / "ed.key")
    oms.sign_folder(folder, [load_signer(key)])
    bundle = json.loads((folder / "model.sig").read_text())
    st = Statement.from_payload(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    bundle["dsseEnvelope"] = sign_statement(st, [ed])
    bundle["verificationMaterial"]["publicKey"]["hint"] = oms._key_hint(ed.public_key)
    (folder / "model.sig").write_text(json.dumps(bundle))
    with pytest.raises(VerificationError, match="ECDSA") as e:
        oms.verify_signature(
            oms.OmsSignature.read(folder / "model.sig"), [load_public_key(tmp_path / "ed.pub")]
        )
    assert e.value.code == "GT-RELEASE-OMS"


def test_payload_is_canonical_json(folder: Path) -> None:
    key, _ = _key(folder)
    oms.sign_folder(folder, [load_signer(key)])
    payload = base64.b64decode(
        json.loads((folder / "model.sig").read_text())["dsseEnvelope"]["payload"]
    )
    assert payload == canonical_json(json.loads(payload))

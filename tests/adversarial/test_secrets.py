"""Secrets and privacy: nothing private leaks into public files or output (issue 6, item 5).

Public = everything of a run except `private/`: the provenance folder, the released
weights and the checkpoints, plus whatever the commands print and the audit report.
Searched for: every training text (long substrings, so a partial copy is caught),
the canary texts and secrets, the run secret (hex and raw), every per-example salt,
and the producer's private key (PEM body, DER, raw scalar).
"""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import tinyrun
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

pytestmark = pytest.mark.slow


def public_files(run: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and "private" not in p.relative_to(run).parts
    }


def text_needles(text: str, width: int = 20) -> list[bytes]:
    """Substrings of ``text`` at its start, middle and end, in the encodings a file could use."""
    if len(text) <= width:
        parts = [text]
    else:
        parts = [text[:width], text[len(text) // 2 - width // 2 :][:width], text[-width:]]
    out = []
    for p in parts:
        out += [p.encode("utf-8"), json.dumps(p)[1:-1].encode(), p.encode("utf-16-le")]
    return out


def secret_needles(t: tinyrun.TinyRun) -> dict[str, bytes]:
    private = t.run / "private"
    secret_hex = (private / "run-secret").read_text().strip()
    needles = {
        "run secret (hex)": secret_hex.encode(),
        "run secret (HEX)": secret_hex.upper().encode(),
        "run secret (raw)": bytes.fromhex(secret_hex),
        "run secret (base64)": base64.b64encode(bytes.fromhex(secret_hex)),
    }
    for line in (private / "openings.jsonl").read_text().splitlines():
        o = json.loads(line)
        needles[f"salt {o['index']} (hex)"] = o["salt"].encode()
        needles[f"salt {o['index']} (raw)"] = bytes.fromhex(o["salt"])
    pem = t.key.read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    body = b"".join(pem.splitlines()[1:-1])
    needles["private key PEM body"] = body[10:50]
    needles["private key DER"] = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if isinstance(key, ec.EllipticCurvePrivateKey):
        needles["private scalar"] = key.private_numbers().private_value.to_bytes(32, "big")
        needles["private scalar (hex)"] = needles["private scalar"].hex().encode()
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        needles["private seed"] = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    return needles


def training_needles(t: tinyrun.TinyRun) -> dict[str, bytes]:
    needles = {}
    for i, row in enumerate(tinyrun.training_texts()):
        for j, n in enumerate(text_needles(str(row["text"]))):
            needles[f"dataset text {i} #{j}"] = n
    for line in (t.run / "private" / "canaries.jsonl").read_text().splitlines():
        c = json.loads(line)
        secret = c["text"].rstrip(".").rsplit(" ", 1)[-1]
        needles[f"canary {c['index']} text"] = c["text"].encode()
        needles[f"canary {c['index']} secret in context"] = f"is {secret}".encode()
    needles["PII e-mail"] = b"jane.doe@example.com"
    return needles


def leaks(haystacks: dict[str, bytes], needles: dict[str, bytes]) -> list[str]:
    return [
        f"{what} found in {where}"
        for where, hay in haystacks.items()
        for what, needle in needles.items()
        if needle in hay
    ]


def test_public_run_files_hold_no_training_text(tiny_run: tinyrun.TinyRun) -> None:
    files = public_files(tiny_run.run)
    assert {"provenance/bundle.intoto.jsonl", "model.safetensors"} <= set(files)
    assert any(name.startswith("checkpoints/") for name in files), (
        "the run should have a checkpoint"
    )
    needles = training_needles(tiny_run)
    # The search works: every dataset text is found in the (private) dataset file itself.
    found = {w.split(" #")[0] for w in leaks({"dataset": tiny_run.dataset.read_bytes()}, needles)}
    assert {f"dataset text {i}" for i in range(len(tinyrun.training_texts()))} <= found
    assert not leaks(files, needles)


def test_public_run_files_hold_no_secret_salt_or_private_key(tiny_run: tinyrun.TinyRun) -> None:
    needles = secret_needles(tiny_run)
    private = {p.name: p.read_bytes() for p in (tiny_run.run / "private").iterdir()}
    assert leaks(private, {k: v for k, v in needles.items() if "(hex)" in k})  # the search works
    assert not leaks(public_files(tiny_run.run), needles)


def test_private_files_are_owner_only(tiny_run: tinyrun.TinyRun) -> None:
    private = tiny_run.run / "private"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    files = [p for p in private.iterdir()]
    assert {p.name for p in files} >= {"run-secret", "openings.jsonl"}
    for p in [*files, tiny_run.key]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE(tiny_run.pub.stat().st_mode) & 0o077 != 0o077  # public key: readable, fine


def test_command_output_holds_no_secret(tiny_run: tinyrun.TinyRun, tmp_path: Path) -> None:
    outputs = {"keygen + train": tiny_run.output.encode()}
    base = [sys.executable, "-m", "verifier.cli"]
    for label, argv in {
        "verify": ["verify", str(tiny_run.run), "--key", str(tiny_run.pub)],
        "verify --format json --data": [
            "verify",
            str(tiny_run.run),
            "--key",
            str(tiny_run.pub),
            "--format",
            "json",
            "--data",
            str(tiny_run.dataset),
            "--openings",
            str(tiny_run.run / "private"),
        ],
        "report json": [
            "report",
            str(tiny_run.run),
            "--key",
            str(tiny_run.pub),
            "--format",
            "json",
            "--output",
            str(tmp_path / "report.json"),
        ],
        "report html --data": [
            "report",
            str(tiny_run.run),
            "--key",
            str(tiny_run.pub),
            "--format",
            "html",
            "--data",
            str(tiny_run.dataset),
            "--openings",
            str(tiny_run.run / "private"),
            "--output",
            str(tmp_path / "report.html"),
        ],
    }.items():
        proc = subprocess.run(base + argv, capture_output=True, timeout=300)
        assert proc.returncode == 0, (label, proc.stderr[-2000:])
        outputs[label] = proc.stdout + proc.stderr
    outputs["report.json"] = (tmp_path / "report.json").read_bytes()
    outputs["report.html"] = (tmp_path / "report.html").read_bytes()
    assert not leaks(outputs, secret_needles(tiny_run))
    assert not leaks(outputs, training_needles(tiny_run))


def test_failed_key_load_does_not_print_the_key(tiny_run: tinyrun.TinyRun, tmp_path: Path) -> None:
    # A private key passed where the public key belongs must be refused without echoing it.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "verifier.cli",
            "verify",
            str(tiny_run.run),
            "--key",
            str(tiny_run.key),
        ],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert b"Traceback" not in proc.stderr
    assert not leaks({"stderr": proc.stdout + proc.stderr}, secret_needles(tiny_run))

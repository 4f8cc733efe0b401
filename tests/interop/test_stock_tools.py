"""README "What stock tools can check": its script, run as written, with bash, jq, base64,
openssl and sha256sum only. A missing tool is a failure, not a skip: the README promises
that these tools suffice."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "spec" / "vectors"
TOOLS = ("bash", "jq", "base64", "openssl", "sha256sum")
ED25519_LINE = (
    'openssl pkeyutl -verify -pubin -inkey "$KEY" -rawin -in "$work/pae.$n" '
    '-sigfile "$work/sig.$n" || exit 1'
)


def readme_script() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## What stock tools can check", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"```bash\n(.*?)```", section, re.S)
    assert m, "README: expected a bash block under 'What stock tools can check'"
    return m.group(1)


def stock_check(
    run: Path, key: Path, script: str | None = None
) -> subprocess.CompletedProcess[str]:
    for tool in TOOLS:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool}: expected on PATH for the README's stock check, got none")
    return subprocess.run(
        ["bash", "-c", script or readme_script()],
        env={**os.environ, "RUN": str(run), "KEY": str(key)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _passes(p: subprocess.CompletedProcess[str], n: int = 4) -> None:
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout.splitlines()
    ok = ("Verified OK", "Signature Verified Successfully")  # openssl dgst, pkeyutl
    assert sum(line in ok for line in out) == n, out
    assert (
        "https://in-toto.io/Statement/v1 https://govtune.dev/attestation/training-run/v0.3" in out
    )
    assert {"model.safetensors: OK", "policy.toml: OK", "admissions.msgpack: OK"} <= set(out)


def test_readme_names_the_ed25519_command_this_test_uses() -> None:
    section = (ROOT / "README.md").read_text().split("## What stock tools can check", 1)[1]
    assert " ".join(ED25519_LINE.split()) in " ".join(section.split())


def test_stock_check_passes_on_the_ecdsa_vector() -> None:
    _passes(stock_check(VECTORS / "valid" / "ecdsa" / "run", VECTORS / "keys" / "vector-ecdsa.pub"))


def test_stock_check_passes_on_the_ed25519_vector_with_the_readme_line() -> None:
    script = re.sub(r"openssl dgst .*\|\| exit 1", lambda _: ED25519_LINE, readme_script())
    assert script != readme_script()
    _passes(
        stock_check(VECTORS / "valid" / "basic" / "run", VECTORS / "keys" / "vector.pub", script)
    )


def test_stock_check_fails_on_a_bad_signature() -> None:
    run = VECTORS / "invalid" / "ecdsa-sig-invalid" / "run"
    p = stock_check(run, VECTORS / "keys" / "vector-ecdsa.pub")
    assert p.returncode != 0
    assert p.stdout.splitlines()[:3] == [
        "Verified OK",
        "https://in-toto.io/Statement/v1 https://govtune.dev/attestation/policy/v0.3",
        "Verification failure",
    ]


def test_stock_check_fails_on_swapped_weights(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(VECTORS / "valid" / "ecdsa" / "run", run)
    w = bytearray((run / "model.safetensors").read_bytes())
    w[-1] ^= 0x01
    (run / "model.safetensors").write_bytes(bytes(w))
    p = stock_check(run, VECTORS / "keys" / "vector-ecdsa.pub")
    assert p.returncode != 0
    assert "model.safetensors: FAILED" in p.stdout


@pytest.mark.slow
def test_stock_check_passes_on_a_real_ecdsa_run(real_run: tuple[Path, Path]) -> None:
    run, pub = real_run
    _passes(
        stock_check(run, pub),
        n=len((run / "provenance/bundle.intoto.jsonl").read_bytes().splitlines()),
    )

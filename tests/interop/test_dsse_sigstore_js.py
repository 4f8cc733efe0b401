"""govtune envelopes verify with sigstore-js, a DSSE implementation that is not securesystemslib.

The node script `js/verify-dsse.js` wraps each signature in a sigstore bundle and checks it
with `@sigstore/verify` under a public key whose keyid it computes itself from the format's
keyid rule (spec/format.md §1.1.2). Installed pinned by `.ci/run` (`npm ci` in `js/`).
A missing node, npm install or package is a FAILURE here, never a skip: the claim that stock
tools verify govtune envelopes is only as good as this test running.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from attest.bundle import read_bundle
from attest.envelope import parse_envelope, verify_envelope
from attest.errors import VerificationError
from attest.keys import load_public_key

HERE = Path(__file__).resolve().parent
JS = HERE / "js"
SCRIPT = JS / "verify-dsse.js"
VECTORS = HERE.parents[1] / "spec" / "vectors"
BUNDLE = "provenance/bundle.intoto.jsonl"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node: expected on PATH for the sigstore-js interop test, got none")
    for pkg in ("@sigstore/verify", "@sigstore/bundle"):
        if not (JS / "node_modules" / pkg / "package.json").is_file():
            pytest.fail(
                f"{pkg}: expected in {JS / 'node_modules'}, got none; run "
                f"`npm ci --no-audit --no-fund` in {JS} (.ci/run does)"
            )
    return node


def sigstore_js(envelopes: Path, *keys: Path) -> tuple[int, list[str]]:
    """Run the node verifier; returns (exit code, output lines)."""
    p = subprocess.run(
        [_node(), str(SCRIPT), str(envelopes), *map(str, keys)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=JS,
    )
    assert p.returncode in (0, 1), p.stderr  # 2 is a usage or input error: a broken test
    return p.returncode, p.stdout.splitlines()


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


# -- a real run, signed with the default producer key (ECDSA P-256) ---------------------


@pytest.mark.slow
def test_every_envelope_of_a_real_ecdsa_run_verifies_with_sigstore_js(
    real_run: tuple[Path, Path],
) -> None:
    run, pub = real_run
    assert load_public_key(pub).scheme == "ecdsa-sha2-nistp256"
    bundle = run / BUNDLE
    keyid = load_public_key(pub).keyid
    rc, out = sigstore_js(bundle, pub)
    n = len(_lines(bundle))
    assert n >= 4
    assert (rc, len(out)) == (0, n), out
    for i, line in enumerate(out, 1):
        assert line.startswith(f"OK: line {i} keyid={keyid} predicateType=https://govtune.dev/")


@pytest.mark.slow
def test_tampered_envelope_of_a_real_run_fails_with_sigstore_js(
    real_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run, pub = real_run
    lines = _lines(run / BUNDLE)
    env = json.loads(lines[2])
    stmt = json.loads(base64.b64decode(env["payload"]))
    stmt["predicate"]["steps"] += 1  # the claim a forger would raise, signature kept
    env["payload"] = base64.b64encode(
        json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
    ).decode()
    tampered = tmp_path / "tampered.intoto.jsonl"
    lines[2] = json.dumps(env, sort_keys=True, separators=(",", ":")).encode()
    tampered.write_bytes(b"\n".join(lines) + b"\n")
    rc, out = sigstore_js(tampered, pub)
    assert rc == 1
    assert out[2] == "FAIL: line 3: signature verification failed"
    assert [o[:10] for o in out[:2] + out[3:]] == ["OK: line 1", "OK: line 2", "OK: line 4"]
    # govtune's own verifier agrees on every line.
    key = load_public_key(pub)
    with pytest.raises(VerificationError) as e:
        verify_envelope(parse_envelope(env), [key])
    assert e.value.code == "GT-SIG-INVALID"
    for line in read_bundle(run / BUNDLE):
        verify_envelope(line.envelope, [key])


# -- the spec vectors (no torch): both key types, DER edge cases ------------------------

VALID_SIGNED = {
    "basic": "vector.pub",
    "ecdsa": "vector-ecdsa.pub",
    "ecdsa-high-s": "vector-ecdsa.pub",
}


@pytest.mark.parametrize("name", sorted(VALID_SIGNED))
def test_valid_vector_envelopes_verify_with_sigstore_js(name: str) -> None:
    bundle = VECTORS / "valid" / name / "run" / BUNDLE
    rc, out = sigstore_js(bundle, VECTORS / "keys" / VALID_SIGNED[name])
    assert (rc, len(out)) == (0, 4), out
    assert all(o.startswith("OK: ") for o in out)


# Each invalid ECDSA vector alters the admission-log envelope (line 2) only; a second DSSE
# implementation must refuse it for the same reason govtune does (spec/format.md §1.1.1).
@pytest.mark.parametrize("name", ["ecdsa-sig-invalid", "ecdsa-sig-raw", "ecdsa-sig-ber"])
def test_invalid_ecdsa_vector_fails_with_sigstore_js(name: str) -> None:
    bundle = VECTORS / "invalid" / name / "run" / BUNDLE
    rc, out = sigstore_js(bundle, VECTORS / "keys" / "vector-ecdsa.pub")
    assert rc == 1
    assert out[1] == "FAIL: line 2: signature verification failed", out
    assert [o[:4] for o in out] == ["OK: ", "FAIL", "OK: ", "OK: "]


def test_keyid_computed_by_sigstore_js_script_matches_the_format_rule() -> None:
    """The script finds keys by a keyid it computes itself (no securesystemslib): a key whose
    keyid differs matches no signature."""
    bundle = VECTORS / "valid" / "ecdsa" / "run" / BUNDLE
    rc, out = sigstore_js(bundle, VECTORS / "keys" / "vector.pub")  # the ed25519 key
    assert rc == 1
    assert out == [
        f"FAIL: line {i}: expected a signature by a given key, got none" for i in (1, 2, 3, 4)
    ]


# spec/format.md §1.5: a stock DSSE verifier accepts these; govtune refuses them, by design.
STRICTER = {
    "bundle-base64-bits": "GT-BUNDLE-FORMAT",
    "bundle-crlf": "GT-BUNDLE-FORMAT",
    "stmt-unsafe-number": "GT-STMT-FORMAT",
}


@pytest.mark.parametrize("name", sorted(STRICTER))
def test_sigstore_js_accepts_what_the_format_refuses(name: str) -> None:
    from verifier import verify

    vector = VECTORS / "invalid" / name
    rc, out = sigstore_js(vector / "run" / BUNDLE, VECTORS / "keys" / "vector.pub")
    assert (rc, [o[:4] for o in out]) == (0, ["OK: "] * 4), out
    codes = {f.code for f in verify(vector / "run", [VECTORS / "keys" / "vector.pub"]).failures}
    assert codes == {STRICTER[name]}

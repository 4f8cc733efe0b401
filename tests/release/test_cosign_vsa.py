"""Co-signing (`govtune sign`), threshold-2 verification, and signed verification summaries."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from release_fixtures import Tiny

from attest.bundle import read_bundle, write_bundle
from attest.errors import UsageError
from attest.keys import load_public_key, load_signer, write_keypair
from verifier import verify
from verifier.cosign import cosign
from verifier.vsa import VSA_TYPE, check_vsa, write_vsa

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def reviewer(tmp_path: Path) -> tuple[Path, Path]:
    write_keypair(tmp_path / "reviewer")
    return tmp_path / "reviewer.key", tmp_path / "reviewer.pub"


def codes(folder: Path, keys: list[Path], threshold: int) -> set[str]:
    return {f.code for f in verify(folder, keys, threshold=threshold).failures}


def test_cosigned_run_meets_threshold_two(tiny: Tiny, tmp_path: Path, reviewer) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    shutil.copytree(tiny.run, run)
    keys = [tiny.pub, reviewer[1]]
    assert "GT-SIG-INVALID" in codes(run, keys, 2)  # one signature: threshold 2 not met
    cosign(run, [load_signer(reviewer[0])])
    assert codes(run, keys, 2) == set()
    assert codes(run, [tiny.pub], 1) == set()  # the producer's signature is still there
    with pytest.raises(UsageError, match="already signed"):
        cosign(run, [load_signer(reviewer[0])])


def test_cosigned_release_meets_threshold_two(release: Path, tiny: Tiny, reviewer) -> None:  # type: ignore[no-untyped-def]
    keys = [tiny.pub, reviewer[1]]
    assert "GT-SIG-INVALID" in codes(release, keys, 2)
    cosign(release, [load_signer(reviewer[0])])
    assert codes(release, keys, 2) == set()
    # model.sig was signed anew over the changed bundle: model-signing checks its signer
    p = subprocess.run(
        [sys.executable, "-m", "model_signing", "verify", "key", str(release), "--signature",
         str(release / "model.sig"), "--public_key", str(reviewer[1])],
        capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr


def test_threshold_two_with_one_cosignature_stripped(
    release: Path,
    tiny: Tiny,
    reviewer,  # type: ignore[no-untyped-def]
) -> None:
    cosign(release, [load_signer(reviewer[0])])
    path = release / "provenance" / "bundle.intoto.jsonl"
    envs = []
    for bl in read_bundle(path):
        d = bl.envelope.to_dict()
        if bl.line == 1:
            d["signatures"] = d["signatures"][:1]
        envs.append(d)
    write_bundle(path, envs)
    c = codes(release, [tiny.pub, reviewer[1]], 2)
    assert "GT-SIG-INVALID" in c


def test_cli_sign_and_threshold(tiny: Tiny, tmp_path: Path, reviewer) -> None:  # type: ignore[no-untyped-def]
    def cli(*args: str) -> int:
        return subprocess.run([sys.executable, "-m", "verifier.cli", *args], cwd=ROOT,
                              capture_output=True, text=True).returncode  # fmt: skip

    run = tmp_path / "run"
    shutil.copytree(tiny.run, run)
    two = ["--key", str(tiny.pub), "--key", str(reviewer[1]), "--threshold", "2", "--quiet"]
    assert cli("verify", str(run), *two) == 1
    assert cli("sign", str(run), "--key", str(reviewer[0])) == 0
    assert cli("verify", str(run), *two) == 0
    assert cli("sign", str(tmp_path / "nothing"), "--key", str(reviewer[0])) == 2


def test_vsa_round_trip(built: Path, tiny: Tiny, tmp_path: Path, reviewer) -> None:  # type: ignore[no-untyped-def]
    result = verify(built, [tiny.pub])
    out = tmp_path / "vsa.intoto.jsonl"
    st = write_vsa(result, built, out, [load_signer(reviewer[0])])
    assert st.predicate_type == VSA_TYPE
    pred = st.predicate
    assert pred["verificationResult"] == "PASSED"
    assert "GOVTUNE_RELEASE" in pred["verifiedLevels"] and "GOVTUNE_CHAIN" in pred["verifiedLevels"]
    assert [s.name for s in st.subjects] == ["model.safetensors"]
    assert {i["uri"] for i in pred["inputAttestations"]} == {
        "provenance/bundle.intoto.jsonl",
        "model.sig",
    }
    vkey = load_public_key(reviewer[1])
    ok = check_vsa(out, [vkey], folder=built)
    assert ok and ok.verified["subjects"] == ["model.safetensors"]
    assert not check_vsa(out, [load_public_key(tiny.pub)])  # not the verifier's key


def test_vsa_of_failed_verification_is_no_pass(
    release: Path, tiny: Tiny, tmp_path: Path, reviewer
) -> None:  # type: ignore[no-untyped-def]
    (release / "README.md").write_text("tampered\n")
    result = verify(release, [tiny.pub])
    out = tmp_path / "vsa.intoto.jsonl"
    st = write_vsa(result, release, out, [load_signer(reviewer[0])])
    assert st.predicate["verificationResult"] == "FAILED" and st.predicate["verifiedLevels"] == []
    r = check_vsa(out, [load_public_key(reviewer[1])])
    assert [f.code for f in r.failures] == ["GT-RELEASE-VSA"]
    assert "expected PASSED" in r.failures[0].message


def test_vsa_forged_result(built: Path, tiny: Tiny, tmp_path: Path, reviewer) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "vsa.intoto.jsonl"
    write_vsa(verify(built, [tiny.pub]), built, out, [load_signer(reviewer[0])])
    env = json.loads(out.read_text())
    import base64

    payload = json.loads(base64.b64decode(env["payload"]))
    payload["subject"][0]["digest"]["sha256"] = "0" * 64
    env["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    out.write_text(json.dumps(env) + "\n")
    r = check_vsa(out, [load_public_key(reviewer[1])])
    assert [f.code for f in r.failures] == ["GT-RELEASE-VSA"]


def test_vsa_for_other_weights(
    release: Path, built: Path, tiny: Tiny, tmp_path: Path, reviewer
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "vsa.intoto.jsonl"
    write_vsa(verify(built, [tiny.pub]), built, out, [load_signer(reviewer[0])])
    w = release / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 1
    w.write_bytes(bytes(data))
    r = check_vsa(out, [load_public_key(reviewer[1])], folder=release)
    assert [f.code for f in r.failures] == ["GT-RELEASE-VSA"]
    assert "model.safetensors" in r.failures[0].message
    assert check_vsa(out, [load_public_key(reviewer[1])], folder=built)


def test_cli_vsa_flags(built: Path, tiny: Tiny, tmp_path: Path, reviewer) -> None:  # type: ignore[no-untyped-def]
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "verifier.cli", *args], cwd=ROOT,
                              capture_output=True, text=True)  # fmt: skip

    out = tmp_path / "v.intoto.jsonl"
    p = cli("verify", str(built), "--key", str(tiny.pub), "--vsa", str(out), "--sign-key",
            str(reviewer[0]), "--quiet")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert cli("verify", "--vsa-only", str(out), "--key", str(reviewer[1])).returncode == 0
    assert (
        cli("verify", str(built), "--vsa-only", str(out), "--key", str(reviewer[1])).returncode == 0
    )
    assert cli("verify", "--vsa-only", str(out), "--key", str(tiny.pub)).returncode == 1
    p = cli("verify", str(built), "--key", str(tiny.pub), "--vsa", str(out))
    assert p.returncode == 2 and "go together" in p.stderr
    assert cli("verify", "--key", str(tiny.pub)).returncode == 2

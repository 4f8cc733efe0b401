"""`govtune release` end to end on a real tiny run: what is in the folder, what verifies,
and every way of tampering with it (each attack named after itself)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from release_fixtures import Tiny, train_tiny

from attest.errors import UsageError, VerificationError
from attest.keys import load_signer, write_keypair
from attest.layout import METADATA_RUN_ID
from verifier import verify
from verifier.oms import sign_folder
from verifier.release import ReleaseRequest, build_release

ROOT = Path(__file__).resolve().parents[2]


def fails(folder: Path, *keys: Path, threshold: int = 1) -> set[str]:
    return {f.code for f in verify(folder, list(keys), threshold=threshold).failures}


def model_signing_verify(folder: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    # model_signing is pinned in the dev extra (pyproject.toml): missing, the test fails
    return subprocess.run(
        [sys.executable, "-m", "model_signing", "verify", "key", str(folder),
         "--signature", str(folder / "model.sig"), "--public_key", str(pub)],
        capture_output=True, text=True,
    )  # fmt: skip


def resign(folder: Path, key: Path) -> None:
    """The publisher re-signs model.sig over whatever the folder now holds."""
    sign_folder(folder, [load_signer(key)])


def test_release_folder_contents(built: Path, tiny: Tiny) -> None:
    names = sorted(str(p.relative_to(built)) for p in built.rglob("*") if p.is_file())
    assert names == [
        "README.md", "bom.cdx.json", "model.safetensors", "model.sig",
        "provenance/admissions.msgpack", "provenance/bundle.intoto.jsonl",
        "provenance/policy.toml", "provenance/steps.msgpack",
    ]  # fmt: skip
    assert (tiny.run / "private").is_dir() and (tiny.run / "checkpoints").is_dir()


def test_release_verifies(built: Path, tiny: Tiny) -> None:
    result = verify(built, [tiny.pub])
    assert result, [f.message for f in result.failures]
    release = {f.code: f.status for f in result.findings if f.layer == "release"}
    assert {c for c, s in release.items() if s == "pass"} == {
        "GT-RELEASE-PRIVATE", "GT-RELEASE-OMS", "GT-RELEASE-UNCOVERED", "GT-RELEASE-DIGEST",
        "GT-RELEASE-LAYOUT", "GT-RELEASE-BINDING", "GT-RELEASE-CARD", "GT-RELEASE-BOM",
    }  # fmt: skip


def test_model_signing_cli_accepts_release(built: Path, tiny: Tiny) -> None:
    p = model_signing_verify(built, tiny.pub)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Verification succeeded" in p.stdout


def test_weights_metadata_points_to_provenance(built: Path, tiny: Tiny) -> None:
    from safetensors import safe_open

    with safe_open(str(built / "model.safetensors"), "np") as f:
        meta = f.metadata()
    assert meta[METADATA_RUN_ID] == verify(built, [tiny.pub]).verified["runId"]
    assert meta["govtune.provenance"] == "provenance/bundle.intoto.jsonl"


def test_weights_metadata_names_other_run(
    tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The producer's trainer writes a pointer to another run into the weights (signed
    honestly otherwise): the release layer refuses the lie, so no release is left."""
    import trainer.loop
    from attest.layout import weights_metadata

    monkeypatch.setattr(trainer.loop, "weights_metadata", lambda _: weights_metadata("0" * 32))
    forged = train_tiny(tmp_path / "forged")
    assert not fails(forged.run, forged.pub)  # a run folder: the pointer is not checked
    with pytest.raises(VerificationError, match="GT-RELEASE-BINDING"):
        build_release(ReleaseRequest(forged.run, tmp_path / "out", (forged.key,)))
    assert not (tmp_path / "out").exists()


FILES = [
    "README.md", "bom.cdx.json", "model.safetensors", "provenance/admissions.msgpack",
    "provenance/bundle.intoto.jsonl", "provenance/policy.toml", "provenance/steps.msgpack",
]  # fmt: skip


@pytest.mark.parametrize("name", FILES)
def test_tampered_release_file(release: Path, tiny: Tiny, name: str) -> None:
    path = release / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert "GT-RELEASE-DIGEST" in fails(release, tiny.pub)
    assert model_signing_verify(release, tiny.pub).returncode != 0


@pytest.mark.parametrize("name", FILES)
def test_removed_release_file(release: Path, tiny: Tiny, name: str) -> None:
    (release / name).unlink()
    assert "GT-RELEASE-DIGEST" in fails(release, tiny.pub)
    assert model_signing_verify(release, tiny.pub).returncode != 0


@pytest.mark.parametrize("name", ["notes.txt", "provenance/extra.json", "sub/x.safetensors"])
def test_added_unsigned_file(release: Path, tiny: Tiny, name: str) -> None:
    (release / name).parent.mkdir(parents=True, exist_ok=True)
    (release / name).write_text("added after signing\n")
    assert fails(release, tiny.pub) >= {"GT-RELEASE-UNCOVERED"}
    assert model_signing_verify(release, tiny.pub).returncode != 0


def test_release_with_symlink(release: Path, tiny: Tiny) -> None:
    (release / "weights-link.safetensors").symlink_to(release / "model.safetensors")
    # V1 refuses the link in any folder (GT-FILE-TYPE); model.sig does not list it either
    assert fails(release, tiny.pub) == {"GT-FILE-TYPE", "GT-RELEASE-UNCOVERED"}
    assert model_signing_verify(release, tiny.pub).returncode != 0


def test_release_without_model_sig(release: Path, tiny: Tiny) -> None:
    (release / "model.sig").unlink()
    # without model.sig the folder is judged as a run: the card and ML-BOM are outside its
    # layout (GT-FILE-UNCOVERED), and the release has no OMS signature (GT-RELEASE-OMS)
    assert fails(release, tiny.pub) == {"GT-FILE-UNCOVERED", "GT-RELEASE-OMS"}


def test_model_sig_by_untrusted_key(release: Path, tiny: Tiny, tmp_path: Path) -> None:
    write_keypair(tmp_path / "mallory")
    resign(release, tmp_path / "mallory.key")
    assert fails(release, tiny.pub) == {"GT-RELEASE-OMS"}
    assert model_signing_verify(release, tiny.pub).returncode != 0
    assert not fails(release, tiny.pub, tmp_path / "mallory.pub")  # the honest bundle stands


def test_release_with_private_folder(release: Path, tiny: Tiny) -> None:
    shutil.copytree(tiny.run / "private", release / "private")
    resign(release, tiny.key)  # the publisher signs the mistake too
    assert model_signing_verify(release, tiny.pub).returncode == 0  # OMS alone cannot tell
    assert "GT-RELEASE-PRIVATE" in fails(release, tiny.pub)


def test_release_with_run_secret_in_provenance(release: Path, tiny: Tiny) -> None:
    shutil.copyfile(tiny.run / "private" / "run-secret", release / "provenance" / "run-secret")
    resign(release, tiny.key)
    assert "GT-RELEASE-PRIVATE" in fails(release, tiny.pub)


def test_run_with_openings_outside_private(tiny: Tiny, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny.run, run)
    assert not fails(run, tiny.pub)  # a run's own private/ is its private part
    shutil.copyfile(run / "private" / "openings.jsonl", run / "openings.jsonl")
    # outside the run layout (attest/layout.py) and a leak of the openings: two defects
    assert fails(run, tiny.pub) == {"GT-FILE-UNCOVERED", "GT-RELEASE-PRIVATE"}


def test_run_folder_pushed_to_a_hub_with_private(tiny: Tiny, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny.run, run)
    (run / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    # a repository file is outside the run layout; with private/ beside it, a leak too
    assert fails(run, tiny.pub) == {"GT-FILE-UNCOVERED", "GT-RELEASE-PRIVATE"}
    shutil.rmtree(run / "private")
    assert fails(run, tiny.pub) == {"GT-FILE-UNCOVERED"}  # publish a release folder instead


def test_release_extra_weights_file(release: Path, tiny: Tiny) -> None:
    shutil.copyfile(release / "model.safetensors", release / "model-00002.safetensors")
    resign(release, tiny.key)
    assert model_signing_verify(release, tiny.pub).returncode == 0
    # an unsigned weight-like file: outside the layout (V1) and the release layout (V10)
    assert fails(release, tiny.pub) >= {"GT-FILE-UNCOVERED"}


def test_release_swapped_weights_resigned(release: Path, tiny: Tiny) -> None:
    base = tiny.folder / "other.safetensors"
    from trainer.checkpoint import save_weights
    from trainer.config import ModelConfig
    from trainer.model import TinyLM

    save_weights(
        base, TinyLM(ModelConfig(d_model=16, n_layers=2, n_heads=2, seq_len=32)).state_dict()
    )
    shutil.copyfile(base, release / "model.safetensors")
    resign(release, tiny.key)
    codes = fails(release, tiny.pub)
    assert {"GT-WEIGHTS-DIGEST", "GT-RELEASE-BINDING"} <= codes


def _edit_card(release: Path, old: str, new: str) -> None:
    card = release / "README.md"
    text = card.read_text()
    assert old in text
    card.write_text(text.replace(old, new, 1))


def test_model_card_claims_other_license(release: Path, tiny: Tiny) -> None:
    _edit_card(release, "license: apache-2.0", "license: mit")
    resign(release, tiny.key)
    assert fails(release, tiny.pub) == {"GT-RELEASE-CARD"}


def test_model_card_hides_refused_license_class(release: Path, tiny: Tiny) -> None:
    _edit_card(
        release,
        "| refused license classes | strong-copyleft |",
        "| refused license classes | none |",
    )
    resign(release, tiny.key)
    assert fails(release, tiny.pub) == {"GT-RELEASE-CARD"}


def test_model_card_claims_fewer_refusals(release: Path, tiny: Tiny) -> None:
    text = (release / "README.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("| examples |"))
    _edit_card(release, line, line.replace(" refused", " refused (none of them PII)"))
    resign(release, tiny.key)
    assert fails(release, tiny.pub) == {"GT-RELEASE-CARD"}


def test_model_card_without_front_matter(release: Path, tiny: Tiny) -> None:
    card = release / "README.md"
    card.write_text(card.read_text().split("\n---\n", 1)[1])
    resign(release, tiny.key)
    assert fails(release, tiny.pub) == {"GT-RELEASE-CARD"}


def _edit_bom(release: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = release / "bom.cdx.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc, indent=2))


def test_bom_claims_other_base_model(release: Path, tiny: Tiny) -> None:
    def edit(doc: dict) -> None:  # type: ignore[type-arg]
        doc["metadata"]["component"]["pedigree"]["ancestors"][0]["name"] = "meta-llama/Llama-3-8B"

    _edit_bom(release, edit)
    resign(release, tiny.key)
    assert fails(release, tiny.pub) == {"GT-RELEASE-BOM"}


def test_bom_claims_other_dataset(release: Path, tiny: Tiny) -> None:
    def edit(doc: dict) -> None:  # type: ignore[type-arg]
        doc["components"][0]["hashes"][0]["content"] = "0" * 64

    _edit_bom(release, edit)
    resign(release, tiny.key)
    assert fails(release, tiny.pub) == {"GT-RELEASE-BOM"}


def test_bom_license_disagrees_with_card(release: Path, tiny: Tiny) -> None:
    def edit(doc: dict) -> None:  # type: ignore[type-arg]
        comp = doc["metadata"]["component"]
        comp["licenses"] = [{"license": {"name": "mit"}}]
        for p in comp["properties"]:
            if p["name"] == "govtune:model-license":
                p["value"] = "mit"

    _edit_bom(release, edit)
    resign(release, tiny.key)
    assert fails(release, tiny.pub) == {"GT-RELEASE-BOM"}


def test_release_with_checkpoints(tiny: Tiny, tmp_path: Path) -> None:
    out = tmp_path / "with-cp"
    result = build_release(ReleaseRequest(tiny.run, out, (tiny.key,), with_checkpoints=True))
    assert result, [f.message for f in result.failures]
    shipped = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert shipped == sorted(p.name for p in (tiny.run / "checkpoints").iterdir()) and shipped
    assert model_signing_verify(out, tiny.pub).returncode == 0
    cp = out / "checkpoints" / shipped[0]
    data = bytearray(cp.read_bytes())
    data[-1] ^= 0x01
    cp.write_bytes(bytes(data))
    resign(out, tiny.key)
    assert {"GT-CHECKPOINT-DIGEST", "GT-RELEASE-BINDING"} <= fails(out, tiny.pub)


def test_release_refuses_tampered_run(tiny: Tiny, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny.run, run)
    w = run / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-1] + b"\x01")
    with pytest.raises(VerificationError, match="nothing was released"):
        build_release(ReleaseRequest(run, tmp_path / "out", (tiny.key,)))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_release_refuses_ed25519_oms_key(tiny: Tiny, tmp_path: Path) -> None:
    write_keypair(tmp_path / "ed", "ed25519")
    with pytest.raises(UsageError, match="ECDSA"):
        build_release(ReleaseRequest(tiny.run, tmp_path / "out", (tmp_path / "ed.key",)))


def test_release_refuses_existing_output(tiny: Tiny, built: Path) -> None:
    with pytest.raises(UsageError, match="already exists"):
        build_release(ReleaseRequest(tiny.run, built, (tiny.key,)))


def test_cli_release_and_verify(tiny: Tiny, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "verifier.cli", *args], cwd=ROOT,
                              capture_output=True, text=True)  # fmt: skip

    out = tmp_path / "cli-release"
    p = cli("release", str(tiny.run), "--key", str(tiny.key), "--out", str(out), "--license", "mit")
    assert p.returncode == 0, p.stderr
    assert cli("verify", str(out), "--key", str(tiny.pub), "--quiet").returncode == 0
    assert cli("release", str(tiny.run), "--key", str(tiny.key), "--out", str(out)).returncode == 2
    p = cli("release", str(tiny.run), "--out", str(tmp_path / "x"))
    assert p.returncode == 2 and "--key" in p.stderr
    p = cli("train", "c.toml", "--out", str(tmp_path / "r"), "--key", "a", "--key", "b")
    assert p.returncode == 2 and "signs with one key, found 2" in p.stderr

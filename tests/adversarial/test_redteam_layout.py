"""Red team (issue 9), folder and layout claims, from README "The run folder" and
verification.md §4: "the folder holds only regular files and folders, only the entries
its layout allows, and every public file is bound by the digest of its bytes".

Written from the spec alone (not from the checks); each attack signs with the producer's
key where it touches signed evidence, and asserts the spec's code. Attacks the verifier
does not catch are strict xfails marked OPEN (listed in notes/redteam.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mutate
import pytest
import tinyrun
from redteam import audit, failing, forge, full

from attest.predicates import TRAINING_TYPE

pytestmark = pytest.mark.slow

CHECKPOINT = "checkpoints/step-000006.safetensors"


def test_honest_run_passes(work: Path, honest: tinyrun.TinyRun) -> None:
    assert full(work, honest), [(f.code, f.message) for f in full(work, honest).failures]
    forge(work, honest, lambda ev: None)  # the forger's identity re-sign: the control
    assert full(work, honest)


# A consumer's loader picks up any weight-like file; the layout allows none but the signed ones.
WEIGHT_LIKE = [
    "Model.safetensors",  # case variant of the signed name (a case-insensitive FS serves it)
    "model.SAFETENSORS",
    "m\u043edel.safetensors",  # Cyrillic o: a homoglyph of the signed name
    "model\u200b.safetensors",  # zero-width space
    "model.safetensors.bak",
    "pytorch_model.pth",
    "model.ckpt",
    "model.onnx",
    "tf_model.h5",
    "flax_model.msgpack",
    "model.safetensors.index.json",  # redirects a transformers loader to shards
    "adapter_model.safetensors",
    "shards/model-00001-of-00002.safetensors",
    "checkpoints/step-000003.safetensors",  # an unlisted checkpoint
    "checkpoints/step-000006.safetensors.tmp",
]


@pytest.mark.parametrize("name", WEIGHT_LIKE)
def test_weight_like_file_planted_beside_signed_weights(
    work: Path, honest: tinyrun.TinyRun, name: str
) -> None:
    target = work / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "model.safetensors", target)
    assert failing(audit(work, honest)) == {"GT-FILE-UNCOVERED"}


def test_weights_planted_in_private_folder(work: Path, honest: tinyrun.TinyRun) -> None:
    # private/ is allowed in a run folder, but it holds run-secret, openings and canaries only.
    shutil.copyfile(work / "model.safetensors", work / "private" / "model.safetensors")
    assert failing(audit(work, honest)) == {"GT-FILE-UNCOVERED"}


def test_arbitrary_file_in_private_folder(work: Path, honest: tinyrun.TinyRun) -> None:
    (work / "private" / "notes.txt").write_text("anything")
    assert failing(audit(work, honest)) == {"GT-FILE-UNCOVERED"}


def test_empty_folder_named_like_weights(work: Path, honest: tinyrun.TinyRun) -> None:
    (work / "pytorch_model.bin").mkdir()
    assert failing(audit(work, honest)) == {"GT-FILE-UNCOVERED"}


def test_hidden_dotfile_at_run_root(work: Path, honest: tinyrun.TinyRun) -> None:
    (work / ".model.safetensors").write_bytes((work / "model.safetensors").read_bytes())
    assert failing(audit(work, honest)) == {"GT-FILE-UNCOVERED"}


def test_signed_weights_renamed_to_dot_segment_path(work: Path, honest: tinyrun.TinyRun) -> None:
    # The training statement names "./model.safetensors": the same bytes under another spelling.
    def edit(ev: mutate.Evidence) -> None:
        for w in ev.predicates[TRAINING_TYPE]["weights"]:
            w["name"] = "./" + w["name"]

    forge(work, honest, edit)
    assert failing(audit(work, honest)) & {
        "GT-STMT-FORMAT",
        "GT-WEIGHTS-FORMAT",
        "GT-FILE-UNCOVERED",
    }


def test_weights_listed_under_provenance(work: Path, honest: tinyrun.TinyRun) -> None:
    # Signed weights moved into provenance/: only the four sidecars may live there.
    (work / "model.safetensors").rename(work / "provenance" / "model.safetensors")

    def edit(ev: mutate.Evidence) -> None:
        for w in ev.predicates[TRAINING_TYPE]["weights"]:
            w["name"] = "provenance/model.safetensors"

    forge(work, honest, edit)
    assert "GT-FILE-UNCOVERED" in failing(audit(work, honest))


def test_second_signed_weight_file_with_a_copy(work: Path, honest: tinyrun.TinyRun) -> None:
    # Two signed weight files holding the same tensors: a tensor in two files has no single value.
    shutil.copyfile(work / "model.safetensors", work / "model-copy.safetensors")

    def edit(ev: mutate.Evidence) -> None:
        t = ev.predicates[TRAINING_TYPE]
        t["weights"].append({"name": "model-copy.safetensors", "sha256": "00" * 32})

    forge(work, honest, edit)
    assert failing(audit(work, honest)) == {"GT-WEIGHTS-FORMAT"}


def test_weights_listed_twice_under_one_name(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        w = ev.predicates[TRAINING_TYPE]["weights"]
        w.append(dict(w[0]))

    forge(work, honest, edit)
    assert failing(audit(work, honest)) & {"GT-STMT-BINDING", "GT-STMT-FORMAT", "GT-WEIGHTS-FORMAT"}


@pytest.mark.parametrize("marker", [".git", ".gitattributes"])
def test_run_folder_with_private_is_a_repository(
    work: Path, honest: tinyrun.TinyRun, marker: str
) -> None:
    # git add -A would publish private/ (run secret, openings, canary texts).
    if marker == ".git":
        (work / marker).mkdir()
    else:
        (work / marker).write_text("* text\n")
    assert "GT-RELEASE-PRIVATE" in failing(audit(work, honest))


def test_openings_copied_outside_private(work: Path, honest: tinyrun.TinyRun) -> None:
    shutil.copyfile(work / "private" / "openings.jsonl", work / "checkpoints" / "openings.jsonl")
    assert "GT-RELEASE-PRIVATE" in failing(audit(work, honest))


def test_private_folder_below_the_root(work: Path, honest: tinyrun.TinyRun) -> None:
    (work / "checkpoints" / "private").mkdir()
    shutil.copyfile(
        work / "private" / "run-secret", work / "checkpoints" / "private" / "run-secret"
    )
    assert "GT-RELEASE-PRIVATE" in failing(audit(work, honest))

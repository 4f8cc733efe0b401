"""The Hugging Face kinds on tiny random models written to a temp folder (fast, no download).

Routing against the naive per-example oracle, untouched tensors bitwise unchanged, prompt
masking, tied weights in the released state, the output loading back with from_pretrained,
LoRA's adapters-only state under peft's saved names, and profile resolution errors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import need

torch = need("torch")
transformers = need("transformers")

from attest.errors import PolicyError, UsageError  # noqa: E402
from attest.policy import Policy  # noqa: E402
from attest.tensors import hash_safetensors, state_root  # noqa: E402
from trainer import leaves as lv  # noqa: E402
from trainer import registry  # noqa: E402
from trainer.engine import OptimizerConfig, StepEngine  # noqa: E402
from trainer.profiles import resolve_profiles  # noqa: E402
from trainer.registry import Item  # noqa: E402
from trainer.routing import masked_reference_grads  # noqa: E402

WORDS = ["the", "a", "model", "layer", "data", "policy"]
WORDS += ["step", "record", "verify", "train", "base", "head"]


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[SEP]"
    )
    fast.save_pretrained(str(folder))


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=16 + 4, hidden_size=16, num_hidden_layers=3,
                     num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=32)  # fmt: skip
    BertModel(cfg).save_pretrained(str(folder))  # a bare encoder: the head is new, seeded
    _tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=16 + 4, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                      pad_token_id=0, eos_token_id=3)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(str(folder))
    _tokenizer(folder)
    return folder


def classifier(folder: Path) -> registry.Built:
    opts = {"labels": ["x", "y"], "seq_len": 12}
    spec = registry.spec_for("hf-sequence-classification", opts, folder, seed=0)
    return registry.build(spec, folder)


ITEMS = [
    Item("the model layer data", {"label": "x"}),
    Item("policy step record", {"label": "y"}),
    Item("verify train base head the", {"label": "x"}),
    Item("a a a", {"label": "y"}),
]


def test_spec_records_base_and_start(bert_folder: Path) -> None:
    built = classifier(bert_folder)
    spec = built.spec
    assert spec.base is not None and spec.tokenizer is not None
    assert "model.safetensors" in spec.base.files and "tokenizer.json" in spec.tokenizer.files
    # the chain starts from the built model (new head); --base checks the folder's own root
    assert spec.base.state_root == state_root(lv.leaves(built.state())).hex()
    folder_root = state_root(hash_safetensors(bert_folder / "model.safetensors").leaves).hex()
    assert spec.base.weights_state_root == folder_root != spec.base.state_root
    assert "classifier.weight" in spec.trainable
    # build is a pure function of (spec, base): the seeded head comes out bitwise equal
    again = registry.build(spec, bert_folder)
    assert lv.leaves(again.state()) == lv.leaves(built.state())


def test_replay_on_another_base_refused(bert_folder: Path, tmp_path: Path) -> None:
    import shutil

    built = classifier(bert_folder)
    other = tmp_path / "other"
    shutil.copytree(bert_folder, other)
    (other / "tokenizer_config.json").write_text("{}")
    with pytest.raises(UsageError, match=r"expected tokenizer_config.json with sha256"):
        registry.build(built.spec, other)


def _policy(surface: str) -> Policy:
    return Policy.from_toml(_policy_text(surface).encode(), where="p.toml")


def _policy_text(surface: str) -> str:
    return f"""
version = "0.1"
name = "t"
[licenses]
allow = ["permissive"]
[licenses.classes]
"MIT" = "permissive"
[profiles.deep]
patterns = ["*"]
[profiles.surface]
{surface}
[[assign]]
profile = "deep"
"""


def test_routed_grads_equal_naive_masked_and_untouched_unchanged(bert_folder: Path) -> None:
    """Two mixed profiles: the routed step's gradients equal the per-example oracle's, and a
    tensor outside every batch profile keeps grad None and its exact bytes."""
    built = classifier(bert_folder)
    pol = _policy('layers = ["-1"]\npatterns = ["classifier.*"]')
    profiles = resolve_profiles(pol, built.trainable)
    assert "bert.encoder.layer.2.output.dense.weight" in profiles["surface"]
    assert "bert.encoder.layer.1.output.dense.weight" not in profiles["surface"]
    batch_profiles = ["surface", "surface", "surface", "surface"]
    params = dict(built.trainable)
    allowed = {k: frozenset(v) for k, v in profiles.items()}
    losses = built.per_example_loss(built.model, built.encode(ITEMS))
    want = masked_reference_grads(losses, params, allowed, batch_profiles)

    engine = StepEngine(built, OptimizerConfig(lr=1e-2), profiles)
    before = {n: t.detach().clone() for n, t in built.state().items()}
    for p in params.values():
        p.grad = None
    engine.router.prepare(built.model, batch_profiles)
    out = built.per_example_loss(built.model, built.encode(ITEMS))
    engine.router.release(built.model)
    engine.router.backward(out, batch_profiles)
    for n, p in params.items():
        if n in allowed["surface"]:
            assert p.grad is not None, n
            torch.testing.assert_close(p.grad, want[n], rtol=1e-5, atol=1e-7)
        else:
            assert p.grad is None, n
    engine.optimizer.step()
    after = built.state()
    for n in params:
        if n not in allowed["surface"]:
            assert torch.equal(after[n], before[n]), n  # bitwise unchanged

    mixed = ["deep", "surface", "surface", "deep"]
    losses = built.per_example_loss(built.model, built.encode(ITEMS))
    want = masked_reference_grads(losses, params, allowed, mixed)
    for p in params.values():
        p.grad = None
    out = built.per_example_loss(built.model, built.encode(ITEMS))
    engine.router.backward(out, mixed)
    for n, p in params.items():
        torch.testing.assert_close(p.grad, want[n], rtol=1e-5, atol=1e-7)


def test_engine_step_reports_grad_norms(bert_folder: Path) -> None:
    built = classifier(bert_folder)
    pol = _policy('layers = ["-1"]\npatterns = ["classifier.*"]')
    engine = StepEngine(built, OptimizerConfig(lr=1e-2), resolve_profiles(pol, built.trainable))
    outcome = engine.step(ITEMS, ["deep", "surface", "surface", "deep"], 1e-2)
    assert engine.grad_norm_method is not None, engine.grad_norm_reason
    assert outcome.grad_norms is not None and all(g > 0 for g in outcome.grad_norms)
    assert "bert.embeddings.word_embeddings.weight" in outcome.changed
    assert outcome.state_root == state_root(lv.leaves(built.state()))


def test_empty_profile_refused_naming_patterns(bert_folder: Path) -> None:
    built = classifier(bert_folder)
    pol = _policy('patterns = ["lm_head.*"]')
    with pytest.raises(PolicyError, match=r"profiles.surface: expected patterns \['lm_head.\*'\]"
                       r" to match a trainable parameter, found none; the model has \d+ trainable "
                       r"parameters, 3 layers"):  # fmt: skip
        resolve_profiles(pol, built.trainable)


def test_unknown_label_refused(bert_folder: Path) -> None:
    from attest.errors import FormatError

    built = classifier(bert_folder)
    with pytest.raises(FormatError, match=r"label: expected one of x, y, got 'z'"):
        built.encode([Item("the", {"label": "z"})])


def test_classifier_output_loads_back(bert_folder: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    built = classifier(bert_folder)
    files = built.save(tmp_path / "out")
    assert files == ("model.safetensors",)
    m = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "out"))
    assert m.config.id2label == {0: "x", 1: "y"}
    sd = m.state_dict()
    for n, t in built.state().items():
        assert torch.equal(sd[n], t), n


def causal(folder: Path) -> registry.Built:
    spec = registry.spec_for("hf-causal-lm", {"seq_len": 12}, folder, seed=0)
    return registry.build(spec, folder)


def test_prompt_masking_trains_response_only(llama_folder: Path) -> None:
    built = causal(llama_folder)
    full = Item("the model layer data")
    masked = Item("the model layer data", {"prompt": "the model "})
    ids, mask, tgt = built.encode([full, masked])
    assert (tgt[0] != -100).sum() == 3  # every next token of 4 words
    assert (tgt[1] != -100).sum() == 2  # only "layer", "data"
    assert torch.equal(ids[0], ids[1])  # same tokens, only the loss differs
    losses = built.per_example_loss(built.model, (ids, mask, tgt))
    assert losses.shape == (2,) and bool(torch.isfinite(losses).all())


def test_tied_weights_released_once_and_load_back(llama_folder: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    built = causal(llama_folder)
    state = built.state()
    assert "model.embed_tokens.weight" in state and "lm_head.weight" not in state
    assert "lm_head.weight" not in built.trainable  # one parameter, one name
    built.save(tmp_path / "out")
    written = hash_safetensors(tmp_path / "out" / "model.safetensors").leaves
    assert written == lv.leaves(state)
    m = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()
    assert torch.equal(m.model.embed_tokens.weight, state["model.embed_tokens.weight"])


def test_lora_state_is_adapters_under_saved_names(llama_folder: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    opts = {"seq_len": 12, "r": 2, "target_modules": ["q_proj", "v_proj"], "merged": True}
    spec = registry.spec_for("peft-lora", opts, llama_folder, seed=0)
    built = registry.build(spec, llama_folder)
    names = sorted(built.trainable)
    assert names and all(".lora_A.weight" in n or ".lora_B.weight" in n for n in names)
    assert not any(".default." in n for n in names)  # peft's saved names, not module paths
    assert sorted(built.state()) == names  # the chain covers the adapters only
    pol = _policy('layers = ["-1"]')
    profiles = resolve_profiles(pol, built.trainable)
    assert profiles["surface"] and all(".layers.2." in n for n in profiles["surface"])
    engine = StepEngine(built, OptimizerConfig(lr=1e-2), profiles)
    base_before = {n: p.detach().clone() for n, p in built.model.named_parameters()
                   if not p.requires_grad}  # fmt: skip
    outcome = engine.step([Item("the model layer"), Item("a data step")], ["surface"] * 2, 1e-2)
    assert outcome.changed and all(".layers.2." in n for n in outcome.changed)
    for n, p in built.model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, base_before[n]), n  # the base stays frozen, bitwise
    assert built.save(tmp_path / "out") == ("adapter_model.safetensors",)
    written = hash_safetensors(tmp_path / "out" / "adapter_model.safetensors").leaves
    assert written == lv.leaves(built.state())
    base = AutoModelForCausalLM.from_pretrained(str(llama_folder))
    loaded = PeftModel.from_pretrained(base, str(tmp_path / "out"))
    sd = loaded.state_dict()
    for n, t in built.state().items():
        live = n.replace(".lora_A.weight", ".lora_A.default.weight").replace(
            ".lora_B.weight", ".lora_B.default.weight"
        )
        assert torch.equal(sd[live], t), n
    assert not (tmp_path / "out" / "merged").exists()  # unbound weights never in the run
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out.merged"))
    assert type(merged).__name__ == "LlamaForCausalLM"


def test_lora_unknown_target_refused(llama_folder: Path) -> None:
    with pytest.raises(UsageError, match=r"peft-lora: "):
        registry.spec_for("peft-lora", {"target_modules": ["nope_proj"]}, llama_folder, seed=0)


def test_base_from_package_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer.hf import resolve_base_from

    assert resolve_base_from("package:attest/") == Path(__import__("attest").__file__).parent
    monkeypatch.setenv("GOVTUNE_CACHE", str(tmp_path))
    with pytest.raises(UsageError, match=r"expected the folder .*nothing-here, found none"):
        resolve_base_from("cache:nothing-here")
    (tmp_path / "there").mkdir()
    assert resolve_base_from("cache:there") == tmp_path / "there"
    with pytest.raises(UsageError, match=r"expected the installed package 'no_such_pkg_x'"):
        resolve_base_from("package:no_such_pkg_x/model")


def test_inspect_lists_names_and_profiles(
    bert_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from verifier.cli import main

    pol = tmp_path / "policy.toml"
    pol.write_text(_policy_text('layers = ["-1"]\npatterns = ["classifier.*"]'))
    args = ["inspect", str(bert_folder), "--kind", "hf-sequence-classification",
            "--labels", "x,y", "--policy", str(pol)]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "bert.encoder.layer.2.output.dense.weight" in out and "3 layers" in out
    assert "profile surface: patterns ['classifier.*'] layers ['-1']" in out
    pol.write_text(_policy_text('patterns = ["lm_head.*"]'))
    assert main(args) == 2
    assert "error: profiles.surface: expected patterns ['lm_head.*']" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["hf-sequence-classification", "peft-lora"])
def test_fast_path_equals_naive_masked(kind: str, bert_folder: Path, llama_folder: Path) -> None:
    """A profile that is exactly "the last layer and everything after it" takes the
    stop-gradient fast path (one backward); its gradients still equal the per-example oracle."""
    if kind == "peft-lora":
        opts: dict[str, object] = {"seq_len": 12, "r": 2, "target_modules": ["q_proj", "v_proj"]}
        folder, items = llama_folder, [Item(it.text) for it in ITEMS]
        surface = 'layers = ["-1"]'
    else:
        opts, folder, items = {"labels": ["x", "y"], "seq_len": 12}, bert_folder, ITEMS
        surface = 'layers = ["-1"]\npatterns = ["bert.pooler.*", "classifier.*"]'
    spec = registry.spec_for(kind, opts, folder, seed=0)
    built = registry.build(spec, folder)
    profiles = resolve_profiles(_policy(surface), built.trainable)
    engine = StepEngine(built, OptimizerConfig(lr=1e-2), profiles)
    mixed = ["deep", "surface", "surface", "deep"]
    assert engine.router.prepare(built.model, mixed)  # the fast path applies
    out = built.per_example_loss(built.model, built.encode(items))
    engine.router.release(built.model)
    engine.router.backward(out, mixed)
    got = {n: p.grad for n, p in built.trainable.items()}
    params = dict(built.trainable)
    allowed = {k: frozenset(v) for k, v in profiles.items()}
    losses = built.per_example_loss(built.model, built.encode(items))
    want = masked_reference_grads(losses, params, allowed, mixed)
    for n in params:
        assert got[n] is not None, n
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-7)
    assert torch.equal(out.detach(), losses.detach())  # the masks leave forward values as they are

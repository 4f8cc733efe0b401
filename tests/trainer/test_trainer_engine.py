"""The step engine: routed gradients and per-example gradient norms equal the naive oracle."""

from __future__ import annotations

import math

import pytest
import torch
from support import need
from torch import nn

from attest.modelspec import ModelSpec
from attest.policy import Profile
from trainer import registry
from trainer.engine import OptimizerConfig, StepEngine
from trainer.gradnorm import GradNorms
from trainer.registry import Built, Item

OPTIONS = {"d_model": 16, "n_layers": 3, "n_heads": 2, "seq_len": 24}
PROFILES = {
    "deep": Profile("deep", ("*",)),
    "surface": Profile("surface", ("blocks.2.*", "ln_f.*", "lm_head.*")),
    "mlp0": Profile("mlp0", ("blocks.0.mlp.*", "lm_head.*")),  # not a cut: signature passes
    "frozen-emb": Profile("frozen-emb", ("*",), ("tok_emb.*", "pos_emb.*")),
}
TEXTS = [f"engine sample {i} with some bytes {'xyz' * i}" for i in range(6)]


def _built() -> Built:
    spec = registry.spec_for("tinylm", OPTIONS, None, seed=3)
    return registry.build(spec, None)


def _allowed(built: Built) -> dict[str, frozenset[str]]:
    names = list(built.trainable)
    return {n: frozenset(p.resolve(names)) for n, p in PROFILES.items()}


def _naive(built: Built, allowed: dict[str, frozenset[str]], profiles: list[str]):  # type: ignore[no-untyped-def]
    """Per-example gradients, one backward per example, masked by profile."""
    params = dict(built.trainable)
    n = len(profiles)
    grads = {k: torch.zeros_like(p) for k, p in params.items()}
    norms = []
    for j, text in enumerate(TEXTS[:n]):
        loss = built.per_example_loss(built.model, built.encode([Item(t) for t in TEXTS[:n]]))[j]
        gs = torch.autograd.grad(loss / n, list(params.values()), allow_unused=True)
        sq = 0.0
        for (k, _), g in zip(params.items(), gs, strict=True):
            if g is not None and k in allowed[profiles[j]]:
                grads[k] += g
                sq += float(g.double().pow(2).sum())
        norms.append(math.sqrt(sq))
        del text
    return grads, norms


@pytest.mark.parametrize(
    "profiles",
    [
        ["deep", "surface", "frozen-emb", "surface", "deep", "frozen-emb"],  # fast path (cuts)
        ["deep", "surface", "mlp0", "surface", "frozen-emb", "mlp0"],  # signature passes
        ["surface", "mlp0", "surface"],  # some tensors outside every profile
    ],
)
def test_engine_grads_and_norms_equal_naive_per_example(profiles: list[str]) -> None:
    built = _built()
    allowed = _allowed(built)
    naive_grads, naive_norms = _naive(built, allowed, profiles)
    engine = StepEngine(built, OptimizerConfig(lr=0.0, weight_decay=0.0), allowed)
    # Capture the routed gradients before AdamW consumes them.
    seen: dict[str, torch.Tensor | None] = {}
    orig = engine.optimizer.step

    def spy(*a, **k):  # type: ignore[no-untyped-def]
        seen.update(
            {n: None if p.grad is None else p.grad.clone() for n, p in engine.params.items()}
        )
        return orig(*a, **k)

    engine.optimizer.step = spy  # type: ignore[method-assign]
    out = engine.step([Item(t) for t in TEXTS[: len(profiles)]], profiles, 0.0)
    union = frozenset().union(*(allowed[p] for p in profiles))
    for name in engine.params:
        if name not in union:
            assert seen[name] is None, name
        else:
            assert seen[name] is not None, name
            assert torch.allclose(seen[name], naive_grads[name], rtol=1e-5, atol=1e-7), name
    assert out.grad_norms is not None
    for got, want in zip(out.grad_norms, naive_norms, strict=True):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-9)
    assert all(g > 0 for g in out.grad_norms)


def test_tensor_outside_every_batch_profile_bitwise_unchanged_after_adamw() -> None:
    built = _built()
    allowed = _allowed(built)
    engine = StepEngine(built, OptimizerConfig(lr=0.05, weight_decay=0.1), allowed)
    items = [Item(t) for t in TEXTS[:3]]
    engine.step(items, ["deep"] * 3, 0.05)  # every tensor gets AdamW momentum
    after_deep = {n: p.detach().clone() for n, p in engine.params.items()}
    root = engine.state_root()
    for _ in range(3):
        out = engine.step(items, ["surface"] * 3, 0.05)
        assert set(out.changed) == allowed["surface"]
    for name, p in engine.params.items():
        if name in allowed["surface"]:
            assert not torch.equal(p, after_deep[name]), name
        else:
            assert torch.equal(p, after_deep[name]), name  # bitwise: no momentum, no decay
    assert engine.state_root() != root


def test_engine_load_state_reproduces_a_step_bitwise() -> None:
    built = _built()
    allowed = _allowed(built)
    engine = StepEngine(built, OptimizerConfig(lr=0.01), allowed)
    items = [Item(t) for t in TEXTS[:4]]
    profiles = ["deep", "surface", "mlp0", "deep"]
    engine.step(items, profiles, 0.01)
    state = {k: v.clone() for k, v in built.state().items()}
    optim = {k: v.clone() for k, v in engine.optimizer_tensors().items()}
    a = engine.step(items, profiles, 0.01)
    engine.load_state(state, optim)
    b = engine.step(items, profiles, 0.01)
    assert (a.losses, a.grad_norms, dict(a.changed), a.state_root) == (
        b.losses, b.grad_norms, dict(b.changed), b.state_root,
    )  # fmt: skip


class _Scale(nn.Module):  # a module type with no per-example gradient rule
    def __init__(self) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s


def test_module_without_rule_reports_norms_not_computed() -> None:
    model = nn.Sequential(nn.Linear(3, 3), _Scale())
    norms = GradNorms(model, dict(model.named_parameters()))
    assert norms.method is None and "_Scale" in norms.reason
    spec = ModelSpec("custom-test", {})
    built = Built(
        model=model,
        encode=lambda items: torch.tensor([[float(len(i.text))] * 3 for i in items]),
        per_example_loss=lambda m, x: m(x).pow(2).mean(1),
        trainable=dict(model.named_parameters()),
        save=lambda out: (),
        state=lambda: dict(model.state_dict()),
        spec=spec,
    )
    names = list(built.trainable)
    engine = StepEngine(built, OptimizerConfig(lr=0.01), {"all": names})
    out = engine.step([Item("ab"), Item("abc")], ["all", "all"], 0.01)
    assert out.grad_norms is None and engine.grad_norm_method is None
    assert out.changed  # the step itself still ran


def test_linear_norm_forms_agree() -> None:
    """The ghost-norm and einsum forms of a Linear's per-example norm agree (both paths)."""
    from trainer.gradnorm import _linear_squared

    torch.manual_seed(0)
    for n, d_in, d_out in ((3, 40, 50), (30, 4, 5)):  # einsum path, ghost path
        a, g = torch.randn(4, n, d_in), torch.randn(4, n, d_out)
        got = _linear_squared(nn.Linear(d_in, d_out), a, g, {"weight", "bias"})
        pe = torch.einsum("bno,bni->boi", g, a)
        assert torch.allclose(got["weight"], pe.pow(2).sum((1, 2)), rtol=1e-4)
        assert torch.allclose(got["bias"], g.sum(1).pow(2).sum(1), rtol=1e-5)


def test_embedding_norm_forms_agree() -> None:
    """Both forms of an Embedding's per-example norm (per-example row table for a small
    vocabulary, pairwise products for a large one) equal the materialised per-example
    gradient, repeated ids and the padding row included."""
    from trainer.gradnorm import _embedding_materialise, _embedding_squared

    torch.manual_seed(0)
    for vocab, n in ((6, 40), (500, 5)):  # 16·V < N²: table; else pairwise
        emb = nn.Embedding(vocab, 7, padding_idx=1)
        ids = torch.randint(vocab, (3, n))
        ids[0, :3] = 1  # padding rows never get a gradient
        g = torch.randn(3, n, 7)
        want = _embedding_materialise(emb, ids, g, {"weight"})["weight"].pow(2).sum((1, 2))
        got = _embedding_squared(emb, ids, g, {"weight"})["weight"]
        assert torch.allclose(got, want, rtol=1e-5), (vocab, got, want)


def test_grad_norms_of_a_hugging_face_model_equal_naive_per_example() -> None:
    """BERT: Linear, Embedding (incl. position embeddings shared by the batch), LayerNorm."""
    transformers = need("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=3,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(cfg)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    ids = torch.randint(1, 50, (4, 7))
    ids[1, 5:] = 0  # padding token ids (padding_idx 0: no gradient)
    labels = torch.tensor([0, 2, 1, 2])

    def loss_fn(m: nn.Module, batch: object) -> torch.Tensor:
        x, y = batch  # type: ignore[misc]
        return nn.functional.cross_entropy(m(input_ids=x).logits, y, reduction="none")

    names = list(trainable)
    head = [n for n in names if n.startswith(("classifier.", "bert.pooler."))]
    allowed = {"all": frozenset(names), "head": frozenset(head)}
    profiles = ["all", "head", "all", "head"]
    built = Built(model, lambda items: (ids, labels), loss_fn, trainable, lambda out: (),
                  lambda: dict(model.state_dict()), ModelSpec("hf-test", {}))  # fmt: skip
    engine = StepEngine(built, OptimizerConfig(lr=0.0, weight_decay=0.0), allowed)
    assert engine.grad_norm_method == "routed-l2-v1"
    out = engine.step([Item("x")] * 4, profiles, 0.0)  # lr 0: AdamW leaves .grad as routed
    routed = {n: None if p.grad is None else p.grad.clone() for n, p in trainable.items()}
    naive = []
    summed = {n: torch.zeros_like(p) for n, p in trainable.items()}
    for j in range(4):
        loss = loss_fn(model, (ids, labels))[j] / 4
        gs = torch.autograd.grad(loss, list(trainable.values()), allow_unused=True)
        sq = 0.0
        for (n, _), g in zip(trainable.items(), gs, strict=True):
            if g is not None and n in allowed[profiles[j]]:
                sq += float(g.double().pow(2).sum())
                summed[n] += g
        naive.append(math.sqrt(sq))
    for n in trainable:  # routed gradients == naive per-example masked gradients
        got = routed[n]
        assert got is not None, n
        assert torch.allclose(got, summed[n], rtol=1e-4, atol=1e-7), n
    assert out.grad_norms is not None
    for got, want in zip(out.grad_norms, naive, strict=True):
        assert got == pytest.approx(want, rel=1e-4)


class _Borrower(nn.Module):  # uses a Linear's weight only outside the Linear (functional call)
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.out = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(nn.functional.linear(x, self.lin.weight, self.lin.bias))


def test_parameter_used_outside_its_module_fails_closed() -> None:
    from attest.errors import GovtuneError

    model = _Borrower()
    built = Built(
        model, lambda items: torch.ones(len(items), 2, 3),
        lambda m, x: m(x).pow(2).mean((1, 2)), dict(model.named_parameters()),
        lambda out: (), lambda: dict(model.state_dict()), ModelSpec("custom-test", {}),
    )  # fmt: skip
    engine = StepEngine(built, OptimizerConfig(lr=0.01), {"all": list(built.trainable)})
    assert engine.grad_norm_method == "routed-l2-v1"  # every module has a rule...
    with pytest.raises(GovtuneError, match="gradient norms: parameter 'lin.bias' got a grad"):
        engine.step([Item("a"), Item("b")], ["all", "all"], 0.01)  # ...but the norm would be short

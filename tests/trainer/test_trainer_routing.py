"""Gradient routing: routed grads equal per-example masked grads; untouched stays bitwise."""

from __future__ import annotations

import torch

from attest.policy import Profile
from trainer.config import ModelConfig
from trainer.loop import builtin_loss
from trainer.model import TinyLM
from trainer.routing import Router, masked_reference_grads

CFG = ModelConfig(d_model=16, n_layers=3, n_heads=2, seq_len=24)
PROFILES = {
    "deep": Profile("deep", ("*",)),
    "surface": Profile("surface", ("blocks.2.*", "ln_f.*", "lm_head.*")),
    # Not nested in the others: makes signatures that are not a chain.
    "mlp0": Profile("mlp0", ("blocks.0.mlp.*", "lm_head.*")),
    "frozen-emb": Profile("frozen-emb", ("*",), ("tok_emb.*", "pos_emb.*")),
}
TEXTS = [f"routing sample {i} with some bytes {'xyz' * i}" for i in range(7)]


def _setup() -> tuple[TinyLM, dict[str, torch.nn.Parameter], dict[str, frozenset[str]]]:
    torch.manual_seed(3)
    model = TinyLM(CFG)
    params = dict(model.named_parameters())
    allowed = {n: frozenset(p.resolve(list(params))) for n, p in PROFILES.items()}
    return model, params, allowed


def test_routed_grads_equal_naive_masked_grads() -> None:
    model, params, allowed = _setup()
    loss_fn = builtin_loss(CFG.seq_len)
    profiles = ["deep", "surface", "mlp0", "surface", "frozen-emb", "mlp0", "surface"]
    Router(params, allowed).backward(loss_fn(model, TEXTS), profiles)
    routed = {n: (None if p.grad is None else p.grad.clone()) for n, p in params.items()}
    naive = masked_reference_grads(loss_fn(model, TEXTS), params, allowed, profiles)
    for name in params:
        assert routed[name] is not None, name  # "deep" allows everything
        assert torch.allclose(routed[name], naive[name], rtol=1e-5, atol=1e-7), name


def test_tensor_outside_every_batch_profile_gets_no_grad() -> None:
    model, params, allowed = _setup()
    profiles = ["surface", "mlp0", "surface"]
    touched = Router(params, allowed).backward(
        builtin_loss(CFG.seq_len)(model, TEXTS[:3]), profiles
    )
    union = allowed["surface"] | allowed["mlp0"]
    assert touched == union
    for name, p in params.items():
        assert (p.grad is None) == (name not in union), name
    naive = masked_reference_grads(
        builtin_loss(CFG.seq_len)(model, TEXTS[:3]), params, allowed, profiles
    )
    for name in union:
        assert torch.allclose(params[name].grad, naive[name], rtol=1e-5, atol=1e-7), name


def test_untouched_tensor_bitwise_unchanged_after_adamw_steps() -> None:
    model, params, allowed = _setup()
    before = {n: p.detach().clone() for n, p in params.items()}
    opt = torch.optim.AdamW(list(params.values()), lr=0.05, weight_decay=0.1)
    router = Router(params, allowed)
    loss_fn = builtin_loss(CFG.seq_len)
    # First a deep step so every tensor has AdamW momentum, then surface-only steps:
    # momentum and weight decay must not move the tensors outside "surface".
    router.backward(loss_fn(model, TEXTS[:2]), ["deep", "deep"])
    opt.step()
    after_deep = {n: p.detach().clone() for n, p in params.items()}
    for _ in range(4):
        router.backward(loss_fn(model, TEXTS[2:5]), ["surface"] * 3)
        opt.step()
    for name, p in params.items():
        if name in allowed["surface"]:
            assert not torch.equal(p, after_deep[name]), name
        else:
            assert torch.equal(p, after_deep[name]), name  # bitwise
            assert not torch.equal(p, before[name]), name  # the deep step did move it


def test_fast_path_masks_equal_naive_masked_grads() -> None:
    model, params, allowed = _setup()
    loss_fn = builtin_loss(CFG.seq_len)
    profiles = ["deep", "surface", "frozen-emb", "surface", "deep", "frozen-emb", "surface"]
    router = Router(params, allowed)
    assert router.prepare(model, profiles)  # surface = cut at 2, frozen-emb = cut at 0
    losses = loss_fn(model, TEXTS)
    router.release(model)
    touched = router.backward(losses, profiles)
    assert touched == set(params)
    routed = {n: p.grad.clone() for n, p in params.items()}
    naive = masked_reference_grads(loss_fn(model, TEXTS), params, allowed, profiles)
    for name in params:
        assert torch.allclose(routed[name], naive[name], rtol=1e-5, atol=1e-7), name


def test_fast_path_forward_values_are_bit_identical() -> None:
    model, params, allowed = _setup()
    loss_fn = builtin_loss(CFG.seq_len)
    plain = loss_fn(model, TEXTS[:3]).detach()
    router = Router(params, allowed)
    assert router.prepare(model, ["surface", "deep", "frozen-emb"])
    masked = loss_fn(model, TEXTS[:3]).detach()
    router.release(model)
    assert torch.equal(plain, masked)


def test_fast_path_without_deep_rows_leaves_lower_tensors_without_grad() -> None:
    model, params, allowed = _setup()
    router = Router(params, allowed)
    assert router.prepare(model, ["surface", "surface"])
    losses = builtin_loss(CFG.seq_len)(model, TEXTS[:2])
    router.release(model)
    assert router.backward(losses, ["surface", "surface"]) == allowed["surface"]
    assert all((p.grad is None) == (n not in allowed["surface"]) for n, p in params.items())


def test_profile_that_is_no_cut_falls_back_to_signature_passes() -> None:
    model, params, allowed = _setup()
    assert not Router(params, allowed).prepare(model, ["deep", "mlp0"])
    assert model.route_masks is None

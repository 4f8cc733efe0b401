"""The step engine's fast paths equal its reference paths.

- Hashing overlapped with AdamW (trainer.overlap, chunked update) gives bitwise the
  weights, optimizer state, leaves and state root of one plain AdamW step followed by
  hashing.
- Ghost norms chosen per Linear call give the norms of the book-kept per-example
  gradients (to float tolerance) and the same routed gradients; both equal the naive
  one-backward-per-example oracle.
"""

from __future__ import annotations

import math

import pytest
import torch

from attest.policy import Profile
from trainer import overlap, registry
from trainer.engine import OptimizerConfig, StepEngine
from trainer.gradnorm import GradNorms, ghost_cheaper
from trainer.registry import Built, Item

TEXTS = [f"fast path sample {i}: {'abc' * i}" for i in range(6)]
MIXES = [
    ["deep", "surface", "deep", "mlp0"],  # signature passes
    ["surface", "surface", "surface", "surface"],  # only the top tensors change
    ["deep", "surface", "deep", "surface"],  # fast-path cut
]


def _built(options: dict[str, int]) -> Built:
    return registry.build(registry.spec_for("tinylm", options, None, seed=5), None)


def _profiles(built: Built, last: int) -> dict[str, frozenset[str]]:
    names = list(built.trainable)
    ps = {
        "deep": Profile("deep", ("*",)),
        "surface": Profile("surface", (f"blocks.{last}.*", "ln_f.*", "lm_head.*")),
        "mlp0": Profile("mlp0", ("blocks.0.mlp.*", "lm_head.*")),
    }
    return {k: frozenset(p.resolve(names)) for k, p in ps.items()}


def test_overlapped_hashing_equals_plain_adamw_then_hash_bitwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(overlap, "MIN_CHUNK_BYTES", 1)  # many chunks even for a tiny model
    options = {"d_model": 16, "n_layers": 3, "n_heads": 2, "seq_len": 24}
    fast_b, ref_b = _built(options), _built(options)
    allowed = _profiles(fast_b, 2)
    opt = OptimizerConfig(lr=0.02, weight_decay=0.1)
    fast = StepEngine(fast_b, opt, allowed, overlap_hashing=True)
    ref = StepEngine(ref_b, opt, allowed)  # the default: hash after AdamW
    assert type(ref.optimizer).step is overlap.OverlapAdamW.step and ref.optimizer.on_chunk is None
    assert fast.optimizer.on_chunk is not None
    parts = overlap.chunks_by_bytes(list(fast.params.values()))
    assert len(parts) > 2  # the chunked update is what runs
    items = [Item(t) for t in TEXTS[:4]]
    for profiles in MIXES + MIXES:
        a, b = fast.step(items, profiles, 0.02), ref.step(items, profiles, 0.02)
        assert a.losses == b.losses and a.grad_norms == b.grad_norms
        assert dict(a.changed) == dict(b.changed) and a.state_root == b.state_root
        assert set(a.changed) <= frozenset().union(*(allowed[p] for p in profiles))
    sa, sb = fast_b.state(), ref_b.state()
    assert all(torch.equal(sa[n], sb[n]) for n in sa)
    oa, ob = fast.optimizer_tensors(), ref.optimizer_tensors()
    assert oa.keys() == ob.keys() and all(torch.equal(oa[k], ob[k]) for k in oa)


def test_hashing_on_every_core_equals_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The byte-balanced bins over the hashing threads give each tensor's own leaf."""
    from trainer import engine as engine_mod
    from trainer import leaves as lv

    built = _built({"d_model": 16, "n_layers": 3, "n_heads": 2, "seq_len": 24})
    state = built.state()
    names = sorted(state)
    monkeypatch.setattr(engine_mod, "PARALLEL_HASH_BYTES", 0)  # bins even for a tiny model
    assert engine_mod._hash_on_every_core(state, names) == lv.leaves(state, names)
    assert engine_mod._hash_on_every_core(state, []) == {}


def test_chunks_by_bytes_keeps_order_and_every_parameter() -> None:
    ps = [torch.nn.Parameter(torch.zeros(n)) for n in (5, 1 << 21, 3, 1 << 21, 1 << 20, 7)]
    parts = overlap.chunks_by_bytes(ps, n=3)
    assert [p for part in parts for p in part] == ps
    # 20 MiB of float32 in 3 parts: cut once a part holds >= 20/3 MiB (and >= 4 MiB)
    assert [len(part) for part in parts] == [2, 2, 2]
    assert overlap.chunks_by_bytes([]) == []


def _naive_norms(
    built: Built, allowed: dict[str, frozenset[str]], profiles: list[str]
) -> list[float]:
    params = dict(built.trainable)
    n = len(profiles)
    out = []
    for j in range(n):
        loss = built.per_example_loss(built.model, built.encode([Item(t) for t in TEXTS[:n]]))[j]
        gs = torch.autograd.grad(loss / n, list(params.values()), allow_unused=True)
        out.append(math.sqrt(sum(float(g.double().pow(2).sum()) for (k, _), g
                                 in zip(params.items(), gs, strict=True)
                                 if g is not None and k in allowed[profiles[j]])))  # fmt: skip
    return out


@pytest.mark.parametrize("profiles", MIXES)
def test_ghost_norms_equal_bookkept_norms_and_naive(profiles: list[str]) -> None:
    # d_model 64, seq 8: T·(in+out) < in·out for every Linear, so every call is a ghost call.
    options = {"d_model": 64, "n_layers": 2, "n_heads": 2, "seq_len": 8}
    assert ghost_cheaper(8, 64, 64) and ghost_cheaper(8, 64, 256)
    built = _built(options)
    allowed = _profiles(built, 1)
    naive = _naive_norms(built, allowed, profiles)
    engine = StepEngine(built, OptimizerConfig(lr=0.0, weight_decay=0.0), allowed)
    ghost, book = engine.norms, GradNorms(built.model, engine.params, ghost=False)
    assert ghost is not None and ghost.ghost
    items = [Item(t) for t in TEXTS[: len(profiles)]]
    got = {}
    for name, norms in (("ghost", ghost), ("book", book)):
        engine.norms = norms
        out = engine.step(items, profiles, 0.0)  # lr 0: the weights stay, .grad stays routed
        grads = {n: None if p.grad is None else p.grad.clone() for n, p in engine.params.items()}
        got[name] = (out.grad_norms, grads)
    (gn, gg), (bn, bg) = got["ghost"], got["book"]
    assert gn is not None and bn is not None
    for g, b, want in zip(gn, bn, naive, strict=True):
        assert g == pytest.approx(b, rel=1e-5) and g == pytest.approx(want, rel=1e-4)
    for n in gg:
        assert (gg[n] is None) == (bg[n] is None), n
        if gg[n] is not None:
            torch.testing.assert_close(gg[n], bg[n], rtol=1e-5, atol=1e-7)

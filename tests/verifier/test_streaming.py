"""The chain check streams: its peak memory does not grow with the number of steps.

Reads are bounded by attest's read chunk and ``limits.record_max`` (the msgpack
unpacker's buffer), both megabytes by default; the test shrinks them so that a
few thousand steps already exceed them and any per-step growth shows.
"""

from __future__ import annotations

import importlib.util
import sys
import tracemalloc
from pathlib import Path
from types import ModuleType

import pytest
from vector_helpers import KEY, VECTORS

from attest.keys import load_public_key
from attest.limits import Limits
from attest.order import DataOrder
from verifier import checks_admissions, checks_bundle, checks_chain, verify
from verifier.context import Context
from verifier.result import Result


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "govtune_vectors_generate", VECTORS / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _long_run(tmp_path: Path, repeats: int) -> Path:
    gen = _generator()

    def plan(p: list) -> list:  # type: ignore[type-arg]
        # `repeats` times the honest run's length, the batches its data order draws
        # (records.md §5.2; nothing quarantined), constant losses (no memorization flag)
        # and changes each batch's profiles allow.
        pool = sorted(set(gen.EXPECTED_ADMITTED) - set(gen.HELDOUT)) + [12, 13]
        order = DataOrder(pool, gen.CONFIG["seed"], gen.CONFIG["batch_size"])
        out = []
        for _ in range(repeats * (len(p) - 1)):
            batch = order.next_batch(set())
            profiles = {gen.EXPECTED_ADMITTED.get(x, "canary") for x in batch}
            changes = (
                ["h.0.attn.w", "head.weight"] if "deep" in profiles
                else ["h.1.mlp.w", "head.bias"] if "shallow" in profiles
                else ["head.bias"]
            )  # fmt: skip
            out.append(gen.StepPlan(batch, changes, loss=[2.0] * len(batch)))
        out[-1].events = list(p[-1].events)  # the last step is the canary's evaluation point
        return out

    dest = tmp_path / f"long-{repeats}"
    gen.build(gen.Variant("long", None, "many steps", {"plan": plan}), dest)
    return dest / "run"


def _chain_peak(run: Path) -> tuple[int, int]:
    """Peak traced memory of the chain layer alone (V4, the part that grows with steps).

    Measured per layer because the weights layer hashes in two threads whose
    buffers may or may not overlap in time: noise that has nothing to do with steps.
    """
    limits = Limits(record_max=64 * 1024)
    ctx = Context(run, run / "provenance", [load_public_key(KEY)], 1, limits, Result(str(run)))
    bundle = checks_bundle.check_bundle(ctx)
    policy = checks_admissions.check_policy(ctx, bundle)
    table = checks_admissions.check_admissions(ctx, bundle, policy)
    tracemalloc.start()
    try:
        checks_chain.check_chain(ctx, bundle, policy, table)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not ctx.result.failures, [f"{f.code}: {f.message}" for f in ctx.result.failures]
    return ctx.result.verified["steps"], peak


def test_chain_memory_does_not_grow_with_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("attest.log.CHUNK", 16 * 1024)
    small_run, large_run = _long_run(tmp_path, 60), _long_run(tmp_path, 1200)
    _chain_peak(small_run)  # warm up: first-call caches are not per step
    small_steps, small = _chain_peak(small_run)
    large_steps, large = _chain_peak(large_run)
    assert large_steps == 20 * small_steps
    # 20x the steps (6000): 40 bytes kept per step would add 228 KiB.
    assert large < small + 192 * 1024, (small, large)

    result = verify(large_run, [KEY], limits=Limits(record_max=64 * 1024))
    assert result.verdict == "PASS"

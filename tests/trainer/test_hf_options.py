"""Training options of issue 11 §2: gradient accumulation in the step engine, the LR schedule,
and their config validation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from support import need

torch = need("torch")

from attest.errors import FormatError  # noqa: E402
from attest.schedule import lr_at  # noqa: E402
from trainer import registry  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.engine import OptimizerConfig, StepEngine  # noqa: E402
from trainer.registry import Item  # noqa: E402

TINY = {"vocab": 256, "d_model": 16, "n_layers": 2, "n_heads": 2, "seq_len": 16}
ITEMS = [Item(t) for t in ("governed text one", "another", "third example!", "four", "five")]


def _engine(accum: int) -> tuple[StepEngine, dict[str, frozenset[str]]]:
    spec = registry.spec_for("tinylm", TINY, None, seed=0)
    built = registry.build(spec, None)
    names = sorted(built.trainable)
    surface = [n for n in names if n.startswith(("blocks.1.", "ln_f", "lm_head"))]
    profiles = {"deep": names, "surface": surface}
    return StepEngine(built, OptimizerConfig(lr=1e-2), profiles, grad_accum=accum), {
        k: frozenset(v) for k, v in profiles.items()
    }


def test_grad_accum_equals_one_batch() -> None:
    """k micro-batches (uneven: 5 = 2+2+1) give the unsplit step's gradients, losses and norms."""
    profiles = ["deep", "surface", "surface", "deep", "surface"]
    one, allowed = _engine(1)
    three, _ = _engine(3)
    # lr 0: compare the gradients the step left (AdamW's first update is ~lr*sign(g), which
    # would amplify float rounding of near-zero gradients into visible weight differences)
    a = one.step(ITEMS, profiles, 0.0)
    b = three.step(ITEMS, profiles, 0.0)
    assert a.losses == pytest.approx(b.losses, rel=1e-6)
    assert a.grad_norms is not None and b.grad_norms is not None
    assert a.grad_norms == pytest.approx(b.grad_norms, rel=1e-4)
    for n, p in one.params.items():
        q = three.params[n]
        assert (p.grad is None) == (q.grad is None), n
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-7)


def test_grad_accum_untouched_tensor_unchanged() -> None:
    eng, allowed = _engine(2)
    before = {n: t.clone() for n, t in eng.built.state().items()}
    out = eng.step(ITEMS[:4], ["surface"] * 4, 1e-2)
    after = eng.built.state()
    for n in before:
        if n not in allowed["surface"]:
            assert torch.equal(before[n], after[n]) and n not in out.changed, n


@pytest.mark.parametrize(
    ("schedule", "warmup", "want"),
    [
        ("constant", 0, [1.0, 1.0, 1.0, 1.0]),
        ("constant", 2, [0.5, 1.0, 1.0, 1.0]),
        ("linear", 0, [1.0, 0.75, 0.5, 0.25]),
        ("linear", 2, [0.5, 1.0, 1.0, 0.5]),
        (
            "cosine",
            0,
            [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2],
        ),
    ],
)
def test_lr_schedule(schedule: str, warmup: int, want: list[float]) -> None:
    got = [lr_at(t, lr=1.0, steps=4, schedule=schedule, warmup=warmup) for t in range(1, 5)]
    assert got == pytest.approx(want)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("grad_accum", 0, r"config.grad_accum: expected an integer in \[1, batch_size=8\]"),
        ("grad_accum", 9, r"config.grad_accum: expected an integer in \[1, batch_size=8\]"),
        ("schedule", "step", r"config.schedule: expected one of"),
        ("warmup_steps", -1, r"config.warmup_steps: expected a non-negative integer"),
        ("eval_examples", True, r"config.eval_examples: expected a non-negative integer"),
    ],
)
def test_option_validation(field: str, value: object, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        TrainConfig.from_dict({"dataset": "d.jsonl", "policy": "p.toml", field: value})


def test_options_are_signed() -> None:
    a = TrainConfig.from_dict({"dataset": "d.jsonl", "policy": "p.toml"})
    b = TrainConfig.from_dict({"dataset": "d.jsonl", "policy": "p.toml", "schedule": "cosine"})
    assert a.to_dict()["schedule"] == "constant" and a.digest() != b.digest()


def test_run_with_options_verifies(tmp_path: Path) -> None:
    """A tiny run with grad_accum, warmup + linear decay and an eval split: each step records
    its scheduled lr, eval examples never enter a batch, the eval loss is recorded, and the
    run verifies."""
    from attest.log import iter_log
    from attest.predicates import STEPS_FILE
    from attest.records import StartRecord, StepRecord
    from tests.support.runs import (
        DUPLICATES_AND_LENGTH,
        licenses,
        producer_key,
        profiles,
        train_in_process,
        write_inputs,
    )
    from verifier import api

    rows = [{"text": f"example number {i} of the governed corpus", "license": "MIT",
             "source": "s", "data_class": "docs", "consent": False} for i in range(24)]  # fmt: skip
    policy = f'version = "0.1"\nname = "opts"\n{licenses()}{DUPLICATES_AND_LENGTH}{profiles()}'
    policy += "[memorization]\nholdout = 2\n"
    write_inputs(tmp_path, rows, policy.encode())
    key, pub = producer_key(tmp_path)
    config = TrainConfig.from_dict(
        {"dataset": "dataset.jsonl", "policy": "policy.toml", "steps": 3, "batch_size": 4,
         "grad_accum": 2, "schedule": "linear", "warmup_steps": 1, "eval_examples": 3,
         "checkpoint_every": 0, "lr": 1e-2, "model": TINY},
        base_dir=tmp_path,
    )  # fmt: skip
    train_in_process(config, tmp_path / "run", key)
    recs = [r.value for r in iter_log(tmp_path / "run" / "provenance" / STEPS_FILE)]
    start = StartRecord.from_record(recs[0])
    evals = set(start.extra["evalSplit"])
    assert len(evals) == 3
    steps = [StepRecord.from_record(r) for r in recs[1:]]
    assert [s.lr for s in steps] == pytest.approx([1e-2, 1e-2, 5e-3])
    assert not evals & {x for s in steps for x in s.batch}
    result = api.verify(tmp_path / "run", keys=[pub])
    assert result, [f.to_dict() for f in result.failures]

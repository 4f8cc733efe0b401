"""Audit cost of the replay layer (verifier/replay.py) against Proof-of-Learning's top-Q.

Trains one governed run in-process (the built-in model, checkpoints every K steps),
then times `verifier.verify(..., replay=q)` for several q and compares:

- seconds to replay q random steps vs q x the recorded mean step time (the signed
  training-run startedOn..finishedOn over its steps, second resolution) and vs the
  mean step time measured here while training;
- the cost as a fraction of the whole training run;
- Proof-of-Learning's top-Q verification of the same run (Jia et al. 2021): replaying
  the Q intervals of K steps with the largest updates, measured with the same engine
  (random sample switched off, top-Q only).

Run:  . /tmp/v/bin/activate && python bench/bench_replay.py [--steps 120 --every 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# tests/support: the tiny-run inputs and in-process training the tests use. The repository
# root goes first so that tests/attest etc. cannot shadow the real packages.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.runs import (  # noqa: E402
    DUPLICATES_AND_LENGTH,
    producer_key,
    profiles,
    train_in_process,
    write_inputs,
)

POLICY = (
    """\
version = "0.1"
name = "bench-replay"
[licenses]
allow = ["permissive", "weak-copyleft"]
deny = []
[licenses.classes]
"MIT" = "permissive"
"LGPL-3.0-only" = "weak-copyleft"
[consent]
required = []
[sources]
allow = ["bench:*"]
deny = []
[pii]
detect = ["email"]
action = "mask"
"""
    + DUPLICATES_AND_LENGTH
    + profiles("blocks.3.*")
    + """\
[memorization]
action = "flag"
loss_drop_max = 100.0
holdout = 8
[canaries]
count = 1
repeats = 4
template = "the bench access code is {secret}."
digits = 6
candidates = 50
profile = "deep"
"""
).encode()


# The demo's model size of govtune v0.1, fixed here so numbers stay comparable.
MODEL = {"vocab": 256, "d_model": 128, "n_layers": 4, "n_heads": 4, "seq_len": 128}


def _dataset(n: int) -> list[dict[str, Any]]:
    rnd = random.Random(7)
    words = [
        "replay",
        "audit",
        "governed",
        "step",
        "batch",
        "tensor",
        "leaf",
        "root",
        "chain",
        "head",
        "seed",
        "proof",
        "learning",
    ]
    return [
        {
            "text": f"{i}: " + " ".join(rnd.choice(words) for _ in range(30)),
            "license": ("MIT", "LGPL-3.0-only")[i % 2],
            "source": f"bench:{i}",
            "data_class": "public",
            "consent": False,
        }
        for i in range(n)
    ]


def train(folder: Path, steps: int, every: int, batch: int) -> tuple[Path, Path, list[float]]:
    from trainer.config import ModelConfig, TrainConfig

    write_inputs(folder, _dataset(160), POLICY)
    key, pub = producer_key(folder)
    config = TrainConfig(
        dataset="dataset.jsonl",
        policy="policy.toml",
        model=ModelConfig(**MODEL),
        steps=steps,
        batch_size=batch,
        lr=2e-3,
        seed=0,
        threads=1,
        deterministic=True,
        checkpoint_every=every,
        base_dir=str(folder),
    )
    stamps: list[float] = [time.perf_counter()]
    train_in_process(
        config,
        folder / "run",
        key,
        progress=lambda s, t, loss: stamps.append(time.perf_counter()),
    )
    return folder / "run", pub, [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def replay_once(
    run: Path, pub: Path, folder: Path, n: int, top: int
) -> tuple[float, dict[str, Any], bool]:
    """verify with replay: n random steps and the top-`top` intervals (n = 0: PoL top-Q only)."""
    from verifier import api, replay

    kwargs: dict[str, Any] = {"data": folder / "dataset.jsonl", "openings": run / "private"}
    if n > 0:
        t0 = time.perf_counter()
        result = api.verify(run, keys=[pub], replay=n, replay_top=top, **kwargs)
        return time.perf_counter() - t0, result.verified["replay"], bool(result)
    # Proof-of-Learning's top-Q alone (no random draw) is not an audit govtune offers
    # (top-Q is never used alone), so drive the layer directly for the comparison.
    original = replay.check_replay

    def layer(ctx: Any, _n: int, data: Any, openings: Any, base: Any, **kw: Any) -> None:
        original(ctx, 0, data, openings, base, top=top, nonce=kw.get("nonce", b""),
                 tolerance=kw.get("tolerance"))  # fmt: skip

    replay.check_replay = layer  # type: ignore[assignment]
    try:
        t0 = time.perf_counter()
        result = api.verify(run, keys=[pub], replay=1, replay_top=top, **kwargs)
        return time.perf_counter() - t0, result.verified["replay"], bool(result)
    finally:
        replay.check_replay = original


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--every", type=int, default=20, help="checkpoint every K steps")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--q", type=int, nargs="*", default=[1, 2, 4, 8])
    args = ap.parse_args(argv)
    import torch

    from verifier import api

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        run, pub, step_times = train(folder, args.steps, args.every, args.batch)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        base_verify = api.verify(
            run, keys=[pub], data=folder / "dataset.jsonl", openings=run / "private"
        )
        verify_s = time.perf_counter() - t0
        from attest.bundle import read_bundle
        from attest.predicates import TRAINING_TYPE
        from attest.statement import Statement

        pred = next(
            p
            for p in (
                Statement.from_payload(x.envelope.payload)
                for x in read_bundle(run / "provenance" / "bundle.intoto.jsonl")
            )
            if p.predicate_type == TRAINING_TYPE
        ).predicate
        steps = pred["steps"]
        span = dt.datetime.fromisoformat(pred["finishedOn"]) - dt.datetime.fromisoformat(
            pred["startedOn"]
        )
        recorded_step = span.total_seconds() / steps
        measured_step = sum(step_times) / len(step_times)
        print(
            f"run: {steps} steps, K = {args.every}, model {pred['config']['model']}, "
            f"batch {args.batch}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
        )
        print(
            f"training: {train_s:.2f} s wall (incl. admission, signing); recorded mean step "
            f"{recorded_step * 1000:.1f} ms (startedOn..finishedOn / steps, 1 s resolution); "
            f"measured mean step {measured_step * 1000:.1f} ms"
        )
        print(
            f"structural verify (no replay): {verify_s:.2f} s, "
            f"verdict {'PASS' if base_verify else 'FAIL'}"
        )
        rows = []
        header = (
            f"{'audit':<26}{'steps run':>10}{'replay s':>10}{'verify s':>10}{'q x rec':>9}"
            f"{'q x meas':>9}{'ratio':>7}{'of train':>10}{'ms/step':>9}{'p(det)':>8}  verdict"
        )
        print(header)
        cases = [(f"random q={q}", q, 0) for q in args.q]
        cases += [(f"random q={q} + top-1", q, 1) for q in args.q[:1]]
        cases += [(f"PoL top-Q, Q={q}", 0, q) for q in (1, 2)]
        for label, n, top in cases:
            total, rep, ok = replay_once(run, pub, folder, n, top)
            units = n if n else top * args.every
            ran = len(rep["steps"])  # whole intervals re-executed (V9.2)
            ideal = units * measured_step
            rows.append(
                {
                    "case": label,
                    "n": n,
                    "top": top,
                    "stepsExecuted": ran,
                    "intervals": rep["intervals"],
                    "detectionProbability": rep["detectionProbability"],
                    "replaySeconds": rep["seconds"],
                    "verifySeconds": round(total, 3),
                    "idealSeconds": round(ideal, 3),
                    "recordedIdealSeconds": round(units * recorded_step, 3),
                    "fractionOfTraining": round(rep["seconds"] / train_s, 4),
                    "pass": ok,
                }
            )
            print(
                f"{label:<26}{ran:>10}{rep['seconds']:>10.2f}{total:>10.2f}"
                f"{units * recorded_step:>9.2f}{ideal:>9.2f}"
                f"{rep['seconds'] / max(ideal, 1e-9):>7.2f}{rep['seconds'] / train_s:>10.1%}"
                f"{1000 * rep['seconds'] / max(ran, 1):>9.1f}"
                f"{rep['detectionProbability']:>8.3f}  "
                f"{'PASS' if ok else 'FAIL'}"
            )
        print("'q x rec' / 'q x meas' = (q random steps, or Q x K steps for PoL) x the recorded /")
        print("measured mean step time; 'ratio' = replay s / 'q x meas'; 'of train' = replay s /")
        print("training wall time. A random step costs its whole interval between stored states")
        print("(K steps, V9.2), as a PoL interval does; 'ms/step' = replay s / steps run;")
        print("'p(det)' = the least probability that one forged step is caught (V9.5).")
        print(
            json.dumps(
                {
                    "steps": steps,
                    "K": args.every,
                    "trainSeconds": round(train_s, 3),
                    "recordedStepSeconds": recorded_step,
                    "measuredStepSeconds": measured_step,
                    "rows": rows,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

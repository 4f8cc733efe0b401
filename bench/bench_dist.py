"""Governed 2-process DDP step vs plain PyTorch DDP: same model, data, AdamW, gloo on CPU.

    python bench/bench_dist.py                    # d=128, 4 layers, seq 128, global batch 16
    python bench/bench_dist.py --d-model 64 --layers 2 --seq 64   # a 9 ms step: overheads only

Two worker processes (torch.multiprocessing, gloo, one thread each) each hold both sides,
started from the same weights, and run them interleaved (one governed step, one plain,
...) on the same global batches, so a change in machine load biases neither side. The
governed step is the trainer's own: `trainer.dist.Dist.step` (this rank's slice, routing
with two depth profiles mixed in every batch, per-example routed gradient norms, one
all-reduce per gradient group, AdamW, leaf hashes of the changed tensors, the gather of
losses and norms) plus rank 0 appending a StepRecord to a real msgpack log. The plain
step is `torch.nn.parallel.DistributedDataParallel`: forward of the rank's slice, mean
loss, backward (DDP's bucketed all-reduce), AdamW. Each timed step starts after a
barrier. Rank 0 prints both medians and one JSON line (target ratio <= 1.15).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attest.log import LogWriter  # noqa: E402
from attest.ranks import positions  # noqa: E402
from attest.records import StepRecord  # noqa: E402
from bench import bench_trainer  # noqa: E402
from trainer import registry  # noqa: E402
from trainer.config import ModelConfig, TrainConfig  # noqa: E402
from trainer.dist import Dist, World  # noqa: E402
from trainer.engine import StepEngine  # noqa: E402
from trainer.loop import optimizer_config, set_determinism  # noqa: E402
from trainer.registry import Item  # noqa: E402

WORDS = bench_trainer.WORDS  # the same synthetic vocabulary as the single-process rows


def _texts(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(WORDS), (n, 24), generator=g).tolist()
    return [" ".join(WORDS[i] for i in row) for row in idx]


def _worker(rank: int, args: argparse.Namespace, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    mc = ModelConfig(d_model=args.d_model, n_layers=args.layers, n_heads=4, seq_len=args.seq)
    cfg = TrainConfig(dataset="-", policy="-", model=mc, lr=1e-3, seed=0, threads=1)
    set_determinism(cfg)
    spec = registry.spec_for("tinylm", {**mc.__dict__}, None, seed=0)
    built = registry.build(spec, None)
    names = list(built.trainable)
    last = args.layers - 1
    surface = [n for n in names if n.startswith((f"blocks.{last}.", "ln_f.", "lm_head."))]
    profiles = {"deep": names, "surface": surface}
    d = Dist(World(rank, 2, rank), "cpu", 120)
    engine = StepEngine(built, optimizer_config(cfg), profiles)
    plain_model = registry.build(spec, None).model
    plain_model.load_state_dict(built.model.state_dict())
    ddp = torch.nn.parallel.DistributedDataParallel(plain_model)
    opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.01)
    log = LogWriter(Path(out) / "steps.msgpack") if rank == 0 else None
    gov: list[float] = []
    plain: list[float] = []
    b = args.batch
    for step in range(1, args.steps + args.warmup + 1):
        texts = _texts(b, step)
        items = [Item(t, {}) for t in texts]
        profs = ["deep" if j % 2 else "surface" for j in range(b)]  # both mixed in every batch
        d.barrier()
        t0 = time.perf_counter()
        outcome, ranks = d.step(engine, items, profs, 1e-3)
        if log is not None:
            log.append(StepRecord(step, tuple(range(b)), tuple(profs), outcome.losses,
                                  outcome.grad_norms, 1e-3, outcome.changed, outcome.state_root,
                                  (), None, None, ranks).to_record())  # fmt: skip
        t1 = time.perf_counter()
        d.barrier()
        t2 = time.perf_counter()
        rows = positions(b, 2, rank)
        batch = built.encode([items[j] for j in rows])
        loss = built.per_example_loss(ddp, batch).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # sync: DDP's bucketed all-reduce
        opt.step()
        t3 = time.perf_counter()
        if step > args.warmup:
            gov.append((t1 - t0) * 1e3)
            plain.append((t3 - t2) * 1e3)
    if log is not None:
        log.close()
    if rank == 0:
        print(f"plain DDP step    median {statistics.median(plain):.2f} ms")
        print(f"governed DDP step median {statistics.median(gov):.2f} ms")
        print(f"ratio {statistics.median(gov) / statistics.median(plain):.3f} (target <= 1.15)")
        print(json.dumps({"plain_ms": plain, "governed_ms": gov}))
    d.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    # The single-process TinyLM figure's model (bench_trainer.py), so the two compare.
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16, help="global batch (8 per rank)")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(args, port, out), nprocs=2, join=True)


if __name__ == "__main__":
    main()

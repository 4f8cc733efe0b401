"""Governed step time vs a plain PyTorch loop: same model, data, optimizer, same process.

    python bench/bench_trainer.py                 # d=128, 4 layers, seq 128, batch 16, 40 steps
    python bench/bench_trainer.py --steps 100 --d-model 96
    python bench/bench_trainer.py --surface 'blocks.{last}.mlp.*,lm_head.*'  # no fast path

Both sides start from the same initial weights and see the same batches. Steps are
interleaved (one governed, one plain, ...) so that a change in machine load during the
benchmark biases neither side. The governed step is the trainer's own code, as in
trainer/loop.py: `train_step` (forward, gradient routing with two depth profiles
mixed in every batch, AdamW), `hash_changed` (leaf hashes of changed tensors), the
state root, the memorization probe (`Monitor.observe`) and a StepRecord appended to a
real msgpack step log. The plain step is forward, mean loss, backward, AdamW.
Prints the ratio of median step times (target <= 1.15).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attest.log import LogWriter  # noqa: E402
from attest.policy import Canaries, Memorization, Profile  # noqa: E402
from attest.records import StepRecord  # noqa: E402
from attest.tensors import state_root  # noqa: E402
from trainer import leaves as lv  # noqa: E402
from trainer.config import ModelConfig, TrainConfig  # noqa: E402
from trainer.loop import builtin_loss, hash_changed, make_optimizer, set_determinism, train_step  # noqa: E402
from trainer.memorization import Monitor  # noqa: E402
from trainer.model import TinyLM  # noqa: E402
from trainer.routing import Router  # noqa: E402

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "by",
    "this",
    "are",
    "from",
    "or",
]


def corpus(n: int, length: int) -> list[str]:
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        idx = torch.randint(len(WORDS), (length // 3,), generator=g).tolist()
        out.append((f"example {i}: " + " ".join(WORDS[j] for j in idx))[:length])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--surface", default="blocks.{last}.*,ln_f.*,lm_head.*",
        help="patterns of the second profile; one that is not a depth cut (e.g. "
        "'blocks.{last}.mlp.*,lm_head.*') measures the general signature-pass routing",
    )  # fmt: skip
    args = ap.parse_args()
    config = TrainConfig(
        dataset="-", policy="-", batch_size=args.batch, threads=args.threads,
        model=ModelConfig(d_model=args.d_model, n_layers=args.layers, n_heads=4, seq_len=args.seq),
    )  # fmt: skip
    set_determinism(config)
    gov_model = TinyLM(config.model)
    plain_model = copy.deepcopy(gov_model)
    loss_fn = builtin_loss(args.seq)
    texts = corpus(args.batch * 16, args.seq + 1)

    params = {n: p for n, p in gov_model.named_parameters() if p.requires_grad}
    names = list(params)
    profiles = {
        "deep": Profile("deep", ("*",)).resolve(names),
        "surface": Profile(
            "surface", tuple(args.surface.format(last=args.layers - 1).split(","))
        ).resolve(names),
    }  # fmt: skip
    router = Router(params, profiles)
    fast = router.prepare(gov_model, ["deep", "surface"])
    router.release(gov_model)
    gov_opt = make_optimizer(params, config)
    plain_opt = make_optimizer(dict(plain_model.named_parameters()), config)
    monitor = Monitor(Memorization(loss_drop_max=1.5), Canaries(), [], {}, bytes(32))
    current = lv.leaves(gov_model.state_dict())
    gov_t: list[float] = []
    plain_t: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, LogWriter(Path(tmp) / "steps.msgpack") as log:
        for step in range(1, args.steps + 1):
            lo = (step * args.batch) % len(texts)
            batch_idx = list(range(lo, lo + args.batch))
            batch = [texts[i] for i in batch_idx]
            batch_profiles = ["deep" if i % 2 else "surface" for i in batch_idx]  # both, always

            t0 = time.perf_counter()  # --- governed step, as trainer/loop.py runs it
            rng = lv.sha256_tensor(torch.get_rng_state())
            losses = train_step(gov_model, loss_fn, router, gov_opt, batch, batch_profiles)
            changed = hash_changed(params, current)
            root = state_root(current)
            loss_values = [float(x) for x in losses.detach().tolist()]
            events = monitor.observe(batch_idx, loss_values)
            log.append(
                StepRecord(step, tuple(batch_idx), tuple(batch_profiles), tuple(loss_values),
                           tuple(0.0 for _ in batch), config.lr, changed, root, tuple(events),
                           None, rng).to_record()
            )  # fmt: skip
            gov_t.append(time.perf_counter() - t0)

            t0 = time.perf_counter()  # --- plain step
            loss = loss_fn(plain_model, batch).mean()
            plain_opt.zero_grad(set_to_none=True)
            loss.backward()
            plain_opt.step()
            loss.item()
            plain_t.append(time.perf_counter() - t0)
    g, p = statistics.median(gov_t[2:]), statistics.median(plain_t[2:])
    print(
        f"model d={args.d_model} layers={args.layers} seq={args.seq} batch={args.batch} "
        f"threads={args.threads}; {args.steps} interleaved steps, two profiles in every batch; "
        f"routing: {'stop-gradient masks (one backward)' if fast else 'signature passes'}"
    )
    print(f"plain step    median {p * 1000:8.2f} ms")
    print(f"governed step median {g * 1000:8.2f} ms")
    print(f"ratio governed/plain: {g / p:.3f}  (target <= 1.15)")


if __name__ == "__main__":
    main()

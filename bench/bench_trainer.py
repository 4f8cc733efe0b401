"""Governed step time vs a plain PyTorch loop: same model, data, optimizer, same process.

    python bench/bench_trainer.py                 # d=128, 4 layers, seq 128, batch 16, 40 steps
    python bench/bench_trainer.py --steps 100 --d-model 96
    python bench/bench_trainer.py --surface 'blocks.{last}.mlp.*,lm_head.*'  # no fast path
    python bench/bench_trainer.py --mix one --json  # one profile per batch; every sample

Both sides start from the same initial weights and see the same batches. Steps are
interleaved (one governed, one plain, ...) so that a change in machine load during the
benchmark biases neither side. The governed step is the trainer's own code, as in
trainer/loop.py: `StepEngine.step` (forward, gradient routing with two depth profiles
mixed in every batch (``--mix one``: every example "deep"), per-example routed
gradient norms, AdamW, leaf hashes of changed tensors, state root), the memorization
probe (`Monitor.observe`) and a StepRecord appended to a real msgpack step log.
`--no-grad-norms` switches the norms off.
The plain step is forward, mean loss, backward, AdamW.
Prints the ratio of median step times (targets: <= 1.10 one profile, <= 1.15 two).

`figures(quick)` is what ``python -m bench`` (bench/fig_models.py) reads: it runs this
script and bench/bench_hf.py as child processes and returns their paired samples.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attest.log import LogWriter  # noqa: E402
from attest.policy import Canaries, Memorization, Profile  # noqa: E402
from attest.records import StepRecord  # noqa: E402
from trainer import leaves as lv  # noqa: E402
from trainer import registry  # noqa: E402
from trainer.config import ModelConfig, TrainConfig  # noqa: E402
from trainer.engine import StepEngine  # noqa: E402
from trainer.loop import optimizer_config, set_determinism  # noqa: E402
from trainer.memorization import Monitor  # noqa: E402
from trainer.registry import Item  # noqa: E402

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
    ap.add_argument("--no-grad-norms", action="store_true", help="per-example norms off")
    ap.add_argument("--mix", choices=("one", "two"), default="two",
                    help="profiles per batch: one ('deep' for all) or two mixed")  # fmt: skip
    ap.add_argument("--json", action="store_true", help="also print every sample (JSON line)")
    args = ap.parse_args()
    config = TrainConfig(
        dataset="-", policy="-", batch_size=args.batch, threads=args.threads,
        model=ModelConfig(d_model=args.d_model, n_layers=args.layers, n_heads=4, seq_len=args.seq),
    )  # fmt: skip
    set_determinism(config)
    options = {"d_model": args.d_model, "n_layers": args.layers, "n_heads": 4, "seq_len": args.seq}
    built = registry.build(registry.spec_for("tinylm", options, None, seed=0), None)
    gov_model = built.model
    plain_model = copy.deepcopy(gov_model)
    texts = corpus(args.batch * 16, args.seq + 1)

    names = list(built.trainable)
    profiles = {
        "deep": Profile("deep", ("*",)).resolve(names),
        "surface": Profile(
            "surface", tuple(args.surface.format(last=args.layers - 1).split(","))
        ).resolve(names),
    }  # fmt: skip
    engine = StepEngine(built, optimizer_config(config), profiles,
                        grad_norms=not args.no_grad_norms)  # fmt: skip
    fast = engine.router.prepare(gov_model, ["deep", "surface"])
    engine.router.release(gov_model)
    o = optimizer_config(config)
    plain_opt = torch.optim.AdamW(list(plain_model.parameters()), lr=o.lr, betas=o.betas,
                                  weight_decay=o.weight_decay)  # fmt: skip
    monitor = Monitor(Memorization(loss_drop_max=1.5), Canaries(), [], {}, bytes(32))
    gov_t: list[float] = []
    plain_t: list[float] = []

    def governed(step: int, batch_idx: list[int], profiles: list[str], log: LogWriter) -> None:
        rng = lv.sha256_tensor(torch.get_rng_state())  # --- as trainer/loop.py runs it
        out = engine.step([Item(texts[i]) for i in batch_idx], profiles, config.lr)
        events = monitor.observe(batch_idx, list(out.losses))
        log.append(
            StepRecord(step, tuple(batch_idx), tuple(profiles), out.losses, out.grad_norms,
                       config.lr, out.changed, out.state_root, tuple(events), None,
                       rng).to_record()
        )  # fmt: skip

    def plain(batch_idx: list[int]) -> None:
        items = [Item(texts[i]) for i in batch_idx]
        loss = built.per_example_loss(plain_model, built.encode(items)).mean()
        plain_opt.zero_grad(set_to_none=True)
        loss.backward()
        plain_opt.step()
        loss.item()

    with tempfile.TemporaryDirectory() as tmp, LogWriter(Path(tmp) / "steps.msgpack") as log:
        for step in range(1, args.steps + 1):
            lo = (step * args.batch) % len(texts)
            batch_idx = list(range(lo, lo + args.batch))
            batch_profiles = (["deep" if i % 2 else "surface" for i in batch_idx]  # both, always
                              if args.mix == "two" else ["deep"] * len(batch_idx))  # fmt: skip

            # Alternate the order within each pair: neither side always runs second.
            for side in ("governed", "plain")[:: 1 if step % 2 else -1]:
                t0 = time.perf_counter()
                if side == "governed":
                    governed(step, batch_idx, batch_profiles, log)
                    gov_t.append(time.perf_counter() - t0)
                else:
                    plain(batch_idx)
                    plain_t.append(time.perf_counter() - t0)
    g, p = statistics.median(gov_t[2:]), statistics.median(plain_t[2:])
    print(
        f"model d={args.d_model} layers={args.layers} seq={args.seq} batch={args.batch} "
        f"threads={args.threads}; {args.steps} interleaved steps, "
        f"{'two profiles in every batch' if args.mix == 'two' else 'one profile per batch'}; "
        f"routing: {'stop-gradient masks (one backward)' if fast else 'signature passes'}; "
        f"grad norms: {engine.grad_norm_method or 'off'}"
    )
    print(f"plain step    median {p * 1000:8.2f} ms")
    print(f"governed step median {g * 1000:8.2f} ms")
    bound = 1.15 if args.mix == "two" else 1.10
    print(f"ratio governed/plain: {g / p:.3f}  (target <= {bound})")
    if args.json:  # the first two pairs warm caches and allocators
        print(json.dumps({"governed_s": gov_t[2:], "plain_s": plain_t[2:], "target": bound}))


def _child_json(cmd: list[str]) -> list[dict[str, Any]]:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd[1:3])}: exit {r.returncode}: {r.stderr[-600:]}")
    return lines


def figures(quick: bool) -> list[dict[str, Any]]:
    """Rows for python -m bench: name, governed_ms and plain_ms (paired samples), target.

    Quick: the built-in TinyLM (both mixes) and MiniLM full fine-tune and LoRA (both
    mixes); full adds SmolLM2-135M + LoRA (about 20 s a step on 2 cores) when
    scripts/convert-smollm2 has made its cache.
    """
    here = Path(__file__).resolve().parent
    rows: list[dict[str, Any]] = []
    steps = 14 if quick else 42
    for mix, what in (("one", "one profile per batch"), ("two", "two mixed profiles")):
        d = _child_json([sys.executable, str(here / "bench_trainer.py"), "--steps", str(steps),
                         "--mix", mix, "--json"])[-1]  # fmt: skip
        rows.append(_row(f"built-in TinyLM (d=128, 4 layers, batch 16 x 128 bytes), {what}", d))
    models = ["minilm-full", "minilm-lora"]
    if not quick and (Path.home() / ".cache/govtune/smollm2-135m-instruct-f32").is_dir():
        models.append("smollm2-lora")
    for model in models:
        hf_steps = ("3" if quick else "6") if model == "smollm2-lora" else ("6" if quick else "12")
        for d in _child_json([sys.executable, str(here / "bench_hf.py"), "--json", "--models",
                              model, "--steps", hf_steps]):  # fmt: skip
            what = "one profile per batch" if d["profiles"] == "one" else "two mixed profiles"
            rows.append(_row(f"{d['title']}, {what}", d))
    return rows


def _row(name: str, d: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": f"{name}; gradient norms on",
        "governed_ms": [x * 1000 for x in d["governed_s"]],
        "plain_ms": [x * 1000 for x in d["plain_s"]],
        "target": f"<= {d['target']}",
        "target_value": d["target"],
    }


if __name__ == "__main__":
    main()

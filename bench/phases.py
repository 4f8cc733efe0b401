"""Where a governed step's extra time goes: its phases against the plain step's, side by side.

    python bench/phases.py                       # TinyLM d=128 (bench_trainer.py's model)
    python bench/phases.py --model minilm-full   # the MiniLM classifier, full fine-tune
    python bench/phases.py --mix two             # two mixed profiles in every batch

The governed step is taken apart as `StepEngine.step` runs it (forward with the norm
hooks armed and the routing masks set, routed backward, AdamW, hashing
the changed tensors after it); the plain step as forward, backward, AdamW. Steps are
interleaved, the first four dropped; the medians are printed in ms. A profiling aid for
bench/PERFORMANCE-notes.md, not a figure of `python -m bench`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_hf  # noqa: E402
import bench_trainer  # noqa: E402

from attest.policy import Profile  # noqa: E402
from trainer import registry  # noqa: E402
from trainer.engine import OptimizerConfig, StepEngine  # noqa: E402
from trainer.hf import resolve_base_from  # noqa: E402
from trainer.registry import Built, Item  # noqa: E402


def _tinylm() -> tuple[Built, dict[str, tuple[str, ...]], list[list[Item]], float]:
    opts = {"d_model": 128, "n_layers": 4, "n_heads": 4, "seq_len": 128}
    built = registry.build(registry.spec_for("tinylm", opts, None, seed=0), None)
    names = list(built.trainable)
    surface = Profile("surface", ("blocks.3.*", "ln_f.*", "lm_head.*")).resolve(names)
    texts = bench_trainer.corpus(16 * 16, 129)
    batches = [[Item(t) for t in texts[k * 16 : k * 16 + 16]] for k in range(16)]
    return built, {"deep": tuple(names), "surface": surface}, batches, 2e-3


def _minilm() -> tuple[Built, dict[str, tuple[str, ...]], list[list[Item]], float]:
    kind, options, base_ref, example, size, layers, lr = bench_hf.MODELS["minilm-full"]
    base = resolve_base_from(base_ref)
    built = registry.build(registry.spec_for(kind, options, base, seed=0), base)
    names = list(built.trainable)
    surface = Profile("surface", ("*classifier*", "*pooler*"), (), (layers,)).resolve(names)
    return built, {"deep": tuple(sorted(names)), "surface": surface}, \
        bench_hf.batches(example, 16, size), lr  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", choices=("tinylm", "minilm-full"), default="tinylm")
    ap.add_argument("--mix", choices=("one", "two"), default="one")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    built, profiles, batches, lr = _tinylm() if args.model == "tinylm" else _minilm()
    optim = OptimizerConfig(lr=lr)
    engine = StepEngine(built, optim, profiles)
    plain_model = copy.deepcopy(built.model)
    opt = torch.optim.AdamW([p for p in plain_model.parameters() if p.requires_grad], lr=lr,
                            betas=optim.betas, weight_decay=optim.weight_decay)  # fmt: skip
    times: dict[str, list[float]] = {}

    def timed(phases: list[tuple[str, Callable[[], object]]]) -> None:
        for name, fn in phases:
            t0 = time.perf_counter()
            fn()
            times.setdefault(name, []).append(time.perf_counter() - t0)

    def governed(items: list[Item]) -> None:
        n = len(items)
        profs = ["deep"] * n if args.mix == "one" else ["deep", "surface"] * (n // 2)
        norms, router, model = engine.norms, engine.router, built.model
        assert norms is not None
        got: dict[str, torch.Tensor] = {}

        def forward() -> None:
            batch = built.encode(items)
            norms.arm(n)
            router.prepare(model, profs)
            got["losses"] = built.per_example_loss(model, batch)
            router.release(model)

        def backward() -> None:
            router.backward(got["losses"], profs, norms.activate)
            norms.disarm()
            norms.result()

        timed([("forward", forward), ("backward + norms", backward),
               ("AdamW", engine.optimizer.step),
               ("hashing after AdamW", engine._hash_changed)])  # fmt: skip

    def plain(items: list[Item]) -> None:
        got: dict[str, torch.Tensor] = {}

        def forward() -> None:
            got["loss"] = built.per_example_loss(plain_model, built.encode(items)).mean()

        def step() -> None:
            opt.step()
            opt.zero_grad(set_to_none=True)

        timed([("plain forward", forward), ("plain backward", lambda: got["loss"].backward()),
               ("plain AdamW", step)])  # fmt: skip

    for k in range(args.steps):
        items = batches[k % len(batches)]
        for side in (governed, plain) if k % 2 else (plain, governed):
            side(items)
    total = {"governed": 0.0, "plain": 0.0}
    for name, v in times.items():
        ms = statistics.median(v[4:]) * 1000
        total["plain" if name.startswith("plain") else "governed"] += ms
        print(f"{name:30s} {ms:8.2f} ms")
    print(f"{'sum: governed / plain':30s} {total['governed']:8.2f} / {total['plain']:.2f} ms "
          f"= {total['governed'] / total['plain']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()

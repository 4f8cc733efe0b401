"""`govtune train` and `govtune demo`: thin shells over trainer.loop (exit codes: verifier.cli).

The model comes from the registry (trainer.registry) by the config's ``[model] kind``.
`demo` trains and signs; the CLI (verifier/cli.py) then verifies: the trainer never
imports the verifier.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from attest.atomic import write_atomic
from attest.errors import GovtuneError, UsageError
from attest.keys import load_signer, write_keypair
from attest.policy import Policy
from attest.predicates import STEPS_FILE
from attest.progress import Progress

from . import registry
from .checkpoint import save_weights
from .config import ModelConfig, TrainConfig, model_kind, model_options
from .demo import build_corpus
from .dist import Dist, LeadStopped, RankMismatch, World, world_from_env
from .loop import RunResult, run, set_determinism
from .model import TinyLM
from .registry import Built
from .resume import bundle_exists, last_durable_step, resumable

EXIT_OK = 0
DEMO_STEPS = 250
DEMO_MODEL = ModelConfig(vocab=256, d_model=96, n_layers=4, n_heads=4, seq_len=96)


def build_model(config: TrainConfig, base_name: str = "") -> Built:
    """The config's model through the registry: its spec (recorded), then the model.

    ``base_name`` names the base in the spec (e.g. how a shipped base was made).
    Raises UsageError (unknown kind, unusable base) or FormatError (bad options)."""
    set_determinism(config)
    base = config.path("base") if config.base else None
    spec = registry.spec_for(
        model_kind(config.model), model_options(config.model), base, seed=config.seed
    )
    if base_name and spec.base is not None:
        spec = replace(spec, base=replace(spec.base, name=base_name))
    built = registry.build(spec, base, device=config.device, dtype=config.dtype)
    return replace(built, spec=spec)


def _train(
    config: TrainConfig,
    out: Path,
    signer: Any,
    quiet: bool,
    base_name: str = "",
    resume: bool = False,
    dist: Dist | None = None,
) -> RunResult:
    built = build_model(config, base_name)
    if dist is not None and dist.collective:  # FSDP seam: shard per block (trainer/fsdp.py)
        from . import fsdp

        built = fsdp.shard(built, fsdp.init_mesh(config.device))
    quiet = quiet or (dist is not None and not dist.lead)  # one progress bar: rank 0's
    # attest.progress: a bar on a TTY, a line every 10 s in a log; nothing before step 1
    with Progress("training", config.steps, unit="steps", quiet=quiet) as bar:

        def progress(step: int, total: int, loss: float) -> None:
            bar.update(step, loss=loss)

        return run(built, config, out, signer, progress=progress, resume=resume, dist=dist)


def _summary(r: RunResult) -> str:
    c = r.counts
    lines = [
        f"run:         {r.run}",
        f"examples:    {c['total']} ({c['admitted']} admitted, {c['refused']} refused, "
        f"{c['canaries']} canary copies)",
        f"steps:       {r.steps}  final mean loss {r.mean_loss:.3f}"
        + ("  HALTED by policy" if r.halted else ""),
        f"events:      {r.events} (quarantined: {len(r.quarantined)})",
        f"weights:     model.safetensors sha256 {r.weights_sha256[:16]}…",
        f"state root:  {r.final_state_root[:16]}…",
    ]
    for e in r.exposures[-1:]:
        lines.append(f"canary:      exposure {e['exposure']:.2f} bits at step {e['step']}")
    return "\n".join(lines)


def train(args: argparse.Namespace) -> int:
    """`govtune train CONFIG --out DIR --key KEY`. Raises the project's errors (cli prints them)."""
    config = TrainConfig.load(Path(args.config))
    if getattr(args, "steps", None) is not None:  # --steps N shortens (or lengthens) any run
        if args.steps < 1:
            raise UsageError(f"--steps: expected a positive integer, got {args.steps}")
        config = replace(config, steps=args.steps)
    world = world_from_env()
    if world is None and getattr(args, "nproc_per_node", None) is not None:
        from .launch import launch  # the launcher: torch.distributed.run starts the workers

        return launch(args)  # rank 0 printed the summary and the OK line
    signer = load_signer(Path(args.key))
    out = Path(args.out)
    if args.resume and (world is None or world.rank == 0):
        _announce_resume(out)
    try:
        if world is not None:  # one worker of a torchrun job (trainer/dist.py)
            result = _worker(config, out, signer, args, world)
            if world.rank != 0:
                return EXIT_OK  # rank 0 prints the summary
        else:
            result = _train(config, out, signer, args.quiet, resume=args.resume)
    except OSError as e:  # a disk or permission failure not already named by attest
        raise UsageError(f"{args.out}: cannot write: {e.strerror or e}") from e
    except KeyboardInterrupt as e:  # the CLI prints this one line and exits 130
        raise KeyboardInterrupt(_resume_hint(args, out)) from e
    if not args.quiet:
        print(_summary(result), file=sys.stderr)
    print(
        f"OK: trained {result.steps} steps, signed {Path(args.out) / 'provenance'}", file=sys.stderr
    )
    return EXIT_OK


def _worker(
    config: TrainConfig, out: Path, signer: Any, args: argparse.Namespace, world: World
) -> RunResult:
    """One rank of a distributed run: its process group, the run, one-line errors.

    Raises GovtuneError naming the rank (a failed collective: a peer died or hung past
    ``config.dist_timeout``) or UsageError; exits quietly (code 2) on the other ranks when
    the lead reports the same cross-rank mismatch."""
    d = Dist(world, config.device, config.dist_timeout, config.parallel)
    try:
        return _train(config, out, signer, args.quiet, resume=args.resume, dist=d)
    except (RankMismatch, LeadStopped):
        if world.rank != 0:
            raise SystemExit(2) from None  # rank 0 prints the one line naming the ranks
        raise
    except (RuntimeError, torch.distributed.DistError) as e:  # gloo/NCCL: a peer is gone
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise GovtuneError(
            f"rank {world.rank}: a collective failed ({first}); a rank died or hung past "
            f"dist_timeout = {config.dist_timeout} s"
        ) from e
    finally:
        d.close()


def admit(args: argparse.Namespace) -> int:
    """`govtune admit CONFIG [--format text|json|csv]` (trainer/admit_command.py)."""
    from .admit_command import admit_command

    return admit_command(args)


def _announce_resume(out: Path) -> None:
    """Say where a resume starts; raises UsageError when ``out`` holds no run to resume."""
    if not (out / "provenance" / STEPS_FILE).is_file():
        raise UsageError(
            f"{out}: holds no run to resume (no provenance/{STEPS_FILE}); start it without --resume"
        )
    if bundle_exists(out):  # before any line: the error stays the one line printed
        raise UsageError(f"{out}: the run is already finished and signed; nothing to resume")
    if not resumable(out):
        print(f"{out}: no durable step record yet; starting the run afresh", file=sys.stderr)
        return
    step = last_durable_step(out)
    where = f"after step {step} (its checkpoint)" if step else "after step 0 (the base)"
    print(f"resuming {out} {where}; later records are discarded", file=sys.stderr)


def _resume_hint(args: argparse.Namespace, out: Path) -> str:
    """One line: the last durable step and the command that continues the run."""
    if not (out / "provenance" / STEPS_FILE).is_file():
        return "nothing was trained yet; start again with the same command"
    try:
        step = last_durable_step(out)
    except GovtuneError:  # a torn write is what an interrupt may leave: resume will say
        step = 0
    return (
        f"last durable step {step}; continue with: govtune train {args.config} --out {out} "
        f"--key {args.key} --resume"
    )


def inspect(args: argparse.Namespace) -> int:
    """`govtune inspect MODEL_FOLDER [--policy POLICY]` (trainer/inspect.py)."""
    from .inspect import inspect_command

    return inspect_command(args)


def _demo_policy_bytes() -> bytes:
    return resources.files("trainer").joinpath("data/demo-policy.toml").read_bytes()


@dataclass(frozen=True)
class DemoRun:
    run: Path  # the signed run folder
    pub: Path  # the producer's public key, to verify it with


def demo(args: argparse.Namespace) -> DemoRun:
    """`govtune demo --out DIR`: corpus, key, policy, base weights, train, sign.

    The CLI verifies the result (verifier/cli.py). Raises the project's errors."""
    out = Path(args.out)
    steps = args.steps if args.steps is not None else DEMO_STEPS
    if steps < 1:
        raise UsageError(f"--steps: expected a positive integer, got {steps}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: expected a folder for the demo's files, found a file")
    if (out / "run").exists():
        raise UsageError(f"{out / 'run'}: already exists; choose a new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))

    policy_bytes = _demo_policy_bytes()
    Policy.from_toml(policy_bytes, where="demo-policy.toml")  # fail before any work
    write_atomic(out / "policy.toml", policy_bytes)
    corpus = build_corpus()
    write_atomic(
        out / "dataset.jsonl",
        b"".join(json.dumps(x, sort_keys=True).encode() + b"\n" for x in corpus),
    )
    say(f"corpus: {len(corpus)} docstrings from installed packages -> {out / 'dataset.jsonl'}")
    key, pub = out / "producer.key", out / "producer.pub"
    if not key.exists():
        write_keypair(out / "producer")
    signer = load_signer(key)

    config = TrainConfig(
        dataset="dataset.jsonl", policy="policy.toml", base="base/model.safetensors",
        model=DEMO_MODEL, steps=steps, batch_size=16, lr=2e-3, weight_decay=0.01,
        seed=0, threads=min(2, os.cpu_count() or 1), deterministic=True, checkpoint_every=100,
        base_dir=str(out.resolve()),
    )  # fmt: skip
    (out / "base").mkdir(exist_ok=True)
    set_determinism(config)
    save_weights(out / "base" / "model.safetensors", TinyLM(config.model).state_dict())
    write_atomic(out / "config.toml", _config_toml(config))
    try:
        result = _train(
            config, out / "run", signer, args.quiet, base_name="govtune:tinylm-init(seed=0)"
        )
    except OSError as e:  # a disk or permission failure not already named by attest
        raise UsageError(f"{out}: cannot write: {e.strerror or e}") from e
    say(_summary(result))
    return DemoRun(out / "run", pub)


def _config_toml(c: TrainConfig) -> bytes:
    """The demo's config as TOML, so `govtune train config.toml` re-runs it."""
    d = c.to_dict()
    m = d.pop("model")
    if m.get("kind") == "tinylm":
        del m["kind"]
    lines = [
        f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}"
        for k, v in d.items()
    ]
    lines += ["", "[model]"] + [f"{k} = {json.dumps(v)}" for k, v in m.items()]
    return ("\n".join(lines) + "\n").encode()


__all__ = ["DemoRun", "build_model", "demo", "train", "torch"]

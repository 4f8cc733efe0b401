"""Shared steps of the slow example tests: train an example config for a few steps, tamper."""

from __future__ import annotations

import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from attest.keys import write_keypair

ROOT = Path(__file__).resolve().parents[2]


def train_example(name: str, out: Path, steps: int) -> tuple[Path, Path]:
    """`govtune train examples/NAME/config.toml --steps N`; -> (run folder, producer.pub)."""
    from verifier.cli import main

    key, pub = write_keypair(out / "producer")
    run = out / "run"
    config = ROOT / "examples" / name / "config.toml"
    code = main(["train", str(config), "--out", str(run), "--key", str(key), "--steps",
                 str(steps), "--quiet"])  # fmt: skip
    assert code == 0
    return run, pub


def tampered_copy(run: Path, dest: Path, file: str, tensor: str) -> Path:
    """A copy of ``run`` whose ``file`` has ``tensor`` nudged (one element + 1e-3)."""
    shutil.copytree(run, dest)
    tensors = load_file(str(dest / file))
    t = tensors[tensor].clone()
    t.view(-1)[0] += 1e-3
    tensors[tensor] = t
    save_file(tensors, str(dest / file), metadata={"format": "pt"})
    return dest

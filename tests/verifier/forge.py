"""Tiny real runs for the replay tests, and a forger holding the producer's key.

`build` trains the built-in model in-process (a few seconds on 2 cores): admitted
deep and surface examples, a PII-masked one, refused ones, canaries, a held-out set
and checkpoints every few steps. `resign_steps` rewrites the step log and re-signs
every statement with the producer's own key (support.evidence), so that every
structural check still passes: what only replay can catch.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.evidence import resign_step_log
from support.runs import (
    DUPLICATES_AND_LENGTH,
    licenses,
    producer_key,
    profiles,
    train_in_process,
    write_inputs,
)

from attest.log import iter_log
from attest.predicates import STEPS_FILE
from attest.records import StepRecord, parse_step_log_record

POLICY = (
    """\
version = "0.1"
name = "replay-tiny"

"""
    + licenses()
    + """
[consent]
required = ["personal"]

[sources]
allow = ["test:*"]
deny = []

[pii]
detect = ["email"]
action = "mask"

"""
    + DUPLICATES_AND_LENGTH
    + "\n"
    + profiles()
    + """
[memorization]
action = "flag"
loss_drop_max = 100.0
holdout = 2

[canaries]
count = 1
repeats = 2
template = "the replay access code is {secret}."
digits = 6
candidates = 20
profile = "deep"
"""
).encode()

WORDS = [
    "amber",
    "birch",
    "cedar",
    "dune",
    "ember",
    "fjord",
    "grove",
    "heath",
    "inlet",
    "juniper",
    "knoll",
    "larch",
    "moss",
]
REFUSED_TEXT = "strong copyleft text that the policy refuses to train on, ever."


def dataset_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(14):
        words = " ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(8))
        lic = ("MIT", "LGPL-3.0-only", "MIT")[i % 3]
        rows.append(
            {
                "text": f"line {i:02d}: {words}.",
                "license": lic,
                "source": f"test:c/{i}",
                "data_class": "public",
                "consent": False,
            }
        )
    # Masked before training: replay must train on the masked text, as the trainer did.
    rows.append(
        {
            "text": "write to alice@example.org for the birch and cedar notes",
            "license": "MIT",
            "source": "test:c/pii",
            "data_class": "public",
            "consent": False,
        }
    )
    rows.append(
        {
            "text": REFUSED_TEXT,
            "license": "GPL-3.0-only",
            "source": "test:c/gpl",
            "data_class": "public",
            "consent": False,
        }
    )
    return rows


MASKED_INDEX, REFUSED_INDEX = 14, 15


def canary_indices(run: Path) -> set[int]:
    lines = (run / "private" / "canaries.jsonl").read_text().splitlines()
    return {json.loads(x)["index"] for x in lines if x.strip()}


@dataclass(frozen=True)
class Run:
    folder: Path
    run: Path
    key: Path
    pub: Path
    dataset: Path
    steps_done: int

    @property
    def openings(self) -> Path:
        return self.run / "private"


def build(
    folder: Path,
    *,
    steps: int = 12,
    checkpoint_every: int = 4,
    deterministic: bool = True,
    tolerance: float = 0.0,
    key_from: Run | None = None,
    loss_wrap: Callable[[Any], Any] | None = None,
) -> Run:
    """Write dataset, policy and key into ``folder``; train in-process into ``folder/run``."""
    from trainer.config import TrainConfig

    dataset = write_inputs(folder, dataset_rows(), POLICY)
    key, pub = producer_key(folder, key_from)
    config = TrainConfig.from_dict(
        {
            "dataset": "dataset.jsonl",
            "policy": "policy.toml",
            "steps": steps,
            "batch_size": 3,
            "lr": 0.02,
            "seed": 3,
            "threads": 1,
            "deterministic": deterministic,
            "checkpoint_every": checkpoint_every,
            "tolerance": tolerance,
            "model": {"vocab": 256, "d_model": 16, "n_layers": 2, "n_heads": 2, "seq_len": 24},
        },
        base_dir=folder,
    )
    result = train_in_process(config, folder / "run", key, loss_wrap=loss_wrap)
    return Run(folder, folder / "run", key, pub, dataset, result.steps)


def swap_at_step(loss_fn: Any, step: int, position: int, text: str) -> Any:
    """A loss_fn that, in the training forward of ``step``, trains on ``text`` at ``position``.

    The trainer records the batch it chose; this makes one step train on other content
    than the recorded example's (evaluation passes run in eval mode and are not counted).
    """
    calls = {"n": 0}

    def wrapped(model: Any, texts: list[str]) -> Any:
        if model.training:
            calls["n"] += 1
            if calls["n"] == step:
                texts = list(texts)
                texts[position] = text
        return loss_fn(model, texts)

    return wrapped


# -- the forger: rewrite records, re-chain, re-sign with the producer's key ------------------


def read_steps(run: Path) -> list[Any]:
    return [
        parse_step_log_record(r.value, r.index) for r in iter_log(run / "provenance" / STEPS_FILE)
    ]


def resign_steps(
    run: Path, key: Path, records: list[Any], checkpoints: dict[str, str] | None = None
) -> None:
    """Write ``records`` as the step log and re-sign the statements that commit to it.

    ``checkpoints`` maps a checkpoint file to its new sha256 (training ``checkpoints``).
    """
    resign_step_log(run, key, records, checkpoints)


def swap_batch(rec: StepRecord, replacement: dict[int, int]) -> StepRecord:
    """The same record with batch examples replaced (profiles unchanged)."""
    return dataclasses.replace(rec, batch=tuple(replacement.get(x, x) for x in rec.batch))


def forge_optimizer_state(run: Path, step: int, records: list[Any]) -> str:
    """Scale one AdamW moment in checkpoint ``step`` (weights untouched) and fix the records.

    Returns the checkpoint file name; its new sha256 is in ``records[step].checkpoint``.
    """
    from safetensors.torch import load_file, save_file

    from attest.digest import sha256_file

    rec = records[step]
    name = rec.checkpoint["file"]
    tensors = load_file(str(run / name))
    key = sorted(k for k in tensors if k.startswith("optim/exp_avg/"))[0]
    tensors[key] = tensors[key] * 3.0
    save_file(tensors, str(run / name))
    records[step] = dataclasses.replace(
        rec, checkpoint={**rec.checkpoint, "sha256": sha256_file(run / name)}
    )
    return name

"""The tiny governed run the release tests train (inputs, policy, in-process training).

A module with its own name (not conftest) so that test files import it unambiguously
when the whole suite runs (every test folder has a conftest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from support import need
from support.runs import licenses, producer_key, profiles, train_in_process, write_inputs

POLICY = (
    'version = "0.1"\nname = "release-tests"\n\n'
    + licenses()
    + """
[pii]
detect = ["email"]
action = "reject"

[length]
min = 10
max = 400

"""
    + profiles()
    + """
[memorization]
action = "flag"
loss_drop_max = 1.5
holdout = 2
"""
).encode()

WORDS = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "heath", "indigo"]


def rows() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(10):
        words = " ".join(WORDS[(i * 4 + j) % len(WORDS)] for j in range(6))
        out.append(
            {"text": f"line {i:02d} {words} end", "license": ("MIT", "LGPL-3.0-only")[i % 2],
             "source": f"test:{i}", "data_class": "public", "consent": False}
        )  # fmt: skip
    out.append(
        {"text": "strong copyleft text never to be trained", "license": "GPL-3.0-only",
         "source": "test:gpl", "data_class": "public", "consent": False}
    )  # fmt: skip
    out.append(
        {"text": "write to jane.roe@example.org for the key", "license": "MIT",
         "source": "test:pii", "data_class": "public", "consent": False}
    )  # fmt: skip
    return out


@dataclass(frozen=True)
class Tiny:
    folder: Path
    run: Path
    key: Path
    pub: Path


def train_tiny(folder: Path) -> Tiny:
    """Write the inputs and a producer key into ``folder`` and train ``folder/run``."""
    need("torch")
    from trainer.config import ModelConfig, TrainConfig

    write_inputs(folder, rows(), POLICY, dataset="data.jsonl")
    key, pub = producer_key(folder)
    config = TrainConfig(
        dataset="data.jsonl", policy="policy.toml", steps=4, batch_size=4, lr=0.02,
        model=ModelConfig(d_model=16, n_layers=2, n_heads=2, seq_len=32),
        threads=1, checkpoint_every=2, base_dir=str(folder),
    )  # fmt: skip
    train_in_process(config, folder / "run", key)
    return Tiny(folder, folder / "run", key, pub)

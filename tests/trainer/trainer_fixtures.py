"""A tiny governed run, trained for real in-process, shared by the trainer tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from attest.keys import load_signer, write_keypair
from trainer.config import ModelConfig, TrainConfig
from trainer.loop import RunResult, builtin_loss, run, set_determinism
from trainer.model import TinyLM

POLICY = """\
version = "0.1"
name = "trainer-tests"

[licenses]
allow = ["permissive", "weak-copyleft"]
deny = ["strong-copyleft"]

[licenses.classes]
"MIT" = "permissive"
"LGPL-3.0-only" = "weak-copyleft"
"GPL-3.0-only" = "strong-copyleft"

[pii]
detect = ["email", "phone", "credit-card"]
action = "reject"

[length]
min = 10
max = 400

[profiles.deep]
patterns = ["*"]

[profiles.surface]
patterns = ["blocks.1.*", "ln_f.*", "lm_head.*"]

[[assign]]
when = {{ license_class = "permissive" }}
profile = "deep"

[[assign]]
when = {{ license_class = "weak-copyleft" }}
profile = "surface"

[memorization]
action = "{action}"
loss_drop_max = {loss_drop}
holdout = 2
reference_quantile = 0.0
exposure_max = 0.0
eval_every = 5

[canaries]
count = 1
repeats = 2
template = "the test access code is {{secret}}."
digits = 4
candidates = 20
profile = "deep"
"""

WORDS = [
    "amber",
    "basalt",
    "cobalt",
    "dune",
    "ember",
    "fjord",
    "garnet",
    "heath",
    "indigo",
    "jasper",
    "kelp",
    "lichen",
    "moss",
]


def rows() -> list[dict[str, object]]:
    """14 admissible texts (half deep, half surface) and one of each refusal kind."""
    out: list[dict[str, object]] = []
    for i in range(14):
        words = " ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(7))
        out.append(
            {
                "text": f"line {i:02d} {words} end",
                "license": ("MIT", "LGPL-3.0-only")[i % 2],
                "source": f"test:{i}",
                "data_class": "public",
                "consent": False,
            }
        )
    out += [
        {
            "text": "strong copyleft text never to be trained",
            "license": "GPL-3.0-only",
            "source": "test:gpl",
            "data_class": "public",
            "consent": False,
        },
        {
            "text": "write to jane.roe@example.org for the key",
            "license": "MIT",
            "source": "test:pii",
            "data_class": "public",
            "consent": False,
        },
        {
            "text": "an unknown license makes this refused",
            "license": "LicenseRef-x",
            "source": "test:unk",
            "data_class": "public",
            "consent": False,
        },
        {
            "text": "qzxv",
            "license": "MIT",
            "source": "test:short",
            "data_class": "public",
            "consent": False,
        },
        dict(out[0]),  # exact duplicate
    ]
    return out


EXPECTED = {"total": 19 + 2, "admitted": 14 + 2, "refused": 5, "canaries": 2}


@dataclass(frozen=True)
class Run:
    folder: Path
    out: Path
    pub: Path
    result: RunResult
    texts: tuple[str, ...]


class Interrupted(Exception):
    """Raised from the progress callback to simulate a crash mid-run."""


def config_for(folder: Path, steps: int = 12) -> TrainConfig:
    return TrainConfig(
        dataset="data.jsonl", policy="policy.toml", steps=steps, batch_size=4, lr=0.02,
        model=ModelConfig(d_model=16, n_layers=2, n_heads=2, seq_len=32),
        threads=1, checkpoint_every=5, base_dir=str(folder),
    )  # fmt: skip


def make_run(
    folder: Path,
    *,
    action: str = "quarantine",
    loss_drop: float = 1.5,
    steps: int = 12,
    crash_at: int = 0,
    resume: bool = False,
    run_secret: bytes | None = None,
) -> Run:
    """Prepare inputs (unless resuming) and train; ``crash_at`` interrupts after that step."""
    folder.mkdir(parents=True, exist_ok=True)
    data = rows()
    key, pub = folder / "producer.key", folder / "producer.pub"
    if not resume:
        (folder / "policy.toml").write_text(POLICY.format(action=action, loss_drop=loss_drop))
        (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
        write_keypair(folder / "producer")
    config = config_for(folder, steps)
    set_determinism(config)
    model = TinyLM(config.model)

    def progress(step: int, total: int, loss: float) -> None:
        if step == crash_at:
            raise Interrupted(f"simulated crash after step {step}")

    result = run(model, builtin_loss(32), config, folder / "run", load_signer(key),
                 progress=progress, resume=resume, run_secret=run_secret)  # fmt: skip
    return Run(folder, folder / "run", pub, result, tuple(str(r["text"]) for r in data))

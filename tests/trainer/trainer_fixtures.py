"""A tiny governed run, trained for real in-process, shared by the trainer tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from support.runs import licenses, producer_key, profiles, train_in_process, write_inputs

from trainer.config import ModelConfig, TrainConfig
from trainer.loop import RunResult

# A str.format template (action, loss_drop): the shared sections' braces are doubled.
POLICY = (
    """\
version = "0.1"
name = "trainer-tests"

"""
    + licenses()
    + """
[pii]
detect = ["email", "phone", "credit-card"]
action = "reject"

[length]
min = 10
max = 400

"""
    + profiles().replace("{", "{{").replace("}", "}}")
    + """
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
)

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
    data = rows()
    if resume:
        key, pub = folder / "producer.key", folder / "producer.pub"
    else:
        policy = POLICY.format(action=action, loss_drop=loss_drop).encode()
        write_inputs(folder, data, policy, dataset="data.jsonl")
        key, pub = producer_key(folder)
    config = config_for(folder, steps)

    def progress(step: int, total: int, loss: float) -> None:
        if step == crash_at:
            raise Interrupted(f"simulated crash after step {step}")

    result = train_in_process(config, folder / "run", key, progress=progress, resume=resume,
                              run_secret=run_secret)  # fmt: skip
    return Run(folder, folder / "run", pub, result, tuple(str(r["text"]) for r in data))

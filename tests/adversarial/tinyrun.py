"""A tiny but complete governed run, trained for real through `govtune train`.

Small enough to train in seconds on 2 cores, rich enough that every mutation class
has something to bite on: permissive (deep) and weak-copyleft (surface) examples,
refused ones (strong copyleft, PII, a duplicate, an unknown license), a held-out
reference set, planted canaries, a memorization policy strict enough to quarantine,
a checkpoint, and a base model on disk for `--base`.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from support.runs import DUPLICATES_AND_LENGTH, licenses, profiles, write_inputs

POLICY = (
    """\
version = "0.1"
name = "adversarial-tiny"

"""
    + licenses("MIT", "Apache-2.0")
    + """
[consent]
required = ["personal"]

[sources]
allow = ["test:*"]
deny = ["test:banned/*"]

[pii]
detect = ["email", "phone", "credit-card"]
action = "reject"

"""
    + DUPLICATES_AND_LENGTH
    + "\n"
    + profiles()
    + """
[memorization]
action = "quarantine"
loss_drop_max = 0.02
holdout = 3

[canaries]
count = 1
repeats = 2
template = "the adversarial access code is {secret}."
digits = 6
candidates = 50
profile = "deep"
"""
).encode()

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
]


def training_texts() -> list[dict[str, object]]:
    """The dataset lines: mostly admitted, with one of each kind of refusal."""
    rows: list[dict[str, object]] = []
    for i in range(22):
        words = " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(9))
        # Two thirds weak copyleft: some batches are surface-only, so some steps change
        # only the surface tensors and a state root depends on more than the last step.
        lic = (
            "MIT",
            "LGPL-3.0-only",
            "LGPL-3.0-only",
            "Apache-2.0",
            "LGPL-3.0-only",
            "LGPL-3.0-only",
        )[i % 6]
        rows.append(
            {
                "text": f"example {i:02d}: {words} governed text number {i}.",
                "license": lic,
                "source": f"test:corpus/{i}",
                "data_class": "public",
                "consent": False,
            }
        )
    refused = [
        (
            "GPL-3.0-only",
            "test:corpus/gpl",
            "public",
            "copyleft text that must never be trained on",
        ),
        ("MIT", "test:corpus/pii", "public", "mail the maintainer at jane.doe@example.com today"),
        ("MIT", "test:banned/x", "public", "a text from a banned source, refused by the policy"),
        (
            "LicenseRef-unknown",
            "test:corpus/u",
            "public",
            "a text under a license the policy does not know",
        ),
        (
            "MIT",
            "test:corpus/personal",
            "personal",
            "a personal text without any consent given at all",
        ),
    ]
    for lic, src, cls, text in refused:
        rows.append(
            {"text": text, "license": lic, "source": src, "data_class": cls, "consent": False}
        )
    rows.append(dict(rows[0]))  # an exact duplicate of example 0: refused
    return rows


@dataclass(frozen=True)
class TinyRun:
    folder: Path  # everything: dataset, policy, keys, base, run
    run: Path
    pub: Path
    key: Path
    dataset: Path
    base: Path  # folder holding the base model.safetensors
    output: str = ""  # what `govtune keygen` and `govtune train` printed (stdout + stderr)

    @property
    def provenance(self) -> Path:
        return self.run / "provenance"


CONFIG = """\
dataset = "dataset.jsonl"
policy = "policy.toml"
base = "base/model.safetensors"
steps = {steps}
batch_size = 4
lr = 0.02
seed = {seed}
threads = 1
checkpoint_every = {checkpoint_every}

[model]
vocab = 256
d_model = 16
n_layers = 2
n_heads = 2
seq_len = 32
"""


def prepare(
    folder: Path,
    *,
    steps: int = 12,
    seed: int = 0,
    checkpoint_every: int = 6,
    key_from: TinyRun | None = None,
) -> TinyRun:
    """Write dataset, policy, config, key and base weights into ``folder`` (not the run)."""
    dataset = write_inputs(folder, training_texts(), POLICY)
    (folder / "config.toml").write_text(
        CONFIG.format(steps=steps, seed=seed, checkpoint_every=checkpoint_every)
    )
    output = ""
    if key_from is None:
        proc = _govtune("keygen", str(folder / "producer"))
        output = proc.stdout + proc.stderr
        key, pub = folder / "producer.key", folder / "producer.pub"
    else:
        key, pub = key_from.key, key_from.pub
    (folder / "base").mkdir(exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-c",
            _BASE_SCRIPT,
            str(folder / "config.toml"),
            str(folder / "base" / "model.safetensors"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return TinyRun(folder, folder / "run", pub, key, dataset, folder / "base", output)


# The base model: the built-in model initialized from the config's seed, as `govtune demo` does.
_BASE_SCRIPT = """
import sys
from pathlib import Path
from trainer.checkpoint import save_weights
from trainer.config import TrainConfig
from trainer.loop import set_determinism
from trainer.model import TinyLM
c = TrainConfig.load(Path(sys.argv[1]))
set_determinism(c)
save_weights(Path(sys.argv[2]), TinyLM(c.model).state_dict())
"""


def _govtune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "verifier.cli", *args], capture_output=True, text=True, timeout=600
    )


def train(t: TinyRun, *extra: str) -> subprocess.CompletedProcess[str]:
    return _govtune(
        "train",
        str(t.folder / "config.toml"),
        "--out",
        str(t.run),
        "--key",
        str(t.key),
        "--quiet",
        *extra,
    )


def build(folder: Path, **kw: object) -> TinyRun:
    """Prepare and train; raises with the trainer's stderr if training fails."""
    t = prepare(folder, **kw)  # type: ignore[arg-type]
    proc = train(t)
    if proc.returncode != 0:
        raise RuntimeError(f"govtune train failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return dataclasses.replace(t, output=t.output + proc.stdout + proc.stderr)

"""A tiny governed run trained data-parallel on 2 processes (gloo, CPU), for the dist tests.

The policy keeps ``pos_emb``/``tok_emb`` outside every profile (they must stay bitwise
unchanged), trains permissive examples deep and weak-copyleft ones on the surface only,
has no canaries (so two runs with different run secrets train on the same texts) and
quarantines on a loss drop (so the ranks must agree on the quarantines to agree on the
batches). The global batch of 5 is split 2/3 over the two ranks. Nothing here imports
torch at import time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from support.runs import DUPLICATES_AND_LENGTH, licenses, producer_key, write_inputs

ROOT = Path(__file__).resolve().parents[2]
POLICY = (
    'version = "0.1"\nname = "dist-tiny"\n\n'
    + licenses("MIT")
    + "\n"
    + DUPLICATES_AND_LENGTH
    + """
[profiles.deep]
patterns = ["blocks.*", "ln_f.*", "lm_head.*"]

[profiles.surface]
patterns = ["blocks.1.*", "ln_f.*", "lm_head.*"]

[[assign]]
when = { license_class = "permissive" }
profile = "deep"

[[assign]]
when = { license_class = "weak-copyleft" }
profile = "surface"

[memorization]
action = "quarantine"
loss_drop_max = 0.05
holdout = 2
"""
).encode()

CONFIG = """\
dataset = "dataset.jsonl"
policy = "policy.toml"
base = "base/model.safetensors"
steps = {steps}
batch_size = 5
lr = 0.02
seed = 0
threads = 1
checkpoint_every = 2
state_check_every = 2
dist_timeout = {timeout}

[model]
vocab = 256
d_model = 16
n_layers = 2
n_heads = 2
seq_len = 32
"""
UNTOUCHED = ("pos_emb.weight", "tok_emb.weight")  # in no profile of the policy
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
]


def rows() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(24):
        words = " ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(8))
        out.append(
            {
                "text": f"record {i:02d}: {words} number {i}.",
                "license": ("MIT", "LGPL-3.0-only", "LGPL-3.0-only")[i % 3],
                "source": f"test:dist/{i}",
                "data_class": "public",
                "consent": False,
            }
        )
    return out


@dataclass(frozen=True)
class DistInputs:
    folder: Path
    key: Path
    pub: Path
    dataset: Path
    base: Path  # folder holding model.safetensors

    @property
    def config(self) -> Path:
        return self.folder / "config.toml"


def env() -> dict[str, str]:
    """The workers' environment: this checkout first, one thread each."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        "OMP_NUM_THREADS": "1",
    }


def prepare(folder: Path, *, steps: int = 6, timeout: int = 60) -> DistInputs:
    dataset = write_inputs(folder, rows(), POLICY)
    (folder / "config.toml").write_text(CONFIG.format(steps=steps, timeout=timeout))
    key, pub = producer_key(folder)
    (folder / "base").mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", _BASE, str(folder / "config.toml"), str(folder / "base")],
        check=True, capture_output=True, env=env(),
    )  # fmt: skip
    return DistInputs(folder, key, pub, dataset, folder / "base")


_BASE = """
import sys
from pathlib import Path
from trainer.checkpoint import save_weights
from trainer.config import TrainConfig
from trainer.loop import set_determinism
from trainer.model import TinyLM
c = TrainConfig.load(Path(sys.argv[1]))
set_determinism(c)
save_weights(Path(sys.argv[2]) / "model.safetensors", TinyLM(c.model).state_dict())
"""


def govtune(
    d: DistInputs, out: Path, *extra: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`govtune train CONFIG --out OUT --key KEY --quiet EXTRA...` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "verifier.cli", "train", str(d.config), "--out", str(out),
         "--key", str(d.key), "--quiet", *extra],
        capture_output=True, text=True, env=env(), timeout=timeout, cwd=d.folder,
    )  # fmt: skip


def faulty(
    d: DistInputs, out: Path, kind: str, rank: int, step: int, *, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """The same run launched by torchrun (python -m torch.distributed.run) on the
    fault-injecting worker (support/dist_faults.py)."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "-m", "support.dist_faults", kind, str(rank), str(step),
         "train", str(d.config), "--out", str(out), "--key", str(d.key), "--quiet"],
        capture_output=True, text=True, env=env(), timeout=timeout, cwd=d.folder,
    )  # fmt: skip

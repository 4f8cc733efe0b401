"""The inputs of a tiny governed run, and in-process training with the built-in model.

Each suite keeps its own dataset rows and the policy sections its tests are about
(admission outcomes, memorization action, canaries); the sections every tiny run shares
and the write-inputs / keypair / train sequence live here. Nothing here imports torch
until `train_in_process` is called (the verifier's tests also run where torch is absent).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attest.keys import load_signer, write_keypair

if TYPE_CHECKING:
    from trainer.config import TrainConfig
    from trainer.loop import RunResult


def licenses(*permissive: str) -> str:
    """Permissive (``permissive``, by default MIT) and weak copyleft trained, strong refused."""
    classes = "".join(f'"{name}" = "permissive"\n' for name in permissive or ("MIT",))
    return f"""\
[licenses]
allow = ["permissive", "weak-copyleft"]
deny = ["strong-copyleft"]

[licenses.classes]
{classes}"LGPL-3.0-only" = "weak-copyleft"
"GPL-3.0-only" = "strong-copyleft"
"""


DUPLICATES_AND_LENGTH = """\
[duplicates]
action = "reject"

[length]
min = 10
max = 4000
"""


def profiles(surface: str = "blocks.1.*") -> str:
    """Permissive examples train every tensor; weak copyleft only ``surface``, ln_f, lm_head."""
    return f"""\
[profiles.deep]
patterns = ["*"]

[profiles.surface]
patterns = ["{surface}", "ln_f.*", "lm_head.*"]

[[assign]]
when = {{ license_class = "permissive" }}
profile = "deep"

[[assign]]
when = {{ license_class = "weak-copyleft" }}
profile = "surface"
"""


def write_inputs(
    folder: Path, rows: Iterable[dict[str, Any]], policy: bytes, dataset: str = "dataset.jsonl"
) -> Path:
    """Write the dataset (one JSON object a line, sorted keys) and ``policy.toml``; returns the
    dataset's path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / dataset
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    (folder / "policy.toml").write_bytes(policy)
    return path


def producer_key(folder: Path, key_from: Any = None) -> tuple[Path, Path]:
    """(key, pub): a new ``folder/producer`` keypair, or the one of ``key_from`` (a run with
    ``key`` and ``pub``), for a second run by the same producer."""
    if key_from is not None:
        return key_from.key, key_from.pub
    write_keypair(folder / "producer")
    return folder / "producer.key", folder / "producer.pub"


def train_in_process(
    config: TrainConfig,
    out: Path,
    key: Path,
    *,
    loss_wrap: Callable[[Any], Any] | None = None,
    **run_kw: Any,
) -> RunResult:
    """Train the built-in model (initialized from the config's seed) into ``out``, signed
    with ``key``; ``run_kw`` goes to trainer.loop.run (progress, resume, run_secret)."""
    import dataclasses

    from trainer.commands import build_model
    from trainer.loop import run
    from trainer.registry import texts_loss

    built = build_model(config)
    if loss_wrap is not None:  # the wrapper takes texts: encode to texts, wrap the text loss
        built = dataclasses.replace(
            built,
            encode=lambda items: [it.text for it in items],
            per_example_loss=loss_wrap(texts_loss(built)),
        )
    return run(built, config, out, load_signer(key), **run_kw)

"""trainer: the governed PyTorch trainer.

Any ``torch.nn.Module`` with a per-example loss function trains under a policy and
leaves a signed run folder (see README.md "The run folder")::

    from pathlib import Path
    from attest.keys import load_signer
    from trainer import TrainConfig, ModelConfig, TinyLM, builtin_loss, train

    config = TrainConfig(dataset="data.jsonl", policy="policy.toml", steps=100,
                         model=ModelConfig(d_model=64, n_layers=2, n_heads=4, seq_len=64))
    model = TinyLM(config.model)            # or your own nn.Module
    loss_fn = builtin_loss(config.model.seq_len)  # loss_fn(model, texts) -> losses [B]
    result = train(model, loss_fn, Path("data.jsonl"), Path("policy.toml"), config,
                   Path("run"), load_signer(Path("producer.key")))
    print(result.final_state_root)

A registered model kind (trainer/registry.py) is built from its recorded spec, which is
what the replay audit does too::

    from trainer.commands import build_model
    from trainer.loop import run
    result = run(build_model(config), config, Path("run"), load_signer(Path("producer.key")))

Names are imported lazily, so ``import trainer`` alone does not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Item",
    "ModelConfig",
    "RunResult",
    "StepEngine",
    "TinyLM",
    "TrainConfig",
    "builtin_loss",
    "run",
    "train",
]

_WHERE = {
    "Item": "registry",
    "StepEngine": "engine",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "TinyLM": "model",
    "RunResult": "loop",
    "builtin_loss": "loop",
    "run": "loop",
    "train": "loop",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")

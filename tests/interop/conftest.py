"""The interop suites' shared real run: a tiny governed fine-tune signed with the default
producer key (ECDSA P-256), trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import need


@pytest.fixture(scope="session")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    need("torch")  # training needs torch; the tests on the spec vectors do not
    from support.runs import licenses, producer_key, profiles, train_in_process, write_inputs

    from trainer.config import ModelConfig, TrainConfig

    folder = tmp_path_factory.mktemp("interop")
    rows = [
        {
            "text": f"interop example {i:02d} about sorted merges and binary trees",
            "license": ("MIT", "LGPL-3.0-only")[i % 2],
            "source": f"test:{i}",
            "data_class": "public",
            "consent": False,
        }
        for i in range(8)
    ]
    policy = f'version = "0.1"\nname = "interop"\n\n{licenses()}\n{profiles()}'
    write_inputs(folder, rows, policy.encode(), dataset="data.jsonl")
    key, pub = producer_key(folder)  # attest.keys default: ECDSA P-256
    config = TrainConfig(
        dataset="data.jsonl", policy="policy.toml", steps=2, batch_size=4, lr=0.02,
        model=ModelConfig(d_model=16, n_layers=1, n_heads=2, seq_len=32),
        threads=1, checkpoint_every=0, base_dir=str(folder),
    )  # fmt: skip
    train_in_process(config, folder / "run", key)
    return folder / "run", pub

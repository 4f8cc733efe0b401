"""Session fixtures for the trainer tests (helpers live in trainer_fixtures.py)."""

from __future__ import annotations

import pytest
from trainer_fixtures import Run, make_run

from attest.keys import load_public_key


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return make_run(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def pubkey(tiny: Run):  # type: ignore[no-untyped-def]
    return load_public_key(tiny.pub)

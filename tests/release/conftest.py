"""Session fixtures: a tiny governed run (trained once, in process) and its release.

Tests copy the run or the release before changing anything; none may modify them.
Attacks that a publisher could carry out with their own key re-sign model.sig (or the
bundle) with the producer's key, so the failure comes from the check that recomputes
the claim, not from a signature.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from release_fixtures import Tiny, train_tiny


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return train_tiny(tmp_path_factory.mktemp("release-run"))


@pytest.fixture(scope="session")
def built(tiny: Tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release of the tiny run (`govtune release` through the library)."""
    from verifier.release import ReleaseRequest, build_release

    out = tmp_path_factory.mktemp("release") / "tiny-model"
    result = build_release(ReleaseRequest(tiny.run, out, (tiny.key,), license_id="apache-2.0"))
    assert result, [f.message for f in result.failures]
    return out


@pytest.fixture
def release(built: Path, tmp_path: Path) -> Path:
    """A private copy of the release, to tamper with."""
    dst = tmp_path / built.name
    shutil.copytree(built, dst)
    return dst

"""Attacks on a distributed run's records (issue 12): GT-DIST-WORLD, -RANKS, -DUPLICATE.

The honest run is trained on 2 processes (gloo, CPU) by `govtune train --nproc-per-node 2`;
each attack edits its evidence and re-signs everything with the producer's own key
(support.evidence), so only the distributed checks can tell.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from support import distrun
from support.evidence import Evidence

from attest.keys import load_signer
from verifier.api import verify

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> distrun.DistInputs:
    inputs = distrun.prepare(tmp_path_factory.mktemp("dist-redteam"))
    proc = distrun.govtune(inputs, inputs.folder / "run", "--nproc-per-node", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return inputs


@pytest.fixture
def work(tmp_path: Path, honest: distrun.DistInputs) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(honest.folder / "run", dst)
    return dst


def _forge(work: Path, inputs: distrun.DistInputs, edit: Any) -> set[str]:
    ev = Evidence.load(work, inputs.pub)
    edit(ev)
    ev.write(work, load_signer(inputs.key))
    result = verify(work, keys=[inputs.pub])
    return {f.code for f in result.failures}


def _training(ev: Evidence) -> dict[str, Any]:
    return next(p for t, p in ev.predicates.items() if "training-run" in t)


def test_honest_distributed_run_passes(work: Path, honest: distrun.DistInputs) -> None:
    result = verify(work, keys=[honest.pub])
    assert result, [f"{f.code}: {f.message}" for f in result.failures]


def test_forged_ranks(work: Path, honest: distrun.DistInputs) -> None:
    """Step 2's examples re-assigned to other ranks than the split rule gives."""

    def edit(ev: Evidence) -> None:
        ev.step(2)["ranks"] = [0, 1, 0, 1, 1]

    assert _forge(work, honest, edit) == {"GT-DIST-RANKS"}


def test_rank_outside_the_world(work: Path, honest: distrun.DistInputs) -> None:
    def edit(ev: Evidence) -> None:
        ev.step(3)["ranks"] = [0, 0, 1, 1, 2]

    assert _forge(work, honest, edit) == {"GT-DIST-RANKS"}


def test_example_on_two_ranks(work: Path, honest: distrun.DistInputs) -> None:
    """One example listed for rank 0 and again for rank 1 (trained twice in one step)."""

    def edit(ev: Evidence) -> None:
        rec = ev.step(2)
        rec["batch"][3] = rec["batch"][0]
        rec["profiles"][3] = rec["profiles"][0]

    assert _forge(work, honest, edit) == {"GT-DIST-DUPLICATE"}


def test_world_size_disagrees(work: Path, honest: distrun.DistInputs) -> None:
    """The signed environment claims 3 ranks where the start record splits over 2."""

    def edit(ev: Evidence) -> None:
        env = _training(ev)["environment"]
        env["worldSize"], env["deviceTypes"] = 3, ["cpu"] * 3

    assert _forge(work, honest, edit) == {"GT-DIST-WORLD"}


def test_ranks_dropped_from_a_distributed_run(work: Path, honest: distrun.DistInputs) -> None:
    """A distributed run passed off step by step as single-process records."""

    def edit(ev: Evidence) -> None:
        del ev.step(1)["ranks"]

    assert _forge(work, honest, edit) == {"GT-DIST-RANKS"}

"""The benchmarks' grown runs (bench/synthetic.py) are runs the verifier passes.

A benchmark that times `govtune verify` on a run the verifier refuses measures an early
exit, not a verification; session 3's verify-vs-model_signing figure did exactly that
(its grown base kept the old base root in the model spec). Each builder is checked
here at a small size, with every check's outcome, so a new check that the builders do
not re-derive fails this test instead of a figure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from vector_helpers import ROOT

from attest.layout import ADMISSIONS_FILE
from bench.synthetic import big_weight_run, scale_run
from verifier import verify

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    cmd = [sys.executable, "-m", "verifier.cli", "demo", "--out", str(out), "--steps", "12"]
    p = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    return out


def _passes(run: Path, demo: Path) -> int:
    result = verify(run, [demo / "producer.pub"])
    assert [f"{f.code}: {f.message}" for f in result.failures] == []
    assert result
    return sum(1 for f in result.findings if f.status == "pass")


def test_big_weight_run_verifies_and_hashes_the_added_tensors(demo: Path, tmp_path: Path) -> None:
    run = big_weight_run(demo, tmp_path, 2)
    weights = run / "model.safetensors"
    assert weights.stat().st_size > (demo / "run" / "model.safetensors").stat().st_size + (1 << 21)
    _passes(run, demo)


def test_scale_run_grown_steps_verify(demo: Path, tmp_path: Path) -> None:
    _passes(scale_run(demo, tmp_path, steps=40), demo)


def test_scale_run_grown_admissions_verify(demo: Path, tmp_path: Path) -> None:
    run = scale_run(demo, tmp_path, admissions=4000)
    grown = (run / "provenance" / ADMISSIONS_FILE).stat().st_size
    assert grown > 2 * (demo / "run" / "provenance" / ADMISSIONS_FILE).stat().st_size
    _passes(run, demo)

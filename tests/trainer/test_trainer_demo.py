"""`govtune demo` end to end, as a user runs it (subprocess), with few steps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from attest.bundle import read_bundle


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "verifier.cli", "demo", "--out", str(out), "--steps", "12",
         "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[-1].startswith("OK: demo run in")
    run = out / "run"
    for rel in ("model.safetensors", "provenance/bundle.intoto.jsonl", "provenance/policy.toml",
                "provenance/admissions.msgpack", "provenance/steps.msgpack",
                "private/run-secret", "private/openings.jsonl"):  # fmt: skip
        assert (run / rel).is_file(), rel
    assert len(read_bundle(run / "provenance" / "bundle.intoto.jsonl")) == 4
    rows = [json.loads(x) for x in (out / "dataset.jsonl").read_text().splitlines()]
    assert len(rows) > 100
    assert {r["data_class"] for r in rows} == {"docstring"}
    assert (out / "producer.key").is_file() and (out / "base" / "model.safetensors").is_file()

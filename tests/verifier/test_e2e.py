"""End to end: a real (tiny) governed fine-tune verifies PASS; tampered copies FAIL with their code.

Tampering that a producer could do with their own key is re-signed, so the failure
comes from the check that recomputes the claim, not from a signature.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import need
from vector_helpers import ROOT, VECTORS, verify_kwargs

from attest import keys
from attest.bundle import read_bundle, write_bundle
from attest.digest import sha256_file
from attest.envelope import sign_statement
from attest.log import LogWriter, iter_log
from attest.predicates import ADMISSIONS_TYPE, MEMORIZATION_TYPE, TRAINING_TYPE
from attest.statement import Statement, Subject
from verifier import verify

pytestmark = pytest.mark.slow
STEPS = 20


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("torch")
    out = tmp_path_factory.mktemp("demo") / "out"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "verifier.cli",
            "demo",
            "--out",
            str(out),
            "--steps",
            str(STEPS),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return out


def _copy(demo: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(demo / "run", run)
    return run


def _fail_codes(run: Path, key: Path) -> set[str]:
    return {f.code for f in verify(run, [key]).failures}


def _resign(
    run: Path, key: Path, edit: Callable[[str, dict[str, Any], list[Subject]], list[Subject]]
) -> None:
    """Re-sign every statement after ``edit(type, predicate, subjects)`` (the producer's key)."""
    signer = keys.load_signer(key)
    path = run / "provenance" / "bundle.intoto.jsonl"
    envs = []
    for line in read_bundle(path):
        st = Statement.from_payload(line.envelope.payload)
        pred = dict(st.predicate)
        subjects = edit(st.predicate_type, pred, list(st.subjects))
        envs.append(sign_statement(Statement(tuple(subjects), st.predicate_type, pred), [signer]))
    write_bundle(path, envs)


def _rewrite_log(
    path: Path, keep: Callable[[int, dict[str, Any]], dict[str, Any] | None]
) -> dict[str, Any]:
    records = []
    for rec in iter_log(path):
        v = keep(rec.index, {k: x for k, x in rec.value.items() if k != "prev"})
        if v is not None:
            records.append(v)
    path.unlink()
    with LogWriter(path) as w:
        for v in records:
            w.append(v)
        return w.summary().to_dict()


def test_demo_run_passes(demo: Path) -> None:
    result = verify(demo / "run", [demo / "producer.pub"])
    assert result.verdict == "PASS", [f"{f.code}: {f.message}" for f in result.failures]
    assert result.verified["steps"] == STEPS
    assert result.verified["weights"][0]["name"] == "model.safetensors"


def test_demo_run_passes_with_base_and_data(demo: Path) -> None:
    result = verify(
        demo / "run",
        [demo / "producer.pub"],
        base=demo / "base",
        data=demo / "dataset.jsonl",
        openings=demo / "run" / "private",
    )
    assert result.verdict == "PASS", [f"{f.code}: {f.message}" for f in result.failures]
    skipped = {f.code for f in result.findings if f.status == "skip"}
    assert {f.layer for f in result.findings if f.code in skipped} <= {
        "replay",
        "release",
        "requirements",
    }
    assert "GT-RELEASE-PRIVATE" not in skipped  # a run folder: the rest of V10 is skipped


def test_tampered_weight_file(demo: Path, tmp_path: Path) -> None:
    run = _copy(demo, tmp_path)
    data = bytearray((run / "model.safetensors").read_bytes())
    data[-1] ^= 0x40  # a bit of the last tensor's last element
    (run / "model.safetensors").write_bytes(bytes(data))
    assert _fail_codes(run, demo / "producer.pub") == {"GT-WEIGHTS-DIGEST", "GT-WEIGHTS-ROOT"}


def test_dropped_step_resigned(demo: Path, tmp_path: Path) -> None:
    run = _copy(demo, tmp_path)
    steps = run / "provenance" / "steps.msgpack"
    summary = _rewrite_log(steps, lambda i, v: None if i == STEPS // 2 else v)

    def edit(ptype: str, pred: dict[str, Any], subjects: list[Subject]) -> list[Subject]:
        if ptype == TRAINING_TYPE:
            pred["stepLog"] = summary
        if ptype == MEMORIZATION_TYPE:
            pred["stepLogHead"] = summary["head"]
        return subjects

    _resign(run, demo / "producer.key", edit)
    codes = _fail_codes(run, demo / "producer.pub")
    assert "GT-CHAIN-GAP" in codes
    assert codes <= {
        "GT-CHAIN-GAP",
        "GT-BATCH-ORDER",  # every later batch is the order's next one, one step early
        "GT-STATE-ROOT",
        "GT-STATE-FINAL",
        "GT-WEIGHTS-ROOT",
        "GT-MEM-EVENTS",
    }


def test_flipped_admission_decision_resigned(demo: Path, tmp_path: Path) -> None:
    run = _copy(demo, tmp_path)
    path = run / "provenance" / "admissions.msgpack"
    flipped: list[int] = []

    def flip(i: int, v: dict[str, Any]) -> dict[str, Any]:
        if not flipped and v["decision"] == "refuse" and not v["metadata"]["canary"]:
            flipped.append(i)
            v = {**v, "decision": "admit", "profile": "deep"}
        return v

    summary = _rewrite_log(path, flip)
    assert flipped
    sha = sha256_file(path)

    def edit(ptype: str, pred: dict[str, Any], subjects: list[Subject]) -> list[Subject]:
        if ptype == ADMISSIONS_TYPE:
            pred["log"] = summary
            pred["counts"] = {
                **pred["counts"],
                "admitted": pred["counts"]["admitted"] + 1,
                "refused": pred["counts"]["refused"] - 1,
            }
            return [Subject("admissions.msgpack", {"sha256": sha})]
        if ptype == TRAINING_TYPE:
            pred["admissionHead"] = summary["head"]
        return subjects

    _resign(run, demo / "producer.key", edit)
    assert _fail_codes(run, demo / "producer.pub") == {"GT-ADMIT-DECISION"}


def test_untrusted_key(demo: Path, tmp_path: Path) -> None:
    priv, pub = keys.write_keypair(tmp_path / "stranger")
    assert _fail_codes(demo / "run", pub) == {"GT-SIG-UNTRUSTED"}


def test_verifies_without_torch(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A venv with only the core dependencies (no torch) verifies the vectors and a real run."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    # Exactly the consumer's install: pyproject's core dependencies (never a copied list).
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    p = subprocess.run([*pip, *deps], capture_output=True, text=True)
    assert p.returncode == 0, (
        f"cannot install the core dependencies here: {p.stderr.strip().splitlines()[-1:]}"
    )
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True, capture_output=True)
    py = str(venv / "bin" / "python")
    probe = subprocess.run([py, "-c", "import torch"], capture_output=True)
    assert probe.returncode != 0, "the venv must not have torch"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        code = (
            "import sys, verifier.cli as c; r = c.main(sys.argv[1:]); "
            "bad = [m for m in ('torch', 'numpy') if m in sys.modules]; "
            "sys.exit(3 if bad else r)"
        )
        return subprocess.run(
            [py, "-c", code, *args],
            capture_output=True,
            text=True,
            cwd=tmp_path_factory.getbasetemp(),
        )

    basic = VECTORS / "valid" / "basic"
    kw = verify_kwargs(basic)
    p = cli(
        "verify",
        str(basic / "run"),
        "--key",
        str(kw["keys"][0]),
        "--base",
        str(kw["base"]),
        "--data",
        str(kw["data"]),
        "--openings",
        str(kw["openings"]),
    )
    assert p.returncode == 0, p.stderr[-2000:]
    v = VECTORS / "invalid" / "route-violation"
    p = cli("verify", str(v / "run"), "--key", str(verify_kwargs(v)["keys"][0]))
    assert p.returncode == 1 and "GT-ROUTE-VIOLATION" in p.stderr
    p = cli("verify", str(demo / "run"), "--key", str(demo / "producer.pub"), "--format", "json")
    assert p.returncode == 0, p.stderr[-2000:]
    assert '"verdict": "PASS"' in p.stdout

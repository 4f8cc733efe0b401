"""Crash consistency and resume: a killed, starved or read-only trainer never leaves a run
that passes, never prints a traceback, never damages evidence written before, and
`govtune train --resume` continues a killed run with no step lost or repeated
(issue 6, item 4).

Kill points are chosen by watching the run folder (admission log appearing, the step
log growing, a checkpoint's temporary file, the bundle), so they land mid-append and
mid-checkpoint reliably instead of by guessed timing. Strict mode without canaries is
deterministic, so a resumed run is compared step by step with an uninterrupted one.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import tinyrun

from attest.errors import FormatError
from attest.log import iter_log
from attest.tensors import hash_safetensors

pytestmark = pytest.mark.slow

GOVTUNE = [sys.executable, "-m", "verifier.cli"]


def train_cmd(t: tinyrun.TinyRun, out: Path, *extra: str) -> list[str]:
    config = str(t.folder / "config.toml")
    return [*GOVTUNE, "train", config, "--out", str(out), "--key", str(t.key), "--quiet", *extra]


def verify_cli(run: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GOVTUNE, "verify", str(run), "--key", str(pub), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("govtune: error: "), proc.stderr[-3000:]


def assert_durable_evidence_intact(run: Path) -> None:
    """Whatever a dead trainer left: whole log records chain correctly, no half-written file."""
    prov = run / "provenance"
    for log in ("admissions.msgpack", "steps.msgpack"):
        if (prov / log).exists():
            try:
                list(iter_log(prov / log, allow_torn_tail=True))
            except FormatError as e:  # a broken chain or garbage, not just a torn tail
                raise AssertionError(f"{log}: earlier records damaged: {e}") from e
    if (prov / "policy.toml").exists():
        assert (prov / "policy.toml").read_bytes() == POLICY
    for p in [*run.glob("checkpoints/*.safetensors"), *run.glob("*.safetensors")]:
        from attest.tensors import hash_safetensors

        hash_safetensors(p)  # atomic writes: a weight file is whole or absent


# Canary secrets are drawn at random per run, and quarantines end a tiny run early;
# without both a strict-mode run is deterministic and long enough to be killed mid-way.
POLICY = tinyrun.POLICY.replace(b"[canaries]\ncount = 1", b"[canaries]\ncount = 0").replace(
    b'action = "quarantine"', b'action = "flag"'
)
STEPS, EVERY = 60, 10


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tinyrun.TinyRun:
    assert POLICY.count(b"count = 0") == 1 and b'action = "flag"' in POLICY
    t = tinyrun.prepare(tmp_path_factory.mktemp("crash"), steps=STEPS, checkpoint_every=EVERY)
    (t.folder / "policy.toml").write_bytes(POLICY)
    return t


@pytest.fixture(scope="module")
def reference(prepared: tinyrun.TinyRun) -> Path:
    """The same run, never interrupted."""
    out = prepared.folder / "reference"
    proc = subprocess.run(train_cmd(prepared, out), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def step_trace(run: Path) -> list[tuple[object, ...]]:
    """What must match an uninterrupted run: each step's number, batch, events and state root."""
    out = []
    for rec in iter_log(run / "provenance" / "steps.msgpack"):
        v = rec.value
        if v["kind"] == "step":
            events = [(e["kind"], e["example"]) for e in v["events"]]
            out.append((v["step"], tuple(v["batch"]), tuple(events), v["stateRoot"]))
    return out


def _tmp_in_checkpoints(out: Path) -> bool:
    return any(p.name.endswith(".tmp") for p in (out / "checkpoints").glob(".*"))


def _steps_size(out: Path) -> int:
    p = out / "provenance" / "steps.msgpack"
    return p.stat().st_size if p.exists() else 0


KILL_POINTS = {
    "mid-admission": lambda out, ref: (out / "provenance" / "admissions.msgpack").exists(),
    "mid-append": lambda out, ref: _steps_size(out) > _steps_size(ref) // 3,
    "mid-checkpoint": lambda out, ref: _tmp_in_checkpoints(out) and _steps_size(out) > 0,
    "before-signing": lambda out, ref: _steps_size(out) >= _steps_size(ref) - 64,
    "after-signing": lambda out, ref: (out / "provenance" / "bundle.intoto.jsonl").exists(),
}


def kill_when(prepared: tinyrun.TinyRun, out: Path, reference: Path, point: str) -> bool:
    """Start training into ``out``, SIGKILL it once ``point`` holds. True if it was killed."""
    proc = subprocess.Popen(
        train_cmd(prepared, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while proc.poll() is None:
            if KILL_POINTS[point](out, reference):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)
    finally:
        proc.wait(timeout=120)
    return proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_resume_loses_and_repeats_no_step(
    prepared: tinyrun.TinyRun, reference: Path, point: str
) -> None:
    out = prepared.folder / f"killed-{point}"
    killed = kill_when(prepared, out, reference, point)
    v = verify_cli(out, prepared.pub)
    assert "Traceback" not in v.stderr, v.stderr[-3000:]
    if v.returncode == 0:  # only a whole run may pass: then it is the reference run
        assert step_trace(out) == step_trace(reference)
    else:
        assert (v.returncode, not out.exists()) == (2, True) or (
            v.returncode,
            "FAIL" in v.stderr,
        ) == (1, True), (
            v.returncode,
            v.stderr[-2000:],
        )
        if out.exists():
            assert_durable_evidence_intact(out)
    resumed = subprocess.run(
        train_cmd(prepared, out, "--resume"), capture_output=True, text=True, timeout=600
    )
    assert "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    if resumed.returncode != 0:  # nothing to resume (no durable state yet) or already finished
        assert_one_line_error(resumed)
        if v.returncode != 0:  # not finished: a fresh start must then work
            fresh = subprocess.run(
                train_cmd(prepared, out), capture_output=True, text=True, timeout=600
            )
            assert fresh.returncode == 0, (point, resumed.stderr, fresh.stderr[-2000:])
    final = verify_cli(out, prepared.pub)
    assert final.returncode == 0, (point, killed, resumed.stderr[-500:], final.stderr[-2000:])
    assert step_trace(out) == step_trace(reference), f"{point}: steps lost, repeated or changed"
    # The same tensors, bit for bit; the header's __metadata__ names each run's own id.
    assert hash_safetensors(out / "model.safetensors").leaves == (
        hash_safetensors(reference / "model.safetensors").leaves
    )


@pytest.mark.parametrize("limit", [4_000, 24_000])
def test_full_disk_gives_one_line_error_and_no_passing_run(
    prepared: tinyrun.TinyRun, limit: int
) -> None:
    # RLIMIT_FSIZE makes every write past ``limit`` bytes fail (EFBIG), as a full disk does
    # (ENOSPC) but portably and without root; the trainer must handle both as OSError.
    def starve() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = prepared.folder / f"starved-{limit}"
    proc = subprocess.run(
        train_cmd(prepared, out), capture_output=True, text=True, timeout=600, preexec_fn=starve
    )
    assert_one_line_error(proc)
    assert "cannot write" in proc.stderr
    assert_durable_evidence_intact(out)
    v = verify_cli(out, prepared.pub)
    assert v.returncode == 1 and "Traceback" not in v.stderr, v.stderr[-2000:]


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` (recursively) unwritable, even for root (immutable attribute)."""
    if os.geteuid() != 0:
        for p in [path, *path.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        try:
            yield
        finally:
            for p in [path, *path.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)
        return
    if not shutil.which("chattr") or subprocess.run(["chattr", "-R", "+i", str(path)]).returncode:
        pytest.fail(
            "running as root and cannot set the immutable attribute here (chattr, from "
            "e2fsprogs): no read-only folder to test against",
            pytrace=False,
        )
    try:
        yield
    finally:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=True)


def test_read_only_output_folder_gives_one_line_error(prepared: tinyrun.TinyRun) -> None:
    parent = prepared.folder / "read-only"
    parent.mkdir()
    with read_only(parent):
        proc = subprocess.run(
            train_cmd(prepared, parent / "run"), capture_output=True, text=True, timeout=600
        )
    assert_one_line_error(proc)
    assert not (parent / "run").exists()


def test_read_only_run_folder_keeps_earlier_evidence(
    prepared: tinyrun.TinyRun, tiny_run: tinyrun.TinyRun
) -> None:
    run = prepared.folder / "earlier"
    shutil.copytree(tiny_run.run, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with read_only(run):
        proc = subprocess.run(train_cmd(prepared, run), capture_output=True, text=True, timeout=600)
    assert_one_line_error(proc)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert verify_cli(run, tiny_run.pub).returncode == 0

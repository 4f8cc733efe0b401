"""The single-file verifier: built with PyInstaller, run with a clean environment (env -i)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from release_fixtures import Tiny

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A missing tool fails, never skips (the dev extra pins PyInstaller; .ci/run installs
    # binutils for objdump).
    import importlib.util

    if importlib.util.find_spec("PyInstaller") is None:
        pytest.fail("PyInstaller is not installed (pip install -e '.[dev]')", pytrace=False)
    if shutil.which("objdump") is None:
        pytest.fail("PyInstaller needs objdump (binutils; .ci/run installs it)", pytrace=False)
    work = tmp_path_factory.mktemp("pyinstaller")
    env = {**os.environ, "PYTHON": sys.executable, "DIST": str(work / "dist"),
           "BUILD": str(work / "build")}  # fmt: skip
    p = subprocess.run([str(ROOT / "scripts" / "build-verifier-binary")], cwd=ROOT, env=env,
                       capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return work / "dist" / "govtune-verify"


def run_clean(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["env", "-i", str(binary), *args], capture_output=True, text=True,
                          cwd="/")  # fmt: skip


def test_binary_has_no_torch_or_numpy(binary: Path) -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "PyInstaller.utils.cliutils.archive_viewer", "-l", "-r",
         str(binary)], capture_output=True, text=True,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr[-500:]
    names = listing.stdout
    assert "verifier.checks_release" in names and "attest.envelope" in names
    for banned in ("torch", "numpy", "trainer.loop"):
        assert f" {banned}" not in names and f"'{banned}" not in names, banned


def test_binary_verifies_release_under_env_i(
    binary: Path, built: Path, tiny: Tiny, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ok = run_clean(binary, str(built), "--key", str(tiny.pub), "--quiet")
    assert ok.returncode == 0, ok.stderr[-1500:]
    assert "OK: PASS" in ok.stderr
    assert run_clean(binary, str(tiny.run), "--key", str(tiny.pub), "--quiet").returncode == 0

    tampered = tmp_path / built.name
    shutil.copytree(built, tampered)
    card = tampered / "README.md"
    card.write_text(card.read_text() + "\nedited after signing\n")
    bad = run_clean(binary, str(tampered), "--key", str(tiny.pub), "--quiet")
    assert bad.returncode == 1 and "GT-RELEASE-DIGEST" in bad.stderr

    flag = run_clean(binary, str(built), "--key", str(tiny.pub), "--no-such-flag")
    assert flag.returncode == 2 and "unrecognized arguments" in flag.stderr
    missing = run_clean(binary, str(built), "--key", str(tmp_path / "absent.pub"))
    assert missing.returncode == 2 and "key file not found" in missing.stderr

"""Import hygiene: attest and the verifier load neither torch nor numpy (issue 2, STYLE §20)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support import need

import attest

PROBE = r"""
import importlib, json, pkgutil, sys

class Block:
    # Make torch and numpy unimportable, as on a consumer machine without them.
    def find_spec(self, name, path=None, target=None):
        if BLOCK and name.split(".")[0] in ("torch", "numpy"):
            raise ModuleNotFoundError(f"blocked: {{name}}")
        return None

BLOCK = {block}
sys.meta_path.insert(0, Block())
loaded = []
for pkg_name in {packages}:
    pkg = importlib.import_module(pkg_name)
    loaded.append(pkg_name)
    for m in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
        if m.name in {skip}:
            continue
        importlib.import_module(m.name)
        loaded.append(m.name)
heavy = sorted(n for n in sys.modules if n.split(".")[0] in ("torch", "numpy"))
print(json.dumps({{"loaded": loaded, "heavy": heavy}}))
"""


def _run(packages: list[str], skip: list[str], block: bool, path: str | None = None):
    code = PROBE.format(packages=packages, skip=skip, block=block)
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )


def _probe(packages: list[str], skip: list[str], block: bool, path: str | None = None) -> dict:
    out = _run(packages, skip, block, path)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("block", [False, True], ids=["torch-installed", "torch-absent"])
def test_attest_imports_neither_torch_nor_numpy(block):
    result = _probe(["attest"], [], block)
    assert result["heavy"] == []
    expected = {
        "attest",
        "attest.canonical",
        "attest.merkle",
        "attest.tensors",
        "attest.envelope",
        "attest.keys",
        "attest.policy",
        "attest.admission",
        "attest.log",
        "attest.records",
        "attest.predicates",
        "attest.commitment",
        "attest.pii",
        "attest.bundle",
    }
    assert expected <= set(result["loaded"])


@pytest.mark.parametrize("block", [False, True], ids=["torch-installed", "torch-absent"])
def test_verifier_imports_neither_torch_nor_numpy(block):
    result = _probe(["verifier"], ["verifier.replay"], block)
    assert result["heavy"] == []
    assert {"verifier", "verifier.cli", "verifier.codes"} <= set(result["loaded"])


def test_probe_detects_a_heavy_submodule(tmp_path):
    """The probe can fail: a submodule importing numpy is caught (no vacuous check)."""
    need("numpy")
    pkg = tmp_path / "heavypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "light.py").write_text("import json\n")
    (pkg / "heavy.py").write_text("import numpy\n")
    result = _probe(["heavypkg"], [], False, str(tmp_path))
    assert "numpy" in result["heavy"]
    assert _probe(["heavypkg"], ["heavypkg.heavy"], False, str(tmp_path))["heavy"] == []
    blocked = _run(["heavypkg"], [], True, str(tmp_path))
    assert blocked.returncode != 0 and "blocked: numpy" in blocked.stderr


def test_public_surface():
    for name in attest.__all__:
        assert getattr(attest, name) is not None, name
    assert sorted(attest.__all__) == sorted(set(attest.__all__))

"""Session fixtures: one tiny real run (trained once), and a second one for replay attacks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tinyrun


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tinyrun.TinyRun:
    """The valid run every attack starts from. Tests copy it; none may modify it."""
    return tinyrun.build(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def other_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_run: tinyrun.TinyRun
) -> tinyrun.TinyRun:
    """A second valid run by the same producer key (other seed): the source of replayed evidence."""
    return tinyrun.build(tmp_path_factory.mktemp("other"), seed=1, key_from=tiny_run)


# The red team's fixtures (test_redteam_*.py); a module defining its own overrides them.
@pytest.fixture(scope="module")
def honest(tiny_run: tinyrun.TinyRun) -> tinyrun.TinyRun:
    """The module's honest run: the session's tiny run (trained once; tests copy it)."""
    return tiny_run


@pytest.fixture
def work(tmp_path: Path, honest: tinyrun.TinyRun) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(honest.run, dst)
    return dst


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    import mutate

    if not mutate.TABLE:
        return
    w = max(len(k) for k in mutate.TABLE) + 2
    tr = terminalreporter
    tr.section("evidence mutations (issue 6)")
    tr.write_line(f"{'mutation class':<{w}}{'count':>7}{'detected':>10}")
    for label, (n, d) in mutate.TABLE.items():
        tr.write_line(f"{label:<{w}}{n:>7}{d:>10}" + ("" if n == d else "   <-- MISSED"))
    total = sum(n for n, _ in mutate.TABLE.values())
    found = sum(d for _, d in mutate.TABLE.values())
    tr.write_line(f"{'total':<{w}}{total:>7}{found:>10}")

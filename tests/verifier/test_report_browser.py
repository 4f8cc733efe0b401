"""The HTML audit report in a real headless Chromium (Debian's `chromium` package).

Each test loads a report from a file:// URL, dumps the DOM after load and reads
Chromium's log on stderr: with --enable-logging=stderr every console message of the
page (script error, CSP violation, blocked resource) is a line with ":CONSOLE".
The report has no scripts, so any such line is a defect. `test_console_capture_works`
proves the capture itself works, so the "no console line" assertions can fail.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from verifier.report import render

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium, as .ci/run does)",
)
TIMEOUT = 180  # seconds; a cold Chromium start on a loaded 2-core CI box takes a few


def _fixtures():
    # The hand-built Results live in test_report.py; load it by path (tests/ is not a package).
    spec = importlib.util.spec_from_file_location(
        "_report_fixtures", Path(__file__).with_name("test_report.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fx = _fixtures()


def chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{page.stem}-{len(list(tmp_path.iterdir()))}"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", *extra, page.resolve().as_uri(),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def console_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]


class Verdict(HTMLParser):
    """The verdict element's attribute and text, and the failing-checks section's text."""

    def __init__(self) -> None:
        super().__init__()
        self.attr: str | None = None
        self.text = ""
        self.failures = ""
        self._in: str | None = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self._in:
            self._depth += 1
        elif a.get("id") in ("verdict", "failures"):
            self._in, self._depth = a["id"], 1
            if a["id"] == "verdict":
                self.attr = a.get("data-verdict")

    def handle_endtag(self, tag):
        if self._in:
            self._depth -= 1
            if not self._depth:
                self._in = None

    def handle_data(self, data):
        if self._in == "verdict":
            self.text += data
        elif self._in == "failures":
            self.failures += data


def load(tmp_path: Path, name: str, html: str) -> tuple[Verdict, list[str]]:
    page = tmp_path / f"{name}.html"
    page.write_text(html, encoding="utf-8")
    out = chromium(tmp_path, page, "--dump-dom")
    assert "</html>" in out.stdout, "Chromium dumped no DOM"
    v = Verdict()
    v.feed(out.stdout)
    return v, console_lines(out.stderr)


@needs_chromium
def test_console_capture_works(tmp_path):
    _, lines = load(
        tmp_path,
        "noisy",
        "<!doctype html><p id=verdict data-verdict=X>x</p>"
        "<script>console.error('boom'); undefinedFunction();</script>",
    )
    assert any("boom" in ln for ln in lines)
    assert any("undefinedFunction" in ln for ln in lines)


@needs_chromium
def test_pass_report_in_chromium(tmp_path):
    v, lines = load(tmp_path, "pass", render(fx.passing(), "html"))
    assert lines == []
    assert v.attr == "PASS"
    assert "PASS" in v.text and "FAIL" not in v.text
    assert v.failures == ""


@needs_chromium
def test_fail_report_in_chromium(tmp_path):
    v, lines = load(tmp_path, "fail", render(fx.failing(), "html"))
    assert lines == []
    assert v.attr == "FAIL"
    assert "FAIL" in v.text
    assert "GT-WEIGHTS-DIGEST" in v.failures and "GT-ROUTE-VIOLATION" in v.failures
    assert "tensor 'h.3.mlp.w' changed but no example in the batch may touch it" in v.failures


@needs_chromium
def test_hostile_strings_stay_text_in_chromium(tmp_path):
    r = fx.failing()
    r.verified["admissions"]["byLicenseClass"][fx.HOSTILE] = {"admitted": 1, "refused": 1}
    r.fail("GT-FILE-DIGEST", fx.HOSTILE)
    v, lines = load(tmp_path, "hostile", render(r, "html"))
    assert lines == []  # an injected script would log "alert is not defined"-style lines or run
    assert fx.HOSTILE in v.failures  # shown as text, not parsed as markup


@needs_chromium
def test_screenshot_at_1280(tmp_path):
    page = tmp_path / "shot.html"
    page.write_text(render(fx.failing(), "html"), encoding="utf-8")
    png = tmp_path / "shot.png"
    out = chromium(
        tmp_path, page, f"--screenshot={png}", "--window-size=1280,2400", "--hide-scrollbars"
    )
    assert console_lines(out.stderr) == []
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000  # a blank page is a few kB


def _demo_available() -> str | None:
    try:
        import torch  # noqa: F401

        from trainer import commands
        from verifier import api
    except ImportError as e:
        return f"needs torch, trainer and verifier.api ({e})"
    if not (hasattr(commands, "demo") and hasattr(api, "verify")):
        return "trainer.commands.demo or verifier.api.verify not available"
    return None


@pytest.mark.slow
@needs_chromium
def test_demo_run_report_in_chromium(tmp_path):
    why = _demo_available()
    if why:
        pytest.skip(why)
    from verifier.api import verify

    out = tmp_path / "demo"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "verifier.cli",
            "demo",
            "--out",
            str(out),
            "--steps",
            "8",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = verify(out / "run", keys=[out / "producer.pub"])
    assert result.verdict == "PASS", [f.to_dict() for f in result.failures]
    v, lines = load(tmp_path, "demo", render(result, "html"))
    assert lines == []
    assert v.attr == "PASS" and "PASS" in v.text
    # The same run with a tampered weight file: FAIL, and the failing code is shown.
    weights = out / "run" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    bad = verify(out / "run", keys=[out / "producer.pub"])
    assert bad.verdict == "FAIL"
    v, lines = load(tmp_path, "demo-bad", render(bad, "html"))
    assert lines == []
    assert v.attr == "FAIL"
    for f in bad.failures:
        assert f.code in v.failures

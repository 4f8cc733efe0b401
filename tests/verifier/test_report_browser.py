"""The HTML audit report in a real headless Chromium (Debian's `chromium` package).

Each test loads a report from a file:// URL, dumps the DOM after load and reads
Chromium's log on stderr: with --enable-logging=stderr every console message of the
page (script error, CSP violation, blocked resource) is a line with ":CONSOLE".
The report has no scripts, so any such line is a defect. `test_console_capture_works`
proves the capture itself works, so the "no console line" assertions can fail.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from verifier.report import render

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# A test whose tool is missing fails, it does not skip (.ci/run installs Chromium).
needs_chromium = pytest.mark.usefixtures("chromium_installed")


@pytest.fixture
def chromium_installed() -> None:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (apt-get install -y chromium, as .ci/run does)",
                    pytrace=False)  # fmt: skip


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
def test_every_layer_is_titled_in_chromium(tmp_path):
    page = tmp_path / "titles.html"
    page.write_text(render(fx.passing(), "html"), encoding="utf-8")
    dom = chromium(tmp_path, page, "--dump-dom").stdout
    # the scope table showed the bare key "release" for this layer (the code catalogue
    # in the appendix names layers by key, on purpose)
    from verifier.report import LAYER_TITLES

    for title in LAYER_TITLES.values():
        assert f">{title}<" in dom, title


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
        pytest.fail(why, pytrace=False)
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


# -- layout at 700 px and in print (issue 14) ---------------------------------------------

# Injected into a test copy only (the report itself has no scripts and a CSP forbidding
# them): for every table cell and value whose text is one word (a file name, a code, a
# number), count the line boxes its text occupies at this width; more than one means the
# word was broken ("model.safeten sors"). Hashes (td.mono, long hex) may wrap by design.
_MEASURE = """<script>
const out = [];
for (const el of document.querySelectorAll('td, dd.v, h2, th, .badge, .nw')) {
  const t = el.textContent.trim();
  const whole = el.classList.contains('nw');  // a flag with its argument, kept on one line
  if (!t || (!whole && /\\s/.test(t)) || el.classList.contains('mono')
      || /^[0-9a-f]{40,}$/.test(t)) continue;
  // Each text node on its own: one word split over two lines has rects at two heights.
  const walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    if (!n.textContent.trim()) continue;
    const r = document.createRange(); r.selectNodeContents(n);
    const lines = new Set([...r.getClientRects()].map(x => Math.round(x.top)));
    if (lines.size > 1) { out.push(t); break; }
  }
}
const overflow = document.documentElement.scrollWidth > window.innerWidth + 1;
document.body.insertAdjacentHTML('beforeend',
  '<pre id="layout">' + JSON.stringify({broken: out, overflow: overflow}) + '</pre>');
</script>"""


def _layout(tmp_path: Path, html: str, width: int) -> dict:
    import json

    html = html.replace('<meta http-equiv="Content-Security-Policy"', '<meta name="x-csp-off"')
    page = tmp_path / f"layout-{width}.html"
    page.write_text(html.replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
    out = chromium(tmp_path, page, "--dump-dom", f"--window-size={width},1400")
    found = re.findall(r'<pre id="layout">(\{.*?\})</pre>', out.stdout)  # not the script's text
    assert found, "the layout probe did not run"
    return json.loads(unescape(found[-1]))


def _rich() -> object:
    r = fx.with_policy(fx.replayed(fx.passing()))
    r.scope["requirements"] = {"checked": True, "source": "consumer.toml", "stated": {}}
    r.findings = [f for f in r.findings if f.layer != "requirements"]
    r.fail("GT-REQ-POLICY-DIGEST", "requirement policy_digest (consumer.toml): expected the "
           "pinned policy digest " + "ab" * 32 + ", found " + "cd" * 32)  # fmt: skip
    r.add("GT-REQ-MEMORIZATION", "pass", "memorization thresholds and action no laxer")
    r.verified["weights"] = [
        {"name": "model.safetensors", "sha256": "cd" * 32, "bytes": 1_234_567},
        {"name": "adapter_model.safetensors", "sha256": "ef" * 32, "bytes": 7_654},
    ]
    return r


@needs_chromium
@pytest.mark.parametrize("width", [700, 1280])
def test_no_word_is_broken_and_nothing_overflows(tmp_path, width):
    got = _layout(tmp_path, render(_rich(), "html"), width)
    assert got == {"broken": [], "overflow": False}


@needs_chromium
def test_layout_probe_detects_a_broken_word(tmp_path):
    # The probe must be able to fail: the v0.1 rule (break anywhere) splits file names.
    html = render(_rich(), "html").replace(
        "td, li, .basis { overflow-wrap: break-word; }",
        "td, li, .basis { overflow-wrap: anywhere; } td { width: 1px; }",
    )
    assert _layout(tmp_path, html, 700)["broken"]


@needs_chromium
@pytest.mark.parametrize("width", [700, 1280])
def test_screenshots_at_two_widths(tmp_path, width):
    page = tmp_path / f"shot-{width}.html"
    page.write_text(render(_rich(), "html"), encoding="utf-8")
    png = tmp_path / f"shot-{width}.png"
    out = chromium(
        tmp_path, page, f"--screenshot={png}", f"--window-size={width},1400", "--hide-scrollbars"
    )
    assert console_lines(out.stderr) == []
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == width  # IHDR width: the page was laid out there
    assert png.stat().st_size > 20_000  # a blank page is a few kB


@needs_chromium
def test_prints_to_pdf(tmp_path):
    page = tmp_path / "print.html"
    page.write_text(render(_rich(), "html"), encoding="utf-8")
    pdf = tmp_path / "report.pdf"
    out = chromium(tmp_path, page, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    assert console_lines(out.stderr) == []
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-"
    pages = re.findall(rb"/Type\s*/Page\b(?!s)", data)
    assert len(pages) >= 2  # the whole report on several pages, not one clipped screen

"""The audit report: model built from hand-made Results, and its JSON, Markdown and HTML forms."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from verifier import charts
from verifier.codes import CHECKS
from verifier.report import build_report, render
from verifier.result import Result

HOSTILE = "<script>alert(1)</script>"

BASE_LAYERS = ("bundle", "policy", "admissions", "chain", "memorization", "weights")


def full_verified() -> dict:
    return {
        "runId": "0f" * 16,
        "keyids": ["a1" * 32],
        "policy": {"name": "demo-policy", "digest": "ab" * 32},
        "weights": [{"name": "model.safetensors", "sha256": "cd" * 32, "bytes": 1_234_567}],
        "finalStateRoot": "ef" * 32,
        "baseStateRoot": "12" * 32,
        "admissions": {
            "total": 120,
            "admitted": 100,
            "refused": 20,
            "canaries": 4,
            "byLicenseClass": {
                "permissive": {"admitted": 90, "refused": 5},
                "copyleft": {"admitted": 0, "refused": 12},
                "canary": {"admitted": 4, "refused": 0},
                "unknown": {"admitted": 6, "refused": 3},
            },
            "byDataClass": {
                "code-docs": {"admitted": 96, "refused": 20},
                "canary": {"admitted": 4, "refused": 0},
            },
            "refusedByRule": {"license": 15, "pii": 3, "optout": 2},
            "pii": {"masked": 7, "rejected": 3, "byKind": {"email": 6, "phone": 4}},
            "optout": 2,
            "duplicates": 1,
            "byProfile": {"shallow": 60, "deep": 40},
        },
        "steps": 30,
        "routing": {
            "profiles": {
                "shallow": {"params": 4, "examplesAdmitted": 60, "tensorChanges": 120},
                "deep": {"params": 12, "examplesAdmitted": 40, "tensorChanges": 300},
            },
            "tensorChanges": 360,
            "violations": 0,
        },
        "memorization": {"events": 2, "flags": 1, "quarantined": [17], "halted": False},
        "checkpoints": 3,
    }


def full_attested() -> dict:
    return {
        "environment": {
            "python": "3.11.9",
            "torch": "2.13.0+cpu",
            "platform": "Linux-x86_64",
            "deterministic": True,
        },
        "config": {
            "lr": 0.001,
            "batch_size": 8,
            "steps": 30,
            "optimizer": {"name": "adamw", "wd": 0.0},
        },
        "builder": "govtune/0.1.0",
        "startedOn": "2026-11-29T01:00:00Z",
        "finishedOn": "2026-11-29T01:02:00Z",
        "baseModel": {"name": "govtune-tiny-base", "stateRoot": "12" * 32},
        "dataset": {"sha256": "34" * 32, "examples": 116},
        "lossCurve": [[s, 4.0 / (1 + 0.1 * s)] for s in range(1, 31)],
        "canaries": [
            {"index": 116, "exposure": 3.5, "step": 30},
            {"index": 117, "exposure": 1.25, "step": 30},
        ],
        "reference": {"count": 10, "quantiles": {"0.05": 2.1, "0.5": 2.9}},
    }


def passing(layers: tuple[str, ...] = BASE_LAYERS) -> Result:
    verified = full_verified()
    if "data" in layers:
        verified["data"] = {
            "examples": 116,
            "canariesOpened": 4,
            "canariesNotOpened": 0,
            "sha256": "34" * 32,
        }
    r = Result(
        "runs/demo",
        verified=verified,
        attested=full_attested(),
        scope={"layers": list(layers), "flags": {"threshold": 1, "base": None}},
    )
    for c in CHECKS:
        r.add(c.code, "pass" if c.layer in layers else "skip")
    return r


def failing() -> Result:
    r = Result(
        "runs/tampered",
        verified=full_verified(),
        attested=full_attested(),
        scope={"layers": list(BASE_LAYERS), "flags": {}},
    )
    for c in CHECKS:
        if c.code == "GT-WEIGHTS-DIGEST":
            r.fail(c.code, "model.safetensors: expected sha256 cdcd…, found 0000…")
        elif c.code == "GT-ROUTE-VIOLATION":
            r.fail(
                c.code,
                "step 41: tensor 'h.3.mlp.w' changed but no example in the batch may touch it",
            )
        else:
            r.add(c.code, "pass" if c.layer in BASE_LAYERS else "skip")
    return r


def sparse() -> Result:
    r = Result("somewhere")
    r.add("GT-BUNDLE-MISSING", "pass")
    return r


def section(model: dict, sid: str) -> dict:
    return next(s for s in model["sections"] if s["id"] == sid)


def item(model: dict, sid: str, label: str) -> dict:
    return next(i for i in section(model, sid)["items"] if i["label"].startswith(label))


def control(model: dict, ref: str, words: str) -> dict:
    return next(
        c for c in model["controls"] if c["control"].startswith(ref) and words in c["requirement"]
    )


# -- the model ---------------------------------------------------------------------


def test_pass_model_verdict_and_scope():
    m = build_report(passing())
    assert m["verdict"]["value"] == "PASS"
    assert m["failures"] == []
    ran = {ly["name"] for ly in m["scope"]["layers"] if ly["ran"]}
    assert ran == set(BASE_LAYERS)
    assert set(m["scope"]["notRun"]) == {"base", "data", "replay", "release"}
    assert any("--data" in lim and "not checked" in lim.lower() for lim in m["limitations"])


def test_pass_without_data_marks_content_rules_attested():
    m = build_report(passing())
    assert item(m, "identity", "Final state root")["status"] == "verified"
    assert item(m, "admission", "Admitted")["status"] == "verified"
    assert item(m, "processing", "PII masked")["status"] == "attested"
    assert item(m, "lineage", "Base state root")["status"] == "attested"  # no --base
    assert item(m, "provenance", "Builder")["status"] == "attested"
    assert item(m, "provenance", "Dataset")["status"] == "attested"
    assert control(m, "Annex XI §1.2(c)", "provenance")["status"] == "verified"
    assert control(m, "Annex XI §1.2(c)", "curation")["status"] == "attested"
    assert control(m, "Art. 53(1)(d)", "opt-outs")["status"] == "attested"
    assert control(m, "Annex A, A.7.5", "provenance")["status"] == "verified"
    assert control(m, "MAP 4.1", "Legal")["status"] == "attested"  # base model not recomputed


def test_pass_with_data_and_base_marks_them_verified():
    m = build_report(passing(BASE_LAYERS + ("base", "data")))
    assert item(m, "processing", "PII masked")["status"] == "verified"
    assert item(m, "lineage", "Base state root")["status"] == "verified"
    assert item(m, "provenance", "Dataset")["status"] == "verified"
    assert control(m, "Annex XI §1.2(c)", "curation")["status"] == "verified"
    assert control(m, "Art. 53(1)(d)", "opt-outs")["status"] == "verified"
    assert control(m, "MAP 4.1", "Legal")["status"] == "verified"
    assert "data" not in m["scope"]["notRun"] and "base" not in m["scope"]["notRun"]


def test_fail_model_lists_failures_and_demotes_facts():
    m = build_report(failing())
    assert m["verdict"]["value"] == "FAIL"
    assert sorted(f["code"] for f in m["failures"]) == ["GT-ROUTE-VIOLATION", "GT-WEIGHTS-DIGEST"]
    assert all(f["message"] and f["title"] for f in m["failures"])
    w = next(t for t in section(m, "identity")["tables"] if t["id"] == "weights")
    assert w["status"] == "failed"
    assert section(m, "routing")["status"] == "failed"
    assert control(m, "Annex XI §1.2(b)", "methodology")["status"] == "failed"
    assert {ly["name"]: ly["state"] for ly in m["scope"]["layers"]}["weights"] == "failed"


def test_unverified_fact_in_verified_dict_is_not_shown_verified():
    # The verifier placed admissions in `verified`, but the decision check was skipped.
    r = passing()
    r.findings = [f for f in r.findings if f.code != "GT-ADMIT-DECISION"]
    r.add("GT-ADMIT-DECISION", "skip")
    m = build_report(r)
    assert item(m, "admission", "Admitted")["status"] == "attested"
    assert control(m, "Annex XI §1.2(c)", "provenance")["status"] == "attested"
    assert m["facts"]["classes"]["status"] == "attested"


def test_sparse_result_shows_missing_and_fails_closed():
    m = build_report(sparse())
    assert m["verdict"]["value"] == "PASS"  # one passing check and no failure (Result's rule)
    assert item(m, "identity", "Run ID")["status"] == "missing"
    assert item(m, "admission", "Admitted")["status"] == "missing"
    assert all(c["status"] == "missing" for c in m["controls"])
    empty = build_report(Result("nothing"))
    assert empty["verdict"]["value"] == "FAIL"
    assert "nothing was verified" in empty["verdict"]["summary"]
    for fmt in ("json", "md", "html"):
        assert render(Result("nothing"), fmt)


def test_wrongly_typed_evidence_does_not_crash():
    r = passing()
    r.verified["admissions"]["byLicenseClass"] = ["not", "a", "dict"]
    r.verified["routing"] = {"profiles": {"x": "bad"}}
    r.verified["weights"] = "oops"
    r.attested["lossCurve"] = [[1, "nan"], "junk", [2, float("inf")], [3, 1.5]]
    r.attested["config"] = "not a dict"
    for fmt in ("json", "md", "html"):
        assert render(r, fmt)


def test_insecure_flags_are_echoed():
    r = passing()
    r.scope["flags"] = {"insecure_skip_weights": True, "insecure_other": False}
    m = build_report(r)
    assert m["scope"]["insecure"] == ["insecure_skip_weights"]
    assert "insecure_skip_weights" in render(r, "html")
    assert "insecure_skip_weights" in render(r, "md")


# -- JSON ----------------------------------------------------------------------------


def test_json_is_the_model_with_sorted_keys():
    r = failing()
    text = render(r, "json")
    assert json.loads(text) == build_report(r)
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="expected one of html, md, json, got 'pdf'"):
        render(passing(), "pdf")


# -- Markdown ------------------------------------------------------------------------


def test_markdown_pass():
    md = render(passing(), "md")
    assert "**Verdict: PASS**" in md
    assert "## Failing checks" not in md
    assert "| ISO/IEC 42001 | Annex A, A.7.5 |" in md
    assert (
        "| EU AI Act | Annex XI §1.2(c) | Training data: type and provenance, "
        "number of data points "
        "| **verified** |" in md
    )
    assert "| permissive | 90 | 5 | 95 |" in md
    # Every table row has the same number of cells as its header.
    for block in re.split(r"\n\s*\n", md):
        rows = [ln for ln in block.splitlines() if ln.startswith("|")]
        if rows:
            widths = {len(re.findall(r"(?<!\\)\|", ln)) for ln in rows}
            assert len(widths) == 1, block


def test_markdown_fail_lists_each_failure():
    md = render(failing(), "md")
    assert "**Verdict: FAIL**" in md
    assert "- **GT-WEIGHTS-DIGEST** (weights)" in md
    assert "- **GT-ROUTE-VIOLATION** (chain)" in md
    assert "tensor 'h.3.mlp.w' changed" in md


def test_markdown_escapes_hostile_strings():
    r = passing()
    r.verified["admissions"]["byLicenseClass"][HOSTILE] = {"admitted": 1, "refused": 1}
    r.verified["admissions"]["byLicenseClass"]["a|b"] = {"admitted": 1, "refused": 0}
    md = render(r, "md")
    assert HOSTILE not in md
    assert r"\<script\>alert(1)\</script\>" in md
    assert r"| a\|b | 1 | 0 | 1 |" in md


# -- HTML ----------------------------------------------------------------------------


class _Dom(HTMLParser):
    """Collects tags, attributes and the verdict element's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.verdict_depth = 0
        self.verdict_text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if a.get("id") == "verdict" or self.verdict_depth:
            self.verdict_depth += 1

    def handle_endtag(self, tag):
        if self.verdict_depth:
            self.verdict_depth -= 1

    def handle_data(self, data):
        if self.verdict_depth:
            self.verdict_text += data


def parse(html: str) -> _Dom:
    d = _Dom()
    d.feed(html)
    return d


def test_html_pass_verdict_element():
    html = render(passing(), "html")
    dom = parse(html)
    (v,) = [a for t, a in dom.tags if a.get("id") == "verdict"]
    assert v["data-verdict"] == "PASS"
    assert "PASS" in dom.verdict_text and "FAIL" not in dom.verdict_text
    assert 'id="failures"' not in html
    for sid in (
        "identity",
        "lineage",
        "provenance",
        "admission",
        "processing",
        "training",
        "routing",
        "memorization",
        "controls",
        "limitations",
    ):
        assert f'id="{sid}"' in html
    assert html.count("<svg") == 4  # loss, admissions, refused-by-rule, attribution


def test_html_fail_shows_each_failing_check():
    html = render(failing(), "html")
    dom = parse(html)
    (v,) = [a for t, a in dom.tags if a.get("id") == "verdict"]
    assert v["data-verdict"] == "FAIL"
    assert "FAIL" in dom.verdict_text
    failures = html.split('id="failures"', 1)[1].split("</section>", 1)[0]
    assert "GT-WEIGHTS-DIGEST" in failures and "GT-ROUTE-VIOLATION" in failures
    assert "tensor &#39;h.3.mlp.w&#39; changed but no example" in failures


def test_html_escapes_hostile_strings_everywhere():
    r = passing()
    r.target = HOSTILE
    r.verified["admissions"]["byLicenseClass"][HOSTILE] = {"admitted": 3, "refused": 2}
    r.verified["admissions"]["refusedByRule"][HOSTILE] = 1
    r.verified["routing"]["profiles"][HOSTILE] = {
        "params": 1,
        "examplesAdmitted": 1,
        "tensorChanges": 5,
    }
    r.attested["builder"] = HOSTILE
    r.attested["environment"][HOSTILE] = HOSTILE
    r.scope["flags"] = {"insecure_" + HOSTILE: True}
    r.fail("GT-FILE-DIGEST", HOSTILE)
    html = render(r, "html")
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not any(t == "script" for t, _ in parse(html).tags)


def test_html_is_self_contained():
    html = render(failing(), "html")
    tags = parse(html).tags
    assert not re.search(r"(?i)https?://|//[a-z0-9.-]+\.[a-z]{2,}/|url\(", html)
    for tag, attrs in tags:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        for k, val in attrs.items():
            assert not k.startswith("on"), (tag, k)
            assert k not in ("src", "href") or (val or "").startswith("#"), (tag, k, val)
    assert "default-src 'none'" in html


def test_every_item_has_a_status_badge():
    for r in (passing(), failing(), sparse()):
        m = build_report(r)
        html = render(r, "html")
        n_items = sum(len(s["items"]) for s in m["sections"])
        assert html.count('<dd class="s"><span class="badge b-') == n_items
        for s in m["sections"]:
            for i in s["items"]:
                assert i["status"] in ("verified", "attested", "failed", "missing")


# -- charts ----------------------------------------------------------------------------


def test_charts_escape_and_skip_bad_points():
    svg = charts.bars([(HOSTILE, 3), ("ok", 1)], "t<")
    assert "<script" not in svg and "&lt;script&gt;" in svg and "t&lt;" in svg
    assert charts.line_chart([[1, float("nan")], ["x", 1]], "t", "x", "y") == ""
    line = charts.line_chart([[i, 1.0 / i] for i in range(1, 5000)], "t", "step", "loss")
    assert line.count("L") <= charts.MAX_POINTS + 5
    assert charts.stacked_bars([("a", [0, 0])], [("admitted", "#000")], "t") == ""
    assert charts.nice_ticks(0.0, 1.0)[0] <= 0.0 and charts.nice_ticks(0.0, 1.0)[-1] >= 1.0


def test_report_imports_no_torch_or_numpy():
    code = (
        "import sys, verifier.report, verifier.charts; "
        "bad = [m for m in ('torch', 'numpy') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

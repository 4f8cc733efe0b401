"""The audit report: model built from hand-made Results, and its JSON, Markdown and HTML forms."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from attest.policy import Policy
from verifier import charts
from verifier.codes import CHECKS
from verifier.policy_terms import policy_terms
from verifier.report import STATUSES, build_report, render
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
    assert set(m["scope"]["notRun"]) == {"base", "data", "replay", "release", "requirements"}
    assert any("--data" in lim and "not requested" in lim.lower() for lim in m["limitations"])
    states = {ly["name"]: ly["state"] for ly in m["scope"]["layers"]}
    assert states["replay"] == states["base"] == states["requirements"] == "not requested"


def test_every_layer_has_a_title_in_the_report():
    from verifier.codes import LAYERS
    from verifier.report import LAYER_TITLES

    assert set(LAYER_TITLES) == set(LAYERS)  # "release" was shown by its bare key
    m = build_report(passing())
    titles = {ly["name"]: ly["title"] for ly in m["scope"]["layers"]}
    assert titles["release"].startswith("Release folder")


def test_pass_without_data_marks_content_rules_attested():
    m = build_report(passing())
    assert item(m, "identity", "Final state root")["status"] == "verified"
    assert item(m, "admission", "Admitted")["status"] == "verified"
    assert item(m, "processing", "PII masked")["status"] == "attested"
    assert item(m, "lineage", "Base state root")["status"] == "attested"  # no --base
    assert item(m, "provenance", "Builder")["status"] == "attested"
    assert item(m, "provenance", "Dataset")["status"] == "attested"
    # Data provenance rests on each example's declared license and source: attested.
    assert control(m, "Annex XI §1.2(c)", "provenance")["status"] == "attested"
    assert "declared: attested" in control(m, "Annex XI §1.2(c)", "provenance")["basis"]
    assert control(m, "Annex XI §1.2(c)", "curation")["status"] == "attested"
    assert control(m, "Art. 53(1)(d)", "opt-outs")["status"] == "attested"
    assert control(m, "Annex A, A.7.5", "provenance")["status"] == "attested"
    assert control(m, "MAP 4.1", "Legal")["status"] == "attested"  # base model not recomputed


def test_pass_with_data_and_base_marks_them_verified():
    m = build_report(passing(BASE_LAYERS + ("base", "data")))
    assert item(m, "processing", "PII masked")["status"] == "verified"
    assert item(m, "lineage", "Base state root")["status"] == "verified"
    assert item(m, "provenance", "Dataset")["status"] == "verified"
    assert control(m, "Annex XI §1.2(c)", "curation")["status"] == "verified"
    assert control(m, "Art. 53(1)(d)", "opt-outs")["status"] == "verified"
    # A declared license stays a declaration, with or without --data (principle 7).
    assert control(m, "MAP 4.1", "Legal")["status"] == "attested"
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
    text = render(r, "json", generated="2026-12-01T00:00:00Z")
    assert json.loads(text) == build_report(r, generated="2026-12-01T00:00:00Z")
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
        "| **attested** |" in md
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
                assert i["status"] in STATUSES


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


# -- what the report says it proved (issue 9 principle 7, issue 14) ----------------------

VECTOR = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "valid" / "basic"
WHEN = "2026-12-01T00:00:00Z"


def with_policy(r: Result, exposure_max: float = 2.0) -> Result:
    """``r`` with the plain-terms view of a real policy (the basic vector's, exposure_max set)."""
    text = (VECTOR / "run" / "provenance" / "policy.toml").read_bytes()
    text = re.sub(rb"exposure_max = [0-9.]+", b"exposure_max = %g" % exposure_max, text)
    if b"exposure_max" not in text:
        text = text.replace(
            b"[memorization]\n", b"[memorization]\nexposure_max = %g\n" % exposure_max
        )
    r.verified["policyTerms"] = policy_terms(Policy.from_toml(text), ["h.0.w", "h.1.w", "head.w"])
    return r


def replayed(r: Result, **over) -> Result:
    r.scope["flags"]["replay"] = 2
    r.verified["replay"] = {
        "mode": "tolerant", "tolerance": {"value": 1e-6, "chosenBy": "auditor"},
        "nonce": "ab" * 16, "nonceSource": "os", "steps": [4, 5, 6, 7, 8, 9],
        "intervals": [[3, 9]], "coverage": 0.2, "detectionProbability": 0.2,
        "requested": 2, "selected": [6, 9], "topQ": [], "results": [], **over,
    }  # fmt: skip
    for c in ("GT-REPLAY-SELECT", "GT-REPLAY-CHECKPOINT", "GT-REPLAY-STEP"):
        r.findings = [f for f in r.findings if f.code != c]
        r.add(c, "pass")
    return r


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_pass_without_requirements_says_only_the_producers_policy_was_checked():
    r = passing()
    r.scope["requirements"] = {"checked": False, "source": None, "stated": None}
    want = ("conforms to the producer's own policy; no consumer requirement was checked "
            "(--policy-digest, --require)")  # fmt: skip
    m = build_report(r)
    assert m["verdict"]["requirements"] == want
    html = render(r, "html")
    note = html.split('id="requirements-note">', 1)[1].split("</div>", 1)[0]
    assert re.sub(r"<[^>]+>", "", note).replace("&#39;", "'") == f"The run {want}."
    assert '<span class="nw">--policy-digest</span>' in note  # flags are kept whole
    assert f"The run {want}." in render(r, "md")
    assert item(m, "requirements", "Consumer requirements checked")["status"] == "not requested"
    assert "No consumer requirement was checked" in section(m, "requirements")["note"]


def test_consumer_requirements_are_listed_met_and_unmet():
    r = passing()
    r.scope["requirements"] = {"checked": True, "source": "consumer.toml", "stated": {}}
    r.findings = [f for f in r.findings if f.layer != "requirements"]
    r.add("GT-REQ-PII", "pass", "email detected and rejected")
    r.fail("GT-REQ-MEMORIZATION", "requirement memorization (consumer.toml): action: expected "
                                  "'quarantine' or stronger, found 'flag'")  # fmt: skip
    for code in ("GT-REQ-POLICY-DIGEST", "GT-REQ-LICENSE", "GT-REQ-CANARIES", "GT-REQ-REPLAY",
                 "GT-REQ-STRICT"):  # fmt: skip
        r.add(code, "skip", "not required by consumer.toml")
    m = build_report(r)
    assert m["verdict"]["value"] == "FAIL"
    t = next(t for t in section(m, "requirements")["tables"] if t["id"] == "requirements")
    rows = {row[1][0]: row for row in t["rows"]}  # the code, an identifier kept whole
    assert rows["GT-REQ-PII"][2] == "met"
    assert rows["GT-REQ-MEMORIZATION"][2] == "NOT MET"
    assert "expected 'quarantine' or stronger, found 'flag'" in rows["GT-REQ-MEMORIZATION"][3]
    assert rows["GT-REQ-STRICT"][2] == "not required"
    assert t["marks"] == [t["rows"].index(rows["GT-REQ-MEMORIZATION"])]
    assert section(m, "requirements")["status"] == "failed"


def test_batches_without_replay_are_the_producers_records():
    m = build_report(passing())
    batches = item(m, "admission", "Recorded batches use only admitted")
    assert batches["status"] == "verified"
    assert batches["value"] == (
        "yes, in the producer's signed step records (consistent; no step re-executed)"
    )
    rep = item(m, "admission", "Steps re-executed by replay")
    assert rep["status"] == "not requested" and rep["value"].startswith("not requested")
    assert any(lim.startswith("Without --replay, every verified fact about batches and steps is "
                              "the consistency of the producer's signed step records")
               for lim in m["limitations"])  # fmt: skip


def test_replay_shows_detection_probability_coverage_and_who_chose_the_tolerance():
    m = build_report(replayed(passing()))
    assert item(m, "admission", "Steps re-executed by replay")["value"] == (
        "6 step(s) of 30; a single forged step is caught with probability ≥ 0.2"
    )
    assert item(m, "admission", "Recorded batches")["value"].endswith(
        "6 step(s) re-executed by replay)"
    )
    assert item(m, "replay", "Mode")["value"] == (
        "tolerant, tolerance 1e-06, chosen by the auditor (--replay-tolerance)"
    )
    assert item(m, "replay", "Detection probability")["value"] == (
        "a single forged step is caught with probability ≥ 0.2; k forged steps with ≥ 1 − (1 − "
        "0.2)^k"
    )
    assert item(m, "replay", "Coverage")["value"] == "20.0% of the run's steps"
    assert item(m, "replay", "Nonce")["value"] == (
        f"{'ab' * 16} (drawn from the operating system by the verifier)"
    )
    assert item(m, "replay", "Checkpoint intervals")["value"] == "3→9"
    html = text_of(render(replayed(passing()), "html"))
    assert "chosen by the auditor (--replay-tolerance)" in html
    assert "a single forged step is caught with probability ≥ 0.2" in html


def test_not_requested_is_not_missing():
    m = build_report(passing())
    assert item(m, "replay", "Replay")["status"] == "not requested"
    assert m["facts"]["replay"]["status"] == "not requested"
    states = {ly["name"]: ly["state"] for ly in m["scope"]["layers"]}
    assert states["data"] == "not requested"
    # A layer that was asked for but stopped by an earlier failure is "not checked".
    r = passing(BASE_LAYERS + ("data",))
    r.scope["flags"]["data"] = "data.jsonl"
    r.findings = [f for f in r.findings if f.layer != "data"]
    for c in CHECKS:
        if c.layer == "data":
            r.add(c.code, "skip", "no usable admission-log statement")
    m = build_report(r)
    ly = next(x for x in m["scope"]["layers"] if x["name"] == "data")
    assert ly["state"] == "not checked"
    assert ly["needs"] == "skipped: no usable admission-log statement"


def test_declared_license_caps_the_license_controls_at_attested():
    m = build_report(passing(BASE_LAYERS + ("base", "data")))
    assert m["facts"]["declared"]["status"] == "attested"
    for ref, words in (("Art. 53(1)(d) training-content summary, §2", "sources"),
                       ("MAP 4.1", "Legal"), ("Annex A, A.7.5", "provenance")):  # fmt: skip
        c = control(m, ref, words)
        assert c["status"] == "attested" and "declared: attested" in c["basis"], c
    assert item(m, "admission", "License, source, data class")["value"] == (
        "declared by the producer"
    )


def test_exposure_above_the_policy_threshold_is_marked():
    r = with_policy(passing(), exposure_max=2.0)  # canaries measured 3.5 and 1.25 bits
    m = build_report(r)
    t = next(t for t in section(m, "memorization")["tables"] if t["id"] == "canaries")
    assert t["columns"] == ["canary index", "exposure", "vs policy exposure_max", "step"]
    assert [row[2] for row in t["rows"]] == ["EXCEEDS 2", "within 2"]
    assert t["marks"] == [0]
    assert item(m, "memorization", "Canaries above")["value"] == (
        "1 of 2 measurement(s) above exposure_max 2 bits"
    )
    html = render(r, "html")
    assert html.count('<tr class="mark">') == 1
    assert "| **▲** 116 | 3.5 | EXCEEDS 2 | 30 |" in render(r, "md")


def test_memorization_findings_make_a_pass_with_a_notice():
    r = with_policy(passing(), exposure_max=2.0)
    m = build_report(r)
    assert m["verdict"]["value"] == "PASS"
    assert m["verdict"]["notice"] == (
        "Memorization findings: 1 memorization flag(s); 1 example(s) quarantined; 1 canary "
        "exposure(s) above exposure_max 2 bits. The model may reproduce training text; see the "
        "memorization section."
    )
    html = render(r, "html")
    dom = parse(html)
    (v,) = [a for t, a in dom.tags if a.get("id") == "verdict"]
    assert "v-notice" in v["class"].split() and v["data-verdict"] == "PASS"
    assert "Memorization findings: 1 memorization flag(s)" in dom.verdict_text
    assert "> **Notice:** Memorization findings" in render(r, "md")
    clean = passing()
    clean.verified["memorization"] = {"events": 0, "flags": 0, "quarantined": [], "halted": False}
    assert build_report(clean)["verdict"]["notice"] == ""
    assert 'class="verdict v-PASS"' in render(clean, "html")


def test_header_has_time_version_signer_and_absolute_target():
    m = build_report(passing(), generated=WHEN)
    meta = m["meta"]
    assert meta["generated"] == WHEN
    assert meta["target"] == str(Path("runs/demo").resolve())
    assert meta["signers"] == ["a1" * 32]
    assert meta["verifierVersion"]
    html = render(passing(), "html", generated=WHEN)
    assert f'<div class="target" id="target">{Path("runs/demo").resolve()}</div>' in html
    assert f"generated {WHEN} · govtune verifier {meta['verifierVersion']}" in html
    assert "a1" * 32 in html.split('id="verdict"', 1)[1].split("</div>\n</div>", 1)[0]
    md = render(passing(), "md", generated=WHEN)
    assert f"Generated {WHEN} by govtune verifier {meta['verifierVersion']}; signed by " in md


def test_policy_in_plain_terms():
    m = build_report(with_policy(passing()))
    s = section(m, "policy")
    assert s["status"] == "verified"
    lic = next(t for t in s["tables"] if t["id"] == "licenseTreatment")
    treat = {r[0]: r[1] for r in lic["rows"]}
    assert treat["proprietary"] == "refused"
    assert treat["(a license with no class)"] == "refused"
    assert treat["copyleft"] == "admitted, limited to profiles"
    prof = next(t for t in s["tables"] if t["id"] == "profileCoverage")
    assert ["shallow", ["h.1.*", "head.*"], "2 of 3", ["h.1 (1)", "head (1)"]] in prof["rows"]
    assert item(m, "policy", "Personal data")["value"] == (
        "detects credit-card, email, phone; the match is masked, the example kept"
    )
    mem = next(t for t in s["tables"] if t["id"] == "memorizationPolicy")
    assert ["Canary exposure (Carlini et al. 2019)", "2 bits", "flag it and never train on it "
            "again"] in mem["rows"]  # fmt: skip
    # Unverified policy: nothing of it is shown as verified.
    r = with_policy(passing())
    r.findings = [f for f in r.findings if f.code != "GT-POLICY-DIGEST"]
    r.fail("GT-POLICY-DIGEST", "provenance/policy.toml: expected policy digest x, found y")
    assert section(build_report(r), "policy")["status"] == "failed"


def test_wrong_key_report_does_not_call_present_weights_missing():
    from vector_helpers import UNTRUSTED_KEY, verify_kwargs

    from verifier.api import verify

    kw = verify_kwargs(VECTOR)
    kw["keys"] = [UNTRUSTED_KEY]
    r = verify(VECTOR / "run", **kw)
    assert r.verdict == "FAIL" and r.failed("GT-SIG-UNTRUSTED")
    m = build_report(r)
    w = next(t for t in section(m, "identity")["tables"] if t["id"] == "weights")
    assert w["status"] == "not checked"
    assert item(m, "identity", "Final state root")["status"] == "not checked"
    ly = next(x for x in m["scope"]["layers"] if x["name"] == "weights")
    assert ly["state"] == "not checked" and "needs the released weight files" not in ly["needs"]
    assert not any("weight files" in lim for lim in m["limitations"])
    assert item(m, "lineage", "Base model")["status"] == "not checked"
    html = render(r, "html")
    table = html.split("<h3>Weight files</h3>", 1)[1].split("</div>", 2)[1]
    assert "Not checked: an input it needs failed an earlier check." in table
    assert "no verified trusted key" in html


def test_no_raw_python_dicts_in_the_rendered_report():
    r = with_policy(replayed(passing()))
    for fmt in ("md", "html"):
        out = render(r, fmt)
        assert not re.search(r"\{'|': |\['", out.replace("&#39;", "'")), fmt


def test_verdict_says_whether_any_step_was_re_executed():
    assert build_report(passing())["verdict"]["replay"] == (
        "No step was re-executed (no --replay): step facts are the consistency of the producer's "
        "signed records."
    )
    v = build_report(replayed(passing()))["verdict"]
    assert v["replay"] == (
        "Replay re-executed 6 step(s) of 30; a single forged step is caught with probability ≥ 0.2."
    )
    html = render(replayed(passing()), "html")
    assert 'id="replay-note">Replay re-executed 6 step(s) of 30;' in html

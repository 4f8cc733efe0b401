"""The compliance audit report, built from a verification `Result`.

`build_report(result)` turns the result into one plain dict, the report model; JSON
is that model (pretty, sorted keys), and the HTML and Markdown templates
(verifier/templates/) render only that model, so the three formats cannot disagree.
Every fact carries a status, verified / attested / failed / missing, decided in
`verifier.report_facts`; a control row is as strong as the weakest fact it rests on.

Example::

    from verifier import api, report
    result = api.verify("run", keys=["producer.pub"])
    html = report.render(result, "html")   # one self-contained file: inline CSS and SVG
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jinja2
from markupsafe import Markup

from . import charts
from .codes import LAYERS
from .report_facts import SECTIONS, STATUSES, Evidence, Status, plain, weakest
from .result import Result

__all__ = ["FORMATS", "REPORT_FORMAT", "STATUSES", "build_report", "render"]

REPORT_FORMAT = "govtune-report/v1"
FORMATS = ("html", "md", "json")

# What each layer needs to run, said when it did not (the report's "not checked").
LAYER_NEEDS = {
    "weights": "the released weight files next to the provenance",
    "base": "--base DIR (the base model's weights)",
    "data": "--data FILE --openings DIR (the dataset and the run's private openings)",
    "replay": "--replay N (re-execution of sampled steps; needs torch)",
}
LAYER_TITLES = {
    "bundle": "Bundle and signatures", "policy": "Policy", "admissions": "Admission log",
    "chain": "Step chain and routing", "memorization": "Memorization report",
    "weights": "Released weights", "base": "Base model", "data": "Dataset and content rules",
    "replay": "Replay of sampled steps",
}  # fmt: skip

# (framework, control, requirement, facts it rests on). Annex XI §1.2 is the technical
# documentation of general-purpose AI models; Art. 53(1)(d) is the public summary of
# training content, whose Commission template has §2 data sources and §3 data processing.
CONTROLS = (
    ("EU AI Act", "Annex XI §1.2(b)", "Training methodology and techniques, key design choices",
     ["config", "routing"]),
    ("EU AI Act", "Annex XI §1.2(c)", "Training data: type and provenance, number of data points",
     ["admissions", "batches"]),
    ("EU AI Act", "Annex XI §1.2(c)",
     "Data curation: cleaning and filtering (PII, opt-outs, duplicates)", ["content"]),
    ("EU AI Act", "Art. 53(1)(d) training-content summary, §2",
     "Main data sources and categories of training data", ["classes"]),
    ("EU AI Act", "Art. 53(1)(d) training-content summary, §3",
     "Data processing: respect of text-and-data-mining opt-outs, removal of unwanted content",
     ["content"]),
    ("ISO/IEC 42001", "Annex A, A.7.5",
     "Data provenance: origin of the data used, recorded over its life cycle",
     ["admissions", "batches", "chain"]),
    ("NIST AI RMF", "MAP 4.1",
     "Legal risks of components mapped, incl. third-party data and IP rights "
     "(licenses, base model)",
     ["classes", "base"]),
)  # fmt: skip

LIMITATIONS = (
    "The records are the producer's signed claims. The verifier proves their internal consistency, "
    "their conformance to the signed policy and their binding to the released weights; it does not "
    "prove that training happened as recorded.",
    "Only replay of sampled steps (--replay) proves that those steps happened as recorded; "
    "it is a probabilistic audit, not a proof for every step.",
    "Admission metadata (license, source, data class, consent) is declared by the producer; the "
    "verifier re-applies the policy to it but cannot establish that a declared license is true.",
    "Losses, hyperparameters, environment, builder, times and canary exposure are attested, "
    "not recomputed.",
)


def _scope(result: Result) -> dict[str, Any]:
    scope = result.scope if isinstance(result.scope, Mapping) else {}
    declared = [x for x in scope.get("layers") or [] if isinstance(x, str)]
    layers = []
    extra = sorted({f.layer for f in result.findings} - set(LAYERS))
    for name in [*LAYERS, *extra]:
        fs = [f for f in result.findings if f.layer == name]
        n = {s: sum(f.status == s for f in fs) for s in ("pass", "fail", "skip")}
        ran = name in declared or n["pass"] + n["fail"] > 0
        state = "failed" if n["fail"] else ("passed" if ran and n["pass"] else "not run")
        needs = "" if ran else LAYER_NEEDS.get(name, "evidence not present")
        title = LAYER_TITLES.get(name, name)
        layers.append({"name": name, "title": title, "ran": ran, "state": state, "needs": needs,
                       "pass": n["pass"], "fail": n["fail"], "skip": n["skip"]})  # fmt: skip
    flags = plain(scope.get("flags") or {})
    if not isinstance(flags, dict):
        flags = {"flags": flags}
    flags = {k: x for k, x in flags.items() if x is not None}
    ignored = scope.get("ignored") if isinstance(scope.get("ignored"), list) else []
    insecure = sorted(k for k, v in flags.items() if "insecure" in k.lower() and v)
    not_run = [ly["name"] for ly in layers if not ly["ran"]]
    return {"layers": layers, "flags": flags, "insecure": insecure, "ignored": plain(ignored),
            "notRun": not_run}  # fmt: skip


def _verdict(result: Result) -> dict[str, Any]:
    n = {s: sum(f.status == s for f in result.findings) for s in ("pass", "fail", "skip")}
    if result.failures:
        summary = f"{n['fail']} check(s) failed; {n['pass']} passed, {n['skip']} skipped."
    elif not n["pass"]:
        summary = "No check passed: nothing was verified (fail closed)."
    else:
        summary = f"All {n['pass']} checks that ran passed ({n['skip']} skipped)."
    return {"value": result.verdict, "summary": summary, "counts": n}


def _controls(facts: Mapping[str, Status]) -> list[dict[str, Any]]:
    out = []
    for framework, ref, req, names in CONTROLS:
        basis = "; ".join(f"{n}: {facts[n][0]}" for n in names)
        status = weakest(facts[n][0] for n in names)
        out.append({"framework": framework, "control": ref, "requirement": req, "status": status,
                    "basis": basis})  # fmt: skip
    return out


def _chart_data(sections: list[dict[str, Any]], ev: Evidence) -> dict[str, Any]:
    tables = {t["id"]: t for s in sections for t in s["tables"]}
    lic, rule, prof = tables["byLicenseClass"], tables["refusedByRule"], tables["profiles"]
    raw = ev.a.get("lossCurve")
    points = raw if isinstance(raw, list) else []
    loss = [[p[0], p[1]] for p in points if isinstance(p, list | tuple) and len(p) >= 2]
    return {
        "admissionsByLicense": {"title": "Admissions by license class (admitted / refused)",
                                "status": lic["status"], "series": ["admitted", "refused"],
                                "rows": [[r[0], [r[1], r[2]]] for r in lic["rows"]]},
        "refusedByRule": {"title": "Refused examples by failing rule", "status": rule["status"],
                          "rows": rule["rows"]},
        "attribution": {"title": "Tensor changes attributed, by depth profile",
                        "status": prof["status"],
                        "rows": [[r[0], r[4] if isinstance(r[4], int) else 0]
                                 for r in prof["rows"]]},
        "loss": {"title": "Mean training loss over steps", "status": ev.claim(loss)[0],
                 "points": plain(loss)},
    }  # fmt: skip


def build_report(result: Result) -> dict[str, Any]:
    """The report model: a JSON-safe dict the templates render. Never raises on sparse input."""
    ev = Evidence(result)
    facts: dict[str, Status] = {}
    sections = [build(ev, facts).done() for build in SECTIONS]
    scope = _scope(result)
    limitations = list(LIMITATIONS)
    limitations += [f"Not checked in this run: {ly['title'].lower()} (needs {ly['needs']})."
                    for ly in scope["layers"] if not ly["ran"]]  # fmt: skip
    limitations += [f"An insecure relaxation was in effect: {flag}." for flag in scope["insecure"]]
    failures = [{"code": f.code, "layer": f.layer, "title": f.title, "message": f.message}
                for f in result.failures]  # fmt: skip
    return plain({
        "format": REPORT_FORMAT,
        "target": str(result.target),
        "verdict": _verdict(result),
        "scope": scope,
        "failures": failures,
        "sections": sections,
        "controls": _controls(facts),
        "charts": _chart_data(sections, ev),
        "limitations": limitations,
        "findings": [f.to_dict() for f in result.findings],
        "facts": {k: {"status": s, "basis": b} for k, (s, b) in sorted(facts.items())},
    })  # fmt: skip


# -- rendering ----------------------------------------------------------------


def _md_escape(v: object) -> str:
    """Inline Markdown text: backslash-escape what GitHub would interpret (CommonMark escapes)."""
    s = " ".join(str(v).split())
    return "".join("\\" + ch if ch in "\\`*[]<>|&#!" else ch for ch in s)


def _environment(fmt: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("verifier", "templates"),
        autoescape=fmt == "html",  # always on for HTML, whatever the template's file name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = _md_escape
    return env


def _svgs(model: Mapping[str, Any]) -> dict[str, Markup]:
    c = model["charts"]
    lic, rule = c["admissionsByLicense"], c["refusedByRule"]
    attr, loss = c["attribution"], c["loss"]
    series = [("admitted", charts.ADMITTED), ("refused", charts.REFUSED)]
    svgs = {
        "admissionsByLicense": charts.stacked_bars(lic["rows"], series, lic["title"]),
        "refusedByRule": charts.bars(rule["rows"], rule["title"], charts.REFUSED),
        "attribution": charts.bars(attr["rows"], attr["title"]),
        "loss": charts.line_chart(loss["points"], loss["title"], "step", "mean loss"),
    }
    return {k: Markup(s) for k, s in svgs.items()}  # every string was escaped in charts.py


def render(result: Result, fmt: str) -> str:
    """The report as text in ``fmt``: "html", "md" or "json". Raises ValueError for another."""
    if fmt not in FORMATS:
        raise ValueError(f"report format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    model = build_report(result)
    if fmt == "json":
        return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    env = _environment(fmt)
    if fmt == "md":
        return env.get_template("report.md.j2").render(m=model)
    return env.get_template("report.html.j2").render(m=model, svg=_svgs(model))

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

import contextlib
import datetime
import importlib.metadata
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from . import charts
from .codes import LAYERS
from .report_facts import (
    REPLAY,
    SECTIONS,
    STATUSES,
    VERIFIED,
    Evidence,
    Section,
    Status,
    as_map,
    dig,
    exposure_limit,
    exposures_over,
    plain,
    replay_summary,
    weakest,
)
from .report_policy import consumer_requirements, policy_plain
from .requirements import requirements_note
from .result import Result

__all__ = ["FORMATS", "REPORT_FORMAT", "STATUSES", "build_report", "render"]

REPORT_FORMAT = "govtune-report/v2"  # v2: statuses "not requested"/"not checked", meta
FORMATS = ("html", "md", "json")

# What each layer needs to run, said when it did not (the report's "not checked").
LAYER_NEEDS = {
    "weights": "the released weight files next to the provenance",
    "base": "--base DIR (the base model's weights)",
    "data": "--data FILE --openings DIR (the dataset and the run's private openings)",
    "replay": "--replay N (re-execution of sampled steps; needs torch)",
    "requirements": "--policy-digest HEX or --require FILE (the consumer's own bar)",
}
LAYER_TITLES = {
    "bundle": "Bundle and signatures", "policy": "Policy", "admissions": "Admission log",
    "chain": "Step chain and routing", "memorization": "Memorization report",
    "weights": "Released weights", "base": "Base model", "data": "Dataset and content rules",
    "replay": "Replay of sampled steps", "release": "Release folder (card, ML-BOM, model.sig)",
    "requirements": "Consumer requirements",
}  # fmt: skip

# (framework, control, requirement, facts it rests on). Annex XI §1.2 is the technical
# documentation of general-purpose AI models; Art. 53(1)(d) is the public summary of
# training content, whose Commission template has §2 data sources and §3 data processing.
CONTROLS = (
    ("EU AI Act", "Annex XI §1.2(b)", "Training methodology and techniques, key design choices",
     ["config", "routing"]),
    ("EU AI Act", "Annex XI §1.2(c)", "Training data: type and provenance, number of data points",
     ["admissions", "batches", "declared"]),
    ("EU AI Act", "Annex XI §1.2(c)",
     "Data curation: cleaning and filtering (PII, opt-outs, duplicates)", ["content"]),
    ("EU AI Act", "Art. 53(1)(d) training-content summary, §2",
     "Main data sources and categories of training data", ["classes", "declared"]),
    ("EU AI Act", "Art. 53(1)(d) training-content summary, §3",
     "Data processing: respect of text-and-data-mining opt-outs, removal of unwanted content",
     ["content"]),
    ("ISO/IEC 42001", "Annex A, A.7.5",
     "Data provenance: origin of the data used, recorded over its life cycle",
     ["admissions", "batches", "chain", "declared"]),
    ("NIST AI RMF", "MAP 4.1",
     "Legal risks of components mapped, incl. third-party data and IP rights "
     "(licenses, base model)",
     ["classes", "declared", "base"]),
)  # fmt: skip

LIMITATIONS = (
    "Without --replay, every verified fact about batches and steps is the consistency of the "
    "producer's signed step records (they use only admitted examples, their changes are allowed, "
    "their state roots chain to the released weights), not proof that training used them.",
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
        state = "failed" if n["fail"] else ("passed" if ran and n["pass"] else "not checked")
        if not ran and not _requested(scope, name):
            state = "not requested"
        needs = "" if ran else LAYER_NEEDS.get(name, "evidence not present")
        if state == "not checked":  # requested, or always run: an earlier failure stopped it
            why = next((f.message for f in fs if f.status == "skip" and f.message), "")
            needs = f"skipped: {why or 'an input it needs failed an earlier check'}"
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


def _requested(scope: Mapping[str, Any], layer: str) -> bool:
    """Whether the caller asked for an optional layer (the others always run)."""
    if layer == "requirements":
        return bool(dig(scope, "requirements", "checked"))
    flag = {"base": "base", "data": "data", "replay": "replay"}.get(layer)
    return flag is None or bool(dig(scope, "flags", flag))


def _verdict(result: Result, ev: Evidence) -> dict[str, Any]:
    n = {s: sum(f.status == s for f in result.findings) for s in ("pass", "fail", "skip")}
    if result.failures:
        summary = f"{n['fail']} check(s) failed; {n['pass']} passed, {n['skip']} skipped."
    elif not n["pass"]:
        summary = "No check passed: nothing was verified (fail closed)."
    else:
        summary = f"All {n['pass']} checks that ran passed ({n['skip']} skipped)."
    rep = dig(ev.v, "replay") if ev.status(dig(ev.v, "replay"), REPLAY)[0] == VERIFIED else None
    replay = (f"Replay re-executed {replay_summary(rep, dig(ev.v, 'steps'))}." if rep else
              "No step was re-executed (no --replay): step facts are the consistency of the "
              "producer's signed records.")  # fmt: skip
    return {"value": result.verdict, "summary": summary, "counts": n, "replay": replay,
            "requirements": requirements_note(result), "notice": _notice(ev)}  # fmt: skip


def _notice(ev: Evidence) -> str:
    """Memorization findings that keep a PASS from being a plain green one (issue 14)."""
    mem = as_map(dig(ev.v, "memorization"))
    flags = dig(mem, "flags") if isinstance(dig(mem, "flags"), int) else 0
    q = dig(mem, "quarantined")
    quarantined = len(q) if isinstance(q, list) else 0
    over, limit = exposures_over(ev), exposure_limit(ev)
    parts = []
    if flags:
        parts.append(f"{flags} memorization flag(s)")
    if quarantined:
        parts.append(f"{quarantined} example(s) quarantined")
    if dig(mem, "halted") is True:
        parts.append("training halted by the memorization policy")
    if over and limit is not None:
        parts.append(f"{over} canary exposure(s) above exposure_max {limit:g} bits")
    if not parts:
        return ""
    return ("Memorization findings: " + "; ".join(parts) + ". The model may reproduce training "
            "text; see the memorization section.")  # fmt: skip


def _meta(result: Result, ev: Evidence, generated: str | None) -> dict[str, Any]:
    try:
        version = importlib.metadata.version("govtune")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    keyids = dig(ev.v, "keyids")
    signers = [str(k) for k in keyids] if isinstance(keyids, list) else []
    target = str(result.target)
    with contextlib.suppress(OSError, RuntimeError, ValueError):  # odd target: shown as given
        target = str(Path(target).resolve())
    when = generated or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"generated": when, "verifierVersion": version, "target": target,
            "signers": signers, "signersVerified": "GT-SIG-INVALID" in ev.passed}  # fmt: skip


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


def _sections(result: Result, ev: Evidence, facts: dict[str, Status]) -> list[Section]:
    out = []
    for build in SECTIONS:
        out.append(build(ev, facts))
        if build.__name__ == "identity":  # the bar and the policy right after the identity
            out.append(consumer_requirements(ev, facts, result.findings))
            out.append(policy_plain(ev, facts))
    return out


def build_report(result: Result, *, generated: str | None = None) -> dict[str, Any]:
    """The report model: a JSON-safe dict the templates render. Never raises on sparse input.

    ``generated`` is the generation time shown (ISO 8601 UTC; default now).
    """
    ev = Evidence(result)
    facts: dict[str, Status] = {}
    sections = [s.done() for s in _sections(result, ev, facts)]
    scope = _scope(result)
    limitations = list(LIMITATIONS)
    limitations += [f"Not requested in this run: {ly['title'].lower()} (needs {ly['needs']})."
                    if ly["state"] == "not requested" else
                    f"Not checked in this run: {ly['title'].lower()} ({ly['needs']})."
                    for ly in scope["layers"] if not ly["ran"]]  # fmt: skip
    limitations += [f"An insecure relaxation was in effect: {flag}." for flag in scope["insecure"]]
    failures = [{"code": f.code, "layer": f.layer, "title": f.title, "message": f.message}
                for f in result.failures]  # fmt: skip
    return plain({
        "format": REPORT_FORMAT,
        "target": str(result.target),
        "meta": _meta(result, ev, generated),
        "verdict": _verdict(result, ev),
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


_FLAG = re.compile(r"(--[a-z][a-z-]*(?: [A-Z]+)?)")


def _flags_whole(v: object) -> Markup:
    """HTML text with each command-line flag (``--data FILE``) kept on one line."""
    return Markup(_FLAG.sub(r'<span class="nw">\1</span>', str(escape(str(v)))))


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
    env.filters["flags"] = _flags_whole
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


def render(result: Result, fmt: str, *, generated: str | None = None) -> str:
    """The report as text in ``fmt``: "html", "md" or "json". Raises ValueError for another."""
    if fmt not in FORMATS:
        raise ValueError(f"report format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    model = build_report(result, generated=generated)
    if fmt == "json":
        return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    env = _environment(fmt)
    if fmt == "md":
        return env.get_template("report.md.j2").render(m=model)
    return env.get_template("report.html.j2").render(m=model, svg=_svgs(model))

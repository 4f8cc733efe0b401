"""The report's policy sections: the verified policy in plain terms, and the consumer's bar.

Both read only verified facts: ``verified["policyTerms"]`` exists only when the policy
passed GT-POLICY-DIGEST (verifier/policy_terms.py builds it, V11 publishes it), and the
consumer requirements are the V11 findings (verifier/requirements.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .report_facts import NOT_REQUESTED, Evidence, Section, Status, as_map, dig

POLICY_CODES = ["GT-POLICY-FORMAT", "GT-POLICY-DIGEST"]
TREATMENT = {
    "admitted": "admitted (may train every tensor)",
    "limited": "admitted, limited to profiles",
    "refused": "refused",
}
SIGNALS = (
    ("lossDropMax", "Loss drop between two visits of an example", "nats"),
    ("referenceQuantile", "Loss below this quantile of the held-out reference losses", ""),
    ("exposureMax", "Canary exposure (Carlini et al. 2019)", "bits"),
)


def _threshold(v: object, unit: str) -> str:
    if not isinstance(v, int | float) or isinstance(v, bool):
        return "disabled"
    return f"{v:g} {unit}".strip()


def policy_plain(ev: Evidence, facts: dict[str, Status]) -> Section:
    terms = as_map(dig(ev.v, "policyTerms"))
    s = Section("policy", "The policy in plain terms", "The producer's signed policy, as the "
                "verifier re-applied it to every admission decision. Its names and comments are "
                "the producer's; what it does is below. Only a consumer requirement (--require) or "
                "a pinned digest (--policy-digest) says whether it is strict enough.")  # fmt: skip
    st = ev.status(terms or None, POLICY_CODES)
    facts["policyTerms"] = st
    name, digest = dig(terms, "name"), dig(terms, "digest")
    s.item("Policy", f"{name} (digest {digest})" if terms else None, st)
    pii = as_map(dig(terms, "pii"))
    detect = ", ".join(str(k) for k in (dig(pii, "detect") or [])) or "nothing"
    action = {"reject": "the example is refused", "mask": "the match is masked, the example kept"}
    pii_text = f"detects {detect}; {action.get(str(dig(pii, 'action')), '—')}" if pii else None
    s.item("Personal data (PII)", pii_text, st)
    consent = ", ".join(str(c) for c in (dig(terms, "consentRequired") or []))
    s.item("Consent required for data classes", (consent or "none") if terms else None, st)
    src = as_map(dig(terms, "sources"))
    if src:
        allow = ", ".join(map(str, dig(src, "allow") or [])) or "none"
        deny = ", ".join(map(str, dig(src, "deny") or [])) or "none"
        s.item("Sources", f"allowed {allow}; denied {deny}", st)
    else:
        s.item("Sources", None, st)
    opt, dup = dig(terms, "optOutDigests"), dig(terms, "duplicates")
    s.item("Opt-outs (text-and-data-mining reservations)",
           f"{opt} opted-out text digest(s) refused" if terms else None, st)  # fmt: skip
    s.item("Exact duplicates", {"reject": "refused", "allow": "allowed"}.get(str(dup)), st)
    length = as_map(dig(terms, "length"))
    s.item("Length (characters)", f"{dig(length, 'min')} to {dig(length, 'max')}"
           if length else None, st)  # fmt: skip
    rows = []
    for c in (x for x in (dig(terms, "licenseClasses") or []) if isinstance(x, Mapping)):
        treatment = str(dig(c, "treatment"))
        profiles = tuple(map(str, dig(c, "profiles") or [])) or "—"
        rows.append([dig(c, "class"), TREATMENT.get(treatment, treatment), profiles,
                     tuple(map(str, dig(c, "licenses") or [])) or "—"])  # fmt: skip
    if terms:
        rows.append(["(a license with no class)", "refused", "—", "—"])
    s.table("licenseTreatment", "License classes: admitted, limited or refused", st,
            ["class", "treatment", "profiles", "SPDX licenses"], rows)  # fmt: skip
    rows = []
    for p in (x for x in (dig(terms, "profiles") or []) if isinstance(x, Mapping)):
        n, of = dig(p, "tensors"), dig(p, "ofTensors")
        layers = [x for x in (dig(p, "layers") or []) if isinstance(x, list | tuple)]
        covers: tuple[str, ...] | str = tuple(f"{x[0]} ({x[1]})" for x in layers if len(x) >= 2)
        if n is None:
            covers = "tensor names not verified (step chain did not pass)"
        pats = tuple(map(str, dig(p, "patterns") or []))
        excl = tuple(f"except {x}" for x in map(str, dig(p, "exclude") or []))
        rows.append([dig(p, "name"), pats + excl, f"{n} of {of}" if n is not None else "—",
                     covers or "none"])  # fmt: skip
    s.table("profileCoverage", "Depth profiles: what each may change", st,
            ["profile", "patterns", "tensors", "layers covered (tensors)"], rows)  # fmt: skip
    mem = as_map(dig(terms, "memorization"))
    action = dig(mem, "action")
    does = {"flag": "flag the example (training continues)",
            "quarantine": "flag it and never train on it again",
            "halt": "stop training"}.get(str(action), "—")  # fmt: skip
    rows = [[label, _threshold(dig(mem, key), unit),
             does if _threshold(dig(mem, key), unit) != "disabled" else "—"]
            for key, label, unit in SIGNALS]  # fmt: skip
    if mem:
        rows.append(["Held-out reference examples", str(dig(mem, "holdout")), "—"])
        every = dig(mem, "evalEvery")
        rows.append(["Canary exposure measured every", f"{every} steps" if every else
                     "at the end only", "—"])  # fmt: skip
    s.table("memorizationPolicy", "Memorization: thresholds and action", st,
            ["signal", "threshold", "action when exceeded"], rows if mem else [])  # fmt: skip
    can = as_map(dig(terms, "canaries"))
    n = dig(can, "count")
    s.item("Canaries planted", (f"{n} canary text(s) × {dig(can, 'repeats')} copies, "
                                f"{dig(can, 'digits')}-digit secrets, profile "
                                f"{dig(can, 'profile') or '—'}" if n else "none")
           if can else None, st)  # fmt: skip
    return s


REQ_LABELS = {
    "GT-REQ-POLICY-DIGEST": "Pinned producer policy digest",
    "GT-REQ-PII": "PII kinds that must be rejected",
    "GT-REQ-LICENSE": "Licenses refused or limited",
    "GT-REQ-CANARIES": "Minimum canaries",
    "GT-REQ-MEMORIZATION": "Memorization thresholds and action",
    "GT-REQ-REPLAY": "Replay coverage and detection probability",
    "GT-REQ-STRICT": "Strict (bitwise) replay or the auditor's tolerance",
}


def consumer_requirements(ev: Evidence, facts: dict[str, Status], findings: list[Any]) -> Section:
    """One row per requirement kind: met, unmet (with required vs found), or not stated."""
    req = as_map(dig(ev.scope, "requirements"))
    checked = bool(dig(req, "checked"))
    note = (
        f"The consumer's own bar ({dig(req, 'source')}), checked against verified facts only; "
        "an unverified or absent fact fails the requirement."
        if checked
        else "No consumer requirement was checked: the run was verified against the producer's "
        "own policy only, whatever that policy says. Pass --policy-digest or --require FILE "
        "(spec/requirements.md) to set the bar."
    )
    s = Section("requirements", "Consumer requirements", note)
    by_code: dict[str, list[Any]] = {}
    for f in findings:
        if f.layer == "requirements":
            by_code.setdefault(f.code, []).append(f)
    rows = []
    for code, label in REQ_LABELS.items():
        fs = by_code.get(code, [])
        failed = [f.message for f in fs if f.status == "fail"]
        if failed:
            rows.append([label, (code,), "NOT MET", "; ".join(failed)])
        elif any(f.status == "pass" for f in fs):
            rows.append([label, (code,), "met", "; ".join(f.message for f in fs if f.message)])
        else:
            rows.append([label, (code,), "not required", "—"])
    marks = [i for i, r in enumerate(rows) if r[2] == "NOT MET"]
    if checked:
        stated = [c for c, r in zip(REQ_LABELS, rows, strict=True) if r[2] != "not required"]
        st = ev.status(req, stated)
    else:
        st = (NOT_REQUESTED, "no --policy-digest or --require given")
    facts["requirements"] = st
    s.item("Consumer requirements checked", dig(req, "source") if checked else
           "none (conformance to the producer's own policy only)", st)  # fmt: skip
    s.table("requirements", "Requirements", st, ["requirement", "code", "result", "detail"],
            rows if checked else [], marks)  # fmt: skip
    return s

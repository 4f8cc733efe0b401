"""The report's facts: each value of the evidence with its status, grouped in sections.

A fact's status is decided here and nowhere else:

- ``verified``: the verifier recomputed it and every check it rests on passed. A value
  placed in ``result.verified`` whose checks did not all pass is demoted, so the
  report never shows an unverified claim as verified;
- ``attested``: a signed claim of the producer the verifier did not recompute;
- ``failed``: a check it rests on failed;
- ``not requested``: its check needs evidence the verifier was not asked to use
  (``--base``, ``--data``, ``--replay``, a consumer requirement);
- ``not checked``: its check was skipped because an input it needs failed earlier
  (e.g. no trusted signature): the fact may well be there, it was not examined;
- ``missing``: absent from the evidence.

Input is read defensively: any key may be absent or of the wrong type (a sparse or
hostile Result must still render), so values go through `_get`/`_int`/`_show`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .result import Result

VERIFIED, ATTESTED, FAILED, MISSING = "verified", "attested", "failed", "missing"
NOT_REQUESTED, NOT_CHECKED = "not requested", "not checked"
STATUSES = (VERIFIED, ATTESTED, FAILED, NOT_CHECKED, NOT_REQUESTED, MISSING)
_RANK = {FAILED: 0, MISSING: 1, NOT_CHECKED: 2, NOT_REQUESTED: 3, ATTESTED: 4, VERIFIED: 5}
# The flag without which a layer's checks do not run (result.scope["flags"]).
OPTIONAL_LAYERS = {"base": "base", "data": "data", "replay": "replay"}
MAX_CONFIG_ITEMS = 60  # flattened config keys shown in HTML/MD; the JSON keeps them all
Status = tuple[str, str]  # (status, basis: why this status)

ADMIT = ["GT-ADMIT-DECISION", "GT-ADMIT-COUNTS"]
CONTENT = ["GT-DATA-FINDINGS"]
DATA = ["GT-DATA-FORMAT", "GT-DATA-COMMITMENT"]
REPLAY = ["GT-REPLAY-SELECT", "GT-REPLAY-CHECKPOINT", "GT-REPLAY-STEP"]


def dig(d: object, *path: str) -> Any:
    for key in path:
        if not isinstance(d, Mapping) or key not in d:
            return None
        d = d[key]
    return d


def as_map(v: object) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def plain(v: object, depth: int = 0) -> Any:
    """A JSON-safe copy of evidence values (tuples -> lists, odd types -> str)."""
    if depth > 20:
        return "…"
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, Mapping):
        return {str(k): plain(x, depth + 1) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [plain(x, depth + 1) for x in v]
    return str(v)


def _show(v: object) -> str:
    """A one-line display string for a value of the evidence."""
    if v is None or v == "" or v == [] or v == {}:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={_show(x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return ", ".join(_show(x) for x in v)
    return str(v)


def _flatten(d: object, prefix: str = "") -> list[tuple[str, Any]]:
    if not isinstance(d, Mapping):
        return [(prefix or "value", d)] if d is not None else []
    out: list[tuple[str, Any]] = []
    for k in sorted(d, key=str):
        key = f"{prefix}.{k}" if prefix else str(k)
        sub = d[k]
        out.extend(_flatten(sub, key) if isinstance(sub, Mapping) and sub else [(key, sub)])
    return out


def weakest(statuses: Iterable[str]) -> str:
    return min(statuses, key=_RANK.__getitem__, default=MISSING)


class Evidence:
    """Which checks passed or failed, and the status rule built on them."""

    def __init__(self, result: Result) -> None:
        self.v = as_map(result.verified)
        self.a = as_map(result.attested)
        self.scope = as_map(result.scope)
        self.failed = {f.code for f in result.findings if f.status == "fail"}
        self.passed = {f.code for f in result.findings if f.status == "pass"} - self.failed
        self.skipped = {f.code: (f.layer, f.message) for f in result.findings
                        if f.status == "skip"}  # fmt: skip
        # Attested facts come from signed statements: when those did not verify, an absent
        # claim was not looked for, it is not known to be missing.
        self.bundle_failed = sorted({f.code for f in result.findings
                                     if f.status == "fail" and f.layer == "bundle"})  # fmt: skip

    def requested(self, layer: str) -> bool:
        flag = OPTIONAL_LAYERS.get(layer)
        return flag is None or bool(dig(self.scope, "flags", flag))

    def unrun(self, codes: Iterable[str]) -> Status | None:
        """Why none of ``codes`` could vouch for a fact: not requested, or not checked."""
        skipped = [c for c in codes if c in self.skipped]
        if not skipped:
            return None
        layer, why = self.skipped[skipped[0]]
        if not self.requested(layer):
            return NOT_REQUESTED, f"not requested: {why or 'its evidence was not supplied'}"
        return NOT_CHECKED, f"not checked ({', '.join(skipped)} skipped: {why or 'no reason'})"

    def status(
        self, verified: object, codes: Iterable[str] = (), attested: object = None
    ) -> Status:
        """Verified only if ``verified`` is present and every one of ``codes`` passed."""
        codes = tuple(codes)
        bad = [c for c in codes if c in self.failed]
        if bad:
            return FAILED, "check failed: " + ", ".join(bad)
        if verified is not None and codes and all(c in self.passed for c in codes):
            return VERIFIED, "recomputed by the verifier: " + ", ".join(codes)
        if verified is not None or attested not in (None, "", [], {}):
            not_run = [c for c in codes if c not in self.passed]
            why = f" ({', '.join(not_run)} did not run)" if not_run else ""
            return ATTESTED, "signed claim of the producer, not recomputed" + why
        return self.unrun(codes) or (MISSING, "absent from the evidence")

    def claim(self, value: object) -> Status:
        """A producer's claim no check recomputes."""
        if value in (None, "", [], {}) and self.bundle_failed:
            return NOT_CHECKED, (f"not checked: the signed statements did not verify "
                                 f"({', '.join(self.bundle_failed)} failed)")  # fmt: skip
        return self.status(None, (), value)


class Section:
    """Collects one section's items, tables and chart ids."""

    def __init__(self, sid: str, title: str, note: str = "") -> None:
        self.sid, self.title, self.note = sid, title, note
        self.items: list[dict[str, Any]] = []
        self.tables: list[dict[str, Any]] = []
        self.charts: list[str] = []

    def item(self, label: str, value: object, status: Status) -> None:
        shown = _show(value)
        if shown == "—" and status[0] in (NOT_REQUESTED, NOT_CHECKED):
            shown = status[1]  # say why there is no value, visibly (tooltips do not print)
        self.items.append({"label": label, "value": shown, "status": status[0], "basis": status[1]})

    def table(
        self,
        tid: str,
        title: str,
        status: Status,
        columns: list[str],
        rows: list[list[Any]],
        marks: Iterable[int] = (),
    ) -> None:
        """A table; ``marks`` are the indices of rows to flag (a threshold exceeded).

        A cell that is a tuple of strings is a list of identifiers (SPDX ids, profile
        names): kept as a list, so the HTML never breaks one inside ("GPL-|3.0-only").
        """
        cells = [[list(c) if isinstance(c, tuple) and all(isinstance(x, str) for x in c)
                  else c if _int(c) is not None or isinstance(c, float) else _show(c)
                  for c in r] for r in rows]  # fmt: skip
        # A column is right-aligned when every cell in it is a number (or absent).
        numeric = [
            bool(cells) and all(isinstance(r[i], int | float) or r[i] == "—" for r in cells)
            for i in range(len(columns))
        ]
        self.tables.append({"id": tid, "title": title, "status": status[0], "basis": status[1],
                            "columns": columns, "numeric": numeric,
                            "rows": plain(cells), "marks": sorted(set(marks))})  # fmt: skip

    def done(self) -> dict[str, Any]:
        parts = [i["status"] for i in self.items] + [t["status"] for t in self.tables]
        return {
            "id": self.sid, "title": self.title, "note": self.note,
            "status": weakest(parts) if parts else MISSING,
            "counts": {st: parts.count(st) for st in STATUSES if st in parts},
            "items": self.items, "tables": self.tables, "charts": self.charts,
        }  # fmt: skip


def class_rows(d: object) -> list[list[Any]]:
    rows = []
    for cls, n in sorted(as_map(d).items(), key=lambda kv: str(kv[0])):
        a, r = _int(dig(n, "admitted")) or 0, _int(dig(n, "refused")) or 0
        rows.append([str(cls), a, r, a + r])
    return rows


def counts(d: object) -> list[list[Any]]:
    rows = ([str(k), _int(v) or 0] for k, v in as_map(d).items())
    return sorted(rows, key=lambda r: (-r[1], r[0]))


# -- the sections, in report order ----------------------------------------------------
# Each takes the evidence and the shared ``facts`` dict (fact name -> Status), which the
# control mapping reads afterwards, and returns the section.


def identity(ev: Evidence, facts: dict[str, Status]) -> Section:
    v, a = ev.v, ev.a
    s = Section("identity", "Model identity and integrity")
    pol = dig(v, "policy")
    weights = dig(v, "weights") if isinstance(dig(v, "weights"), list) else None
    final = dig(v, "finalStateRoot")
    facts["run"] = ev.status(dig(v, "runId"), ["GT-STMT-BINDING"], dig(a, "runId"))
    facts["signers"] = ev.status(dig(v, "keyids"), ["GT-SIG-INVALID", "GT-SIG-UNTRUSTED"])
    facts["policy"] = ev.status(pol, ["GT-POLICY-DIGEST"])
    facts["weights"] = ev.status(weights or None, ["GT-WEIGHTS-DIGEST"], dig(a, "weights"))
    final_codes = ["GT-STATE-FINAL", "GT-WEIGHTS-DIGEST", "GT-WEIGHTS-ROOT"]
    facts["final"] = ev.status(final, final_codes, dig(a, "finalStateRoot"))
    policy = f"{_show(dig(pol, 'name'))} (digest {_show(dig(pol, 'digest'))})" if pol else None
    s.item("Run ID", dig(v, "runId") or dig(a, "runId"), facts["run"])
    s.item("Signed by (trusted key ids)", dig(v, "keyids"), facts["signers"])
    s.item("Policy", policy, facts["policy"])
    final_shown = final or dig(a, "finalStateRoot")
    s.item("Final state root (released weights)", final_shown, facts["final"])
    cps = dig(v, "checkpoints")
    s.item("Checkpoints recorded", cps, ev.status(cps, ["GT-CHECKPOINT-DIGEST"]))
    files = [w for w in (weights or dig(a, "weights") or []) if isinstance(w, Mapping)]
    rows = [[dig(w, "name"), dig(w, "sha256"), _int(dig(w, "bytes"))] for w in files]
    s.table("weights", "Weight files", facts["weights"], ["file", "sha256", "bytes"], rows)
    return s


def lineage(ev: Evidence, facts: dict[str, Status]) -> Section:
    v, a = ev.v, ev.a
    s = Section("lineage", "Lineage", "The base model's identity is the producer's claim unless "
                "--base recomputed its state root.")  # fmt: skip
    base_model = dig(a, "baseModel")
    base_root = dig(v, "baseStateRoot") or dig(base_model, "stateRoot")
    facts["base"] = ev.status(dig(v, "baseStateRoot"), ["GT-BASE-ROOT"], base_root)
    facts["baseModel"] = ev.claim(base_model)
    steps = dig(v, "steps")
    facts["chain"] = ev.status(steps, ["GT-STATE-BASE", "GT-STATE-ROOT", "GT-STATE-FINAL"])
    name = dig(base_model, "name") or dig(base_model, "uri")
    s.item("Base model", name if isinstance(name, str) else base_model, facts["baseModel"])
    s.item("Base state root", base_root, facts["base"])
    chained = f"{_show(steps)} steps" if steps is not None else None
    s.item("State roots chain from base to final", chained, facts["chain"])
    return s


def provenance(ev: Evidence, facts: dict[str, Status]) -> Section:
    v, a = ev.v, ev.a
    s = Section("provenance", "Who trained it, when, with which environment")
    dataset, vdata = dig(a, "dataset"), dig(v, "data")
    facts["dataset"] = ev.status(vdata, DATA, dataset)
    if facts["dataset"][0] == VERIFIED:
        dataset = {"sha256": dig(vdata, "sha256"), "examples": dig(vdata, "examples")}
    if isinstance(dataset, Mapping) and dig(dataset, "sha256"):
        n = dig(dataset, "examples")
        dataset = f"sha256 {dig(dataset, 'sha256')}" + (f", {_show(n)} examples" if n else "")
    env = dig(a, "environment")
    facts["environment"] = ev.claim(env)
    for label, key in (("Builder", "builder"), ("Started", "startedOn"),
                       ("Finished", "finishedOn")):  # fmt: skip
        s.item(label, dig(a, key), ev.claim(dig(a, key)))
    s.item("Dataset", dataset, facts["dataset"])
    rows = [[k, x] for k, x in _flatten(env)][:MAX_CONFIG_ITEMS]
    s.table("environment", "Environment", facts["environment"], ["key", "value"], rows)
    return s


def admission(ev: Evidence, facts: dict[str, Status]) -> Section:
    adm = dig(ev.v, "admissions") if isinstance(dig(ev.v, "admissions"), Mapping) else None
    s = Section("admission", "Data sources and admission", "Decisions are re-evaluated under the "
                "signed policy from the committed metadata (license, source, data class, consent, "
                "length); the metadata itself is declared by the producer.")  # fmt: skip
    facts["admissions"] = ev.status(adm, ADMIT)
    facts["classes"] = ev.status(adm, ["GT-ADMIT-DECISION"])
    facts["batches"] = ev.status(dig(ev.v, "steps"), ["GT-BATCH-REFUSED", "GT-BATCH-HELDOUT"])
    s.item("Examples recorded", dig(adm, "total"), facts["admissions"])
    s.item("Admitted", dig(adm, "admitted"), facts["admissions"])
    s.item("Refused", dig(adm, "refused"), facts["admissions"])
    canaries = dig(adm, "canaries")
    s.item("Policy canaries planted", canaries, ev.status(canaries, ["GT-ADMIT-CANARIES"]))
    # What the chain checks recompute is the records' consistency: that the batches the
    # producer recorded use only admitted examples. That the steps really trained on those
    # batches is shown only by replay, for the steps it re-executed (issue 9, principle 7).
    rep = dig(ev.v, "replay") if ev.status(dig(ev.v, "replay"), REPLAY)[0] == VERIFIED else None
    facts["replayed"] = ev.status(rep, REPLAY)
    used_ok = None
    if facts["batches"][0] == VERIFIED:
        used_ok = "yes, in the producer's signed step records (consistent; " + (
            "no step re-executed)"
            if rep is None
            else f"{_show(_replayed_steps(rep))} step(s) re-executed by replay)"
        )
    s.item("Recorded batches use only admitted, non-held-out examples", used_ok, facts["batches"])
    s.item(
        "Steps re-executed by replay (batches shown to be what trained)",
        replay_summary(rep, dig(ev.v, "steps")),
        facts["replayed"],
    )
    facts["declared"] = declared = ev.claim(adm)
    s.item("License, source, data class and consent of each example",
           "declared by the producer" if adm else None, declared)  # fmt: skip
    cols = ["admitted", "refused", "total"]
    st = facts["classes"]
    s.table("byLicenseClass", "By license class", st, ["license class", *cols],
            class_rows(dig(adm, "byLicenseClass")))  # fmt: skip
    s.table("byDataClass", "By data class", st, ["data class", *cols],
            class_rows(dig(adm, "byDataClass")))  # fmt: skip
    s.table("refusedByRule", "Refused, by failing rule (an example may fail several)", st,
            ["rule", "examples"],
            counts(dig(adm, "refusedByRule")))  # fmt: skip
    s.charts += ["admissionsByLicense", "refusedByRule"]
    return s


def _replayed_steps(rep: object) -> int | None:
    steps = dig(rep, "steps")
    if isinstance(steps, list):
        return len(steps)
    return _int(dig(rep, "stepsExecuted"))


def replay_summary(rep: object, total: object) -> str | None:
    if not isinstance(rep, Mapping):
        return None
    n, total = _replayed_steps(rep), _int(total)
    p = dig(rep, "detectionProbability")
    out = f"{_show(n)} step(s)" + (f" of {_show(total)}" if total else "")
    if isinstance(p, int | float) and not isinstance(p, bool):
        out += f"; a single forged step is caught with probability ≥ {p:.3g}"
    return out


def processing(ev: Evidence, facts: dict[str, Status]) -> Section:
    adm = dig(ev.v, "admissions")
    s = Section("processing", "Data processing", "Content rules (PII, opt-out, duplicates) are "
                "verified only when --data and --openings let the verifier re-read the texts; "
                "otherwise they are the producer's recorded findings.")  # fmt: skip
    pii = dig(adm, "pii")
    present = any(dig(adm, k) is not None for k in ("pii", "optout", "duplicates"))
    facts["content"] = st = ev.status(adm if present else None, CONTENT)
    s.item("PII masked", dig(pii, "masked"), st)
    s.item("PII rejected", dig(pii, "rejected"), st)
    s.item("Opt-outs honored (refused)", dig(adm, "optout"), st)
    s.item("Duplicates", dig(adm, "duplicates"), st)
    by_kind = counts(dig(pii, "byKind"))
    s.table("piiByKind", "PII findings by kind", st, ["kind", "examples"], by_kind)
    return s


def training(ev: Evidence, facts: dict[str, Status]) -> Section:
    v, a = ev.v, ev.a
    s = Section("training", "Training method and hyperparameters", "Hyperparameters and losses are "
                "the producer's signed claims; only --replay re-executes steps.")  # fmt: skip
    config = dig(a, "config")
    facts["config"] = ev.claim(config)
    loss = [p for p in (dig(a, "lossCurve") or []) if isinstance(p, list | tuple) and len(p) >= 2]
    method = "governed fine-tuning with per-example depth profiles and gradient routing"
    s.item("Method", method if config else None, facts["config"])
    steps = dig(v, "steps")
    s.item(
        "Optimizer steps recorded", steps, ev.status(steps, ["GT-CHAIN-GAP", "GT-STEP-LOG-SUMMARY"])
    )
    s.item("Loss curve", f"{len(loss)} points" if loss else None, ev.claim(loss))
    rows = [[k, x] for k, x in _flatten(config)]
    extra = len(rows) - MAX_CONFIG_ITEMS
    title = "Configuration as run" + (f" ({extra} more keys in the JSON)" if extra > 0 else "")
    s.table("config", title, facts["config"], ["key", "value"], rows[:MAX_CONFIG_ITEMS])
    s.charts.append("loss")
    return s


def routing(ev: Evidence, facts: dict[str, Status]) -> Section:
    routing = dig(ev.v, "routing")
    s = Section("routing", "Depth profiles and routing conformance", "Every recorded tensor change "
                "must be allowed by the profile of some example in that step's batch; a change "
                "allowed by several profiles is attributed to each of them.")  # fmt: skip
    facts["routing"] = st = ev.status(routing, ["GT-ROUTE-VIOLATION", "GT-ROUTE-UNKNOWN"])
    s.item("Tensor changes recorded", dig(routing, "tensorChanges"), st)
    s.item("Changes not allowed by any batch example's profile", dig(routing, "violations"), st)
    profiles = as_map(dig(routing, "profiles"))
    by_profile = as_map(dig(ev.v, "admissions", "byProfile"))
    rows = []
    for name in sorted(set(profiles) | set(by_profile), key=str):
        p = as_map(profiles.get(name))
        ex = _int(p.get("examplesAdmitted"))
        ex = ex if ex is not None else _int(by_profile.get(name))
        tensors = _int(p.get("tensors"))
        rows.append([str(name), _int(p.get("params")), tensors, ex, _int(p.get("tensorChanges"))])
    cols = ["profile", "parameters", "tensors", "examples admitted", "tensor changes attributed"]
    s.table("profiles", "Per profile", st, cols, rows)
    s.charts.append("attribution")
    return s


def memorization(ev: Evidence, facts: dict[str, Status]) -> Section:
    v, a = ev.v, ev.a
    s = Section("memorization", "Memorization findings", "Exposure values are measured by the "
                "producer; replay does not recompute them.")  # fmt: skip
    mem = dig(v, "memorization")
    facts["memorization"] = st = ev.status(mem, ["GT-MEM-EVENTS", "GT-MEM-SIGNAL", "GT-MEM-ACTION"])
    quarantined = dig(mem, "quarantined") if mem is not None else None
    if quarantined == []:
        quarantined = "none"
    s.item("Events logged", dig(mem, "events"), st)
    s.item("Examples flagged", dig(mem, "flags"), st)
    s.item("Quarantined examples (never used again)", quarantined,
           ev.status(quarantined, ["GT-BATCH-QUARANTINED"]))  # fmt: skip
    s.item("Training halted", dig(mem, "halted"), st)
    ref = dig(a, "reference")
    s.item("Reference distribution (held-out losses)", _reference(ref, ev), ev.claim(ref))
    canaries = [c for c in (dig(a, "canaries") or []) if isinstance(c, Mapping)]
    limit = exposure_limit(ev)
    # Indices and steps are identifiers, shown without thousands separators. The threshold
    # (verified: the signed policy) stands next to each measured value (attested).
    rows, marks = [], []
    for i, c in enumerate(canaries):
        x = dig(c, "exposure")
        over = limit is not None and isinstance(x, int | float) and x > limit
        vs = "—" if limit is None else (f"EXCEEDS {limit:g}" if over else f"within {limit:g}")
        rows.append([_show(dig(c, "index")).replace(",", ""), x, vs,
                     _show(dig(c, "step")).replace(",", "")])  # fmt: skip
        if over:
            marks.append(i)
    if canaries:
        shown = f"{len(marks)} of {len(canaries)} measurement(s)" + (
            " (threshold disabled)" if limit is None else f" above exposure_max {limit:g} bits"
        )
        s.item("Canaries above the exposure threshold", shown, weakest_status(
            ev.claim(canaries), ev.status(limit, ["GT-POLICY-DIGEST"])))  # fmt: skip
    s.table(
        "canaries",
        "Canary exposure (bits; Carlini et al. 2019)",
        ev.claim(canaries),
        ["canary index", "exposure", "vs policy exposure_max", "step"],
        rows,
        marks,
    )
    return s


def _reference(ref: object, ev: Evidence) -> str | None:
    """``N held-out losses; quantiles 1%: 1.93, ...``, the policy's flag quantile marked."""
    if not isinstance(ref, Mapping):
        return None if ref is None else _show(ref)
    q = as_map(dig(ref, "quantiles"))
    flag_q = dig(ev.v, "policyTerms", "memorization", "referenceQuantile")
    parts = []
    for k, x in q.items():
        try:
            pct = f"{float(k):.0%}" if float(k) >= 0.01 else f"{float(k):.1%}"
        except ValueError:
            pct = str(k)
        mark = " (the policy flags losses below this)" if isinstance(flag_q, float) and str(
            k) in (str(flag_q), f"{flag_q:g}") else ""  # fmt: skip
        parts.append(f"{pct}: {_show(x)}{mark}")
    return f"{_show(dig(ref, 'count'))} held-out losses; quantiles " + (", ".join(parts) or "—")


def exposure_limit(ev: Evidence) -> float | None:
    """The verified policy's exposure_max (None: disabled or no verified policy)."""
    x = dig(ev.v, "policyTerms", "memorization", "exposureMax")
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and x > 0 else None


def exposures_over(ev: Evidence) -> int:
    limit = exposure_limit(ev)
    canaries = [c for c in (dig(ev.a, "canaries") or []) if isinstance(c, Mapping)]
    if limit is None:
        return 0
    return sum(1 for c in canaries if isinstance(dig(c, "exposure"), int | float)
               and dig(c, "exposure") > limit)  # fmt: skip


def weakest_status(*statuses: Status) -> Status:
    """The weakest of several (status, basis) pairs, with every basis that is not verified."""
    worst = weakest(st for st, _ in statuses)
    basis = "; ".join(b for st, b in statuses if st != VERIFIED) or statuses[0][1]
    return worst, basis


def _tolerance(rep: object) -> str:
    mode, tol = dig(rep, "mode"), dig(rep, "tolerance")
    if mode in ("bitwise", "strict") and not tol:
        return "bitwise (every value compared exactly)"
    value = dig(tol, "value") if isinstance(tol, Mapping) else tol
    who = dig(tol, "chosenBy") if isinstance(tol, Mapping) else None
    chooser = {
        "auditor": "chosen by the auditor (--replay-tolerance)",
        "producer": "chosen by the producer",
    }.get(str(who), "chooser not recorded")
    return f"{_show(mode)}, tolerance {_show(value)}, {chooser}"  # fmt: skip


def _probability(rep: object) -> str | None:
    p = dig(rep, "detectionProbability")
    if not isinstance(p, int | float) or isinstance(p, bool):
        return None
    return (f"a single forged step is caught with probability ≥ {p:.3g}; k forged steps with "
            f"≥ 1 − (1 − {p:.3g})^k")  # fmt: skip


def replay(ev: Evidence, facts: dict[str, Status]) -> Section:
    rep = dig(ev.v, "replay")
    s = Section("replay", "Replay audit (re-executed steps)", "Steps drawn from the signed "
                "step-log head and the auditor's nonce, plus the largest stored-state updates, "
                "re-executed from checkpoints with the trainer's own code: a sampled audit, not a "
                "proof for every step (spec/verification.md V9). Without replay, every step is "
                "the producer's signed record, checked for consistency only.")  # fmt: skip
    facts["replay"] = st = ev.status(rep, REPLAY)
    if st[0] == NOT_REQUESTED:  # one line, not ten rows of the same
        s.item("Replay", "not requested (no --replay N): no step was re-executed", st)
        return s
    s.item("Mode", _tolerance(rep) if rep is not None else None, st)
    s.item("Detection probability", _probability(rep), st)
    cov = dig(rep, "coverage")
    shown_cov = f"{cov:.1%} of the run's steps" if isinstance(cov, float | int) else None
    s.item("Coverage", shown_cov, st)
    nonce, src = dig(rep, "nonce"), dig(rep, "nonceSource")
    who = {
        "auditor": "given by the auditor (--replay-nonce)",
        "os": "drawn from the operating system by the verifier",
    }.get(str(src))
    s.item("Nonce", f"{nonce} ({who})" if nonce and who else nonce,
           ev.status(nonce, ["GT-REPLAY-SELECT"]))  # fmt: skip
    seed = dig(rep, "seed")
    s.item("Selection seed", seed, ev.status(seed, ["GT-REPLAY-SELECT"]))
    s.item("Random steps requested", dig(rep, "requested"), st)
    selected = dig(rep, "selected")
    s.item("Random steps drawn from the chain head", selected,
           ev.status(selected, ["GT-REPLAY-SELECT"]))  # fmt: skip
    ivs = [iv for iv in (dig(rep, "intervals") or []) if isinstance(iv, list | tuple)]
    iv_shown = [f"{_show(iv[0]).replace(',', '')}→{_show(iv[-1]).replace(',', '')}" for iv in ivs]
    s.item("Checkpoint intervals re-executed (every step in each)", iv_shown or None, st)
    tops = [q for q in (dig(rep, "topQ") or []) if isinstance(q, Mapping)]
    top_shown = [f"{_show(dig(q, 'fromStep'))}→{_show(dig(q, 'toStep'))}" for q in tops]
    s.item("Largest updates replayed (top-Q intervals)", top_shown or None, st)
    s.item("Steps re-executed", _replayed_steps(rep), st)
    rows = []
    for x in (r for r in (dig(rep, "results") or []) if isinstance(r, Mapping)):
        result = "reproduced" if dig(x, "ok") is True else f"FAILED: {_show(dig(x, 'reason'))}"
        rows.append([_show(dig(x, "step")).replace(",", ""), dig(x, "why"),
                     _show(dig(x, "fromCheckpoint")).replace(",", ""), result,
                     dig(x, "maxDiff")])  # fmt: skip
    cols = ["step", "chosen by", "replayed from step", "result", "max |diff|"]
    s.table("replayed", "Replayed steps", st, cols, rows)
    return s


SECTIONS = (
    identity, lineage, provenance, admission, processing, training, routing, memorization, replay,
)  # fmt: skip

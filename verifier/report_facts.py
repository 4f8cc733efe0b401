"""The report's facts: each value of the evidence with its status, grouped in sections.

A fact's status is decided here and nowhere else:

- ``verified``: the verifier recomputed it and every check it rests on passed. A value
  placed in ``result.verified`` whose checks did not all pass is demoted, so the
  report never shows an unverified claim as verified;
- ``attested``: a signed claim of the producer the verifier did not recompute;
- ``failed``: a check it rests on failed;
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
STATUSES = (VERIFIED, ATTESTED, FAILED, MISSING)
_RANK = {FAILED: 0, MISSING: 1, ATTESTED: 2, VERIFIED: 3}  # weakest first
MAX_CONFIG_ITEMS = 60  # flattened config keys shown in HTML/MD; the JSON keeps them all
Status = tuple[str, str]  # (status, basis: why this status)

ADMIT = ["GT-ADMIT-DECISION", "GT-ADMIT-COUNTS"]
CONTENT = ["GT-DATA-FINDINGS"]
DATA = ["GT-DATA-FORMAT", "GT-DATA-COMMITMENT"]
REPLAY = ["GT-REPLAY-SELECT", "GT-REPLAY-CHECKPOINT", "GT-REPLAY-STEP"]


def _get(d: object, *path: str) -> Any:
    for key in path:
        if not isinstance(d, Mapping) or key not in d:
            return None
        d = d[key]
    return d


def _map(v: object) -> Mapping[str, Any]:
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
        self.v = _map(result.verified)
        self.a = _map(result.attested)
        self.failed = {f.code for f in result.findings if f.status == "fail"}
        self.passed = {f.code for f in result.findings if f.status == "pass"} - self.failed

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
        return MISSING, "absent from the evidence"

    def claim(self, value: object) -> Status:
        """A producer's claim no check recomputes."""
        return self.status(None, (), value)


class Section:
    """Collects one section's items, tables and chart ids."""

    def __init__(self, sid: str, title: str, note: str = "") -> None:
        self.sid, self.title, self.note = sid, title, note
        self.items: list[dict[str, Any]] = []
        self.tables: list[dict[str, Any]] = []
        self.charts: list[str] = []

    def item(self, label: str, value: object, status: Status) -> None:
        self.items.append(
            {"label": label, "value": _show(value), "status": status[0], "basis": status[1]}
        )

    def table(
        self, tid: str, title: str, status: Status, columns: list[str], rows: list[list[Any]]
    ) -> None:
        cells = [[c if _int(c) is not None or isinstance(c, float) else _show(c) for c in r]
                 for r in rows]  # fmt: skip
        # A column is right-aligned when every cell in it is a number (or absent).
        numeric = [
            bool(cells) and all(isinstance(r[i], int | float) or r[i] == "—" for r in cells)
            for i in range(len(columns))
        ]
        self.tables.append({"id": tid, "title": title, "status": status[0], "basis": status[1],
                            "columns": columns, "numeric": numeric,
                            "rows": plain(cells)})  # fmt: skip

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
    for cls, n in sorted(_map(d).items(), key=lambda kv: str(kv[0])):
        a, r = _int(_get(n, "admitted")) or 0, _int(_get(n, "refused")) or 0
        rows.append([str(cls), a, r, a + r])
    return rows


def counts(d: object) -> list[list[Any]]:
    return sorted(([str(k), _int(v) or 0] for k, v in _map(d).items()), key=lambda r: (-r[1], r[0]))


# -- the sections, in report order ----------------------------------------------------
# Each takes the evidence and the shared ``facts`` dict (fact name -> Status), which the
# control mapping reads afterwards, and returns the section.


def identity(ev: Evidence, facts: dict[str, Status]) -> Section:
    v, a = ev.v, ev.a
    s = Section("identity", "Model identity and integrity")
    pol = _get(v, "policy")
    weights = _get(v, "weights") if isinstance(_get(v, "weights"), list) else None
    final = _get(v, "finalStateRoot")
    facts["run"] = ev.status(_get(v, "runId"), ["GT-STMT-BINDING"], _get(a, "runId"))
    facts["signers"] = ev.status(_get(v, "keyids"), ["GT-SIG-INVALID", "GT-SIG-UNTRUSTED"])
    facts["policy"] = ev.status(pol, ["GT-POLICY-DIGEST"])
    facts["weights"] = ev.status(weights or None, ["GT-WEIGHTS-DIGEST"], _get(a, "weights"))
    final_codes = ["GT-STATE-FINAL", "GT-WEIGHTS-DIGEST", "GT-WEIGHTS-ROOT"]
    facts["final"] = ev.status(final, final_codes, _get(a, "finalStateRoot"))
    policy = f"{_show(_get(pol, 'name'))} (digest {_show(_get(pol, 'digest'))})" if pol else None
    s.item("Run ID", _get(v, "runId") or _get(a, "runId"), facts["run"])
    s.item("Signed by (trusted key ids)", _get(v, "keyids"), facts["signers"])
    s.item("Policy", policy, facts["policy"])
    final_shown = final or _get(a, "finalStateRoot")
    s.item("Final state root (released weights)", final_shown, facts["final"])
    cps = _get(v, "checkpoints")
    s.item("Checkpoints recorded", cps, ev.status(cps, ["GT-CHECKPOINT-DIGEST"]))
    files = [w for w in (weights or _get(a, "weights") or []) if isinstance(w, Mapping)]
    rows = [[_get(w, "name"), _get(w, "sha256"), _int(_get(w, "bytes"))] for w in files]
    s.table("weights", "Weight files", facts["weights"], ["file", "sha256", "bytes"], rows)
    return s


def lineage(ev: Evidence, facts: dict[str, Status]) -> Section:
    v, a = ev.v, ev.a
    s = Section("lineage", "Lineage", "The base model's identity is the producer's claim unless "
                "--base recomputed its state root.")  # fmt: skip
    base_model = _get(a, "baseModel")
    base_root = _get(v, "baseStateRoot") or _get(base_model, "stateRoot")
    facts["base"] = ev.status(_get(v, "baseStateRoot"), ["GT-BASE-ROOT"], base_root)
    facts["baseModel"] = ev.claim(base_model)
    steps = _get(v, "steps")
    facts["chain"] = ev.status(steps, ["GT-STATE-BASE", "GT-STATE-ROOT", "GT-STATE-FINAL"])
    s.item("Base model", base_model, facts["baseModel"])
    s.item("Base state root", base_root, facts["base"])
    chained = f"{_show(steps)} steps" if steps is not None else None
    s.item("State roots chain from base to final", chained, facts["chain"])
    return s


def provenance(ev: Evidence, facts: dict[str, Status]) -> Section:
    v, a = ev.v, ev.a
    s = Section("provenance", "Who trained it, when, with which environment")
    dataset, vdata = _get(a, "dataset"), _get(v, "data")
    facts["dataset"] = ev.status(vdata, DATA, dataset)
    if facts["dataset"][0] == VERIFIED:
        dataset = {"sha256": _get(vdata, "sha256"), "examples": _get(vdata, "examples")}
    env = _get(a, "environment")
    facts["environment"] = ev.claim(env)
    for label, key in (("Builder", "builder"), ("Started", "startedOn"),
                       ("Finished", "finishedOn")):  # fmt: skip
        s.item(label, _get(a, key), ev.claim(_get(a, key)))
    s.item("Dataset", dataset, facts["dataset"])
    rows = [[k, x] for k, x in _flatten(env)][:MAX_CONFIG_ITEMS]
    s.table("environment", "Environment", facts["environment"], ["key", "value"], rows)
    return s


def admission(ev: Evidence, facts: dict[str, Status]) -> Section:
    adm = _get(ev.v, "admissions") if isinstance(_get(ev.v, "admissions"), Mapping) else None
    s = Section("admission", "Data sources and admission", "Decisions are re-evaluated under the "
                "signed policy from the committed metadata (license, source, data class, consent, "
                "length); the metadata itself is declared by the producer.")  # fmt: skip
    facts["admissions"] = ev.status(adm, ADMIT)
    facts["classes"] = ev.status(adm, ["GT-ADMIT-DECISION"])
    facts["batches"] = ev.status(_get(ev.v, "steps"), ["GT-BATCH-REFUSED", "GT-BATCH-HELDOUT"])
    s.item("Examples recorded", _get(adm, "total"), facts["admissions"])
    s.item("Admitted", _get(adm, "admitted"), facts["admissions"])
    s.item("Refused", _get(adm, "refused"), facts["admissions"])
    canaries = _get(adm, "canaries")
    s.item("Policy canaries planted", canaries, ev.status(canaries, ["GT-ADMIT-CANARIES"]))
    used_ok = "yes" if facts["batches"][0] == VERIFIED else None
    s.item("Batches used only admitted, non-held-out examples", used_ok, facts["batches"])
    cols = ["admitted", "refused", "total"]
    st = facts["classes"]
    s.table("byLicenseClass", "By license class", st, ["license class", *cols],
            class_rows(_get(adm, "byLicenseClass")))  # fmt: skip
    s.table("byDataClass", "By data class", st, ["data class", *cols],
            class_rows(_get(adm, "byDataClass")))  # fmt: skip
    s.table("refusedByRule", "Refused, by failing rule", st, ["rule", "examples"],
            counts(_get(adm, "refusedByRule")))  # fmt: skip
    s.charts += ["admissionsByLicense", "refusedByRule"]
    return s


def processing(ev: Evidence, facts: dict[str, Status]) -> Section:
    adm = _get(ev.v, "admissions")
    s = Section("processing", "Data processing", "Content rules (PII, opt-out, duplicates) are "
                "verified only when --data and --openings let the verifier re-read the texts; "
                "otherwise they are the producer's recorded findings.")  # fmt: skip
    pii = _get(adm, "pii")
    present = any(_get(adm, k) is not None for k in ("pii", "optout", "duplicates"))
    facts["content"] = st = ev.status(adm if present else None, CONTENT)
    s.item("PII masked", _get(pii, "masked"), st)
    s.item("PII rejected", _get(pii, "rejected"), st)
    s.item("Opt-outs honored (refused)", _get(adm, "optout"), st)
    s.item("Duplicates", _get(adm, "duplicates"), st)
    by_kind = counts(_get(pii, "byKind"))
    s.table("piiByKind", "PII findings by kind", st, ["kind", "examples"], by_kind)
    return s


def training(ev: Evidence, facts: dict[str, Status]) -> Section:
    v, a = ev.v, ev.a
    s = Section("training", "Training method and hyperparameters", "Hyperparameters and losses are "
                "the producer's signed claims; only --replay re-executes steps.")  # fmt: skip
    config = _get(a, "config")
    facts["config"] = ev.claim(config)
    loss = [p for p in (_get(a, "lossCurve") or []) if isinstance(p, list | tuple) and len(p) >= 2]
    method = "governed fine-tuning with per-example depth profiles and gradient routing"
    s.item("Method", method if config else None, facts["config"])
    steps = _get(v, "steps")
    s.item("Optimizer steps recorded", steps, ev.status(steps, ["GT-CHAIN-GAP", "GT-LOG-SUMMARY"]))
    s.item("Loss curve", f"{len(loss)} points" if loss else None, ev.claim(loss))
    rows = [[k, x] for k, x in _flatten(config)]
    extra = len(rows) - MAX_CONFIG_ITEMS
    title = "Configuration as run" + (f" ({extra} more keys in the JSON)" if extra > 0 else "")
    s.table("config", title, facts["config"], ["key", "value"], rows[:MAX_CONFIG_ITEMS])
    s.charts.append("loss")
    return s


def routing(ev: Evidence, facts: dict[str, Status]) -> Section:
    routing = _get(ev.v, "routing")
    s = Section("routing", "Depth profiles and routing conformance", "Every recorded tensor change "
                "must be allowed by the profile of some example in that step's batch; a change "
                "allowed by several profiles is attributed to each of them.")  # fmt: skip
    facts["routing"] = st = ev.status(routing, ["GT-ROUTE-VIOLATION", "GT-ROUTE-UNKNOWN"])
    s.item("Tensor changes recorded", _get(routing, "tensorChanges"), st)
    s.item("Changes not allowed by any batch example's profile", _get(routing, "violations"), st)
    profiles = _map(_get(routing, "profiles"))
    by_profile = _map(_get(ev.v, "admissions", "byProfile"))
    rows = []
    for name in sorted(set(profiles) | set(by_profile), key=str):
        p = _map(profiles.get(name))
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
    mem = _get(v, "memorization")
    facts["memorization"] = st = ev.status(
        mem, ["GT-MEM-EVENTS", "GT-MEM-SIGNAL", "GT-MEM-ACTION"]
    )
    quarantined = _get(mem, "quarantined") if mem is not None else None
    if quarantined == []:
        quarantined = "none"
    s.item("Events logged", _get(mem, "events"), st)
    s.item("Examples flagged", _get(mem, "flags"), st)
    s.item("Quarantined examples (never used again)", quarantined,
           ev.status(quarantined, ["GT-BATCH-QUARANTINED"]))  # fmt: skip
    s.item("Training halted", _get(mem, "halted"), st)
    ref = _get(a, "reference")
    s.item("Reference distribution (held-out losses)", ref, ev.claim(ref))
    canaries = [c for c in (_get(a, "canaries") or []) if isinstance(c, Mapping)]
    # Indices and steps are identifiers, shown without thousands separators.
    rows = [[_show(_get(c, "index")).replace(",", ""), _get(c, "exposure"),
             _show(_get(c, "step")).replace(",", "")] for c in canaries]  # fmt: skip
    s.table("canaries", "Canary exposure (bits; Carlini et al. 2019)", ev.claim(canaries),
            ["canary index", "exposure", "step"], rows)  # fmt: skip
    return s


def replay(ev: Evidence, facts: dict[str, Status]) -> Section:
    rep = _get(ev.v, "replay")
    s = Section("replay", "Replay audit (re-executed steps)", "Steps drawn from the signed "
                "step-log head, plus the largest stored-state updates (top-Q), re-executed from "
                "checkpoints with the trainer's own code: a sampled audit, not a proof for every "
                "step (spec/verification.md V9).")  # fmt: skip
    facts["replay"] = st = ev.status(rep, REPLAY)
    mode, tol = _get(rep, "mode"), _get(rep, "tolerance")
    shown = f"{mode} ({'bitwise' if tol is None else f'tolerance {_show(tol)}'})" if mode else None
    s.item("Mode", shown, st)
    s.item("Random steps requested", _get(rep, "requested"), st)
    selected = _get(rep, "selected")
    s.item("Random steps drawn from the chain head", selected,
           ev.status(selected, ["GT-REPLAY-SELECT"]))  # fmt: skip
    s.item("Selection seed", _get(rep, "seed"), ev.status(_get(rep, "seed"), ["GT-REPLAY-SELECT"]))
    tops = [q for q in (_get(rep, "topQ") or []) if isinstance(q, Mapping)]
    top_shown = [f"{_show(_get(q, 'fromStep'))}→{_show(_get(q, 'toStep'))}" for q in tops]
    s.item("Largest updates replayed (top-Q intervals)", top_shown or None, st)
    s.item("Steps re-executed", _get(rep, "stepsExecuted"), st)
    rows = []
    for x in (r for r in (_get(rep, "results") or []) if isinstance(r, Mapping)):
        result = "reproduced" if _get(x, "ok") is True else f"FAILED: {_show(_get(x, 'reason'))}"
        rows.append([_show(_get(x, "step")).replace(",", ""), _get(x, "why"),
                     _show(_get(x, "fromCheckpoint")).replace(",", ""), result,
                     _get(x, "maxDiff")])  # fmt: skip
    cols = ["step", "chosen by", "replayed from step", "result", "max |diff|"]
    s.table("replayed", "Replayed steps", st, cols, rows)
    return s


SECTIONS = (
    identity, lineage, provenance, admission, processing, training, routing, memorization, replay,
)  # fmt: skip

"""V2 policy and V3 admission log: every decision re-evaluated under the signed policy."""

from __future__ import annotations

from collections import Counter
from typing import Any

from attest.admission import decide
from attest.errors import FormatError, PolicyError
from attest.log import iter_log
from attest.merkle import MerkleBuilder
from attest.policy import Policy
from attest.predicates import ADMISSIONS_FILE, ADMISSIONS_TYPE, POLICY_FILE
from attest.records import AdmissionRecord

from .context import AdmissionTable, Context, Tally, inputs_unusable, skip_all

POLICY_CODES = ("GT-POLICY-FORMAT", "GT-POLICY-DIGEST")
ADMIT_CODES = (
    "GT-LOG-FORMAT",
    "GT-LOG-SUMMARY",
    "GT-ADMIT-ORDER",
    "GT-ADMIT-DECISION",
    "GT-ADMIT-COUNTS",
    "GT-ADMIT-CANARIES",
)


def check_policy(ctx: Context) -> None:
    r = ctx.result
    pred = ctx.policy_pred
    if inputs_unusable(ctx, POLICY_CODES, pred, "policy", POLICY_FILE) or pred is None:
        return
    path = ctx.prov / POLICY_FILE
    try:
        data = path.read_bytes()
        if len(data) > ctx.limits.policy_max:
            raise PolicyError(f"larger than {ctx.limits.policy_max} bytes")
        policy = Policy.from_toml(data, where=f"provenance/{POLICY_FILE}")
    except OSError as e:
        r.fail("GT-POLICY-FORMAT", f"provenance/{POLICY_FILE}: cannot read: {e.strerror or e}")
        skip_all(r, POLICY_CODES, "no readable policy")
        return
    except PolicyError as e:
        r.fail("GT-POLICY-FORMAT", str(e))
        skip_all(r, POLICY_CODES, "the policy is invalid")
        return
    r.add("GT-POLICY-FORMAT", "pass", f"policy {policy.name!r}")
    digest = policy.digest()
    problems = []
    if digest != pred.policy_digest:
        problems.append(
            f"provenance/{POLICY_FILE}: expected policy digest {pred.policy_digest}, found {digest}"
        )
    try:
        embedded = Policy.from_dict(dict(pred.policy))
        if embedded.to_dict() != policy.to_dict():
            problems.append(
                f"policy statement: expected the embedded policy to equal {POLICY_FILE}, found a "
                f"different policy"
            )
    except PolicyError as e:
        problems.append(f"policy statement: embedded policy invalid: {e}")
    if problems:
        for p in problems:
            r.fail("GT-POLICY-DIGEST", p)
        return
    r.add("GT-POLICY-DIGEST", "pass", digest)
    ctx.policy = policy
    r.verified["policy"] = {"name": policy.name, "digest": digest}


def _class_counter() -> dict[str, dict[str, int]]:
    return {}


def _bump(table: dict[str, dict[str, int]], key: str, admitted: bool) -> None:
    row = table.setdefault(key, {"admitted": 0, "refused": 0})
    row["admitted" if admitted else "refused"] += 1


def check_admissions(ctx: Context) -> None:
    r = ctx.result
    pred, policy = ctx.admissions_pred, ctx.policy
    if inputs_unusable(ctx, ADMIT_CODES, pred, "admission-log", ADMISSIONS_FILE) or pred is None:
        return
    t = Tally(r, ADMIT_CODES)
    merkle = MerkleBuilder()
    head = b""
    admitted: dict[int, str | None] = {}
    canaries: set[int] = set()
    stats: dict[str, Any] = {
        "byLicenseClass": {},
        "byDataClass": {},
        "refusedByRule": Counter(),
        "pii": {"masked": 0, "rejected": 0, "byKind": Counter()},
        "optout": 0,
        "duplicates": 0,
        "byProfile": Counter(),
    }
    n = n_admit = 0
    first_canary: int | None = None
    canary_order_ok = True
    try:
        for rec in iter_log(ctx.prov / ADMISSIONS_FILE, limits=ctx.limits):
            a = AdmissionRecord.from_record(rec.value, f"{ADMISSIONS_FILE}: record {rec.index}")
            merkle.add(rec.hash)
            head = rec.hash
            n += 1
            if a.index != rec.index:
                t.fail(
                    "GT-ADMIT-ORDER",
                    f"{ADMISSIONS_FILE}: record {rec.index}: expected index {rec.index}, found "
                    f"{a.index}",
                )
            if a.index in admitted:
                t.fail(
                    "GT-ADMIT-ORDER",
                    f"{ADMISSIONS_FILE}: record {rec.index}: index {a.index} appears twice",
                )
            admitted[a.index] = a.profile if a.admitted else None
            if a.metadata.canary:
                canaries.add(a.index)
                if first_canary is None:
                    first_canary = rec.index
            elif first_canary is not None:
                canary_order_ok = False
            if policy is not None:
                d = decide(policy, a.metadata, a.findings)
                if (d.admitted, d.profile, d.outcomes) != (a.admitted, a.profile, a.outcomes):
                    t.fail("GT-ADMIT-DECISION", _decision_diff(a, d))
            _absorb_stats(stats, policy, a)
            n_admit += a.admitted
    except FormatError as e:
        t.fail("GT-LOG-FORMAT", str(e))
        for c in ADMIT_CODES[1:]:
            t.skip(c, "the admission log is malformed")
        t.flush()
        return
    if policy is None:
        t.skip("GT-ADMIT-DECISION", "no verified policy to re-evaluate decisions under")
        t.skip("GT-ADMIT-CANARIES", "no verified policy")
    summary = (n, head.hex() if n else "00" * 32, merkle.root().hex())
    signed = (pred.log.count, pred.log.head, pred.log.merkle_root)
    for name, want, got in zip(("count", "head", "merkleRoot"), signed, summary, strict=True):
        if want != got:
            t.fail("GT-LOG-SUMMARY", f"{ADMISSIONS_FILE}: expected {name} {want}, found {got}")
    subj = ctx.statements[ADMISSIONS_TYPE].subject(ADMISSIONS_FILE)
    if subj is not None and subj.digest.get("sha256") != pred.log.sha256:
        t.fail(
            "GT-LOG-SUMMARY",
            f"admission-log: expected log.sha256 {subj.digest.get('sha256')} (the subject), found "
            f"{pred.log.sha256}",
        )
    counts = {"total": n, "admitted": n_admit, "refused": n - n_admit, "canaries": len(canaries)}
    for k, v in counts.items():
        if pred.counts.get(k) != v:
            t.fail(
                "GT-ADMIT-COUNTS",
                f"admission-log counts.{k}: expected {v} (from the log), found "
                f"{pred.counts.get(k)}",
            )
    examples = n - len(canaries)
    if pred.dataset.get("examples") != examples:
        t.fail(
            "GT-ADMIT-COUNTS",
            f"admission-log dataset.examples: expected {examples} (non-canary records), found "
            f"{pred.dataset.get('examples')}",
        )
    if policy is not None:
        want_c = policy.canaries.count * policy.canaries.repeats
        if len(canaries) != want_c:
            t.fail(
                "GT-ADMIT-CANARIES",
                f"{ADMISSIONS_FILE}: expected {want_c} canary records "
                f"({policy.canaries.count} x {policy.canaries.repeats} repeats), found "
                f"{len(canaries)}",
            )
        if not canary_order_ok:
            t.fail(
                "GT-ADMIT-CANARIES",
                f"{ADMISSIONS_FILE}: expected canaries after all dataset examples, found a "
                f"dataset example after canary {first_canary}",
            )
    t.flush(
        {
            "GT-LOG-FORMAT": f"{ADMISSIONS_FILE}: {n} canonical records, chain unbroken",
            "GT-LOG-SUMMARY": f"{ADMISSIONS_FILE}: count {n}, head and Merkle root match",
            "GT-ADMIT-DECISION": f"{n} decisions re-evaluated",
            "GT-ADMIT-COUNTS": ", ".join(f"{k} {v}" for k, v in counts.items()),  # not a dict repr
            "GT-ADMIT-ORDER": f"indices 0..{n - 1}",
        }
    )
    ctx.admissions_log_ok = True
    ctx.admissions = AdmissionTable(admitted, canaries, examples)
    stats["refusedByRule"] = dict(sorted(stats["refusedByRule"].items()))
    stats["pii"]["byKind"] = dict(sorted(stats["pii"]["byKind"].items()))
    stats["byProfile"] = dict(sorted(stats["byProfile"].items()))
    r.verified["admissions"] = {**counts, **stats}


def _absorb_stats(stats: dict[str, Any], policy: Policy | None, a: AdmissionRecord) -> None:
    lic = (
        "canary"
        if a.metadata.canary
        else ((policy.license_class(a.metadata.license) if policy else None) or "unclassified")
    )
    _bump(stats["byLicenseClass"], lic, a.admitted)
    _bump(stats["byDataClass"], a.metadata.data_class, a.admitted)
    if not a.admitted:
        for o in a.outcomes:
            if o.outcome == "fail":
                stats["refusedByRule"][o.rule] += 1
    for o in a.outcomes:
        if o.rule == "pii" and o.outcome == "masked":
            stats["pii"]["masked"] += 1
        elif o.rule == "pii" and o.outcome == "fail":
            stats["pii"]["rejected"] += 1
    for kind in a.findings.pii:
        stats["pii"]["byKind"][kind] += 1
    stats["optout"] += a.findings.optout
    stats["duplicates"] += a.findings.duplicate
    if a.admitted and a.profile is not None:
        stats["byProfile"][a.profile] += 1


def _decision_diff(a: AdmissionRecord, d: Any) -> str:
    where = f"{ADMISSIONS_FILE}: example {a.index}"
    if (a.admitted, a.profile) != (d.admitted, d.profile):
        want = (
            f"admit ({d.profile})"
            if d.admitted
            else f"refuse ({', '.join(d.reasons) or 'profile'})"
        )
        got = f"admit ({a.profile})" if a.admitted else "refuse"
        return f"{where}: expected {want} under the policy, found {got}"
    for i, (w, g) in enumerate(zip(d.outcomes, a.outcomes, strict=False)):
        if w != g:
            want, got = f"{w.rule}={w.outcome} {w.detail!r}", f"{g.rule}={g.outcome} {g.detail!r}"
            return f"{where}: outcome {i} expected {want}, found {got}"
    return f"{where}: expected {len(d.outcomes)} rule outcomes, found {len(a.outcomes)}"

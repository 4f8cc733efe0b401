"""V2 policy and V3 admission log: every decision re-evaluated under the signed policy."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from attest.admission import decide
from attest.canary import CANARY_FINDINGS, canary_indices, canary_metadata
from attest.errors import FormatError, PolicyError
from attest.log import iter_log
from attest.merkle import MerkleBuilder
from attest.policy import Policy
from attest.predicates import ADMISSIONS_FILE, POLICY_FILE
from attest.records import AdmissionRecord

from .context import Context, Tally, all_passed, missing_inputs, skip_all
from .profile_table import ProfileTable
from .verified import VerifiedAdmissions, VerifiedBundle, VerifiedPolicy

POLICY_CODES = ("GT-POLICY-FORMAT", "GT-POLICY-DIGEST")
ADMIT_CODES = (
    "GT-ADMIT-LOG-FORMAT",
    "GT-ADMIT-LOG-SUMMARY",
    "GT-ADMIT-ORDER",
    "GT-ADMIT-DECISION",
    "GT-ADMIT-COUNTS",
    "GT-ADMIT-CANARIES",
    "GT-ADMIT-CANARY-METADATA",
)


def check_policy(ctx: Context, bundle: VerifiedBundle | None) -> VerifiedPolicy | None:
    """V2 over the policy bytes V1 read and digest-checked (never re-read from disk)."""
    r = ctx.result
    if missing_inputs(r, POLICY_CODES, {"bundle": bundle}) or bundle is None:
        return None
    pred = bundle.policy_pred
    where = f"provenance/{POLICY_FILE}"
    try:
        policy = Policy.from_toml(bundle.policy_bytes, where=where)
    except PolicyError as e:
        r.fail("GT-POLICY-FORMAT", str(e))
        skip_all(r, POLICY_CODES, "the policy is invalid")
        return None
    # One code for an invalid policy, wherever it is written (issue 10 item 7): the
    # predicate's embedded `policy` object is judged by the same rules as policy.toml.
    try:
        embedded = Policy.from_dict(dict(pred.policy))
    except PolicyError as e:
        r.fail("GT-POLICY-FORMAT", f"policy statement: embedded policy invalid: {e}")
        skip_all(r, POLICY_CODES, "the policy is invalid")
        return None
    r.add("GT-POLICY-FORMAT", "pass", f"policy {policy.name!r}")
    digest = policy.digest()
    problems = []
    if digest != pred.policy_digest:
        problems.append(f"{where}: expected policy digest {pred.policy_digest}, found {digest}")
    if embedded.to_dict() != policy.to_dict():
        problems.append(
            f"policy statement: expected the embedded policy to equal {POLICY_FILE}, found a "
            f"different policy"
        )
    if problems:
        for p in problems:
            r.fail("GT-POLICY-DIGEST", p)
        return None
    r.add("GT-POLICY-DIGEST", "pass", digest)
    r.verified["policy"] = {"name": policy.name, "digest": digest}
    return VerifiedPolicy(policy, digest)


def _class_counter() -> dict[str, dict[str, int]]:
    return {}


def _bump(table: dict[str, dict[str, int]], key: str, admitted: bool) -> None:
    row = table.setdefault(key, {"admitted": 0, "refused": 0})
    row["admitted" if admitted else "refused"] += 1


def check_admissions(
    ctx: Context, bundle: VerifiedBundle | None, vpolicy: VerifiedPolicy | None
) -> VerifiedAdmissions | None:
    """V3: stream admissions.msgpack once (its sha256 re-checked against V1's as it streams)."""
    r = ctx.result
    if missing_inputs(r, ADMIT_CODES, {"bundle": bundle, "policy": vpolicy}):
        return None
    assert bundle is not None and vpolicy is not None  # narrowed by missing_inputs
    pred, policy = bundle.admissions_pred, vpolicy.policy
    t = Tally(r, ADMIT_CODES)
    file_hash = hashlib.sha256()
    want_meta = canary_metadata(policy.canaries).to_dict()
    merkle = MerkleBuilder()
    head = b""
    # One byte per record (verifier/profile_table.py), never a dict of a million keys.
    admitted = ProfileTable(tuple(sorted(policy.profiles)))
    # Only a failing log has records out of place: their positions and indices, so that
    # "appears twice" is judged exactly as over the set of every index seen so far.
    stray_at: set[int] = set()
    stray: set[int] = set()
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
            file_hash.update(rec.raw)
            a = AdmissionRecord.from_record(rec.value, f"{ADMISSIONS_FILE}: record {rec.index}")
            merkle.add(rec.hash)
            head = rec.hash
            n += 1
            # The indices seen so far: positions 0..rec.index-1 whose record was in place,
            # and the indices of those that were not.
            seen = (0 <= a.index < rec.index and a.index not in stray_at) or a.index in stray
            if a.index != rec.index:
                t.fail(
                    "GT-ADMIT-ORDER",
                    f"{ADMISSIONS_FILE}: record {rec.index}: expected index {rec.index}, found "
                    f"{a.index}",
                )
                stray_at.add(rec.index)
                stray.add(a.index)
            if seen:
                t.fail(
                    "GT-ADMIT-ORDER",
                    f"{ADMISSIONS_FILE}: record {rec.index}: index {a.index} appears twice",
                )
            admitted.append(a.profile if a.admitted else None)
            if rec.index & 0xFFF == 0:
                ctx.records_progress(rec.index, pred.log.count)
            if a.metadata.canary:
                canaries.add(a.index)
                if first_canary is None:
                    first_canary = rec.index
                # records.md §3 rule 2: the metadata is fixed, the findings empty.
                got_meta = a.metadata.to_dict()
                if got_meta != want_meta or a.findings != CANARY_FINDINGS:
                    diff = {k: v for k, v in got_meta.items() if want_meta.get(k) != v}
                    t.fail(
                        "GT-ADMIT-CANARY-METADATA",
                        f"{ADMISSIONS_FILE}: canary record {a.index}: expected metadata "
                        f"{want_meta} and empty findings, found "
                        f"{diff or 'the metadata'} and findings {a.findings.to_dict()}",
                    )
            elif first_canary is not None:
                canary_order_ok = False
            d = decide(policy, a.metadata, a.findings)
            if (d.admitted, d.profile, d.outcomes) != (a.admitted, a.profile, a.outcomes):
                t.fail("GT-ADMIT-DECISION", _decision_diff(a, d))
            _absorb_stats(stats, policy, a)
            n_admit += a.admitted
    except (FormatError, OSError) as e:
        msg = (
            f"{ADMISSIONS_FILE}: cannot read: {e.strerror or e}"
            if isinstance(e, OSError)
            else str(e)
        )
        t.fail("GT-ADMIT-LOG-FORMAT", msg)
        for c in ADMIT_CODES[1:]:
            t.skip(c, "the admission log is malformed")
        t.flush()
        return None
    if file_hash.hexdigest() != bundle.admissions_sha256:
        # Swapped between V1's digest and this read (a shared or network folder).
        t.fail(
            "GT-ADMIT-LOG-FORMAT",
            f"{ADMISSIONS_FILE}: expected sha256:{bundle.admissions_sha256} (verified in V1), "
            f"found sha256:{file_hash.hexdigest()} in the bytes read here: the file changed",
        )
    summary = (n, head.hex() if n else "00" * 32, merkle.root().hex())
    signed = (pred.log.count, pred.log.head, pred.log.merkle_root)
    for name, want, got in zip(("count", "head", "merkleRoot"), signed, summary, strict=True):
        if want != got:
            t.fail(
                "GT-ADMIT-LOG-SUMMARY", f"{ADMISSIONS_FILE}: expected {name} {want}, found {got}"
            )
    if bundle.admissions_sha256 != pred.log.sha256:
        t.fail(
            "GT-ADMIT-LOG-SUMMARY",
            f"admission-log: expected log.sha256 {bundle.admissions_sha256} (the subject), found "
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
            "GT-ADMIT-LOG-FORMAT": f"{ADMISSIONS_FILE}: {n} canonical records, chain unbroken",
            "GT-ADMIT-LOG-SUMMARY": f"{ADMISSIONS_FILE}: count {n}, head and Merkle root match",
            "GT-ADMIT-DECISION": f"{n} decisions re-evaluated",
            "GT-ADMIT-COUNTS": ", ".join(f"{k} {v}" for k, v in counts.items()),  # not a dict repr
            "GT-ADMIT-ORDER": f"indices 0..{n - 1}",
        }
    )
    if not all_passed(r, ADMIT_CODES):
        return None  # nothing of a failed layer is published (verification.md §2.1)
    stats["refusedByRule"] = dict(sorted(stats["refusedByRule"].items()))
    stats["pii"]["byKind"] = dict(sorted(stats["pii"]["byKind"].items()))
    stats["byProfile"] = dict(sorted(stats["byProfile"].items()))
    # sha256: what `govtune show` binds the rows it prints to (verifier/show.py)
    r.verified["admissions"] = {**counts, **stats, "sha256": bundle.admissions_sha256}
    return VerifiedAdmissions(
        admitted=admitted,
        canaries=frozenset(canaries),
        canary_groups=canary_indices(policy.canaries, examples),
        examples=examples,
        head=summary[1],
        merkle_root=summary[2],
        count=n,
        sha256=bundle.admissions_sha256,
    )


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

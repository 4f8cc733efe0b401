"""V1: the bundle, its signatures, statements, bindings and sidecar digests.

Unknown statements (spec/verification.md §V1, in-toto "Bundle layer"): a consumer
ignores statements it does not understand. An envelope is ignored only when its
payload is a readable in-toto statement whose predicate type is outside the govtune
namespace; it is then ignored whether or not its signature verifies, since nothing
it says is used. Every other envelope (a govtune type, or a payload too broken to
tell) must verify under the trusted keys, else the run FAILs: fail closed.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from attest.bundle import read_bundle
from attest.canonical import parse_json
from attest.digest import sha256_file
from attest.envelope import verify_envelope
from attest.errors import FormatError, VerificationError
from attest.predicates import (
    ADMISSIONS_FILE,
    ADMISSIONS_TYPE,
    BUNDLE_FILE,
    MEMORIZATION_TYPE,
    NAMESPACE,
    POLICY_FILE,
    POLICY_TYPE,
    REQUIRED_TYPES,
    STATE_ROOT_ALG,
    STATE_ROOT_SUBJECT,
    STEPS_FILE,
    TRAINING_TYPE,
    parse_predicate,
)

from .context import Context, Tally, skip_all

CODES = (
    "GT-BUNDLE-MISSING",
    "GT-BUNDLE-FORMAT",
    "GT-SIG-THRESHOLD",
    "GT-SIG-PAYLOAD-TYPE",
    "GT-SIG-NONE",
    "GT-SIG-UNTRUSTED",
    "GT-SIG-INVALID",
    "GT-STMT-FORMAT",
    "GT-STMT-MISSING",
    "GT-STMT-DUPLICATE",
    "GT-STMT-BINDING",
    "GT-FILE-UNCOVERED",
    "GT-FILE-DIGEST",
)
SHORT = {
    POLICY_TYPE: "policy",
    ADMISSIONS_TYPE: "admission-log",
    TRAINING_TYPE: "training-run",
    MEMORIZATION_TYPE: "memorization-report",
}


def _peek_type(payload: bytes, ctx: Context) -> str | None:
    """The predicate type an (unverified) payload claims, or None if unreadable."""
    try:
        obj = parse_json(payload, limits=ctx.limits)
    except FormatError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("predicateType"), str):
        return obj["predicateType"]  # type: ignore[no-any-return]
    return None


def check_bundle(ctx: Context) -> None:
    r = ctx.result
    path = ctx.prov / BUNDLE_FILE
    if not path.is_file():
        r.fail(
            "GT-BUNDLE-MISSING",
            f"provenance/{BUNDLE_FILE}: expected the signed bundle, found no such file",
        )
        skip_all(r, CODES, "no bundle")
        return
    r.add("GT-BUNDLE-MISSING", "pass", f"provenance/{BUNDLE_FILE}")
    try:
        lines = read_bundle(path, limits=ctx.limits)
    except FormatError as e:
        r.fail("GT-BUNDLE-FORMAT", str(e))
        skip_all(r, CODES, "the bundle is unreadable")
        return
    r.add("GT-BUNDLE-FORMAT", "pass", f"{len(lines)} envelope(s)")
    if ctx.threshold < 1 or ctx.threshold > len(ctx.keys):
        r.fail(
            "GT-SIG-THRESHOLD",
            f"expected 1 <= threshold <= {len(ctx.keys)} trusted key(s), got threshold "
            f"{ctx.threshold}",
        )
        skip_all(r, CODES, "no signature can be trusted under this threshold")
        return
    r.add("GT-SIG-THRESHOLD", "pass", f"threshold {ctx.threshold} of {len(ctx.keys)} key(s)")

    t = Tally(r, CODES[3:8])
    found: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    broken: set[str] = set()  # required types present but not usable (their failure is reported)
    ignored: list[dict[str, Any]] = []
    keyids: set[str] = set()
    for bl in lines:
        where = f"bundle line {bl.line}"
        claimed = _peek_type(bl.envelope.payload, ctx)
        foreign = claimed is not None and not claimed.startswith(NAMESPACE + "/")
        try:
            signed = verify_envelope(bl.envelope, list(ctx.keys), ctx.threshold, where=where)
        except VerificationError as e:
            if foreign:
                ignored.append(
                    {
                        "line": bl.line,
                        "predicateType": claimed,
                        "reason": f"not verified ({e.code})",
                    }
                )
                continue
            t.fail(e.code, e.message)
            broken.add(claimed or "")
            continue
        except FormatError as e:
            if foreign:
                ignored.append(
                    {
                        "line": bl.line,
                        "predicateType": claimed,
                        "reason": "not a canonical statement",
                    }
                )
                continue
            t.fail("GT-STMT-FORMAT", f"{where}: {e}")
            broken.add(claimed or "")
            continue
        try:
            pred = parse_predicate(signed.statement, where=f"{where} predicate")
        except FormatError as e:
            t.fail("GT-STMT-FORMAT", str(e))
            broken.add(signed.statement.predicate_type)
            continue
        if pred is None:
            ignored.append(
                {
                    "line": bl.line,
                    "predicateType": signed.statement.predicate_type,
                    "reason": "verified; predicate type not understood",
                }
            )
            continue
        keyids.update(signed.keyids)
        found[signed.statement.predicate_type].append((bl.line, (signed.statement, pred)))
    t.flush(
        {
            "GT-SIG-INVALID": "every govtune envelope verifies",
            "GT-STMT-FORMAT": "canonical statements",
        }
    )
    ctx.result.scope["ignored"] = ignored

    dup = Tally(r, ("GT-STMT-MISSING", "GT-STMT-DUPLICATE"))
    for ptype in REQUIRED_TYPES:
        items = found.get(ptype, [])
        if not items and ptype not in broken:
            dup.fail(
                "GT-STMT-MISSING",
                f"bundle: expected one {SHORT[ptype]} statement ({ptype}), found none",
            )
        elif len(items) > 1:
            dup.fail(
                "GT-STMT-DUPLICATE",
                f"bundle: expected one {SHORT[ptype]} statement, found {len(items)} "
                f"(lines {', '.join(str(n) for n, _ in items)})",
            )
        elif items and ptype not in broken:
            st, pred = items[0][1]
            ctx.statements[ptype] = st
            setattr(
                ctx,
                {
                    POLICY_TYPE: "policy_pred",
                    ADMISSIONS_TYPE: "admissions_pred",
                    TRAINING_TYPE: "training_pred",
                    MEMORIZATION_TYPE: "memorization_pred",
                }[ptype],
                pred,
            )
    dup.flush(
        {
            "GT-STMT-MISSING": "policy, admission-log, training-run, memorization-report",
            "GT-STMT-DUPLICATE": "one of each",
        }
    )
    r.verified["keyids"] = sorted(keyids)
    _check_binding(ctx)
    _check_files(ctx)


def _check_binding(ctx: Context) -> None:
    r = ctx.result
    preds = {p: ctx.pred(p) for p in REQUIRED_TYPES if ctx.pred(p) is not None}
    if not preds:
        skip_all(r, ("GT-STMT-BINDING",), "no usable statement")
        return
    t = Tally(r, ("GT-STMT-BINDING",))
    run_ids = {SHORT[p]: x.run_id for p, x in preds.items()}
    pol = {SHORT[p]: x.policy_digest for p, x in preds.items()}
    for name, values in (("runId", run_ids), ("policyDigest", pol)):
        if len(set(values.values())) > 1:
            t.fail(
                "GT-STMT-BINDING",
                f"statements: expected one {name}, found "
                + ", ".join(f"{k}={v}" for k, v in sorted(values.items())),
            )
    run_id = next(iter(run_ids.values()))
    if len(run_id) != 32 or any(c not in "0123456789abcdef" for c in run_id):
        t.fail("GT-STMT-BINDING", f"runId: expected 32 lowercase hex digits, found {run_id!r:.40}")
    st = ctx.statements
    if POLICY_TYPE in st and st[POLICY_TYPE].subject(POLICY_FILE) is None:
        t.fail("GT-STMT-BINDING", f"policy statement: expected subject {POLICY_FILE!r}, found none")
    if ADMISSIONS_TYPE in st and st[ADMISSIONS_TYPE].subject(ADMISSIONS_FILE) is None:
        t.fail(
            "GT-STMT-BINDING",
            f"admission-log statement: expected subject {ADMISSIONS_FILE!r}, found none",
        )
    tr, ad, mem = ctx.training_pred, ctx.admissions_pred, ctx.memorization_pred
    if tr is not None:
        want = {(w["name"], w["sha256"]) for w in tr.weights}
        got = {
            (s.name, s.digest.get("sha256"))
            for s in st[TRAINING_TYPE].subjects
            if s.name != STATE_ROOT_SUBJECT
        }
        if want != got:
            t.fail(
                "GT-STMT-BINDING",
                f"training-run subjects: expected the predicate's weights {sorted(want)}, found "
                f"{sorted(got)}",
            )
        root = st[TRAINING_TYPE].subject(STATE_ROOT_SUBJECT)
        if root is None or root.digest.get(STATE_ROOT_ALG) != tr.final_state_root:
            t.fail(
                "GT-STMT-BINDING",
                f"training-run subject {STATE_ROOT_SUBJECT}: expected "
                f"{STATE_ROOT_ALG}:{tr.final_state_root}, found "
                f"{dict(root.digest) if root else None}",
            )
        if mem is not None:
            got_m = {(s.name, s.digest.get("sha256")) for s in st[MEMORIZATION_TYPE].subjects}
            if got_m != want:
                t.fail(
                    "GT-STMT-BINDING",
                    f"memorization-report subjects: expected the weights {sorted(want)}, found "
                    f"{sorted(got_m)}",
                )
            if mem.step_log_head != tr.step_log.head:
                t.fail(
                    "GT-STMT-BINDING",
                    f"memorization-report stepLogHead: expected {tr.step_log.head}, found "
                    f"{mem.step_log_head}",
                )
        if ad is not None:
            if tr.admission_head != ad.log.head:
                t.fail(
                    "GT-STMT-BINDING",
                    f"training-run admissionHead: expected the admission log head {ad.log.head}, "
                    f"found {tr.admission_head}",
                )
            if dict(tr.dataset) != dict(ad.dataset):
                t.fail(
                    "GT-STMT-BINDING",
                    f"training-run dataset: expected {dict(ad.dataset)}, found {dict(tr.dataset)}",
                )
    t.flush({"GT-STMT-BINDING": f"runId {run_id}"})
    r.verified["runId"] = run_id if not t.failed("GT-STMT-BINDING") else None


def _check_files(ctx: Context) -> None:
    r = ctx.result
    usable = all(ctx.pred(p) is not None for p in (POLICY_TYPE, ADMISSIONS_TYPE, TRAINING_TYPE))
    expected: dict[str, str] = {}  # provenance file -> signed sha256
    if ctx.policy_pred is not None:
        s = ctx.statements[POLICY_TYPE].subject(POLICY_FILE)
        if s is not None:
            expected[POLICY_FILE] = s.digest.get("sha256", "")
    if ctx.admissions_pred is not None:
        s = ctx.statements[ADMISSIONS_TYPE].subject(ADMISSIONS_FILE)
        if s is not None:
            expected[ADMISSIONS_FILE] = s.digest.get("sha256", "")
    if ctx.training_pred is not None:
        expected[STEPS_FILE] = ctx.training_pred.step_log.sha256

    if usable and MEMORIZATION_TYPE in ctx.statements:
        covered = set(expected) | {s.name for st in ctx.statements.values() for s in st.subjects}
        t = Tally(r, ("GT-FILE-UNCOVERED",))
        n = 0
        for dirpath, dirnames, filenames in os.walk(ctx.prov):
            dirnames.sort()
            for fn in sorted(filenames):
                rel = os.path.relpath(os.path.join(dirpath, fn), ctx.prov).replace(os.sep, "/")
                if rel == BUNDLE_FILE:
                    continue
                n += 1
                if rel not in covered:
                    t.fail(
                        "GT-FILE-UNCOVERED",
                        f"provenance/{rel}: expected every file to be covered by a signed "
                        f"statement, found it covered by none",
                    )
        t.flush({"GT-FILE-UNCOVERED": f"{n} file(s) covered"})
    else:
        skip_all(
            r,
            ("GT-FILE-UNCOVERED",),
            "a required statement is unusable, coverage cannot be decided",
        )

    if not expected:
        skip_all(r, ("GT-FILE-DIGEST",), "no statement names a sidecar file")
        return
    t = Tally(r, ("GT-FILE-DIGEST",))
    for name in sorted(expected):
        path = ctx.prov / name
        if not path.is_file():
            t.fail(
                "GT-FILE-DIGEST",
                f"provenance/{name}: expected sha256:{expected[name]}, found no such file",
            )
            ctx.bad_files.add(name)
            continue
        try:
            got = sha256_file(path)
        except OSError as e:
            got = f"unreadable ({e.strerror or e})"
        if got != expected[name]:
            t.fail(
                "GT-FILE-DIGEST",
                f"provenance/{name}: expected sha256:{expected[name]}, found {got}",
            )
            ctx.bad_files.add(name)
    t.flush({"GT-FILE-DIGEST": ", ".join(sorted(expected))})

"""V1: the bundle, its signatures, statements, bindings and sidecar digests.

Unknown statements (spec/verification.md §V1, in-toto "Bundle layer"): a consumer
ignores statements it does not understand. An envelope is ignored only when its
payload is a readable in-toto statement whose predicate type is outside the govtune
namespace; it is then ignored whether or not its signature verifies, since nothing
it says is used. Every other envelope (a govtune type, or a payload too broken to
tell) must verify under the trusted keys, else the run FAILs: fail closed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attest import layout
from attest.bundle import read_bundle
from attest.canonical import parse_json
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

from .context import Context, Tally, all_passed, skip_all
from .verified import VerifiedBundle

CODES = (
    "GT-FILE-TYPE",
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
SIG_CODES = (
    "GT-SIG-PAYLOAD-TYPE",
    "GT-SIG-NONE",
    "GT-SIG-UNTRUSTED",
    "GT-SIG-INVALID",
    "GT-STMT-FORMAT",
)
# Digest algorithms the verifier computes over a file subject's bytes (hashlib names).
# A file subject lists sha256 and may add sha512; any other algorithm refuses the subject
# (principle 1: every listed digest is checked, or the subject is not accepted).
FILE_DIGESTS = ("sha256", "sha512")
CHUNK = 1 << 20  # bytes per read when digesting a file
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


def check_bundle(ctx: Context) -> VerifiedBundle | None:
    """V1. The VerifiedBundle when every V1 check passed, else None."""
    r = ctx.result
    entries = _check_entries(ctx)
    path = ctx.prov / BUNDLE_FILE
    bundle_entry = entries.get(f"{layout.PROVENANCE_DIR}/{BUNDLE_FILE}")
    if bundle_entry is None or not bundle_entry.is_file:
        what = "no such file" if bundle_entry is None else "not a regular file"
        if bundle_entry is None and f"{layout.PROVENANCE_DIR}/{layout.STEPS_FILE}" in entries:
            # Logs without a bundle: what a run stopped before signing leaves (issue 14).
            what += (
                "; the step log is there, so the run was interrupted before it was signed "
                "(finish it with `govtune train CONFIG --out RUN --resume`)"
            )
        r.fail(
            "GT-BUNDLE-MISSING",
            f"provenance/{BUNDLE_FILE}: expected the signed bundle, found {what}",
        )
        skip_all(r, CODES, "no bundle")
        return None
    r.add("GT-BUNDLE-MISSING", "pass", f"provenance/{BUNDLE_FILE}")
    try:
        lines = read_bundle(path, limits=ctx.limits)
    except FormatError as e:
        r.fail("GT-BUNDLE-FORMAT", str(e))
        skip_all(r, CODES, "the bundle is unreadable")
        return None
    r.add("GT-BUNDLE-FORMAT", "pass", f"{len(lines)} envelope(s)")
    if ctx.threshold < 1 or ctx.threshold > len(ctx.keys):
        r.fail(
            "GT-SIG-THRESHOLD",
            f"expected 1 <= threshold <= {len(ctx.keys)} trusted key(s), got threshold "
            f"{ctx.threshold}",
        )
        skip_all(r, CODES, "no signature can be trusted under this threshold")
        return None
    r.add("GT-SIG-THRESHOLD", "pass", f"threshold {ctx.threshold} of {len(ctx.keys)} key(s)")

    t = Tally(r, SIG_CODES)
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
    dup.flush(
        {
            "GT-STMT-MISSING": "policy, admission-log, training-run, memorization-report",
            "GT-STMT-DUPLICATE": "one of each",
        }
    )
    r.verified["keyids"] = sorted(keyids)
    preds = {p: items[0][1] for p, items in found.items() if len(items) == 1 and p not in broken}
    statements = {p: st for p, (st, _pred) in preds.items()}
    typed = {p: pred for p, (_st, pred) in preds.items()}
    run_id = _check_binding(ctx, statements, typed)
    kind = layout.folder_kind(ctx.root)
    _check_coverage(ctx, entries, kind, typed.get(TRAINING_TYPE))
    digests = _check_files(ctx, entries, statements, typed)
    if not all_passed(r, CODES) or run_id is None or digests is None:
        return None
    policy_bytes, adm_sha, steps_sha = digests
    return VerifiedBundle(
        run_id=run_id,
        keyids=tuple(sorted(keyids)),
        kind=kind,
        statements=statements,
        policy_pred=typed[POLICY_TYPE],
        admissions_pred=typed[ADMISSIONS_TYPE],
        training=typed[TRAINING_TYPE],
        memorization=typed[MEMORIZATION_TYPE],
        policy_bytes=policy_bytes,
        admissions_sha256=adm_sha,
        steps_sha256=steps_sha,
    )


def _check_entries(ctx: Context) -> dict[str, layout.Entry]:
    """GT-FILE-TYPE: list the folder once (scandir + lstat); refuse every entry that is not
    a folder or a regular file with one link. Returns the entries by relative path."""
    r = ctx.result
    try:
        entries = {
            e.rel: e
            for e in layout.walk(
                ctx.root, ctx.limits.folder_entries_max, ctx.limits.folder_depth_max
            )
        }
    except (OSError, FormatError) as e:
        msg = f"{ctx.root}: cannot list: {e.strerror or e}" if isinstance(e, OSError) else str(e)
        r.fail("GT-FILE-TYPE", msg)
        return {}
    t = Tally(r, ("GT-FILE-TYPE",))
    refused, _ = layout.problems(list(entries.values()), layout.RUN)
    for m in refused:
        t.fail("GT-FILE-TYPE", m)
    t.flush({"GT-FILE-TYPE": f"{len(entries)} entries, all regular files or folders"})
    return entries


def _subject_digests_ok(t: Tally, where: str, digest: Mapping[str, str]) -> bool:
    """A file subject lists sha256 and optionally sha512, nothing the verifier cannot check."""
    algs = sorted(digest)
    if "sha256" not in digest or any(a not in FILE_DIGESTS for a in algs):
        t.fail(
            "GT-STMT-BINDING",
            f"{where}: expected digest algorithms sha256 (and optionally sha512), found "
            f"{', '.join(algs)}",
        )
        return False
    return True


def _check_binding(ctx: Context, st: Mapping[str, Any], preds: Mapping[str, Any]) -> str | None:
    """GT-STMT-BINDING; the run id when it passed. Each statement's subjects are exactly
    the ones its type names (predicates/*.md "Subjects"): nothing extra can "cover" a file."""
    r = ctx.result
    if not preds:
        skip_all(r, ("GT-STMT-BINDING",), "no usable statement")
        return None
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
    for ptype, fname in ((POLICY_TYPE, POLICY_FILE), (ADMISSIONS_TYPE, ADMISSIONS_FILE)):
        if ptype not in st:
            continue
        names = [s.name for s in st[ptype].subjects]
        if names != [fname]:
            t.fail(
                "GT-STMT-BINDING",
                f"{SHORT[ptype]} statement subjects: expected exactly [{fname!r}], found {names}",
            )
        else:
            _subject_digests_ok(
                t, f"{SHORT[ptype]} subject {fname!r}", st[ptype].subjects[0].digest
            )
    tr, ad, mem = preds.get(TRAINING_TYPE), preds.get(ADMISSIONS_TYPE), preds.get(MEMORIZATION_TYPE)
    if tr is not None:
        want = [(w["name"], w["sha256"]) for w in (*tr.weights, *tr.model_files)]
        files = [s for s in st[TRAINING_TYPE].subjects if s.name != STATE_ROOT_SUBJECT]
        got = [(s.name, s.digest.get("sha256")) for s in files]
        if len(set(want)) != len(want) or sorted(want) != sorted(got):
            t.fail(
                "GT-STMT-BINDING",
                f"training-run subjects: expected exactly the predicate's weights and model "
                f"files {sorted(want)}, found {sorted(got, key=str)}",
            )
        for s in files:
            _subject_digests_ok(t, f"training-run subject {s.name!r}", s.digest)
        roots = [s for s in st[TRAINING_TYPE].subjects if s.name == STATE_ROOT_SUBJECT]
        root = roots[0] if len(roots) == 1 else None
        if root is None or dict(root.digest) != {STATE_ROOT_ALG: tr.final_state_root}:
            t.fail(
                "GT-STMT-BINDING",
                f"training-run subject {STATE_ROOT_SUBJECT}: expected exactly one, with digest "
                f"{{{STATE_ROOT_ALG}: {tr.final_state_root}}}, found "
                f"{[dict(x.digest) for x in roots]}",
            )
        if mem is not None:
            weight_names = {w["name"] for w in tr.weights}
            want_m = sorted(
                (s.name, sorted(s.digest.items())) for s in files if s.name in weight_names
            )
            got_m = sorted(
                (s.name, sorted(s.digest.items())) for s in st[MEMORIZATION_TYPE].subjects
            )
            if got_m != want_m:
                t.fail(
                    "GT-STMT-BINDING",
                    f"memorization-report subjects: expected the training-run weight subjects "
                    f"{want_m}, found {got_m}",
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
    ok = not t.failed("GT-STMT-BINDING")
    r.verified["runId"] = run_id if ok else None
    return run_id if ok else None


def _check_coverage(ctx: Context, entries: Mapping[str, layout.Entry], kind: str, tr: Any) -> None:
    """GT-FILE-UNCOVERED: every entry is one the layout allows, with the weight and
    checkpoint names the training statement signs (attest.layout)."""
    r = ctx.result
    if tr is None:
        skip_all(r, ("GT-FILE-UNCOVERED",), "no usable training-run statement names the weights")
        return
    t = Tally(r, ("GT-FILE-UNCOVERED",))
    weights = [w["name"] for w in tr.weights]
    checkpoints = [c.file for c in tr.checkpoints]
    model_files = [m["name"] for m in tr.model_files]
    _, unexpected = layout.problems(
        list(entries.values()), kind, weights, checkpoints, model_files=model_files
    )
    for m in unexpected:
        t.fail("GT-FILE-UNCOVERED", m)
    for name in layout.PROVENANCE_FILES:
        if f"{layout.PROVENANCE_DIR}/{name}" not in entries:
            t.fail("GT-FILE-UNCOVERED", f"provenance/{name}: expected the file, found none")
    t.flush({"GT-FILE-UNCOVERED": f"{len(entries)} entries, all allowed in a {kind} folder"})


def file_digests(
    path: Path, algs: Any, max_bytes: int | None = None
) -> tuple[dict[str, str], bytes]:
    """Every digest of ``algs`` over the file's bytes in one read; the bytes too when the file
    is at most ``max_bytes`` (for a file a later layer parses: it parses these very bytes).
    Raises OSError, FormatError (over ``max_bytes``)."""
    hs = {a: hashlib.new(a) for a in algs}
    kept = bytearray()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            for h in hs.values():
                h.update(chunk)
            if max_bytes is not None:
                kept += chunk
                if len(kept) > max_bytes:
                    raise FormatError(f"{path.name}: larger than {max_bytes} bytes")
    return {a: h.hexdigest() for a, h in hs.items()}, bytes(kept)


def _check_files(
    ctx: Context,
    entries: Mapping[str, layout.Entry],
    st: Mapping[str, Any],
    preds: Mapping[str, Any],
) -> tuple[bytes, str, str] | None:
    """GT-FILE-DIGEST: each sidecar's bytes against every digest its statement signs.
    Returns (policy.toml bytes, admissions sha256, steps sha256) when all matched."""
    r = ctx.result
    expected: dict[str, dict[str, str]] = {}  # provenance file -> signed digests
    for ptype, fname in ((POLICY_TYPE, POLICY_FILE), (ADMISSIONS_TYPE, ADMISSIONS_FILE)):
        if ptype in st and len(st[ptype].subjects) == 1 and st[ptype].subjects[0].name == fname:
            expected[fname] = dict(st[ptype].subjects[0].digest)
    if TRAINING_TYPE in preds:
        expected[STEPS_FILE] = {"sha256": preds[TRAINING_TYPE].step_log.sha256}
    if not expected:
        skip_all(r, ("GT-FILE-DIGEST",), "no statement names a sidecar file")
        return None
    t = Tally(r, ("GT-FILE-DIGEST",))
    got_all: dict[str, dict[str, str]] = {}
    policy_bytes = b""
    for name in sorted(expected):
        want = expected[name]
        e = entries.get(f"{layout.PROVENANCE_DIR}/{name}")
        if e is None or not e.is_file:
            found = "no such file" if e is None else "not a regular file"
            t.fail("GT-FILE-DIGEST", f"provenance/{name}: expected sha256:{want.get('sha256')}, "
                   f"found {found}")  # fmt: skip
            continue
        algs = [a for a in want if a in FILE_DIGESTS]
        try:
            got, data = file_digests(
                ctx.prov / name, algs, ctx.limits.policy_max if name == POLICY_FILE else None
            )
        except (OSError, FormatError) as err:
            msg = f"unreadable ({err.strerror or err})" if isinstance(err, OSError) else str(err)
            t.fail("GT-FILE-DIGEST", f"provenance/{name}: expected sha256:{want.get('sha256')}, "
                   f"found {msg}")  # fmt: skip
            continue
        for a in algs:
            if got[a] != want[a]:
                t.fail("GT-FILE-DIGEST", f"provenance/{name}: expected {a}:{want[a]}, found "
                       f"{a}:{got[a]}")  # fmt: skip
        got_all[name] = got
        if name == POLICY_FILE:
            policy_bytes = data
    t.flush({"GT-FILE-DIGEST": ", ".join(sorted(expected))})
    if t.failed("GT-FILE-DIGEST") or set(got_all) != {POLICY_FILE, ADMISSIONS_FILE, STEPS_FILE}:
        return None
    return policy_bytes, got_all[ADMISSIONS_FILE]["sha256"], got_all[STEPS_FILE]["sha256"]

"""V10 release: a release folder checked as a whole (spec/release.md §7, spec/verification.md).

Runs after every other layer, on what they verified: the OMS signature (model.sig) must
cover every file of the folder and nothing else, bind the same weights and provenance
bytes as the govtune statements, and the model card and the ML-BOM must state the facts
the verifier derived. GT-RELEASE-PRIVATE runs on run folders too: a secret outside
``private/`` (or any ``private/`` in a release) is a publishing mistake that leaks the
openings.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from attest.canonical import parse_json
from attest.digest import sha256_file
from attest.errors import FormatError, VerificationError
from attest.layout import METADATA_RUN_ID, RELEASE_LAYOUT
from attest.predicates import ADMISSIONS_FILE, BUNDLE_FILE, POLICY_FILE, STEPS_FILE

from . import mlbom, modelcard, oms
from .context import Context, Tally, skip_all
from .release_facts import ReleaseFacts, release_facts

L = RELEASE_LAYOUT
CODES = (
    "GT-RELEASE-PRIVATE",
    "GT-RELEASE-OMS",
    "GT-RELEASE-UNCOVERED",
    "GT-RELEASE-DIGEST",
    "GT-RELEASE-LAYOUT",
    "GT-RELEASE-BINDING",
    "GT-RELEASE-CARD",
    "GT-RELEASE-BOM",
)
BUNDLE_PATH = f"{L.provenance_dir}/{BUNDLE_FILE}"


def is_release(root: Path) -> bool:
    """A folder is a release when it holds a file only a release has: model.sig or the
    ML-BOM (so a release whose model.sig was removed is still judged as one). Not the
    README.md: a peft run folder holds peft's own model card, bound as a model file."""
    return any((root / n).exists() for n in (L.signature, L.bom))


def check_release(ctx: Context) -> None:
    r = ctx.result
    r.add("GT-RELEASE-VSA", "skip", "checked by `govtune verify --vsa-only`")
    release = is_release(ctx.root)
    _check_private(ctx, release)
    if not release:
        skip_all(r, CODES, f"not a release folder (no {L.signature}, {L.card} or {L.bom})")
        return
    r.scope["release"] = True
    signed = _check_oms(ctx)
    if signed is None:
        skip_all(r, CODES, f"{L.signature} did not verify")
        return
    try:
        present: list[str] | None = oms.list_files(ctx.root)
    except FormatError as e:  # a symlink or special file: nothing can be compared
        r.fail("GT-RELEASE-UNCOVERED", str(e))
        skip_all(r, ("GT-RELEASE-DIGEST", "GT-RELEASE-LAYOUT"), "the folder cannot be listed")
        present = None
    if present is not None:
        _check_coverage(ctx, signed, present)
        _check_layout(ctx, present)
    _check_binding(ctx, signed)
    facts = _facts(ctx, signed)
    if isinstance(facts, str):
        skip_all(r, ("GT-RELEASE-CARD", "GT-RELEASE-BOM"), facts)
        return
    declared = _check_card(ctx, facts)
    _check_bom(ctx, facts, declared, signed)


def _check_private(ctx: Context, release: bool) -> None:
    t = Tally(ctx.result, ("GT-RELEASE-PRIVATE",))
    # A run folder that is a git or hub repository (a hub repo always has .gitattributes)
    # is being published: its own private/ then leaks too.
    published = [m for m in (".git", ".gitattributes") if (ctx.root / m).exists()]
    if not release and published and (ctx.root / L.private_dir).exists():
        t.fail(
            "GT-RELEASE-PRIVATE",
            f"{L.private_dir}/: expected no private folder in a run folder that is a "
            f"repository ({', '.join(published)}), found one: publish `govtune release` "
            "instead",
        )
    for dirpath, dirnames, filenames in os.walk(ctx.root):
        rel = os.path.relpath(dirpath, ctx.root).replace(os.sep, "/")
        rel = "" if rel == "." else rel + "/"
        dirnames[:] = sorted(d for d in dirnames if rel + d != ".git")
        own_private = not release and rel.startswith(L.private_dir + "/")
        for d in dirnames:
            if d == L.private_dir and (release or rel):
                t.fail(
                    "GT-RELEASE-PRIVATE",
                    f"{rel}{d}/: expected no private folder in a "
                    f"{'release' if release else 'public part of a run'}, found one (it holds "
                    "the run secret and openings)",
                )
        if own_private:
            continue  # a run's own private/ is its private part (README "The run folder")
        for fn in filenames:
            if fn in L.private_files:
                t.fail(
                    "GT-RELEASE-PRIVATE",
                    f"{rel}{fn}: expected no run secret, openings or canary texts outside a "
                    "run's private/, found this file",
                )
    t.flush(
        {
            "GT-RELEASE-PRIVATE": "no private folder or secret"
            if release
            else "secrets only under the run's private/ (never publish it: build a release)"
        }
    )


def _check_oms(ctx: Context) -> oms.VerifiedOms | None:
    r = ctx.result
    path = ctx.root / L.signature
    if not path.is_file():
        r.fail(
            "GT-RELEASE-OMS",
            f"{L.signature}: expected the OMS signature of the release, found none",
        )
        return None
    try:
        # One trusted signature (the OMS signer's; model-signing reads one key): the
        # consumer's threshold applies to the govtune statements, which GT-RELEASE-BINDING
        # ties to these digests, and card and BOM are re-derived, not trusted.
        signed = oms.verify_signature(
            oms.OmsSignature.read(path, limits=ctx.limits), list(ctx.keys), 1
        )
    except (VerificationError, FormatError) as e:
        r.fail("GT-RELEASE-OMS", e.message if isinstance(e, VerificationError) else str(e))
        return None
    r.add(
        "GT-RELEASE-OMS", "pass", f"{len(signed.files)} file(s), {len(signed.keyids)} signature(s)"
    )
    r.verified["release"] = {"files": len(signed.files), "omsKeyid": signed.oms_keyid}
    return signed


def _check_coverage(ctx: Context, signed: oms.VerifiedOms, present: list[str]) -> None:
    t = Tally(ctx.result, ("GT-RELEASE-UNCOVERED", "GT-RELEASE-DIGEST"))
    for name in present:
        if name not in signed.files:
            t.fail(
                "GT-RELEASE-UNCOVERED",
                f"{name}: expected every file of the release in {L.signature}, found it unsigned",
            )
    have = set(present)
    for name, want in sorted(signed.files.items()):
        if name not in have:
            t.fail(
                "GT-RELEASE-DIGEST",
                f"{name}: expected sha256:{want} ({L.signature}), found no such file",
            )
            continue
        got = sha256_file(ctx.root / name)
        if got != want:
            t.fail(
                "GT-RELEASE-DIGEST", f"{name}: expected sha256:{want} ({L.signature}), found {got}"
            )
    t.flush(
        {"GT-RELEASE-UNCOVERED": f"{len(present)} file(s) signed", "GT-RELEASE-DIGEST": "all match"}
    )


def _allowed(ctx: Context) -> tuple[set[str], str]:
    names = {L.signature, L.card, L.bom} | {f"{L.provenance_dir}/{n}" for n in L.provenance_files}
    names |= set(L.model_side_files)
    tr = ctx.training_pred
    if tr is None:
        return names, "no usable training-run statement"
    names |= {w["name"] for w in tr.weights}
    names |= {c.file for c in tr.checkpoints}
    return names, ""


def _check_layout(ctx: Context, present: list[str]) -> None:
    allowed, why = _allowed(ctx)
    if why:
        skip_all(ctx.result, ("GT-RELEASE-LAYOUT",), why)
        return
    t = Tally(ctx.result, ("GT-RELEASE-LAYOUT",))
    for name in present:
        if name not in allowed:
            t.fail(
                "GT-RELEASE-LAYOUT",
                f"{name}: expected only the release layout's files (signed weights and "
                f"checkpoints, {L.card}, {L.bom}, provenance/, model files), found this one",
            )
    for name in (L.card, L.bom, BUNDLE_PATH):
        if name not in present:
            t.fail("GT-RELEASE-LAYOUT", f"{name}: expected in every release, found no such file")
    t.flush({"GT-RELEASE-LAYOUT": f"{len(present)} file(s), all named by the layout"})


def _metadata(path: Path, ctx: Context) -> dict[str, str]:
    """A safetensors file's ``__metadata__`` (header only). Raises FormatError/OSError."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise FormatError(f"{path.name}: expected an 8-byte header length")
        (n,) = struct.unpack("<Q", raw)
        if n > ctx.limits.safetensors_header_max:
            raise FormatError(f"{path.name}: header of {n} bytes exceeds the cap")
        header = parse_json(f.read(n), where=f"{path.name}:header", limits=ctx.limits)
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    return dict(meta) if isinstance(meta, dict) else {}


def _check_binding(ctx: Context, signed: oms.VerifiedOms) -> None:
    if ctx.bundle is None:  # V1 published nothing: no statement is verified (§2.1)
        skip_all(ctx.result, ("GT-RELEASE-BINDING",), "no verified bundle")
        return
    tr, statements = ctx.bundle.training, ctx.bundle.statements
    t = Tally(ctx.result, ("GT-RELEASE-BINDING",))
    # The same bytes: every file a govtune statement names has that digest in model.sig.
    want: dict[str, str] = {w["name"]: w["sha256"] for w in tr.weights}
    for c in tr.checkpoints:
        if c.file in signed.files:  # checkpoints ship only with --with-checkpoints
            want[c.file] = c.sha256
    want[f"{L.provenance_dir}/{STEPS_FILE}"] = tr.step_log.sha256
    for fname in (POLICY_FILE, ADMISSIONS_FILE):
        for st in statements.values():
            s = st.subject(fname)
            if s is not None:
                want[f"{L.provenance_dir}/{fname}"] = s.digest.get("sha256", "")
    for name, digest in sorted(want.items()):
        got = signed.files.get(name)
        if got != digest:
            t.fail(
                "GT-RELEASE-BINDING",
                f"{name}: the govtune statements say sha256:{digest}, {L.signature} says "
                f"{got or 'nothing'}",
            )
    run_id = ctx.result.verified.get("runId")
    for w in tr.weights:
        path = ctx.root / w["name"]
        if not path.is_file() or not w["name"].endswith(".safetensors"):
            continue
        try:
            meta = _metadata(path, ctx)
        except (FormatError, OSError) as e:
            t.fail("GT-RELEASE-BINDING", f"{w['name']}: cannot read its metadata ({e})")
            continue
        # A pointer, not a trust anchor (the digests above are): if present it must not lie.
        if METADATA_RUN_ID in meta and meta[METADATA_RUN_ID] != run_id:
            t.fail(
                "GT-RELEASE-BINDING",
                f"{w['name']} __metadata__ {METADATA_RUN_ID}: expected {run_id}, found "
                f"{meta[METADATA_RUN_ID]!r:.40}",
            )
    t.flush({"GT-RELEASE-BINDING": f"{len(want)} file(s) bound by both signatures"})


def _facts(ctx: Context, signed: oms.VerifiedOms) -> ReleaseFacts | str:
    if ctx.policy is None:
        return "no verified policy"
    if ctx.result.failures:
        return "an earlier check failed: the facts the card states are not all verified"
    card = ctx.root / L.card
    declared = {"model license": "", "dataset id": ""}
    try:
        parsed = modelcard.parse(card.read_text(encoding="utf-8"))
        declared = {k: parsed.facts.get(k, "") for k in declared}
    except (OSError, UnicodeDecodeError, FormatError):
        pass  # reported by the card check
    try:
        return release_facts(
            ctx.result.verified,
            _attested(ctx),
            ctx.policy,
            license_id=declared["model license"],
            dataset_id=declared["dataset id"],
        )
    except FormatError as e:
        return str(e)


def _attested(ctx: Context) -> dict[str, object]:
    tr = ctx.training_pred
    if tr is None:
        return {}
    return {"baseModel": dict(tr.base_model), "dataset": dict(tr.dataset)}


def _check_card(ctx: Context, facts: ReleaseFacts) -> dict[str, str] | None:
    r = ctx.result
    path = ctx.root / L.card
    try:
        if os.stat(path).st_size > modelcard.MAX_CARD_BYTES:
            raise FormatError(f"{L.card}: larger than {modelcard.MAX_CARD_BYTES} bytes")
        parsed = modelcard.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, FormatError) as e:
        r.fail(
            "GT-RELEASE-CARD", f"{L.card}: expected a model card with front matter and facts ({e})"
        )
        return None
    diffs = modelcard.compare(parsed, facts)
    t = Tally(r, ("GT-RELEASE-CARD",))
    for d in diffs:
        t.fail("GT-RELEASE-CARD", d)
    t.flush({"GT-RELEASE-CARD": f"{len(facts.facts)} facts and the front matter match"})
    return {k: parsed.facts.get(k, "") for k in ("model license", "dataset id")}


def _check_bom(
    ctx: Context, facts: ReleaseFacts, declared: dict[str, str] | None, signed: oms.VerifiedOms
) -> None:
    r = ctx.result
    path = ctx.root / L.bom
    try:
        doc = parse_json(path.read_bytes(), where=L.bom, limits=ctx.limits)
        diffs = mlbom.compare(
            doc, facts, (BUNDLE_PATH, signed.files.get(BUNDLE_PATH, "")), declared
        )
    except (OSError, FormatError) as e:
        r.fail("GT-RELEASE-BOM", f"{L.bom}: expected a CycloneDX 1.6 ML-BOM ({e})")
        return
    t = Tally(r, ("GT-RELEASE-BOM",))
    for d in diffs:
        t.fail("GT-RELEASE-BOM", d)
    t.flush({"GT-RELEASE-BOM": "model, base model, dataset and bundle match"})

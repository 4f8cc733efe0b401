"""V6 released weights and V7 base weights: sha256 per file and state roots, hashlib only.

Weights are required for a PASS of a run or release folder (fail closed): without
them nothing binds the verified chain to the model a consumer would load.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from attest.digest import sha256_file
from attest.errors import FormatError
from attest.tensors import hash_safetensors, state_root

from .context import Context, Tally, skip_all

WEIGHT_CODES = ("GT-WEIGHTS-MISSING", "GT-WEIGHTS-FORMAT", "GT-WEIGHTS-DIGEST", "GT-WEIGHTS-ROOT")


def _safe_name(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name


def check_weights(ctx: Context) -> None:
    r = ctx.result
    tr = ctx.training_pred
    if tr is None:
        skip_all(r, WEIGHT_CODES, "no usable training-run statement")
        return
    t = Tally(r, WEIGHT_CODES)
    leaves: dict[str, bytes] = {}
    facts = []
    readable = True
    if not tr.weights:
        t.fail(
            "GT-WEIGHTS-MISSING",
            "training-run weights: expected at least one weight file, found none",
        )
    for w in tr.weights:
        name = w["name"]
        if not _safe_name(name):
            t.fail(
                "GT-WEIGHTS-FORMAT",
                f"training-run weights: expected a relative file name, found {name!r:.80}",
            )
            readable = False
            continue
        path = ctx.root / name
        if not path.is_file():
            t.fail(
                "GT-WEIGHTS-MISSING",
                f"{name}: expected the released weight file (sha256:{w['sha256']}), found no such "
                f"file",
            )
            readable = False
            continue
        # One read for leaves and file digest (hash_safetensors digests the file in a
        # second thread, so weight hashing runs at single-stream sha256 speed).
        try:
            d = hash_safetensors(path, limits=ctx.limits)
        except FormatError as e:
            try:
                got = sha256_file(path)
            except OSError as oe:
                t.fail("GT-WEIGHTS-MISSING", f"{name}: cannot read: {oe.strerror or oe}")
                readable = False
                continue
            if got != w["sha256"]:
                t.fail(
                    "GT-WEIGHTS-DIGEST",
                    f"{name}: expected sha256:{w['sha256']}, found sha256:{got}",
                )
            t.fail("GT-WEIGHTS-FORMAT", str(e))
            readable = False
            continue
        got = d.sha256
        if got != w["sha256"]:
            t.fail(
                "GT-WEIGHTS-DIGEST", f"{name}: expected sha256:{w['sha256']}, found sha256:{got}"
            )
        for tn, leaf in d.leaves.items():
            if tn in leaves:
                t.fail(
                    "GT-WEIGHTS-FORMAT",
                    f"{name}: tensor {tn!r} also appears in another weight file",
                )
            leaves[tn] = leaf
        facts.append({"name": name, "sha256": got, "bytes": d.size})
    if not readable:
        t.skip("GT-WEIGHTS-ROOT", "not every weight file could be read")
    elif tr.weights:
        chain_root = ctx.chain.final_root if ctx.chain is not None else None
        want, what = (
            (chain_root.hex(), "the recomputed chain's final root")
            if chain_root
            else (tr.final_state_root, "the signed final root")
        )
        got_root = state_root(leaves).hex()
        if got_root != want:
            t.fail(
                "GT-WEIGHTS-ROOT",
                f"weights: expected state root {want} ({what}), found {got_root} over "
                f"{len(leaves)} tensors",
            )
    t.flush(
        {
            "GT-WEIGHTS-MISSING": ", ".join(w["name"] for w in tr.weights),
            "GT-WEIGHTS-DIGEST": "sha256 of every weight file",
            "GT-WEIGHTS-ROOT": f"{len(leaves)} tensors",
        }
    )
    r.verified["weights"] = facts


def check_base(ctx: Context, base: Path | None) -> None:
    r = ctx.result
    if base is None:
        skip_all(r, ("GT-BASE-ROOT",), "no --base given")
        return
    tr = ctx.training_pred
    if tr is None:
        skip_all(r, ("GT-BASE-ROOT",), "no usable training-run statement")
        return
    files = sorted(base.glob("*.safetensors"))
    if not files:
        r.fail("GT-BASE-ROOT", f"{base}: expected *.safetensors base weights, found none")
        return
    leaves: dict[str, bytes] = {}
    for f in files:
        try:
            d = hash_safetensors(f, with_file_digest=False, limits=ctx.limits)
        except FormatError as e:
            r.fail("GT-BASE-ROOT", f"base {e}")
            return
        leaves.update(d.leaves)
    got = state_root(leaves).hex()
    if got != tr.base_state_root:
        r.fail(
            "GT-BASE-ROOT",
            f"{base}: expected base state root {tr.base_state_root} (signed), found {got} over "
            f"{len(leaves)} tensors",
        )
        return
    r.add("GT-BASE-ROOT", "pass", f"{len(files)} file(s), {len(leaves)} tensors")

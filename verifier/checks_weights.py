"""V6 released weights and checkpoints, V7 base weights: sha256 per file and state roots.

Weights are required for a PASS of a run or release folder (fail closed): without
them nothing binds the verified chain to the model a consumer would load.
Checkpoints are optional in a release (only replay, V9, needs them): the signed list
is always checked against the step log, and every checkpoint file that is shipped
must be the signed one; an absent one is reported as not shipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from attest.digest import sha256_file
from attest.errors import FormatError
from attest.predicates import STEPS_FILE, TRAINING_TYPE, Checkpoint
from attest.tensors import hash_safetensors, state_root

from .checks_bundle import file_digests
from .context import Context, Tally, all_passed, missing_inputs, skip_all
from .verified import VerifiedBundle, VerifiedChain, VerifiedWeights

WEIGHT_CODES = (
    "GT-WEIGHTS-MISSING",
    "GT-WEIGHTS-FORMAT",
    "GT-WEIGHTS-DIGEST",
    "GT-WEIGHTS-TENSORS",
    "GT-WEIGHTS-ROOT",
    "GT-CHECKPOINT-DIGEST",
)
CHECKPOINT = "GT-CHECKPOINT-DIGEST"
BASE_CODES = ("GT-BASE-TENSORS", "GT-BASE-ROOT")
# Checkpoint tensors outside the state root: AdamW moments and steps, the RNG state
# (trainer/checkpoint.py writes exactly these prefixes).
EXCLUDED = ("optim/", "rng/")


def _safe_name(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name


def _table(tensors: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {t.name: (t.dtype, tuple(t.shape)) for t in tensors}


def _table_diff(want: Mapping[str, Any], got: Mapping[str, Any]) -> str | None:
    """None when equal, else a short account of the first differences."""
    if dict(want) == dict(got):
        return None
    only_w, only_g = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    diff = sorted(n for n in set(want) & set(got) if want[n] != got[n])
    parts = []
    if only_w:
        parts.append(f"missing {only_w[:3]}")
    if only_g:
        parts.append(f"extra {only_g[:3]}")
    if diff:
        n = diff[0]
        parts.append(
            f"{len(diff)} differ, e.g. {n!r}: expected {want[n][0]} {list(want[n][1])}, found "
            f"{got[n][0]} {list(got[n][1])}"
        )
    return "; ".join(parts)


def _other_digests(path: Path, digest: Mapping[str, str]) -> dict[str, str]:
    """The file's digests for the subject's algorithms other than sha256 (V1 allowed only
    those the verifier computes). Raises OSError."""
    algs = [a for a in digest if a != "sha256"]
    if not algs:
        return {}
    return file_digests(path, algs)[0]


def check_weights(
    ctx: Context, bundle: VerifiedBundle | None, chain: VerifiedChain | None
) -> VerifiedWeights | None:
    """V6; the VerifiedWeights when every weights check passed (the root against the
    verified chain: without one, GT-WEIGHTS-ROOT and GT-WEIGHTS-TENSORS are skipped)."""
    r = ctx.result
    if missing_inputs(r, WEIGHT_CODES, {"bundle": bundle}) or bundle is None:
        return None
    tr = bundle.training
    subjects = {s.name: s.digest for s in bundle.statements[TRAINING_TYPE].subjects}
    t = Tally(r, WEIGHT_CODES[:-1])
    leaves: dict[str, bytes] = {}
    table: dict[str, tuple[str, tuple[int, ...]]] = {}
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
        # Every algorithm the subject lists is checked (principle 1), not only sha256.
        signed = subjects.get(name, {})
        try:
            for alg, value in _other_digests(path, signed).items():
                if value != signed[alg]:
                    t.fail("GT-WEIGHTS-DIGEST", f"{name}: expected {alg}:{signed[alg]}, found "
                           f"{alg}:{value}")  # fmt: skip
        except OSError as oe:
            t.fail("GT-WEIGHTS-MISSING", f"{name}: cannot read: {oe.strerror or oe}")
        for tn, leaf in d.leaves.items():
            if tn in leaves:
                t.fail(
                    "GT-WEIGHTS-FORMAT",
                    f"{name}: tensor {tn!r} also appears in another weight file",
                )
            leaves[tn] = leaf
        table.update(_table(d.tensors))
        facts.append({"name": name, "sha256": got, "bytes": d.size})
    # The released model's other files (config, tokenizer, adapter config) are bound by
    # their digests too: a loader reads them beside the weights (principle 1).
    for m in tr.model_files:
        name, path = m["name"], ctx.root / m["name"]
        try:
            got = sha256_file(path)
        except OSError as oe:
            t.fail("GT-WEIGHTS-MISSING", f"{name}: expected the released model file "
                   f"(sha256:{m['sha256']}), cannot read it: {oe.strerror or oe}")  # fmt: skip
            continue
        if got != m["sha256"]:
            t.fail(
                "GT-WEIGHTS-DIGEST", f"{name}: expected sha256:{m['sha256']}, found sha256:{got}"
            )
            continue
        signed = subjects.get(name, {})
        for alg, value in _other_digests(path, signed).items():
            if value != signed[alg]:
                t.fail("GT-WEIGHTS-DIGEST", f"{name}: expected {alg}:{signed[alg]}, found "
                       f"{alg}:{value}")  # fmt: skip
    if not readable:
        t.skip("GT-WEIGHTS-ROOT", "not every weight file could be read")
        t.skip("GT-WEIGHTS-TENSORS", "not every weight file could be read")
    elif chain is None:
        t.skip("GT-WEIGHTS-ROOT", "no verified step chain to bind the weights to")
        t.skip("GT-WEIGHTS-TENSORS", "no verified start record")
    elif tr.weights:
        diff = _table_diff(chain.start.tensors, table)
        if diff:
            t.fail(
                "GT-WEIGHTS-TENSORS",
                f"weights: expected the start record's tensor table (name, dtype, shape), "
                f"found {diff}",
            )
        got_root = state_root(leaves).hex()
        if got_root != chain.final_root.hex():
            t.fail(
                "GT-WEIGHTS-ROOT",
                f"weights: expected state root {chain.final_root.hex()} (the recomputed chain's "
                f"final root), found {got_root} over {len(leaves)} tensors",
            )
    t.flush(
        {
            "GT-WEIGHTS-MISSING": ", ".join(w["name"] for w in tr.weights),
            "GT-WEIGHTS-DIGEST": "every listed digest of every weight file",
            "GT-WEIGHTS-TENSORS": f"{len(table)} tensors: names, dtypes and shapes",
            "GT-WEIGHTS-ROOT": f"{len(leaves)} tensors",
        }
    )
    ok = all_passed(r, WEIGHT_CODES[:-1])
    r.verified["weights"] = facts if ok else None
    cp_ok = check_checkpoints(ctx, bundle, chain)
    if not ok or not cp_ok:
        return None
    return VerifiedWeights(tuple(facts), state_root(leaves).hex(), table)


def check_checkpoints(ctx: Context, bundle: VerifiedBundle, chain: VerifiedChain | None) -> bool:
    """GT-CHECKPOINT-DIGEST: the signed checkpoint list, the step log and the shipped files agree.

    (a) always, from the bundle alone: training ``checkpoints`` lists, in step order,
    exactly the step records' ``checkpoint`` maps (same file, sha256, stateRoot), and
    each stateRoot is the chain's recomputed state root at its step; (b) each listed
    file that is present is streamed once for its sha256 and the state root over the
    model's tensors in it. An absent file is allowed here (a release may omit
    checkpoints); replay (V9, GT-REPLAY-CHECKPOINT) fails closed on it.
    """
    r = ctx.result
    tr = bundle.training
    t = Tally(r, (CHECKPOINT,))
    if chain is not None:
        _checkpoints_match_chain(t, tr.checkpoints, chain.derived.checkpoint_records)
        _checkpoints_on_schedule(t, tr.config.get("checkpoint_every"), chain)
    shipped: list[str] = []
    absent: list[str] = []
    for c in tr.checkpoints:
        where = f"{c.file} (checkpoint of step {c.step})"
        if not _safe_name(c.file):
            t.fail(
                CHECKPOINT,
                f"training-run checkpoints: step {c.step}: expected a relative file name, found "
                f"{c.file!r:.80}",
            )
            continue
        path = ctx.root / c.file
        if not path.exists():
            absent.append(c.file)
            continue
        try:
            d = hash_safetensors(path, limits=ctx.limits)
        except FormatError as e:
            try:
                got = sha256_file(path)
            except OSError as oe:
                t.fail(CHECKPOINT, f"{where}: cannot read: {oe.strerror or oe}")
                continue
            if got != c.sha256:
                t.fail(CHECKPOINT, f"{where}: expected sha256 {c.sha256}, found {got}")
            else:
                t.fail(CHECKPOINT, f"{where}: expected a safetensors checkpoint: {e}")
            continue
        if d.sha256 != c.sha256:
            t.fail(CHECKPOINT, f"{where}: expected sha256 {c.sha256}, found {d.sha256}")
            continue
        if chain is not None:
            # The state root is over the start record's tensors; every other tensor of a
            # checkpoint MUST be optimizer or RNG state (records.md §5 "Checkpoint file").
            missing = sorted(chain.tensors - set(d.leaves))
            others = sorted(
                n for n in d.leaves if n not in chain.tensors and not n.startswith(EXCLUDED)
            )
            got_root = state_root({n: d.leaves[n] for n in chain.tensors if n in d.leaves}).hex()
            if others:
                t.fail(
                    CHECKPOINT,
                    f"{where}: expected only model, optim/* and rng/* tensors, found "
                    f"{len(others)} other(s) (e.g. {others[0]!r})",
                )
                continue
            if missing:
                t.fail(
                    CHECKPOINT,
                    f"{where}: expected every model tensor, found {len(missing)} missing "
                    f"(e.g. {missing[0]!r})",
                )
                continue
            if got_root != c.state_root:
                t.fail(
                    CHECKPOINT,
                    f"{where}: expected state root {c.state_root} over its model tensors, found "
                    f"{got_root}",
                )
                continue
        shipped.append(c.file)
    if chain is None and not t.failed(CHECKPOINT):
        t.skip(
            CHECKPOINT,
            f"the step log was not verified; {len(shipped)} shipped checkpoint file(s) match "
            f"their sha256",
        )
    msg = f"{len(tr.checkpoints)} checkpoint(s) match the step log; {len(shipped)} shipped"
    if absent:
        msg += f", {len(absent)} not shipped ({', '.join(absent[:5])}; allowed without --replay)"
    t.flush({CHECKPOINT: msg})
    return not t.failed(CHECKPOINT) and chain is not None


def _checkpoints_on_schedule(t: Tally, every: object, chain: VerifiedChain) -> None:
    """Derived, not trusted: the trainer checkpoints after every step that is a multiple of
    the signed config's ``checkpoint_every`` (when the config has one), and after no other."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        return  # a config without the key (another trainer) fixes no schedule
    want = [s for s in range(1, chain.last_step + 1) if every and s % every == 0]
    got = [s for s, _cp, _root in chain.derived.checkpoint_records]
    if got != want:
        t.fail(
            CHECKPOINT,
            f"{STEPS_FILE}: expected checkpoints after steps {want[:8]} (config "
            f"checkpoint_every {every}), found them after steps {got[:8]}",
        )


def _checkpoints_match_chain(
    t: Tally,
    signed: Sequence[Checkpoint],
    recorded: Sequence[tuple[int, dict[str, Any], str]],
) -> None:
    by_step = {s: (cp, root) for s, cp, root in recorded}
    listed: set[int] = set()
    for i, c in enumerate(signed):
        where = f"training-run checkpoints[{i}] (step {c.step})"
        if c.step in listed:
            t.fail(CHECKPOINT, f"{where}: expected one entry per step, found step {c.step} again")
            continue
        listed.add(c.step)
        if c.step not in by_step:
            t.fail(
                CHECKPOINT,
                f"{where}: expected step {c.step}'s record to name checkpoint {c.file!r}, found "
                f"no checkpoint in that record",
            )
            continue
        cp, root = by_step[c.step]
        want = {"file": c.file, "sha256": c.sha256, "stateRoot": c.state_root}
        got = {k: cp.get(k) for k in want}
        for k in sorted(want):
            if got[k] != want[k]:
                t.fail(
                    CHECKPOINT,
                    f"step {c.step}: record checkpoint.{k}: expected {want[k]!r} (signed in "
                    f"training-run checkpoints[{i}]), found {got[k]!r:.80}",
                )
        if c.state_root != root:
            t.fail(
                CHECKPOINT,
                f"{where}: expected stateRoot {root} (the chain's state root at step {c.step}), "
                f"found {c.state_root}",
            )
    for s, cp, _root in recorded:
        if s not in listed:
            t.fail(
                CHECKPOINT,
                f"step {s}: the record names checkpoint {cp.get('file')!r}, expected a "
                f"training-run checkpoints entry for it, found none",
            )
    steps = [c.step for c in signed]
    if len(set(steps)) == len(steps) and set(steps) == set(by_step) and steps != sorted(steps):
        t.fail(CHECKPOINT, f"training-run checkpoints: expected step order, found steps {steps}")


def check_base(
    ctx: Context, base: Path | None, bundle: VerifiedBundle | None, chain: VerifiedChain | None
) -> None:
    r = ctx.result
    if base is None:
        skip_all(r, BASE_CODES, "no --base given")
        return
    if missing_inputs(r, BASE_CODES, {"bundle": bundle}) or bundle is None:
        return
    tr = bundle.training
    files = sorted(base.glob("*.safetensors"))
    if not files:
        r.fail("GT-BASE-ROOT", f"{base}: expected *.safetensors base weights, found none")
        skip_all(r, BASE_CODES, "no base weights")
        return
    table: dict[str, tuple[str, tuple[int, ...]]] = {}
    leaves: dict[str, bytes] = {}
    origin: dict[str, str] = {}
    for f in files:
        try:
            d = hash_safetensors(f, with_file_digest=False, limits=ctx.limits)
        except FormatError as e:
            r.fail("GT-BASE-ROOT", f"base {e}")
            skip_all(r, BASE_CODES, "a base file is unreadable")
            return
        # Same rule as V6 (GT-WEIGHTS-FORMAT): a tensor in two files has no one value,
        # so the base has no state root; never let one file silently overwrite another.
        for tn in d.leaves:
            if tn in origin:
                r.fail(
                    "GT-BASE-ROOT",
                    f"{base}: expected each tensor in one base file, found {tn!r} in both "
                    f"{origin[tn]} and {f.name}",
                )
                skip_all(r, BASE_CODES, "the base has no single value per tensor")
                return
            origin[tn] = f.name
        leaves.update(d.leaves)
        table.update(_table(d.tensors))
    # Where the start state is the base itself (tinylm, v0.1 logs) the base must be exactly
    # it; a kind that derives its start from the base (a new head, a name prefix, adapters:
    # records.md §4.1) binds the base by the folder's own signed root instead. The kind is
    # read from the verified start record, never inferred from what the producer signed.
    spec = chain.start.model if chain is not None else None
    kind = spec.kind if spec is not None else "tinylm"
    derived = kind != "tinylm"
    own_root = tr.base_model.get("weightsStateRoot")
    if chain is None:
        skip_all(r, ("GT-BASE-TENSORS",), "no verified start record")
    elif derived:
        skip_all(r, ("GT-BASE-TENSORS",), f"the {kind} start state is derived from the "
                 "base: the base is bound by its own signed root (GT-BASE-ROOT)")  # fmt: skip
    else:
        diff = _table_diff(chain.start.tensors, table)
        if diff:
            r.fail(
                "GT-BASE-TENSORS",
                f"{base}: expected the start record's tensor table (name, dtype, shape), found "
                f"{diff}",
            )
            # Another table is another model: its root says nothing more (and would differ).
            skip_all(r, ("GT-BASE-ROOT",), "the base's tensor table differs")
            return
        r.add("GT-BASE-TENSORS", "pass", f"{len(table)} tensors")
    got = state_root(leaves).hex()
    # The base folder's own root (training-run.md baseModel.weightsStateRoot) where the run's
    # start state is derived from it (HF kinds, LoRA); else the start state itself (v0.1).
    if not derived and own_root is not None and own_root != tr.base_state_root:
        r.fail(
            "GT-BASE-ROOT",
            f"training-run baseModel.weightsStateRoot: expected the base state root "
            f"{tr.base_state_root} (the start state is the base itself), found {own_root!r:.70}",
        )
        return
    if derived and own_root is None:
        r.fail(
            "GT-BASE-ROOT",
            "training-run baseModel.weightsStateRoot: expected the base folder's root (a "
            f"{kind} start state is derived from it), found none",
        )
        return
    want = own_root if derived else tr.base_state_root
    if got != want:
        r.fail(
            "GT-BASE-ROOT",
            f"{base}: expected base state root {want} (signed), found {got} over "
            f"{len(leaves)} tensors",
        )
        return
    r.add("GT-BASE-ROOT", "pass", f"{len(files)} file(s), {len(leaves)} tensors")

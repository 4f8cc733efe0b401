"""V4 step chain and V5 memorization, streamed record by record.

Memory does not grow with the number of steps: the checker holds the current
leaf of every tensor, the quarantine set, a Merkle builder for the log summary and
(for the report) a loss curve thinned to at most `CURVE_POINTS` points.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from attest.canary import eval_indices, heldout_indices
from attest.canonical import canonical_json
from attest.errors import FormatError
from attest.log import iter_log
from attest.merkle import MerkleBuilder
from attest.order import ORDER, DataOrder
from attest.policy import Policy
from attest.predicates import STEPS_FILE, TrainingPredicate
from attest.records import Event, StartRecord, StepRecord
from attest.schedule import LR_RELATIVE_TOLERANCE, lr_at
from attest.tensors import state_root

from .checks_dist import DIST_CODES, DistCheck
from .context import Context, Tally, all_passed, missing_inputs
from .loss_drop import LossDropCheck
from .mem_signals import SignalCheck
from .verified import (
    VerifiedAdmissions,
    VerifiedBundle,
    VerifiedChain,
    VerifiedCheckpoint,
    VerifiedPolicy,
    numel,
)

CHAIN_CODES = (
    "GT-STEP-LOG-FORMAT",
    "GT-STEP-LOG-SUMMARY",
    "GT-CHAIN-START",
    "GT-CHAIN-PROFILES",
    "GT-CHAIN-HELDOUT",
    "GT-CHAIN-GAP",
    "GT-CHAIN-LR",
    "GT-BATCH-REFUSED",
    "GT-BATCH-HELDOUT",
    "GT-BATCH-QUARANTINED",
    "GT-BATCH-PROFILE",
    "GT-BATCH-ORDER",
    *DIST_CODES,
    "GT-ROUTE-UNKNOWN",
    "GT-ROUTE-VIOLATION",
    "GT-STATE-ROOT",
    "GT-STATE-FINAL",
    "GT-STATE-BASE",
)
BATCH_CODES = (
    "GT-BATCH-REFUSED",
    "GT-BATCH-HELDOUT",
    "GT-BATCH-QUARANTINED",
    "GT-BATCH-PROFILE",
    "GT-BATCH-ORDER",
)
CURVE_POINTS = 200


class _Curve:
    """Mean loss per step, thinned by doubling the stride so at most CURVE_POINTS are kept."""

    def __init__(self) -> None:
        self.stride = 1
        self.points: list[list[float]] = []

    def add(self, step: int, loss: tuple[float, ...]) -> None:
        if not loss or (step - 1) % self.stride:
            return
        self.points.append([step, sum(loss) / len(loss)])
        if len(self.points) > CURVE_POINTS:
            self.stride *= 2
            self.points = [p for p in self.points if (int(p[0]) - 1) % self.stride == 0]


def check_chain(
    ctx: Context,
    bundle: VerifiedBundle | None,
    vpolicy: VerifiedPolicy | None,
    table: VerifiedAdmissions | None,
) -> VerifiedChain | None:
    """V4 in one streaming pass over steps.msgpack (its sha256 re-checked as it streams).

    Runs with the verified bundle alone (the checks needing the policy or the admission
    table are then skipped and nothing is published); the VerifiedChain exists only when
    every chain check passed."""
    r = ctx.result
    if missing_inputs(r, CHAIN_CODES, {"bundle": bundle}) or bundle is None:
        return None
    tr = bundle.training
    policy = vpolicy.policy if vpolicy is not None else None
    t = Tally(r, CHAIN_CODES)
    if table is None:
        # The batch's admitted profiles are unknown, so routing cannot be judged either.
        for c in BATCH_CODES + ("GT-CHAIN-HELDOUT", "GT-ROUTE-VIOLATION"):
            t.skip(c, "no verified admission log")
    if policy is None:
        t.skip("GT-CHAIN-PROFILES", "no verified policy")
        t.skip("GT-CHAIN-HELDOUT", "no verified policy")
        t.skip("GT-ROUTE-VIOLATION", "no verified policy to resolve profiles")
    if tr.steps > ctx.limits.steps_max:
        t.fail(
            "GT-CHAIN-GAP",
            f"training-run steps: expected at most steps_max {ctx.limits.steps_max}, found "
            f"{tr.steps}",
        )
        t.flush()
        return None
    file_hash = hashlib.sha256()
    merkle = MerkleBuilder()
    head = b"\0" * 32
    start: StartRecord | None = None
    dist: DistCheck | None = None  # GT-DIST-* (verifier/checks_dist.py)
    leaves: dict[str, bytes] = {}
    allowed: dict[str, frozenset[str]] = {}
    heldout: frozenset[int] = frozenset()
    evals: frozenset[int] = frozenset()  # the evaluation split: never trained on either
    quarantined: set[int] = set()
    order: DataOrder | None = None  # the derived data order (records.md §5.2)
    events: list[dict[str, Any]] = []
    step_events: dict[int, tuple[Event, ...]] = {}
    halt_steps: list[int] = []
    checkpoints: dict[int, VerifiedCheckpoint] = {}
    cp_records: list[tuple[int, dict[str, Any], str]] = []
    loss_drop = LossDropCheck(policy.memorization) if policy is not None else None
    signals: SignalCheck | None = None
    curve = _Curve()
    expect = 1
    steps = last_step = 0
    complete = False
    route_by_profile: Counter[str] = Counter()
    changes_total = violations = 0
    try:
        for rec in iter_log(ctx.prov / STEPS_FILE, limits=ctx.limits):
            file_hash.update(rec.raw)
            merkle.add(rec.hash)
            head = rec.hash
            if rec.index == 0:
                # One code for a bad start record (issue 10 item 8): GT-CHAIN-START.
                try:
                    start = StartRecord.from_record(rec.value, f"{STEPS_FILE}: record 0")
                except FormatError as e:
                    t.fail("GT-CHAIN-START", f"{e}")
                    break
                leaves = dict(start.base_leaves)
                _check_start(t, tr, start)
                dist = DistCheck(t, tr.environment, start)
                if policy is not None:
                    allowed = _check_profiles(t, policy, start)
                if policy is not None and table is not None:
                    heldout, evals = _check_heldout(t, tr, policy, table, start)
                    order = _data_order(t, tr, table, start, heldout | evals)
                    signals = SignalCheck(
                        policy, table.canary_groups, heldout, loss_drop.last if loss_drop else {}
                    )
                else:
                    heldout = frozenset(start.heldout)
                continue
            if rec.index > ctx.limits.steps_max:
                raise FormatError(f"{STEPS_FILE}: more than steps_max {ctx.limits.steps_max} steps")
            step = StepRecord.from_record(rec.value, f"{STEPS_FILE}: record {rec.index}")
            if rec.index & 0x3FF == 0:
                ctx.records_progress(rec.index, tr.step_log.count)
            if step.step != expect:
                t.fail(
                    "GT-CHAIN-GAP",
                    f"{STEPS_FILE}: record {rec.index}: expected step {expect}, found step "
                    f"{step.step}",
                )
            expect = step.step + 1
            s = step.step
            _check_lr(t, tr, step)
            duplicates = dist.step(step) if dist is not None else 0
            steps += 1
            last_step = s
            curve.add(s, step.loss)
            # The derived batch, before this step's quarantines count (as in the trainer).
            want = order.next_batch(quarantined) if order is not None else None
            defects = duplicates  # batch members failing a check: one defect, one code
            batch_profiles: set[str] = set()
            for i, (x, prof) in enumerate(zip(step.batch, step.profiles, strict=True)):
                if table is not None:
                    ap = table.admitted.get(x, None)
                    if ap is None:
                        defects += 1
                        t.fail(
                            "GT-BATCH-REFUSED",
                            f"step {s}: batch[{i}] = example {x}, expected an admitted example, "
                            f"found {'a refused one' if x in table.admitted else 'none such'}",
                        )
                        # A refused index skips the later batch checks (issue 10 item 5).
                        continue
                    batch_profiles.add(ap)
                    if prof != ap:
                        defects += 1
                        t.fail(
                            "GT-BATCH-PROFILE",
                            f"step {s}: example {x}: expected its admitted profile {ap!r}, "
                            f"found {prof!r}",
                        )
                if x in heldout or x in evals:
                    what = "a reference example" if x in heldout else "an evaluation example"
                    defects += 1
                    t.fail(
                        "GT-BATCH-HELDOUT",
                        f"step {s}: example {x} is held out as {what} and must never be trained on",
                    )
                if x in quarantined:
                    defects += 1
                    t.fail(
                        "GT-BATCH-QUARANTINED",
                        f"step {s}: example {x} was quarantined earlier and must not be used again",
                    )
            if want is not None and not defects and list(step.batch) != want:
                t.fail(
                    "GT-BATCH-ORDER",
                    f"step {s}: expected batch {want[:8]} (the signed seed's data order, "
                    f"records.md §5.2), found {list(step.batch)[:8]}",
                )
            may = (
                frozenset().union(*(allowed.get(p, frozenset()) for p in batch_profiles))
                if allowed and table is not None
                else None
            )
            for name, leaf in step.changed.items():
                changes_total += 1
                if name not in leaves:
                    # records.md §5: a name outside the base state fails and is not added to
                    # the state (issue 10 item 3): the state's names stay the base's.
                    t.fail(
                        "GT-ROUTE-UNKNOWN",
                        f"step {s}: tensor {name!r} changed but the model has no such tensor",
                    )
                    continue
                leaves[name] = leaf
                if may is not None:
                    if name not in may:
                        violations += 1
                        t.fail(
                            "GT-ROUTE-VIOLATION",
                            f"step {s}: tensor {name!r} changed but no example in the batch may "
                            f"touch it "
                            f"(batch profiles: {', '.join(sorted(batch_profiles)) or 'none'})",
                        )
                    for p in batch_profiles:
                        if name in allowed.get(p, ()):
                            route_by_profile[p] += 1
            got = state_root(leaves)
            if got != step.state_root:
                t.fail(
                    "GT-STATE-ROOT",
                    f"step {s}: expected state root {got.hex()} (recomputed), found "
                    f"{step.state_root.hex()}",
                )
            if step.checkpoint is not None:
                cp_records.append((s, dict(step.checkpoint), got.hex()))
            if loss_drop is not None:  # before this step's quarantines count
                loss_drop.step(step, quarantined)
            if signals is not None:
                signals.step(step, quarantined)
            for ev in step.events:
                events.append({**ev.to_record(), "step": s})
                if ev.kind == "quarantine" and ev.example is not None:
                    quarantined.add(ev.example)
                if ev.kind == "halt":
                    halt_steps.append(s)
            if step.events:
                step_events[s] = tuple(step.events)
        else:
            complete = start is not None
    except (FormatError, OSError) as e:
        msg = f"{STEPS_FILE}: cannot read: {e.strerror or e}" if isinstance(e, OSError) else str(e)
        t.fail("GT-STEP-LOG-FORMAT", msg)
    if start is None and not t.failed("GT-CHAIN-START") and not t.failed("GT-STEP-LOG-FORMAT"):
        t.fail("GT-CHAIN-START", f"{STEPS_FILE}: expected a start record, found an empty log")
    if not complete or start is None:
        for c in CHAIN_CODES:
            if c not in ("GT-STEP-LOG-FORMAT", "GT-CHAIN-START"):
                t.skip(c, "the step log could not be read to the end")
        t.flush()
        return None
    if file_hash.hexdigest() != bundle.steps_sha256:
        t.fail(
            "GT-STEP-LOG-FORMAT",
            f"{STEPS_FILE}: expected sha256:{bundle.steps_sha256} (verified in V1), found "
            f"sha256:{file_hash.hexdigest()} in the bytes read here: the file changed",
        )
    final = state_root(leaves)
    summary = (merkle.count, head.hex(), merkle.root().hex())
    for name, signed, found in zip(
        ("count", "head", "merkleRoot"),
        (tr.step_log.count, tr.step_log.head, tr.step_log.merkle_root),
        summary,
        strict=True,
    ):
        if signed != found:
            t.fail("GT-STEP-LOG-SUMMARY", f"{STEPS_FILE}: expected {name} {signed}, found {found}")
    if steps != tr.steps:
        t.fail(
            "GT-CHAIN-GAP",
            f"{STEPS_FILE}: expected {tr.steps} step records (training-run steps), found {steps}",
        )
    if start.base_state_root.hex() != tr.base_state_root:
        t.fail(
            "GT-STATE-BASE",
            f"{STEPS_FILE}: start: expected base state root {tr.base_state_root} (signed), found "
            f"{start.base_state_root.hex()}",
        )
    bm_root = tr.base_model.get("stateRoot")
    if bm_root is not None and bm_root != tr.base_state_root:
        t.fail(
            "GT-STATE-BASE",
            f"training-run baseModel.stateRoot: expected {tr.base_state_root}, found {bm_root}",
        )
    if final.hex() != tr.final_state_root:
        t.fail(
            "GT-STATE-FINAL",
            f"{STEPS_FILE}: expected the chain to end at {tr.final_state_root} (signed), found "
            f"{final.hex()} (recomputed)",
        )
    n = steps
    t.flush(
        {
            "GT-STEP-LOG-FORMAT": f"{STEPS_FILE}: {merkle.count} canonical records, chain unbroken",
            "GT-STEP-LOG-SUMMARY": f"{STEPS_FILE}: count, head and Merkle root match",
            "GT-CHAIN-GAP": f"steps 1..{n}",
            "GT-CHAIN-HELDOUT": f"{len(heldout)} held-out example(s) re-derived",
            "GT-STATE-ROOT": f"{n} state roots recomputed",
            "GT-ROUTE-VIOLATION": f"{changes_total} tensor changes, each allowed by a batch "
            f"profile",
            "GT-STATE-FINAL": final.hex(),
            "GT-STATE-BASE": start.base_state_root.hex(),
            **(dist.passes() if dist is not None else {}),
        }
    )
    if not all_passed(r, CHAIN_CODES):
        return None
    for s_, cp, root_hex in cp_records:
        checkpoints[s_] = VerifiedCheckpoint(
            s_, str(cp["file"]), str(cp["sha256"]), str(cp["stateRoot"])
        )
        if root_hex != cp["stateRoot"]:
            checkpoints.pop(s_)  # GT-CHECKPOINT-DIGEST (V6) reports it; never publish it
    r.verified["steps"] = n
    r.verified["finalStateRoot"] = final.hex()
    r.verified["baseStateRoot"] = start.base_state_root.hex()
    sizes = {nm: numel(sh) for nm, (_dt, sh) in start.tensors.items()}
    byp = r.verified.get("admissions", {}).get("byProfile", {})
    r.verified["routing"] = {
        "profiles": {
            p: {
                "params": sum(sizes.get(x, 0) for x in ns),
                "tensors": len(ns),
                "examplesAdmitted": byp.get(p, 0),
                "tensorChanges": route_by_profile.get(p, 0),
            }
            for p, ns in sorted(allowed.items())
        },
        "tensorChanges": changes_total,
        "violations": violations,
    }
    r.verified["checkpoints"] = len(tr.checkpoints)
    r.attested["lossCurve"] = curve.points
    return VerifiedChain(
        start=start,
        steps=n,
        last_step=last_step,
        base_root=start.base_state_root,
        final_root=final,
        heldout=heldout,
        checkpoints=checkpoints,
        events=tuple(events),
        step_events=step_events,
        halt_steps=tuple(halt_steps),
        sha256=bundle.steps_sha256,
        head=summary[1],
        merkle_root=summary[2],
        count=summary[0],
        derived=Derived(loss_drop, signals, tuple(cp_records), frozenset(quarantined)),
    )


def _check_profiles(t: Tally, policy: Policy, start: StartRecord) -> dict[str, frozenset[str]]:
    """GT-CHAIN-PROFILES; the verifier's own resolution (routing never uses the record's)."""
    resolved = policy.resolve_profiles(start.trainable)
    recorded = {p: tuple(ns) for p, ns in start.profiles.items()}
    if resolved != recorded:
        diff = sorted(
            p for p in set(resolved) | set(recorded) if resolved.get(p) != recorded.get(p)
        )
        t.fail(
            "GT-CHAIN-PROFILES",
            f"{STEPS_FILE}: start: profiles {', '.join(diff)} expected "
            f"{ {p: list(resolved.get(p, ())) for p in diff} }, found "
            f"{ {p: list(recorded.get(p, ())) for p in diff} }",
        )
    missing = sorted(set(start.trainable) - set(start.base_leaves))
    if missing:
        t.fail(
            "GT-CHAIN-PROFILES",
            f"{STEPS_FILE}: start: trainable tensors {missing[:5]} are not in the base",
        )
    return {p: frozenset(ns) for p, ns in resolved.items()}


def _check_lr(t: Tally, tr: TrainingPredicate, step: StepRecord) -> None:
    """GT-CHAIN-LR: the recorded rate is attest.schedule.lr_at of the signed config (derive,
    never trust: a producer could otherwise record one rate and train at another, or hide a
    schedule that differs from the one it signed)."""
    c = tr.config
    try:
        want = lr_at(step.step, lr=float(c["lr"]), steps=int(c["steps"]),
                     schedule=str(c.get("schedule", "constant")),
                     warmup=int(c.get("warmup_steps", 0)))  # fmt: skip
    except (KeyError, TypeError, ValueError) as e:
        t.fail("GT-CHAIN-LR", f"training-run config: cannot derive the learning rate ({e})")
        return
    if not math.isclose(step.lr, want, rel_tol=LR_RELATIVE_TOLERANCE, abs_tol=0.0):
        t.fail(
            "GT-CHAIN-LR",
            f"step {step.step}: expected lr {want!r} (the signed schedule), found {step.lr!r}",
        )


def _data_order(
    t: Tally,
    tr: TrainingPredicate,
    table: VerifiedAdmissions,
    start: StartRecord,
    kept_out: frozenset[int],
) -> DataOrder | None:
    """The data order every batch must follow (GT-BATCH-ORDER): attest.order over the
    admitted examples less the derived held-out set and evaluation split, with the signed
    config's seed and batch size. None (after a failure) when it cannot be derived."""
    named = start.extra.get("order")
    if named != ORDER:
        t.fail(
            "GT-BATCH-ORDER",
            f"{STEPS_FILE}: start: extra.order expected {ORDER!r} (records.md §5.2), "
            f"found {named!r:.60}",
        )
        return None
    pool = [x for x in table.iter_admitted() if x not in kept_out]
    try:
        return DataOrder(pool, tr.config.get("seed"), tr.config.get("batch_size"))  # type: ignore[arg-type]
    except FormatError as e:
        t.fail("GT-BATCH-ORDER", f"training-run config: {e}")
        return None


def _check_heldout(
    t: Tally,
    tr: TrainingPredicate,
    policy: Policy,
    table: VerifiedAdmissions,
    start: StartRecord,
) -> tuple[frozenset[int], frozenset[int]]:
    """GT-CHAIN-HELDOUT: the start record's ``heldout`` is attest.canary.heldout_indices of the
    signed config's seed, the policy's holdout and the verified admitted pool, and its
    ``extra.evalSplit`` attest.canary.eval_indices of the rest. Returns the derived held-out
    set and evaluation split (what the batch checks use), never the recorded ones."""
    seed = tr.config.get("seed")
    evals_wanted = tr.config.get("eval_examples", 0)
    try:
        # Streamed (iter_pool): a list of a million indices would be ~36 MB of peak memory.
        derived = heldout_indices(seed, table.iter_pool(), policy.memorization.holdout)  # type: ignore[arg-type]
        held = set(derived)
        rest = (i for i in table.iter_pool() if i not in held)
        evals = eval_indices(seed, rest, evals_wanted)  # type: ignore[arg-type]
    except FormatError as e:
        t.fail("GT-CHAIN-HELDOUT", f"training-run config: {e}")
        return frozenset(start.heldout), frozenset()
    # Counts the training predicate records beside it are derived too (trainer: extra).
    admitted = table.admitted_count
    pool_size = admitted - len(derived) - len(evals)
    for key, want in (("heldout", len(derived)), ("trainingPool", pool_size)):
        got = tr.extra.get(key)
        if got is not None and got != want:
            t.fail(
                "GT-CHAIN-HELDOUT",
                f"training-run extra.{key}: expected {want} (derived), found {got!r:.40}",
            )
    if tuple(start.heldout) != derived:
        t.fail(
            "GT-CHAIN-HELDOUT",
            f"{STEPS_FILE}: start: heldout expected {list(derived)[:10]} (derived from seed "
            f"{seed} and {table.pool_size} admitted examples, holdout "
            f"{policy.memorization.holdout}), found {list(start.heldout)[:10]}",
        )
    recorded = start.extra.get("evalSplit", [])
    if list(recorded) != list(evals):
        t.fail(
            "GT-CHAIN-HELDOUT",
            f"{STEPS_FILE}: start: extra.evalSplit expected {list(evals)[:10]} (derived from "
            f"seed {seed} and eval_examples {evals_wanted}), found {list(recorded)[:10]!r:.80}",
        )
    return frozenset(derived), frozenset(evals)


@dataclass(frozen=True)
class Derived:
    """What V4's stream re-derived for V5 and V6 (the verifier's own computation)."""

    loss_drop: LossDropCheck | None
    signals: SignalCheck | None
    checkpoint_records: tuple[tuple[int, dict[str, Any], str], ...]  # (step, map, root hex)
    quarantined: frozenset[int]


def _check_start(t: Tally, tr: TrainingPredicate, start: StartRecord) -> None:
    where = f"{STEPS_FILE}: start"
    if start.config_digest != tr.config_digest:
        t.fail(
            "GT-CHAIN-START",
            f"{where}: expected configDigest {tr.config_digest} (signed), found "
            f"{start.config_digest}",
        )
    cd = hashlib.sha256(canonical_json(dict(tr.config))).hexdigest()
    if cd != tr.config_digest:
        t.fail(
            "GT-CHAIN-START",
            f"training-run configDigest: expected {cd} (sha256 of the canonical config), found "
            f"{tr.config_digest}",
        )
    if start.policy_digest != tr.policy_digest:
        t.fail(
            "GT-CHAIN-START",
            f"{where}: expected policyDigest {tr.policy_digest}, found {start.policy_digest}",
        )
    got = state_root(start.base_leaves)
    if got != start.base_state_root:
        t.fail(
            "GT-CHAIN-START",
            f"{where}: expected baseStateRoot {got.hex()} (root of baseLeaves), found "
            f"{start.base_state_root.hex()}",
        )
    if set(start.tensors) != set(start.base_leaves):
        t.fail(
            "GT-CHAIN-START", f"{where}: expected tensors and baseLeaves to name the same tensors"
        )
    seed = start.extra.get("dataOrderSeed")
    if seed is not None and seed != tr.config.get("seed"):
        t.fail(
            "GT-CHAIN-START",
            f"{where}: extra.dataOrderSeed expected {tr.config.get('seed')!r} (config.seed), "
            f"found {seed!r:.40}",
        )
    ex_run = start.extra.get("runId")
    if ex_run is not None and ex_run != tr.run_id:
        t.fail("GT-CHAIN-START", f"{where}: extra.runId expected {tr.run_id}, found {ex_run!r:.40}")


def attested_from_training(bundle: VerifiedBundle | None) -> dict[str, Any]:
    if bundle is None:
        return {}
    tr = bundle.training
    return {
        "environment": dict(tr.environment),
        "config": dict(tr.config),
        "builder": tr.builder,
        "startedOn": tr.started_on,
        "finishedOn": tr.finished_on,
        "baseModel": dict(tr.base_model),
        "dataset": dict(tr.dataset),
    }

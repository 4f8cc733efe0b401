"""V4 step chain and V5 memorization, streamed record by record.

Memory does not grow with the number of steps: the checker holds the current
leaf of every tensor, the quarantine set, a Merkle builder for the log summary and
(for the report) a loss curve thinned to at most `CURVE_POINTS` points.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from attest.canonical import canonical_json
from attest.errors import FormatError
from attest.log import iter_log
from attest.merkle import MerkleBuilder
from attest.predicates import STEPS_FILE
from attest.records import StartRecord, StepRecord
from attest.tensors import state_root

from .context import ChainFacts, Context, Tally, inputs_unusable, skip_all
from .loss_drop import LossDropCheck

CHAIN_CODES = (
    "GT-LOG-FORMAT",
    "GT-LOG-SUMMARY",
    "GT-CHAIN-START",
    "GT-CHAIN-PROFILES",
    "GT-CHAIN-GAP",
    "GT-BATCH-REFUSED",
    "GT-BATCH-HELDOUT",
    "GT-BATCH-QUARANTINED",
    "GT-BATCH-PROFILE",
    "GT-ROUTE-UNKNOWN",
    "GT-ROUTE-VIOLATION",
    "GT-STATE-ROOT",
    "GT-STATE-BASE",
    "GT-STATE-FINAL",
)
MEM_CODES = ("GT-MEM-EVENTS", "GT-MEM-SIGNAL", "GT-MEM-ACTION")
BATCH_CODES = ("GT-BATCH-REFUSED", "GT-BATCH-HELDOUT", "GT-BATCH-QUARANTINED", "GT-BATCH-PROFILE")
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


def check_chain(ctx: Context) -> None:
    r = ctx.result
    tr, policy = ctx.training_pred, ctx.policy
    if inputs_unusable(ctx, CHAIN_CODES, tr, "training-run", STEPS_FILE) or tr is None:
        return
    t = Tally(r, CHAIN_CODES)
    table = ctx.admissions
    if table is None:
        for c in BATCH_CODES:
            t.skip(c, "no verified admission log")
    if policy is None:
        t.skip("GT-CHAIN-PROFILES", "no verified policy")
        t.skip("GT-ROUTE-VIOLATION", "no verified policy to resolve profiles")
    merkle = MerkleBuilder()
    head = b"\0" * 32
    start: StartRecord | None = None
    leaves: dict[str, bytes] = {}
    allowed: dict[str, frozenset[str]] = {}
    heldout: frozenset[int] = frozenset()
    quarantined: set[int] = set()
    facts = ChainFacts(complete=False, steps=0, final_root=None, base_root=None, events=[])
    if policy is not None:
        facts.loss_drop = LossDropCheck(policy.memorization)
    curve = _Curve()
    expect = 1
    root_ok = True
    route_by_profile: Counter[str] = Counter()
    changes_total = violations = 0
    try:
        for rec in iter_log(ctx.prov / STEPS_FILE, limits=ctx.limits):
            merkle.add(rec.hash)
            head = rec.hash
            if rec.index == 0:
                try:
                    start = StartRecord.from_record(rec.value, f"{STEPS_FILE}: record 0")
                except FormatError as e:
                    t.fail("GT-CHAIN-START", f"{e}")
                    break
                leaves = dict(start.base_leaves)
                heldout = frozenset(start.heldout)
                _check_start(ctx, t, start)
                facts.base_root = start.base_state_root
                facts.tensors = frozenset(start.base_leaves)
                if policy is not None:
                    resolved = policy.resolve_profiles(start.trainable)
                    recorded = {p: tuple(ns) for p, ns in start.profiles.items()}
                    if resolved != recorded:
                        diff = sorted(
                            p
                            for p in set(resolved) | set(recorded)
                            if resolved.get(p) != recorded.get(p)
                        )
                        t.fail(
                            "GT-CHAIN-PROFILES",
                            f"{STEPS_FILE}: start: profiles {', '.join(diff)} expected "
                            f"{ {p: list(resolved.get(p, ())) for p in diff} }, found "
                            f"{ {p: list(recorded.get(p, ())) for p in diff} }",
                        )
                    # Routing is judged against the verifier's own resolution, never the record's.
                    allowed = {p: frozenset(ns) for p, ns in resolved.items()}
                    missing = sorted(set(start.trainable) - set(start.base_leaves))
                    if missing:
                        t.fail(
                            "GT-CHAIN-PROFILES",
                            f"{STEPS_FILE}: start: trainable tensors {missing[:5]} are not in the "
                            f"base",
                        )
                continue
            step = StepRecord.from_record(rec.value, f"{STEPS_FILE}: record {rec.index}")
            if step.step != expect:
                t.fail(
                    "GT-CHAIN-GAP",
                    f"{STEPS_FILE}: record {rec.index}: expected step {expect}, found step "
                    f"{step.step}",
                )
            expect = step.step + 1
            s = step.step
            facts.steps += 1
            facts.last_step = s
            curve.add(s, step.loss)
            batch_profiles: set[str] = set()
            for i, (x, prof) in enumerate(zip(step.batch, step.profiles, strict=True)):
                if table is not None:
                    ap = table.admitted.get(x, None)
                    if x not in table.admitted or ap is None:
                        t.fail(
                            "GT-BATCH-REFUSED",
                            f"step {s}: batch[{i}] = example {x}, expected an admitted example, "
                            f"found {'a refused one' if x in table.admitted else 'none such'}",
                        )
                    else:
                        batch_profiles.add(ap)
                        if prof != ap:
                            t.fail(
                                "GT-BATCH-PROFILE",
                                f"step {s}: example {x}: expected its admitted profile {ap!r}, "
                                f"found {prof!r}",
                            )
                else:
                    batch_profiles.add(prof)
                if x in heldout:
                    t.fail(
                        "GT-BATCH-HELDOUT",
                        f"step {s}: example {x} is held out as a reference example and must never "
                        f"be trained on",
                    )
                if x in quarantined:
                    t.fail(
                        "GT-BATCH-QUARANTINED",
                        f"step {s}: example {x} was quarantined earlier and must not be used again",
                    )
            may = (
                frozenset().union(*(allowed.get(p, frozenset()) for p in batch_profiles))
                if allowed
                else None
            )
            for name, leaf in step.changed.items():
                changes_total += 1
                if name not in leaves:
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
                root_ok = False
                t.fail(
                    "GT-STATE-ROOT",
                    f"step {s}: expected state root {got.hex()} (recomputed), found "
                    f"{step.state_root.hex()}",
                )
            if step.checkpoint is not None:
                facts.checkpoints.append((s, dict(step.checkpoint), got.hex()))
            if facts.loss_drop is not None:  # before this step's quarantines count
                facts.loss_drop.step(step, quarantined)
            for ev in step.events:
                facts.events.append({**ev.to_record(), "step": s})
                if ev.kind == "quarantine" and ev.example is not None:
                    quarantined.add(ev.example)
                if ev.kind == "halt":
                    facts.halt_steps.append(s)
            if step.events:
                facts.step_events[s] = list(step.events)
        else:
            facts.complete = start is not None
    except FormatError as e:
        t.fail("GT-LOG-FORMAT", str(e))
    if start is None and not t.failed("GT-CHAIN-START") and not t.failed("GT-LOG-FORMAT"):
        t.fail("GT-CHAIN-START", f"{STEPS_FILE}: expected a start record, found an empty log")
    if not facts.complete:
        for c in CHAIN_CODES:
            if c not in ("GT-LOG-FORMAT", "GT-CHAIN-START"):
                t.skip(c, "the step log could not be read to the end")
        t.flush()
        ctx.chain = facts
        return
    final = state_root(leaves)
    facts.final_root = final if root_ok else None
    summary = (merkle.count, head.hex(), merkle.root().hex())
    for name, signed, found in zip(
        ("count", "head", "merkleRoot"),
        (tr.step_log.count, tr.step_log.head, tr.step_log.merkle_root),
        summary,
        strict=True,
    ):
        if signed != found:
            t.fail("GT-LOG-SUMMARY", f"{STEPS_FILE}: expected {name} {signed}, found {found}")
    if facts.steps != tr.steps:
        t.fail(
            "GT-CHAIN-GAP",
            f"{STEPS_FILE}: expected {tr.steps} step records (training-run steps), found "
            f"{facts.steps}",
        )
    assert start is not None
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
    n = facts.steps
    t.flush(
        {
            "GT-LOG-FORMAT": f"{STEPS_FILE}: {merkle.count} canonical records, chain unbroken",
            "GT-LOG-SUMMARY": f"{STEPS_FILE}: count, head and Merkle root match",
            "GT-CHAIN-GAP": f"steps 1..{n}",
            "GT-STATE-ROOT": f"{n} state roots recomputed",
            "GT-ROUTE-VIOLATION": f"{changes_total} tensor changes, each allowed by a batch "
            f"profile",
            "GT-STATE-FINAL": final.hex(),
            "GT-STATE-BASE": start.base_state_root.hex(),
        }
    )
    ctx.chain = facts
    r.verified["steps"] = n
    r.verified["finalStateRoot"] = final.hex() if root_ok else None
    r.verified["baseStateRoot"] = start.base_state_root.hex()
    sizes = {nm: _numel(sh) for nm, (_dt, sh) in start.tensors.items()}
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


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _check_start(ctx: Context, t: Tally, start: StartRecord) -> None:
    tr = ctx.training_pred
    assert tr is not None
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


def check_memorization(ctx: Context) -> None:
    r = ctx.result
    mem, chain, policy = ctx.memorization_pred, ctx.chain, ctx.policy
    if mem is None:
        skip_all(r, MEM_CODES, "no usable memorization-report statement")
        return
    if chain is None or not chain.complete:
        skip_all(r, MEM_CODES, "the step log was not verified")
        return
    t = Tally(r, MEM_CODES)
    logged = chain.events
    if len(mem.events) != len(logged):
        t.fail(
            "GT-MEM-EVENTS",
            f"memorization-report: expected {len(logged)} events (the step log's), found "
            f"{len(mem.events)}",
        )
    for i, (want, got) in enumerate(zip(logged, mem.events, strict=False)):
        if dict(got) != want:
            t.fail(
                "GT-MEM-EVENTS",
                f"memorization-report events[{i}]: expected {want}, found {dict(got)}",
            )
    q = sorted(
        {e["example"] for e in logged if e["kind"] == "quarantine" and e["example"] is not None}
    )
    if list(mem.quarantined) != q:
        t.fail(
            "GT-MEM-EVENTS",
            f"memorization-report quarantined: expected {q}, found {list(mem.quarantined)}",
        )
    if mem.halted != bool(chain.halt_steps):
        t.fail(
            "GT-MEM-EVENTS",
            f"memorization-report halted: expected {bool(chain.halt_steps)}, found {mem.halted}",
        )
    ld = chain.loss_drop
    if policy is None or ld is None:
        t.skip("GT-MEM-SIGNAL", "no verified policy")
    else:
        t.fail_all("GT-MEM-SIGNAL", ld.messages, ld.count)
    if policy is None:
        t.skip("GT-MEM-ACTION", "no verified policy")
    else:
        action = policy.memorization.action
        for s, events in sorted(chain.step_events.items()):
            flagged = [
                e.example for e in events if e.kind == "memorization-flag" and e.example is not None
            ]
            quarantined = {e.example for e in events if e.kind == "quarantine"}
            halted = any(e.kind == "halt" for e in events)
            # An action event is the policy's answer to a flag of the same step (records.md
            # §5.1): never another action, never without its flag.
            flags = {(e.example, e.signal) for e in events if e.kind == "memorization-flag"}
            for e in events:
                if e.kind not in ("quarantine", "halt"):
                    continue
                if e.kind != action:
                    t.fail(
                        "GT-MEM-ACTION",
                        f"step {s}: {e.kind} event for example {e.example}: expected only "
                        f"the policy action {action!r}, found {e.kind!r}",
                    )
                elif (e.example, e.signal) not in flags:
                    t.fail(
                        "GT-MEM-ACTION",
                        f"step {s}: {e.kind} event for example {e.example}: expected a "
                        f"memorization-flag of example {e.example} by signal {e.signal!r} in the "
                        f"same step, found none",
                    )
            if action == "quarantine":
                for x in flagged:
                    if x not in quarantined:
                        t.fail(
                            "GT-MEM-ACTION",
                            f"step {s}: example {x} was flagged for memorization; policy action "
                            f"'quarantine' expected its quarantine at step {s}, found none",
                        )
            if action == "halt" and flagged and not halted:
                t.fail(
                    "GT-MEM-ACTION",
                    f"step {s}: memorization flagged; policy action 'halt' expected a halt at "
                    f"step {s}, found none",
                )
        for s in chain.halt_steps:
            if s != chain.last_step:
                t.fail(
                    "GT-MEM-ACTION",
                    f"step {s}: halt event, expected it to be the last step, found steps up to "
                    f"{chain.last_step}",
                )
    t.flush(
        {
            "GT-MEM-EVENTS": f"{len(logged)} event(s)",
            "GT-MEM-SIGNAL": f"{ld.flags} loss-drop flag(s) re-derived from the recorded losses"
            if ld is not None
            else "",
            "GT-MEM-ACTION": f"action {policy.memorization.action!r} carried out" if policy else "",
        }
    )
    r.verified["memorization"] = {
        "events": len(logged),
        "flags": sum(1 for e in logged if e["kind"] == "memorization-flag"),
        "quarantined": q,
        "halted": bool(chain.halt_steps),
    }
    r.attested["canaries"] = [dict(c) for c in mem.canaries]
    r.attested["reference"] = dict(mem.reference)


def attested_from_training(ctx: Context) -> dict[str, Any]:
    tr = ctx.training_pred
    if tr is None:
        return {}
    return {
        "environment": dict(tr.environment),
        "config": dict(tr.config),
        "builder": tr.builder,
        "startedOn": tr.started_on,
        "finishedOn": tr.finished_on,
        "baseModel": dict(tr.base_model),
        "dataset": dict(tr.dataset),
    }

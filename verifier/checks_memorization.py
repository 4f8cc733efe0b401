"""V5 memorization: the report equals the log, every flag re-derived, every action taken.

Input: the verified chain (its events and what its stream re-derived: loss-drop flags,
verifier/loss_drop.py; reference-quantile and canary-exposure flags,
verifier/mem_signals.py), the verified policy and the memorization-report statement.
"""

from __future__ import annotations

from typing import Any

from .context import Context, Tally, missing_inputs
from .verified import VerifiedBundle, VerifiedChain, VerifiedPolicy

MEM_CODES = ("GT-MEM-EVENTS", "GT-MEM-SIGNAL", "GT-MEM-ACTION")


def _report_quantile(reference: Any, q: float) -> float | None:
    """The report's reference quantile at ``q`` (key as the trainer writes it), or None."""
    if not isinstance(reference, dict) or not isinstance(reference.get("quantiles"), dict):
        return None
    v = reference["quantiles"].get(f"{q:g}")
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def check_memorization(
    ctx: Context,
    bundle: VerifiedBundle | None,
    vpolicy: VerifiedPolicy | None,
    chain: VerifiedChain | None,
) -> bool:
    """V5; True when every check passed. Raises nothing on evidence."""
    r = ctx.result
    if missing_inputs(r, MEM_CODES, {"bundle": bundle, "policy": vpolicy, "step chain": chain}):
        return False
    assert bundle is not None and vpolicy is not None and chain is not None
    mem, policy, derived = bundle.memorization, vpolicy.policy, chain.derived
    t = Tally(r, MEM_CODES)
    logged = chain.events
    if len(mem.events) != len(logged):
        t.fail(
            "GT-MEM-EVENTS",
            f"memorization-report: expected {len(logged)} events (the step log's), found "
            f"{len(mem.events)}",
        )
    for i, (want, got) in enumerate(zip(logged, mem.events, strict=False)):
        # Exactly the log's members: an unknown member of a report event fails too.
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
    signals = derived.signals
    if signals is not None:
        # The report's canary exposures are the log's canary-exposure events, nothing else.
        got_c = [dict(c) for c in mem.canaries]
        if got_c != signals.exposures:
            t.fail(
                "GT-MEM-EVENTS",
                f"memorization-report canaries: expected {signals.exposures[:4]} (the step "
                f"log's canary-exposure events, {len(signals.exposures)}), found {got_c[:4]} "
                f"({len(got_c)})",
            )
        ref_count = mem.reference.get("count")
        # The last step is always an evaluation point (policy.md §6), so a run with steps
        # measured the whole held-out set at least once.
        want_count = len(chain.heldout) if chain.steps else 0
        if ref_count != want_count:
            t.fail(
                "GT-MEM-EVENTS",
                f"memorization-report reference.count: expected {want_count} (the re-derived "
                f"held-out set at an evaluation), found {ref_count!r:.40}",
            )
        signals.finish(
            chain.last_step,
            _report_quantile(mem.reference, policy.memorization.reference_quantile),
            derived.quarantined,
        )
    ld = derived.loss_drop
    fails = (ld.count if ld else 0) + (signals.count if signals else 0)
    msgs = (ld.messages if ld else []) + (signals.messages if signals else [])
    if fails:
        t.fail_all("GT-MEM-SIGNAL", msgs, fails)
    _check_actions(t, policy.memorization.action, chain)
    t.flush(
        {
            "GT-MEM-EVENTS": f"{len(logged)} event(s)",
            "GT-MEM-SIGNAL": f"{ld.flags if ld else 0} loss-drop flag(s) and every "
            f"reference-quantile and canary-exposure flag re-derived",
            "GT-MEM-ACTION": f"action {policy.memorization.action!r} carried out",
        }
    )
    passed = not any(t.failed(c) for c in MEM_CODES)
    if passed:
        r.verified["memorization"] = {
            "events": len(logged),
            "flags": sum(1 for e in logged if e["kind"] == "memorization-flag"),
            "quarantined": q,
            "halted": bool(chain.halt_steps),
        }
    r.attested["canaries"] = [dict(c) for c in mem.canaries]
    r.attested["reference"] = dict(mem.reference)
    return passed


def _check_actions(t: Tally, action: str, chain: VerifiedChain) -> None:
    """GT-MEM-ACTION: the policy's action follows every flag, and no action without one."""
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

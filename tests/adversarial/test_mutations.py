"""Mutation testing of evidence: nothing forged passes (issue 6, item 1).

From one fresh tiny run (conftest.tiny_run), every test makes mutants of a copy and
requires `verifier.api.verify` to FAIL with the expected check code; reorderings and
unknown-but-signed statements must still PASS. The semantic forgeries are re-signed
with the producer's own key (mutate.Evidence), so every signature is valid and only
the lie is left for the verifier to find. A sample of mutants also goes through
`govtune verify` to check the exit code (1) and that no traceback is printed.

Each test records (class, count, detected) in mutate.TABLE; conftest prints the table.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import mutate
import pytest
import tinyrun

from attest.predicates import ADMISSIONS_TYPE, MEMORIZATION_TYPE, POLICY_TYPE, TRAINING_TYPE
from attest.tensors import state_root
from verifier.api import verify
from verifier.result import Result

pytestmark = pytest.mark.slow

BUNDLE = "provenance/bundle.intoto.jsonl"
CHECKPOINT = "checkpoints/step-000006.safetensors"  # tinyrun: checkpoint_every 6, 12 steps
FILES = {
    # file -> the codes of which at least one must be reported when its bytes change
    BUNDLE: {
        "GT-BUNDLE-FORMAT",
        "GT-SIG-INVALID",
        "GT-SIG-UNTRUSTED",
        "GT-SIG-NONE",
        "GT-SIG-PAYLOAD-TYPE",
        "GT-STMT-FORMAT",
        "GT-STMT-MISSING",
    },
    "provenance/policy.toml": {"GT-FILE-DIGEST"},
    "provenance/admissions.msgpack": {"GT-FILE-DIGEST"},
    "provenance/steps.msgpack": {"GT-FILE-DIGEST"},
    "model.safetensors": {"GT-WEIGHTS-DIGEST"},
    CHECKPOINT: {"GT-CHECKPOINT-DIGEST"},  # signed by training checkpoints[].sha256
}


def codes(result: Result) -> set[str]:
    return {f.code for f in result.failures}


def check(run: Path, t: tinyrun.TinyRun, **flags: Any) -> Result:
    return verify(run, keys=[t.pub], **flags)


@pytest.fixture
def work(tmp_path: Path, tiny_run: tinyrun.TinyRun) -> Path:
    """A private copy of the valid run (the session run itself is never touched)."""
    dst = tmp_path / "run"
    shutil.copytree(tiny_run.run, dst)
    return dst


def run_mutants(
    label: str,
    work: Path,
    t: tinyrun.TinyRun,
    mutants: Iterable[tuple[str, Path, bytes]],
    expected: Callable[[str], set[str]],
) -> None:
    """Write each (name, file, bytes) mutant, verify, restore: each must FAIL as expected."""
    missed: list[str] = []
    n = 0
    for name, path, data in mutants:
        original = path.read_bytes()
        if data == original:
            continue  # not a mutant
        n += 1
        path.write_bytes(data)
        try:
            result = check(work, t)
        finally:
            path.write_bytes(original)
        want = expected(name)
        if result or not (codes(result) & want):
            missed.append(
                f"{name}: expected FAIL with one of {sorted(want)}, got "
                f"{result.verdict} {sorted(codes(result))}"
            )
    mutate.record(label, n, n - len(missed))
    assert not missed, f"{len(missed)}/{n} mutants not detected:\n" + "\n".join(missed[:30])


# -- the baseline ----------------------------------------------------------------------


def test_valid_run_passes_every_layer(tiny_run: tinyrun.TinyRun) -> None:
    result = check(
        tiny_run.run,
        tiny_run,
        base=tiny_run.base,
        data=tiny_run.dataset,
        openings=tiny_run.run / "private",
    )
    assert result, [f.to_dict() for f in result.failures]
    # a run folder runs only GT-RELEASE-PRIVATE of V10 (spec/release.md §1)
    skipped = [
        f.code
        for f in result.findings
        if f.status == "skip"
        and f.layer not in ("replay", "requirements")
        and not (f.layer == "release" and f.code != "GT-RELEASE-PRIVATE")
    ]
    assert not skipped, (
        "every layer but replay (--replay), release and requirements (--require) must run"
    )


def test_identity_resign_passes(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    # The forgery machinery itself must not create defects: rebuild + re-sign = PASS.
    mutate.Evidence.load(work, tiny_run.pub).write(work, mutate.signer(tiny_run))
    result = check(
        work, tiny_run, base=tiny_run.base, data=tiny_run.dataset, openings=work / "private"
    )
    assert result, [f.to_dict() for f in result.failures]


# -- raw byte damage ------------------------------------------------------------------------


def _positions(path: Path, n: int) -> list[int]:
    size = path.stat().st_size
    rnd = random.Random(f"flip:{path.name}")
    return sorted({0, size - 1, *rnd.sample(range(size), min(n, size))})


FLIPS = {
    BUNDLE: 80,
    "provenance/policy.toml": 20,
    "provenance/admissions.msgpack": 35,
    "provenance/steps.msgpack": 35,
    "model.safetensors": 40,
    CHECKPOINT: 30,
}


@pytest.mark.parametrize("rel", sorted(FILES))
def test_byte_flip_anywhere_is_detected(work: Path, tiny_run: tinyrun.TinyRun, rel: str) -> None:
    path = work / rel
    data = path.read_bytes()
    rnd = random.Random(f"bit:{rel}")

    def mutants() -> Iterable[tuple[str, Path, bytes]]:
        for pos in _positions(path, FLIPS[rel]):
            b = bytearray(data)
            bit = rnd.randrange(8)
            b[pos] ^= 1 << bit
            yield f"{rel}@{pos}^{1 << bit}", path, bytes(b)

    run_mutants("byte flip", work, tiny_run, mutants(), lambda _: FILES[rel])


@pytest.mark.parametrize("rel", sorted(FILES))
def test_truncation_anywhere_is_detected(work: Path, tiny_run: tinyrun.TinyRun, rel: str) -> None:
    path = work / rel
    data = path.read_bytes()
    rnd = random.Random(f"cut:{rel}")
    cuts = sorted({0, 1, 8, len(data) // 2, len(data) - 1, *rnd.sample(range(len(data)), 7)})
    if rel == BUNDLE:  # cut exactly at line ends too: whole statements disappear
        cuts += [i + 1 for i, c in enumerate(data) if c == 0x0A][:-1]
    run_mutants(
        "truncation",
        work,
        tiny_run,
        ((f"{rel}[:{c}]", path, data[:c]) for c in cuts),
        lambda _: FILES[rel],
    )


@pytest.mark.parametrize("rel", sorted(FILES))
def test_appended_garbage_is_detected(work: Path, tiny_run: tinyrun.TinyRun, rel: str) -> None:
    path = work / rel
    data = path.read_bytes()
    tails = {
        "nul": b"\x00",
        "newline": b"\n",
        "text": b"garbage\n",
        "json": b'{"payload":"x"}\n',
        "random": random.Random(rel).randbytes(100),
        "self": data[:64],
        "msgpack-map": b"\x80",
    }
    expected = FILES[rel] | ({"GT-STMT-DUPLICATE"} if rel == BUNDLE else set())
    run_mutants(
        "appended garbage",
        work,
        tiny_run,
        ((f"{rel}+{k}", path, data + v) for k, v in tails.items()),
        lambda _: expected,
    )


def test_new_file_in_provenance_is_detected(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    prov = work / "provenance"
    missed = []
    names = [
        "notes.txt",
        ".hidden",
        "bundle.intoto.jsonl.bak",
        "sub/inner.txt",
        "admissions.msgpack~",
    ]
    for name in names:
        p = prov / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"unsigned content\n")
        try:
            result = check(work, tiny_run)
        finally:
            p.unlink()
            if p.parent != prov:
                p.parent.rmdir()
        if result or "GT-FILE-UNCOVERED" not in codes(result):
            missed.append(f"{name}: {result.verdict} {sorted(codes(result))}")
    mutate.record("new file in provenance/", len(names), len(names) - len(missed))
    assert not missed, missed


def test_missing_provenance_file_is_detected(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    expected = {
        BUNDLE: "GT-BUNDLE-MISSING",
        "provenance/policy.toml": "GT-FILE-DIGEST",
        "provenance/admissions.msgpack": "GT-FILE-DIGEST",
        "provenance/steps.msgpack": "GT-FILE-DIGEST",
        "model.safetensors": "GT-WEIGHTS-MISSING",
    }
    missed = []
    for rel, code in expected.items():
        p = work / rel
        data = p.read_bytes()
        p.unlink()
        try:
            result = check(work, tiny_run)
        finally:
            p.write_bytes(data)
        if result or code not in codes(result):
            missed.append(f"{rel}: expected {code}, got {result.verdict} {sorted(codes(result))}")
    mutate.record("file deleted", len(expected), len(expected) - len(missed))
    assert not missed, missed


# -- bundle lines -----------------------------------------------------------------------------


def _lines(work: Path) -> list[bytes]:
    return (work / BUNDLE).read_bytes().splitlines(keepends=True)


def _ptype(line: bytes) -> str:
    return str(mutate.payload_of(json.loads(line))["predicateType"])


def test_checkpoint_not_shipped_still_passes(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    # A release may omit checkpoints (only --replay needs them, and fails closed there).
    (work / CHECKPOINT).unlink()
    result = check(work, tiny_run)
    [finding] = [f for f in result.findings if f.code == "GT-CHECKPOINT-DIGEST"]
    ok = (
        bool(result)
        and finding.status == "pass"
        and f"not shipped ({CHECKPOINT}" in (finding.message)
    )
    mutate.record("checkpoint file not shipped (must PASS)", 1, int(ok))
    assert ok, (result.verdict, sorted(codes(result)), finding.message)


def test_bundle_line_deleted_is_detected(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    lines = _lines(work)
    run_mutants(
        "bundle line deleted",
        work,
        tiny_run,
        (
            (
                f"without {_ptype(lines[i]).rsplit('/', 2)[1]}",
                work / BUNDLE,
                b"".join(lines[:i] + lines[i + 1 :]),
            )
            for i in range(len(lines))
        ),
        lambda _: {"GT-STMT-MISSING"},
    )


def test_bundle_line_replaced_from_another_run_is_detected(
    work: Path, tiny_run: tinyrun.TinyRun, other_run: tinyrun.TinyRun
) -> None:
    ours = _lines(work)
    theirs = {
        _ptype(x): x
        for x in (other_run.provenance / "bundle.intoto.jsonl").read_bytes().splitlines(True)
    }
    run_mutants(
        "bundle line from another run",
        work,
        tiny_run,
        (
            (
                f"{_ptype(x).rsplit('/', 2)[1]} from other run",
                work / BUNDLE,
                b"".join(theirs[_ptype(x)] if j == i else y for j, y in enumerate(ours)),
            )
            for i, x in enumerate(ours)
        ),
        lambda _: {"GT-STMT-BINDING"},
    )


def test_bundle_line_from_another_run_added_is_detected(
    work: Path, tiny_run: tinyrun.TinyRun, other_run: tinyrun.TinyRun
) -> None:
    ours = (work / BUNDLE).read_bytes()
    theirs = (other_run.provenance / "bundle.intoto.jsonl").read_bytes().splitlines(True)
    run_mutants(
        "bundle line duplicated/added",
        work,
        tiny_run,
        [
            (f"+{_ptype(x).rsplit('/', 2)[1]} from other run", work / BUNDLE, ours + x)
            for x in theirs
        ]
        + [
            (f"+{_ptype(x).rsplit('/', 2)[1]} twice", work / BUNDLE, ours + x)
            for x in ours.splitlines(True)
        ],
        lambda _: {"GT-STMT-DUPLICATE"},
    )


def test_bundle_lines_reordered_still_pass(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    lines = _lines(work)
    orders = [list(reversed(range(4))), [1, 2, 3, 0], [2, 0, 3, 1], [3, 1, 0, 2], [1, 0, 3, 2]]
    false_alarms = []
    for order in orders:
        (work / BUNDLE).write_bytes(b"".join(lines[i] for i in order))
        result = check(work, tiny_run)
        if not result:
            false_alarms.append(f"order {order}: {sorted(codes(result))}")
    mutate.record(
        "bundle lines reordered (must PASS)", len(orders), len(orders) - len(false_alarms)
    )
    assert not false_alarms, false_alarms


def test_unknown_signed_statement_added_still_passes(work: Path, tiny_run: tinyrun.TinyRun) -> None:
    signer = mutate.signer(tiny_run)
    lines = _lines(work)
    foreign = [
        mutate.sign_foreign(
            signer, "https://slsa.dev/provenance/v1", {"buildDefinition": {"x": 1}}
        ),
        mutate.sign_foreign(
            signer,
            "https://example.com/unknown/v9",
            {"runId": "0" * 32, "policyDigest": "ab" * 32, "steps": 10**9},
        ),
    ]
    extra = [json.dumps(e, sort_keys=True, separators=(",", ":")).encode() + b"\n" for e in foreign]
    variants = [lines + extra[:1], extra[1:] + lines, lines[:2] + extra + lines[2:]]
    false_alarms = []
    for v in variants:
        (work / BUNDLE).write_bytes(b"".join(v))
        result = check(work, tiny_run)
        if not result:
            false_alarms.append(sorted(codes(result)))
    mutate.record(
        "unknown signed statement added (must PASS)",
        len(variants),
        len(variants) - len(false_alarms),
    )
    assert not false_alarms, false_alarms


def test_statement_signed_by_untrusted_key_is_detected(
    work: Path, tiny_run: tinyrun.TinyRun
) -> None:
    from attest import keys

    intruder = keys.generate("ecdsa")
    ev = mutate.Evidence.load(work, tiny_run.pub)
    ev.write(work, intruder)
    result = check(work, tiny_run)
    detected = not result and "GT-SIG-UNTRUSTED" in codes(result)
    mutate.record("re-signed by an untrusted key", 1, int(detected))
    assert detected, sorted(codes(result))


# -- msgpack records, raw (digest covers them) and re-signed (chain re-linked) ----------------


RECORD_EDITS: dict[str, Callable[[list[dict[str, Any]], list[dict[str, Any]]], None]] = {
    "deleted": lambda recs, other: recs.pop(len(recs) // 2),
    "duplicated": lambda recs, other: recs.insert(len(recs) // 2, dict(recs[len(recs) // 2])),
    "swapped": lambda recs, other: recs.__setitem__(slice(3, 5), [recs[4], recs[3]]),
    "replayed from another run": lambda recs, other: recs.__setitem__(
        len(recs) // 2, other[len(recs) // 2]
    ),
    "last deleted": lambda recs, other: recs.pop(),
}

RECORD_EXPECTED = {
    # re-signed: the file digest and chain are right; the content must give it away
    ("steps", "deleted"): {"GT-CHAIN-GAP"},
    ("steps", "duplicated"): {"GT-CHAIN-GAP"},
    ("steps", "swapped"): {"GT-CHAIN-GAP"},
    ("steps", "replayed from another run"): {
        "GT-STATE-ROOT",
        "GT-BATCH-QUARANTINED",
        "GT-CHAIN-GAP",
    },
    ("steps", "last deleted"): {"GT-STATE-FINAL", "GT-WEIGHTS-ROOT"},
    ("admissions", "deleted"): {"GT-ADMIT-ORDER"},
    ("admissions", "duplicated"): {"GT-ADMIT-ORDER"},
    ("admissions", "swapped"): {"GT-ADMIT-ORDER"},
    ("admissions", "replayed from another run"): {"GT-DATA-COMMITMENT"},
    ("admissions", "last deleted"): {"GT-ADMIT-CANARIES", "GT-ADMIT-ORDER", "GT-BATCH-REFUSED"},
}


@pytest.mark.parametrize("log", ["steps", "admissions"])
@pytest.mark.parametrize("edit", sorted(RECORD_EDITS))
@pytest.mark.parametrize("resign", [False, True], ids=["raw", "resigned"])
def test_msgpack_records_tampered_are_detected(
    tmp_path: Path,
    tiny_run: tinyrun.TinyRun,
    other_run: tinyrun.TinyRun,
    log: str,
    edit: str,
    resign: bool,
) -> None:
    work = tmp_path / "run"
    shutil.copytree(tiny_run.run, work)
    ev = mutate.Evidence.load(work, tiny_run.pub)
    other = mutate.Evidence.load(other_run.run, other_run.pub)
    recs = ev.steps if log == "steps" else ev.admissions
    RECORD_EDITS[edit](recs, other.steps if log == "steps" else other.admissions)
    if resign:
        ev.write(work, mutate.signer(tiny_run))
        want = RECORD_EXPECTED[(log, edit)]
    else:
        # The attacker rewrites the log (chain re-linked) but cannot re-sign.
        mutate._write_log(work / "provenance" / f"{log}.msgpack", recs, None)
        want = {"GT-FILE-DIGEST"}
    flags: dict[str, Any] = {}
    if "GT-DATA-COMMITMENT" in want:
        flags = {"data": tiny_run.dataset, "openings": work / "private"}
    result = check(work, tiny_run, **flags)
    detected = not result and bool(codes(result) & want)
    mutate.record(
        f"{log} record {edit}" + (" (re-signed)" if resign else " (raw)"), 1, int(detected)
    )
    assert detected, (
        f"expected FAIL with one of {sorted(want)}, got {result.verdict} {sorted(codes(result))}"
    )


# -- semantic forgeries, re-signed with the producer's own key -----------------------------------


def _rechain(ev: mutate.Evidence) -> None:
    """Recompute every step's state root from the base leaves and the recorded changes."""
    leaves = {n: leaf for n, leaf in ev.steps[0]["baseLeaves"]}
    for rec in ev.steps[1:]:
        leaves.update({n: leaf for n, leaf in rec["changed"]})
        rec["stateRoot"] = state_root(leaves)


def _surface_only_step(ev: mutate.Evidence) -> int:
    surface = set(dict(ev.steps[0]["profiles"])["surface"])
    for rec in ev.steps[1:]:
        if set(rec["profiles"]) == {"surface"}:
            assert {n for n, _ in rec["changed"]} <= surface
            return int(rec["step"])
    raise AssertionError("the tiny run has no surface-only step; change its seed")


def _quarantined_at(ev: mutate.Evidence, first: bool = False) -> tuple[int, int]:
    """(example, step) of a quarantine event: by default the last quarantining step's, so
    that no later batch shows the example still eligible (the data order, GT-BATCH-ORDER)
    and only V5 or replay can tell; ``first``: the run's first."""
    for rec in ev.steps[1:] if first else ev.steps[:0:-1]:
        for e in rec["events"]:
            if e["kind"] == "quarantine":
                return int(e["example"]), int(rec["step"])
    raise AssertionError("the tiny run quarantined nothing; lower loss_drop_max")


def _refused(ev: mutate.Evidence) -> int:
    return next(int(r["index"]) for r in ev.admissions if r["decision"] == "refuse")


def forge_refused_in_batch(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    ev.step(1)["batch"][0] = _refused(ev)
    ev.step(1)["profiles"][0] = "deep"


def forge_route_violation(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    # A surface-only step that also changed a deep-only tensor; the chain is recomputed
    # so the state roots hold: only the routing lie remains.
    t = _surface_only_step(ev)
    rec = ev.step(t)
    changed = dict(rec["changed"])
    changed["tok_emb.weight"] = b"\x42" * 32
    rec["changed"] = sorted(changed.items())
    _rechain(ev)
    ctx["recompute_final"] = True


def forge_quarantined_reused(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    example, step = _quarantined_at(ev, first=True)
    later = ev.step(step + 1)
    later["batch"][0] = example
    later["profiles"][0] = next(r["profile"] for r in ev.admissions if r["index"] == example)


def forge_step_removed_relinked(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    del ev.steps[3]  # the prev chain is re-linked by the rewrite; numbering keeps the gap


def forge_step_removed_renumbered(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    del ev.steps[1]
    for rec in ev.steps[1:]:
        rec["step"] -= 1


def forge_state_root_altered(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    rec = ev.step(3)
    rec["stateRoot"] = bytes([rec["stateRoot"][0] ^ 1]) + rec["stateRoot"][1:]


def forge_weights_swapped(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    shutil.copy(ctx["other"].run / "model.safetensors", ctx["work"] / "model.safetensors")


def forge_weights_swapped_final_root_claimed(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    shutil.copy(ctx["other"].run / "model.safetensors", ctx["work"] / "model.safetensors")
    ev.predicates[TRAINING_TYPE]["finalStateRoot"] = mutate.weights_root(
        ctx["work"] / "model.safetensors"
    )
    ctx["recompute_final"] = False


LAX_POLICY = (
    tinyrun.POLICY.replace(b'deny = ["strong-copyleft"]', b"deny = []")
    .replace(
        b'allow = ["permissive", "weak-copyleft"]',
        b'allow = ["permissive", "weak-copyleft", "strong-copyleft"]',
    )
    .replace(b'action = "reject"\n\n[duplicates]', b'action = "mask"\n\n[duplicates]')
)


def forge_policy_laxer(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    assert LAX_POLICY != tinyrun.POLICY
    ev.policy_bytes = LAX_POLICY


def forge_policy_laxer_everywhere(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    # Also the start record's policy digest: only the recorded decisions still tell.
    from attest.policy import Policy

    ev.policy_bytes = LAX_POLICY
    ev.steps[0]["policyDigest"] = Policy.from_toml(LAX_POLICY).digest()


def forge_policy_digest_kept(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    # New policy file (subject re-signed), but the predicates keep the old digest.
    ev.policy_bytes = LAX_POLICY
    ctx["after"] = lambda ev2: [
        p.__setitem__("policyDigest", ctx["old_digest"]) for p in ev2.predicates.values()
    ]


def forge_decision_flipped_admit(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    rec = next(r for r in ev.admissions if r["decision"] == "refuse")
    rec["decision"], rec["profile"] = "admit", "deep"


def forge_decision_flipped_refuse(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    rec = ev.admissions[0]
    rec["decision"], rec["profile"] = "refuse", None


def forge_outcome_flipped(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    rec = next(r for r in ev.admissions if r["decision"] == "refuse")
    for o in rec["outcomes"]:
        o["outcome"] = "pass"
    rec["decision"], rec["profile"] = "admit", "deep"


def forge_license_laundered(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    # The GPL example's metadata rewritten to MIT: consistent under the policy, a lie
    # about the data that only the dataset (--data) can expose.
    from attest.admission import Metadata, decide
    from attest.policy import Policy

    rec = next(r for r in ev.admissions if r["metadata"]["license"] == "GPL-3.0-only")
    rec["metadata"]["license"] = "MIT"
    d = decide(
        Policy.from_toml(ev.policy_bytes),
        Metadata.from_dict(rec["metadata"]),
        __import__("attest.admission").admission.Findings.from_dict(rec["findings"]),
    )
    rec["decision"], rec["profile"] = ("admit" if d.admitted else "refuse"), d.profile
    rec["outcomes"] = [o.to_dict() for o in d.outcomes]
    ctx["flags"] = {"data": ctx["t"].dataset, "openings": ctx["work"] / "private"}


def forge_pii_finding_hidden(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    from attest.admission import Findings, Metadata, decide
    from attest.policy import Policy

    rec = next(r for r in ev.admissions if r["findings"]["pii"])
    rec["findings"]["pii"] = []
    d = decide(
        Policy.from_toml(ev.policy_bytes),
        Metadata.from_dict(rec["metadata"]),
        Findings.from_dict(rec["findings"]),
    )
    rec["decision"], rec["profile"] = ("admit" if d.admitted else "refuse"), d.profile
    rec["outcomes"] = [o.to_dict() for o in d.outcomes]
    ctx["flags"] = {"data": ctx["t"].dataset, "openings": ctx["work"] / "private"}


def forge_memorization_event_dropped_from_report(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    ctx["remember"] = False
    del ev.predicates[MEMORIZATION_TYPE]["events"][0]


def forge_quarantine_event_deleted(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    # Flag kept, quarantine dropped (and the example used again): the action was not carried out.
    example, step = _quarantined_at(ev)
    rec = ev.step(step)
    rec["events"] = [
        e for e in rec["events"] if not (e["kind"] == "quarantine" and e["example"] == example)
    ]


def forge_memorization_flag_and_quarantine_deleted(
    ev: mutate.Evidence, ctx: dict[str, Any]
) -> None:
    # Both events of one example erased everywhere; the recorded per-example losses
    # still show the drop that should have triggered them.
    example, step = _quarantined_at(ev)
    rec = ev.step(step)
    rec["events"] = [e for e in rec["events"] if e["example"] != example]


def forge_spurious_loss_drop_flag(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    # A flag (and its quarantine) at step 1, every example's first visit: there is no
    # earlier loss to drop from, so the loss-drop signal cannot have fired.
    x = ev.step(1)["batch"][0]
    flag = {"kind": "memorization-flag", "example": x, "signal": "loss-drop",
            "value": 1.0, "threshold": 0.02, "detail": "forged"}  # fmt: skip
    ev.step(1)["events"] = [*ev.step(1)["events"], flag, {**flag, "kind": "quarantine"}]


def forge_loss_drop_value_rewritten(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    rec = next(r for r in ev.steps[1:] if any(e["signal"] == "loss-drop" for e in r["events"]))
    for e in rec["events"]:
        if e["signal"] == "loss-drop":
            e["value"] = float(e["value"]) * 2
            break


def _training_after(edit: Callable[[dict[str, Any]], None]) -> Callable[[mutate.Evidence], None]:
    return lambda ev2: edit(ev2.predicates[TRAINING_TYPE])


def forge_checkpoint_root_claimed(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    ctx["after"] = _training_after(lambda p: p["checkpoints"][0].update(stateRoot="3" * 64))


def forge_checkpoint_entry_dropped(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    ctx["after"] = _training_after(lambda p: p["checkpoints"].pop(0))


def forge_checkpoint_file_swapped(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    # The checkpoint file replaced by the released weights (another step's state); the
    # step record and the predicate re-signed with its sha256: only the state root over
    # the tensors inside the file tells.
    rec = next(r for r in ev.steps[1:] if r["checkpoint"] is not None)
    path = ctx["work"] / rec["checkpoint"]["file"]
    shutil.copy(ctx["work"] / "model.safetensors", path)
    rec["checkpoint"] = {**rec["checkpoint"], "sha256": mutate.sha256_file(path)}


def forge_base_claimed_other(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    other = mutate.Evidence.load(ctx["other"].run, ctx["other"].pub)
    ev.steps[0]["baseLeaves"] = other.steps[0]["baseLeaves"]
    ev.steps[0]["baseStateRoot"] = other.steps[0]["baseStateRoot"]
    _rechain(ev)
    ctx["flags"] = {"base": ctx["t"].base}


def forge_heldout_trained(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    held = ev.steps[0]["heldout"][0]
    ev.step(1)["batch"][0] = held
    ev.step(1)["profiles"][0] = next(r["profile"] for r in ev.admissions if r["index"] == held)


def forge_profile_changed(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    rec = ev.step(_surface_only_step(ev))
    rec["profiles"][0] = "deep"


def forge_profile_resolution_widened(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    profiles = dict(ev.steps[0]["profiles"])
    profiles["surface"] = sorted(set(profiles["surface"]) | {"tok_emb.weight"})
    ev.steps[0]["profiles"] = profiles


def forge_unknown_tensor_changed(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    rec = ev.step(1)
    rec["changed"] = sorted([*rec["changed"], ["zz.backdoor.weight", b"\x13" * 32]])


def forge_canary_count_claimed(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    ev.predicates[ADMISSIONS_TYPE]["counts"]["canaries"] += 1
    ctx["recount"] = False


def forge_canary_dropped(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    # One canary copy disappears from the admission log and from every batch.
    canary = ev.admissions.pop()
    assert canary["metadata"]["canary"]
    for rec in ev.steps[1:]:
        keep = [i for i, x in enumerate(rec["batch"]) if x != canary["index"]]
        for k in ("batch", "profiles", "loss", "gradNorm"):
            rec[k] = [rec[k][i] for i in keep]
        rec["events"] = [e for e in rec["events"] if e["example"] != canary["index"]]


def forge_admitted_count_claimed(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    ev.predicates[ADMISSIONS_TYPE]["counts"]["refused"] -= 1
    ev.predicates[ADMISSIONS_TYPE]["counts"]["admitted"] += 1
    ctx["recount"] = False


def forge_run_id_mismatch(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    ev.predicates[MEMORIZATION_TYPE]["runId"] = "f" * 32


def forge_policy_digest_mismatch(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    ctx["after"] = lambda ev2: ev2.predicates[TRAINING_TYPE].__setitem__("policyDigest", "ab" * 32)


def forge_steps_claimed_larger(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    ev.predicates[TRAINING_TYPE]["steps"] = len(ev.steps) - 1 + 5
    ctx["recompute_steps"] = False


def forge_steps_claimed_smaller(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    ev.predicates[TRAINING_TYPE]["steps"] = len(ev.steps) - 2
    ctx["recompute_steps"] = False


def forge_admission_head_other(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    ctx["after"] = lambda ev2: ev2.predicates[TRAINING_TYPE].__setitem__("admissionHead", "ab" * 32)


def forge_config_digest_changed(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    ev.steps[0]["configDigest"] = "ab" * 32


def forge_trained_past_halt(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    ev.step(2)["events"].append(
        {
            "kind": "halt",
            "example": None,
            "signal": "loss-drop",
            "value": 9.0,
            "threshold": 0.02,
            "detail": "halted by policy",
        }
    )


def _replay_flags(ctx: dict[str, Any]) -> dict[str, Any]:
    # Replay every step (N >= steps): which ones a sampled replay picks is not the point here.
    return {"data": ctx["t"].dataset, "openings": ctx["work"] / "private", "replay": 1000}


def forge_loss_rewritten(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    rec = ev.step(2)
    rec["loss"][0] = float(rec["loss"][0]) - 0.25
    ctx["flags"] = _replay_flags(ctx)


def forge_drop_hidden_in_losses(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    # Erase both events of one example and rewrite its loss so no drop shows: consistent
    # for every structural check; only re-execution sees the true loss.
    example, step = _quarantined_at(ev)
    rec = ev.step(step)
    rec["events"] = [e for e in rec["events"] if e["example"] != example]
    j = rec["batch"].index(example)
    rec["loss"][j] = float(rec["loss"][j]) + 10.0
    ctx["flags"] = _replay_flags(ctx)


def forge_update_rewritten(ev: mutate.Evidence, ctx: dict[str, Any]) -> None:
    # A recorded update of a tensor that a later step overwrites: the chain is recomputed,
    # the final root and weights still match; the step simply did not happen as recorded.
    rec = ev.step(1)
    changed = dict(rec["changed"])
    changed["lm_head.weight"] = b"\x24" * 32
    rec["changed"] = sorted(changed.items())
    _rechain(ev)
    ctx["flags"] = _replay_flags(ctx)


FORGERIES: dict[str, tuple[Callable[[mutate.Evidence, dict[str, Any]], None], set[str]]] = {
    "refused example in a batch": (forge_refused_in_batch, {"GT-BATCH-REFUSED"}),
    "tensor changed outside the batch's profiles": (forge_route_violation, {"GT-ROUTE-VIOLATION"}),
    "quarantined example used again": (forge_quarantined_reused, {"GT-BATCH-QUARANTINED"}),
    "step removed, chain re-linked": (forge_step_removed_relinked, {"GT-CHAIN-GAP"}),
    # When the next step re-changes every tensor the removed one changed, the roots still
    # chain; the checkpoint record then sits one step early (and loss flags shift).
    # Every later batch is now one step early in the data order.
    "step removed, steps renumbered": (
        forge_step_removed_renumbered,
        {"GT-STATE-ROOT", "GT-CHECKPOINT-DIGEST", "GT-BATCH-ORDER"},
    ),
    "state root altered": (forge_state_root_altered, {"GT-STATE-ROOT"}),
    "weights swapped, subjects re-computed": (forge_weights_swapped, {"GT-WEIGHTS-ROOT"}),
    "weights swapped, final root claimed": (
        forge_weights_swapped_final_root_claimed,
        {"GT-STATE-FINAL"},
    ),
    "policy replaced by a laxer one": (forge_policy_laxer, {"GT-ADMIT-DECISION", "GT-CHAIN-START"}),
    "laxer policy, start record too": (forge_policy_laxer_everywhere, {"GT-ADMIT-DECISION"}),
    "policy file replaced, digest kept": (forge_policy_digest_kept, {"GT-POLICY-DIGEST"}),
    "admission decision flipped to admit": (forge_decision_flipped_admit, {"GT-ADMIT-DECISION"}),
    "admission decision flipped to refuse": (forge_decision_flipped_refuse, {"GT-ADMIT-DECISION"}),
    "admission outcomes rewritten to pass": (
        forge_outcome_flipped,
        {"GT-ADMIT-DECISION", "GT-ADMIT-LOG-FORMAT"},
    ),
    "license laundered in metadata (--data)": (forge_license_laundered, {"GT-DATA-METADATA"}),
    "PII finding hidden (--data)": (forge_pii_finding_hidden, {"GT-DATA-FINDINGS"}),
    "memorization event dropped from report": (
        forge_memorization_event_dropped_from_report,
        {"GT-MEM-EVENTS"},
    ),
    "quarantine event deleted": (forge_quarantine_event_deleted, {"GT-MEM-ACTION"}),
    "flag and quarantine events deleted": (
        forge_memorization_flag_and_quarantine_deleted,
        {"GT-MEM-SIGNAL"},
    ),
    # Its quarantine makes a later batch use a quarantined example: the chain fails first
    # and V5 (which needs a verified chain, verification.md §2.1) is skipped.
    "loss-drop flag invented at a first visit": (
        forge_spurious_loss_drop_flag,
        {"GT-MEM-SIGNAL", "GT-BATCH-QUARANTINED"},
    ),
    "loss-drop flag value rewritten": (forge_loss_drop_value_rewritten, {"GT-MEM-SIGNAL"}),
    "checkpoint stateRoot forged in the predicate": (
        forge_checkpoint_root_claimed,
        {"GT-CHECKPOINT-DIGEST"},
    ),
    # The shipped file is then an unbound weight-like file (README "The run folder").
    "checkpoint entry dropped from the predicate": (
        forge_checkpoint_entry_dropped,
        {"GT-FILE-UNCOVERED"},
    ),
    "checkpoint file swapped, digests re-signed": (
        forge_checkpoint_file_swapped,
        {"GT-CHECKPOINT-DIGEST"},
    ),
    "base model claimed other (--base)": (forge_base_claimed_other, {"GT-BASE-ROOT"}),
    "held-out example trained on": (forge_heldout_trained, {"GT-BATCH-HELDOUT"}),
    "profile changed in a step record": (forge_profile_changed, {"GT-BATCH-PROFILE"}),
    "profile resolution widened": (forge_profile_resolution_widened, {"GT-CHAIN-PROFILES"}),
    "unknown tensor changed": (forge_unknown_tensor_changed, {"GT-ROUTE-UNKNOWN"}),
    "canary count claimed larger": (forge_canary_count_claimed, {"GT-ADMIT-COUNTS"}),
    "canary copy dropped": (forge_canary_dropped, {"GT-ADMIT-CANARIES"}),
    "admitted count claimed larger": (forge_admitted_count_claimed, {"GT-ADMIT-COUNTS"}),
    "runId mismatch between statements": (forge_run_id_mismatch, {"GT-STMT-BINDING"}),
    "policyDigest mismatch between statements": (forge_policy_digest_mismatch, {"GT-STMT-BINDING"}),
    "steps count claimed larger": (forge_steps_claimed_larger, {"GT-CHAIN-GAP"}),
    "steps count claimed smaller": (forge_steps_claimed_smaller, {"GT-CHAIN-GAP"}),
    "admission head of another log": (forge_admission_head_other, {"GT-STMT-BINDING"}),
    "config digest changed in start record": (forge_config_digest_changed, {"GT-CHAIN-START"}),
    "training continued after a halt": (forge_trained_past_halt, {"GT-MEM-ACTION"}),
    "per-example loss rewritten (--replay)": (forge_loss_rewritten, {"GT-REPLAY-STEP"}),
    "memorization drop hidden in losses (--replay)": (
        forge_drop_hidden_in_losses,
        {"GT-REPLAY-STEP"},
    ),
    "tensor update rewritten, chain recomputed (--replay)": (
        forge_update_rewritten,
        {"GT-REPLAY-STEP"},
    ),
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_resigned_forgery_is_detected(
    tmp_path: Path, tiny_run: tinyrun.TinyRun, other_run: tinyrun.TinyRun, name: str
) -> None:
    forge, want = FORGERIES[name]
    work = tmp_path / "run"
    shutil.copytree(tiny_run.run, work)
    ev = mutate.Evidence.load(work, tiny_run.pub)
    ctx: dict[str, Any] = {
        "work": work,
        "t": tiny_run,
        "other": other_run,
        "old_digest": ev.predicates[POLICY_TYPE]["policyDigest"],
    }
    forge(ev, ctx)
    ev.write(
        work,
        mutate.signer(tiny_run),
        recompute_steps=ctx.get("recompute_steps", True),
        recompute_final=ctx.get("recompute_final", True),
        recount=ctx.get("recount", True),
        remember=ctx.get("remember", True),
    )
    if "after" in ctx:  # a predicate-level lie applied after the consistent rebuild
        ev2 = mutate.Evidence.load(work, tiny_run.pub)
        ctx["after"](ev2)
        ev2.sign_bundle(work, mutate.signer(tiny_run))
    result = check(work, tiny_run, **ctx.get("flags", {}))
    detected = not result and bool(codes(result) & want)
    mutate.record(f"forgery: {name}", 1, int(detected))
    assert detected, (
        f"{name}: expected FAIL with one of {sorted(want)}, got {result.verdict} "
        f"{[(f.code, f.message[:160]) for f in result.failures]}"
    )


# -- the command line on a sample of mutants: exit 1, one verdict, no traceback --------------------

CLI_SAMPLE = [
    "state root altered",
    "refused example in a batch",
    "weights swapped, subjects re-computed",
    "runId mismatch between statements",
]


def test_cli_exits_1_without_traceback_on_mutants(
    tmp_path: Path, tiny_run: tinyrun.TinyRun, other_run: tinyrun.TinyRun
) -> None:
    runs = []
    for i, name in enumerate(CLI_SAMPLE):
        work = tmp_path / f"run{i}"
        shutil.copytree(tiny_run.run, work)
        ev = mutate.Evidence.load(work, tiny_run.pub)
        FORGERIES[name][0](ev, {"work": work, "t": tiny_run, "other": other_run})
        ev.write(work, mutate.signer(tiny_run))
        runs.append(work)
    flipped = tmp_path / "flipped"
    shutil.copytree(tiny_run.run, flipped)
    b = bytearray((flipped / BUNDLE).read_bytes())
    b[len(b) // 3] ^= 0x04
    (flipped / BUNDLE).write_bytes(bytes(b))
    (flipped / "model.safetensors").write_bytes((flipped / "model.safetensors").read_bytes()[:-3])
    runs.append(flipped)
    for work in runs:
        for argv in (
            ["verify", str(work), "--key", str(tiny_run.pub)],
            ["verify", str(work), "--key", str(tiny_run.pub), "--format", "json"],
        ):
            proc = subprocess.run(
                [sys.executable, "-m", "verifier.cli", *argv],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 1, (argv, proc.returncode, proc.stderr[-2000:])
            assert "Traceback" not in proc.stderr + proc.stdout
            assert "FAIL" in proc.stderr
            if "json" in argv:
                assert json.loads(proc.stdout)["verdict"] == "FAIL"

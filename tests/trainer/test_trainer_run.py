"""A real (tiny) governed run: records, chain, state roots, signatures, secrecy, quarantine."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from support import need
from trainer_fixtures import Run, make_run

from attest.bundle import read_bundle
from attest.digest import sha256_file
from attest.envelope import verify_envelope
from attest.log import iter_log, summarize_log
from attest.policy import load_policy
from attest.predicates import (
    REQUIRED_TYPES,
    MemorizationPredicate,
    TrainingPredicate,
    parse_predicate,
)
from attest.records import StartRecord, StepRecord, parse_step_log_record
from attest.tensors import hash_safetensors, state_root


def _steps(run: Path) -> tuple[StartRecord, list[StepRecord]]:
    recs = [
        parse_step_log_record(r.value, r.index)
        for r in iter_log(run / "provenance" / "steps.msgpack")
    ]
    start, steps = recs[0], recs[1:]
    assert isinstance(start, StartRecord)
    return start, steps  # type: ignore[return-value]


def _statements(tiny: Run, pubkey) -> dict[str, object]:  # type: ignore[no-untyped-def]
    out = {}
    for line in read_bundle(tiny.out / "provenance" / "bundle.intoto.jsonl"):
        signed = verify_envelope(line.envelope, [pubkey], 1)
        out[signed.statement.predicate_type] = (signed.statement, parse_predicate(signed.statement))
    return out


def test_step_chain_links_and_is_contiguous(tiny: Run) -> None:
    records = list(iter_log(tiny.out / "provenance" / "steps.msgpack"))  # checks every prev link
    start, steps = _steps(tiny.out)
    assert [s.step for s in steps] == list(range(1, len(records)))
    assert len(steps) == tiny.result.steps == 12


def test_state_roots_chain_from_base_to_released_weights(tiny: Run) -> None:
    start, steps = _steps(tiny.out)
    leaves = dict(start.base_leaves)
    assert state_root(leaves) == start.base_state_root
    for s in steps:
        assert s.changed, f"step {s.step}: nothing changed"
        leaves.update(s.changed)
        assert state_root(leaves) == s.state_root, f"step {s.step}"
    released = hash_safetensors(tiny.out / "model.safetensors")
    assert released.leaves == leaves
    assert state_root(released.leaves) == steps[-1].state_root
    assert state_root(released.leaves).hex() == tiny.result.final_state_root


def test_every_changed_tensor_is_allowed_by_a_batch_profile(tiny: Run) -> None:
    start, steps = _steps(tiny.out)
    surface_only = 0
    for s in steps:
        allowed = set().union(*(start.profiles[p] for p in s.profiles))
        assert set(s.changed) <= allowed, f"step {s.step}"
        if set(s.profiles) == {"surface"}:
            surface_only += 1
            assert "tok_emb.weight" not in s.changed
    assert all(len(s.batch) == len(set(s.batch)) for s in steps)


def test_heldout_and_refused_examples_never_trained(tiny: Run) -> None:
    start, steps = _steps(tiny.out)
    trained = {i for s in steps for i in s.batch}
    assert not trained & set(start.heldout)
    assert not trained & {14, 15, 16, 17, 18}  # the refused examples
    assert len(start.heldout) == 2


def test_quarantined_example_never_reappears(tiny: Run) -> None:
    _, steps = _steps(tiny.out)
    quarantined_at = {}
    for s in steps:
        for ex in s.batch:
            assert ex not in quarantined_at, (
                f"example {ex} quarantined at {quarantined_at.get(ex)} used at {s.step}"
            )
        for e in s.events:
            if e.kind == "quarantine":
                quarantined_at[e.example] = s.step
    assert quarantined_at, "the tiny policy (loss_drop_max 1.5) should quarantine something"
    assert tuple(sorted(quarantined_at)) == tiny.result.quarantined


def test_signatures_verify_and_statements_bind(tiny: Run, pubkey) -> None:  # type: ignore[no-untyped-def]
    st = _statements(tiny, pubkey)
    assert set(st) == set(REQUIRED_TYPES)
    prov = tiny.out / "provenance"
    policy, _ = load_policy(prov / "policy.toml")
    run_ids = {p.run_id for _, p in st.values()}  # type: ignore[attr-defined]
    assert len(run_ids) == 1 and len(run_ids.pop()) == 32
    assert {p.policy_digest for _, p in st.values()} == {policy.digest()}  # type: ignore[attr-defined]
    stmt, training = st[REQUIRED_TYPES[2]]
    assert isinstance(training, TrainingPredicate)
    weights_sha = sha256_file(tiny.out / "model.safetensors")
    assert stmt.subjects[0].digest == {"sha256": weights_sha}  # type: ignore[attr-defined]
    assert training.step_log == summarize_log(prov / "steps.msgpack")
    assert training.steps == 12
    assert training.admission_head == summarize_log(prov / "admissions.msgpack").head
    assert (
        training.environment["mode"] == "strict" and training.environment["deterministic"] is True
    )
    # Strict mode: bitwise replay, so nothing to calibrate and a zero tolerance.
    assert training.environment["tolerance"] == 0.0
    assert "toleranceCalibration" not in training.environment
    assert [c.step for c in training.checkpoints] == [5, 10]
    start, steps = _steps(tiny.out)
    for c in training.checkpoints:
        assert sha256_file(tiny.out / c.file) == c.sha256
        assert steps[c.step - 1].checkpoint == {
            "file": c.file,
            "sha256": c.sha256,
            "stateRoot": c.state_root,
        }
        ck = hash_safetensors(tiny.out / c.file)
        assert state_root({n: ck.leaves[n] for n in start.base_leaves}).hex() == c.state_root
        assert (
            any(n.startswith("optim/exp_avg_sq/") for n in ck.leaves) and "rng/torch" in ck.leaves
        )
    _, mem = st[REQUIRED_TYPES[3]]
    assert isinstance(mem, MemorizationPredicate)
    events = [{**e.to_record(), "step": s.step} for s in steps for e in s.events]
    assert list(mem.events) == events
    assert [c["step"] for c in mem.canaries] == [5, 10, 12]


def test_no_training_text_or_secret_in_public_files(tiny: Run) -> None:
    public = [*sorted((tiny.out / "provenance").iterdir()), tiny.out / "model.safetensors",
              *sorted((tiny.out / "checkpoints").iterdir())]  # fmt: skip
    blobs = [p.read_bytes() for p in public]
    secret_hex = (tiny.out / "private" / "run-secret").read_text().strip()
    canary_text = (tiny.out / "private" / "canaries.jsonl").read_text()
    import json

    canary = json.loads(canary_text.splitlines()[0])["text"]
    needles = [t.encode() for t in tiny.texts] + [
        secret_hex.encode(),
        bytes.fromhex(secret_hex),
        canary.encode(),
        canary.split()[-1].encode(),
    ]
    for needle in needles:
        for p, blob in zip(public, blobs, strict=True):
            assert needle not in blob, f"{p.name} contains {needle[:30]!r}"


def test_private_folder_modes(tiny: Run) -> None:
    priv = tiny.out / "private"
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o700
    for name in ("run-secret", "openings.jsonl", "canaries.jsonl"):
        assert stat.S_IMODE(os.stat(priv / name).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tiny.folder / "producer.key").st_mode) == 0o600
    assert len(bytes.fromhex((priv / "run-secret").read_text().strip())) == 32


def test_halt_stops_training_and_still_signs(tmp_path: Path) -> None:
    r = make_run(tmp_path, action="halt", loss_drop=0.001, steps=12)
    _, steps = _steps(r.out)
    assert r.result.halted and len(steps) < 12
    assert [e.kind for e in steps[-1].events].count("halt") == 1
    assert not any(e.kind == "halt" for s in steps[:-1] for e in s.events)
    assert len(read_bundle(r.out / "provenance" / "bundle.intoto.jsonl")) == 4


def test_refuses_to_overwrite_a_run(tiny: Run) -> None:
    from attest.errors import UsageError
    from trainer.loop import _prepare_run_folder

    with pytest.raises(UsageError, match="already holds a run"):
        _prepare_run_folder(tiny.out)


def test_verifier_passes_the_run_with_data_and_openings(tiny: Run) -> None:
    api = need("verifier.api")
    result = api.verify(tiny.out, keys=[tiny.pub], data=tiny.folder / "data.jsonl",
                        openings=tiny.out / "private")  # fmt: skip
    failed = [f for f in result.findings if f.status == "fail"]
    assert bool(result), failed


# -- tolerance calibration (tolerant mode, spec/verification.md V9.3) ------------------------


def _calibration_setup():  # type: ignore[no-untyped-def]
    import torch

    from trainer import registry
    from trainer.engine import OptimizerConfig, StepEngine
    from trainer.registry import Item

    torch.set_num_threads(1)
    spec = registry.spec_for(
        "tinylm", {"d_model": 16, "n_layers": 2, "n_heads": 2, "seq_len": 16}, None, seed=0
    )
    built = registry.build(spec, None)
    engine = StepEngine(built, OptimizerConfig(lr=0.02), {"deep": tuple(built.trainable)})
    items = [Item("an honest example text"), Item("another example")]
    return torch, engine, items, ["deep", "deep"]


def test_calibration_restores_the_state_it_measured_from() -> None:
    from trainer.calibration import TOLERANCE_FLOOR, calibrate_tolerance

    torch, engine, items, profiles = _calibration_setup()
    before = {k: v.clone() for k, v in engine.built.state().items()}
    rng = torch.get_rng_state()
    cal = calibrate_tolerance(engine, items, profiles, 0.02)
    # Same CPU, one thread: the honest reproduction is bitwise, so the floor applies.
    assert cal == {"observed": 0.0, "factor": 10.0, "tolerance": TOLERANCE_FLOOR}
    assert all(torch.equal(v, before[k]) for k, v in engine.built.state().items())
    assert torch.equal(torch.get_rng_state(), rng) and not engine.optimizer.state
    assert all(p.grad is None for p in engine.model.parameters())
    # The first real step after calibration is the one an uncalibrated run takes.
    a = engine.step(items, profiles, 0.02)
    _, fresh, _, _ = _calibration_setup()
    b = fresh.step(items, profiles, 0.02)
    assert (a.losses, a.state_root, a.grad_norms) == (b.losses, b.state_root, b.grad_norms)


def test_calibration_measures_a_nonreproducible_step() -> None:
    import dataclasses

    from trainer.calibration import calibrate_tolerance
    from trainer.engine import OptimizerConfig, StepEngine

    torch, engine, items, profiles = _calibration_setup()
    calls = {"n": 0}
    loss_fn = engine.built.per_example_loss

    def jittery(m, batch):  # type: ignore[no-untyped-def]
        # As a kernel that does not reproduce: the second run's loss differs slightly.
        calls["n"] += 1
        return loss_fn(m, batch) * (1 + 1e-3 * calls["n"])

    built = dataclasses.replace(engine.built, per_example_loss=jittery)
    engine = StepEngine(built, OptimizerConfig(lr=0.02), {"deep": tuple(built.trainable)})
    cal = calibrate_tolerance(engine, items, profiles, 0.02, minimum=1e-9)
    assert calls["n"] == 2
    assert cal["observed"] > 0
    assert cal["tolerance"] == cal["observed"] * 10.0 > 1e-6  # above the floor: measured

"""Red team (issue 9), admission and policy claims: verification.md §4 "every admission
decision follows from the policy and the committed metadata and findings", V2/V3,
policy.md §3 (tables, SPDX keys, globs), §5 (profiles).

Written from the spec alone; every forgery is re-signed with the producer's key.
"""

from __future__ import annotations

import json
from pathlib import Path

import mutate
import pytest
import tinyrun
from redteam import audit, failing, forge, full, resign, set_policy

from attest.predicates import ADMISSIONS_TYPE, POLICY_TYPE

pytestmark = pytest.mark.slow

CHECKPOINT = "checkpoints/step-000006.safetensors"


def test_honest_run_passes(work: Path, honest: tinyrun.TinyRun) -> None:
    assert full(work, honest), [(f.code, f.message) for f in full(work, honest).failures]
    forge(work, honest, lambda ev: None)  # the forger's identity re-sign: the control
    assert full(work, honest)


def test_profile_resolving_to_nothing(work: Path, honest: tinyrun.TinyRun) -> None:
    # The policy re-signed with a surface profile that matches no tensor, so the report
    # shows weak copyleft touching nothing; the start record still routes the old one.
    def edit(ev: mutate.Evidence) -> None:
        set_policy(ev, '"blocks.1.*", "ln_f.*", "lm_head.*"', '"no.such.tensor.*"')

    forge(work, honest, edit)
    assert "GT-CHAIN-PROFILES" in failing(audit(work, honest))


def test_profile_glob_in_other_case(work: Path, honest: tinyrun.TinyRun) -> None:
    # Globs are case-sensitive (policy.md §3.12): "Blocks.1.*" resolves to nothing.
    def edit(ev: mutate.Evidence) -> None:
        set_policy(ev, '"blocks.1.*"', '"Blocks.1.*"')

    forge(work, honest, edit)
    assert "GT-CHAIN-PROFILES" in failing(audit(work, honest))


def test_start_record_profile_widened(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        p = ev.steps[0]["profiles"]
        p["surface"] = list(p["deep"])

    forge(work, honest, edit)
    assert "GT-CHAIN-PROFILES" in failing(audit(work, honest))


def test_trainable_names_a_tensor_the_model_lacks(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.steps[0]["trainable"].append("ghost.weight")

    forge(work, honest, edit)
    # The start record's model spec repeats `trainable`: a bad start record, or the profiles.
    assert failing(audit(work, honest)) & {"GT-CHAIN-START", "GT-CHAIN-PROFILES"}


def test_dataset_record_relabelled_canary(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.admissions[0]["metadata"]["canary"] = True

    forge(work, honest, edit)
    assert failing(audit(work, honest)) & {"GT-ADMIT-CANARIES", "GT-ADMIT-DECISION"}


def test_extra_canary_repeat_planted(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        extra = json.loads(json.dumps(ev.admissions[-1], default=lambda b: b.hex()))
        extra = {**ev.admissions[-1], "index": len(ev.admissions)}
        ev.admissions.append(extra)

    forge(work, honest, edit)
    assert "GT-ADMIT-CANARIES" in failing(audit(work, honest))


def test_admission_counts_understate_refusals(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        c = ev.predicates[ADMISSIONS_TYPE]["counts"]
        c["refused"] -= 1
        c["admitted"] += 1

    forge(work, honest, edit, recount=False)
    assert failing(audit(work, honest)) == {"GT-ADMIT-COUNTS"}


def test_admission_index_repeated(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        ev.admissions[5]["index"] = 4

    forge(work, honest, edit)
    assert "GT-ADMIT-ORDER" in failing(audit(work, honest))


def test_refusal_reason_reworded(work: Path, honest: tinyrun.TinyRun) -> None:
    # Same decision, another reason: the outcome detail is part of what re-evaluates.
    def edit(ev: mutate.Evidence) -> None:
        rec = next(r for r in ev.admissions if r["metadata"]["license"] == "GPL-3.0-only")
        o = next(o for o in rec["outcomes"] if o["outcome"] == "fail")
        assert o["detail"]["reason"] == "license-denied"
        o["detail"] = {**o["detail"], "class": "weak-copyleft"}  # an allowed class, "denied"

    forge(work, honest, edit)
    assert "GT-ADMIT-DECISION" in failing(audit(work, honest))


def test_policy_file_with_duplicate_key(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        set_policy(ev, "holdout = 3", "holdout = 3\nholdout = 0")

    forge(work, honest, edit)
    assert "GT-POLICY-FORMAT" in failing(audit(work, honest))


def test_policy_predicate_object_differs_from_file(work: Path, honest: tinyrun.TinyRun) -> None:
    # policy.toml says holdout 3; the signed predicate's policy object says 10.
    def edit(ev: mutate.Evidence) -> None:
        ev.predicates[POLICY_TYPE]["policy"]["memorization"]["holdout"] = 10

    resign(work, honest, edit)
    assert failing(audit(work, honest)) & {"GT-POLICY-DIGEST", "GT-POLICY-FORMAT"}


def test_policy_license_key_with_cyrillic_letter(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        set_policy(ev, '"GPL-3.0-only" = "strong-copyleft"', '"GPL-3.0-\u043enly" = "permissive"')

    forge(work, honest, edit)
    assert "GT-POLICY-FORMAT" in failing(audit(work, honest))


def test_policy_license_key_repeated_in_other_case(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        set_policy(ev, '"MIT" = "permissive"', '"MIT" = "permissive"\n"mit" = "strong-copyleft"')

    forge(work, honest, edit)
    assert "GT-POLICY-FORMAT" in failing(audit(work, honest))


def test_policy_source_glob_unclosed_bracket(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        set_policy(ev, 'allow = ["test:*"]', 'allow = ["test:[*"]')

    forge(work, honest, edit)
    assert "GT-POLICY-FORMAT" in failing(audit(work, honest))


def test_policy_unknown_key_in_pii(work: Path, honest: tinyrun.TinyRun) -> None:
    def edit(ev: mutate.Evidence) -> None:
        set_policy(ev, 'action = "reject"', 'action = "reject"\nexempt_sources = ["test:*"]')

    forge(work, honest, edit)
    assert "GT-POLICY-FORMAT" in failing(audit(work, honest))


def test_pii_detection_emptied_after_training(work: Path, honest: tinyrun.TinyRun) -> None:
    # detect = [] re-signed after training. decide() reads the recorded findings, so the PII
    # example stays refused (safe) and the plain audit passes; the findings, however, no
    # longer follow from the policy, which the dataset exposes.
    def edit(ev: mutate.Evidence) -> None:
        set_policy(ev, 'detect = ["email", "phone", "credit-card"]', "detect = []")

    forge(work, honest, edit)
    assert audit(work, honest)
    assert "GT-DATA-FINDINGS" in failing(full(work, honest))


def test_policy_with_every_class_denied_resolves_nothing(
    work: Path, honest: tinyrun.TinyRun
) -> None:
    # A profile assignment to a class nobody is admitted under: the admitted records'
    # profiles no longer follow from the policy.
    def edit(ev: mutate.Evidence) -> None:
        set_policy(
            ev, 'when = { license_class = "permissive" }', 'when = { license_class = "none" }'
        )

    forge(work, honest, edit)
    assert "GT-ADMIT-DECISION" in failing(audit(work, honest))

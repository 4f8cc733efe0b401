"""Red team (issue 9), consumer requirements: verification.md §4 "with V11: the verified
policy and run meet every requirement the consumer stated"; requirements.md §3 (by SPDX
id "immune" to class names; "possible profiles" counting every guarded rule).

Written from the spec alone; every forgery is re-signed with the producer's key, and the
requirements are the consumer's own TOML.
"""

from __future__ import annotations

from pathlib import Path

import mutate
import pytest
import tinyrun
from redteam import audit, failing, forge, full, set_policy

from attest.predicates import MEMORIZATION_TYPE, TRAINING_TYPE
from verifier.result import Result

pytestmark = pytest.mark.slow

CHECKPOINT = "checkpoints/step-000006.safetensors"


def test_honest_run_passes(work: Path, honest: tinyrun.TinyRun) -> None:
    assert full(work, honest), [(f.code, f.message) for f in full(work, honest).failures]
    forge(work, honest, lambda ev: None)  # the forger's identity re-sign: the control
    assert full(work, honest)


def require(work: Path, t: tinyrun.TinyRun, tmp_path: Path, body: str) -> Result:
    req = tmp_path / "req.toml"
    req.write_text('version = "0.1"\n' + body)
    return audit(work, t, requirements=req)


CLASS_DEEP = """[[assign]]
when = { license_class = "permissive" }
profile = "deep"
"""


# Closed at merge (verifier/requirements.py family(), exposure and holdout rules).
def test_exception_pair_classified_permissive_despite_refuse(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    # The consumer refuses GPL-3.0-only; the policy classes "GPL-3.0-only WITH
    # GCC-exception-3.1" permissive, so a GPL text with that exception is admitted.
    def edit(ev: mutate.Evidence) -> None:
        set_policy(
            ev,
            '"GPL-3.0-only" = "strong-copyleft"',
            '"GPL-3.0-only" = "strong-copyleft"\n'
            '"GPL-3.0-only WITH GCC-exception-3.1" = "permissive"',
        )

    forge(work, honest, edit)
    assert audit(work, honest)  # the producer's own policy allows it
    result = require(work, honest, tmp_path, '[licenses]\nrefuse = ["GPL-3.0-only"]\n')
    assert failing(result) == {"GT-REQ-LICENSE"}


# Closed at merge (verifier/requirements.py family(), exposure and holdout rules).
def test_deprecated_spdx_id_classified_permissive_despite_refuse(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    def edit(ev: mutate.Evidence) -> None:
        set_policy(
            ev,
            '"GPL-3.0-only" = "strong-copyleft"',
            '"GPL-3.0-only" = "strong-copyleft"\n"GPL-3.0" = "permissive"',
        )

    forge(work, honest, edit)
    result = require(work, honest, tmp_path, '[licenses]\nrefuse = ["GPL-3.0-only"]\n')
    assert failing(result) == {"GT-REQ-LICENSE"}


def test_license_condition_rule_bypasses_limit_classes(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    # A rule naming the license (guarded by a source no example has) before the class rule:
    # every admission is unchanged, but LGPL may now be assigned "deep".
    def edit(ev: mutate.Evidence) -> None:
        set_policy(
            ev,
            CLASS_DEEP,
            '[[assign]]\nwhen = { license = "LGPL-3.0-only", source = "test:never/*" }\n'
            'profile = "deep"\n\n' + CLASS_DEEP,
        )

    forge(work, honest, edit)
    assert audit(work, honest)
    result = require(
        work, honest, tmp_path, '[licenses.limit_classes]\n"weak-copyleft" = ["surface"]\n'
    )
    assert failing(result) == {"GT-REQ-LICENSE"}


def test_data_class_guarded_rule_bypasses_limit(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    def edit(ev: mutate.Evidence) -> None:
        set_policy(
            ev,
            CLASS_DEEP,
            '[[assign]]\nwhen = { license_class = "weak-copyleft", data_class = "never" }\n'
            'profile = "deep"\n\n' + CLASS_DEEP,
        )

    forge(work, honest, edit)
    assert audit(work, honest)
    result = require(work, honest, tmp_path, '[licenses.limit]\n"LGPL-3.0-only" = ["surface"]\n')
    assert failing(result) == {"GT-REQ-LICENSE"}


def test_pii_kind_dropped_from_detection(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    # Phone numbers no longer detected; no admission changes in this dataset.
    def edit(ev: mutate.Evidence) -> None:
        set_policy(
            ev, 'detect = ["email", "phone", "credit-card"]', 'detect = ["email", "credit-card"]'
        )

    forge(work, honest, edit)
    assert audit(work, honest)
    result = require(work, honest, tmp_path, '[pii]\nreject = ["email", "phone"]\n')
    assert failing(result) == {"GT-REQ-PII"}


def test_loss_drop_disabled_and_every_flag_erased(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    # A consistent lie: memorization off and no flag anywhere; the producer's policy is met.
    def edit(ev: mutate.Evidence) -> None:
        set_policy(ev, "loss_drop_max = 0.02", "loss_drop_max = 0.0")
        for rec in ev.steps[1:]:
            rec["events"] = [e for e in rec["events"] if e["kind"] == "canary-exposure"]

    forge(work, honest, edit)
    # Erasing the quarantines leaves their examples eligible: the data order draws other
    # batches than the recorded ones (records.md §5.2), so the lie is no longer consistent.
    assert failing(audit(work, honest)) == {"GT-BATCH-ORDER"}
    result = require(work, honest, tmp_path, "[memorization]\nloss_drop_max = 0.05\n")
    assert failing(result) == {"GT-BATCH-ORDER", "GT-REQ-MEMORIZATION"}


def test_holdout_below_the_consumers_minimum(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    result = require(work, honest, tmp_path, "[memorization]\nholdout_min = 4\n")
    assert failing(result) == {"GT-REQ-MEMORIZATION"}


def test_canary_evaluation_only_at_the_end(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    # eval_every = 0 (the default): exposure measured once, at the end.
    result = require(work, honest, tmp_path, "[memorization]\neval_every_max = 100\n")
    assert failing(result) == {"GT-REQ-MEMORIZATION"}


def test_fewer_canaries_than_required(work: Path, honest: tinyrun.TinyRun, tmp_path: Path) -> None:
    result = require(work, honest, tmp_path, "[canaries]\nmin_count = 2\n")
    assert failing(result) == {"GT-REQ-CANARIES"}


def test_strict_replay_required_but_none_ran(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    result = require(work, honest, tmp_path, "[replay]\nstrict = true\n")
    assert failing(result) == {"GT-REQ-STRICT"}


def test_pinned_digest_of_the_honest_policy_refuses_a_relaxed_one(
    work: Path, honest: tinyrun.TinyRun
) -> None:
    from attest.policy import Policy

    pinned = Policy.from_toml((work / "provenance" / "policy.toml").read_bytes()).digest()
    assert audit(work, honest, policy_digest=pinned)

    def edit(ev: mutate.Evidence) -> None:
        set_policy(
            ev, 'detect = ["email", "phone", "credit-card"]', 'detect = ["email", "credit-card"]'
        )

    forge(work, honest, edit)
    assert failing(audit(work, honest, policy_digest=pinned)) == {"GT-REQ-POLICY-DIGEST"}


# Closed at merge (verifier/requirements.py family(), exposure and holdout rules).
def test_exception_pair_escapes_limit_by_license_id(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    def edit(ev: mutate.Evidence) -> None:
        set_policy(
            ev,
            '"LGPL-3.0-only" = "weak-copyleft"',
            '"LGPL-3.0-only" = "weak-copyleft"\n"LGPL-3.0-only WITH LLVM-exception" = "permissive"',
        )

    forge(work, honest, edit)
    assert audit(work, honest)
    result = require(work, honest, tmp_path, '[licenses.limit]\n"LGPL-3.0-only" = ["surface"]\n')
    assert failing(result) == {"GT-REQ-LICENSE"}


# Closed at merge (verifier/requirements.py family(), exposure and holdout rules).
def test_reference_quantile_enabled_with_no_held_out_set(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    def edit(ev: mutate.Evidence) -> None:
        set_policy(ev, "holdout = 3", "holdout = 0\nreference_quantile = 0.5")
        pool = ev.predicates[TRAINING_TYPE]["extra"]
        pool["trainingPool"] += pool["heldout"]
        pool["heldout"] = 0
        ev.steps[0]["heldout"] = []
        ev.predicates[MEMORIZATION_TYPE]["reference"] = {"count": 0, "quantiles": {}}

    forge(work, honest, edit)
    # Freeing the held-out set adds its members to the training pool: the data order draws
    # other batches than the recorded ones (records.md §5.2).
    assert failing(audit(work, honest)) == {"GT-BATCH-ORDER"}
    result = require(work, honest, tmp_path, "[memorization]\nreference_quantile_min = 0.01\n")
    assert failing(result) == {"GT-BATCH-ORDER", "GT-REQ-MEMORIZATION"}


# Closed at merge (verifier/requirements.py family(), exposure and holdout rules).
def test_exposure_threshold_above_what_the_candidates_allow(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    def edit(ev: mutate.Evidence) -> None:
        set_policy(ev, "holdout = 3", "holdout = 3\nexposure_max = 8.0")
        for rec in ev.steps[1:]:
            for e in rec["events"]:
                if e["kind"] == "canary-exposure":
                    e["threshold"] = 8.0

    forge(work, honest, edit)
    assert audit(work, honest)  # consistent: no exposure above 8 bits, no flag
    result = require(work, honest, tmp_path, "[memorization]\nexposure_max = 8.0\n")
    assert failing(result) == {"GT-REQ-MEMORIZATION"}


def test_license_condition_in_lower_case_bypasses_limit(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    # SPDX ids match case-insensitively (policy.md §3.2.1): a rule naming "lgpl-3.0-only"
    # applies to LGPL-3.0-only examples, so "deep" is a possible profile of that license.
    def edit(ev: mutate.Evidence) -> None:
        set_policy(
            ev,
            CLASS_DEEP,
            '[[assign]]\nwhen = { license = "lgpl-3.0-only", source = "test:never/*" }\n'
            'profile = "deep"\n\n' + CLASS_DEEP,
        )

    forge(work, honest, edit)
    assert audit(work, honest)
    result = require(work, honest, tmp_path, '[licenses.limit]\n"LGPL-3.0-only" = ["surface"]\n')
    assert failing(result) == {"GT-REQ-LICENSE"}


# Closed at merge (verifier/requirements.py family(), exposure and holdout rules).
def test_license_with_exception_condition_bypasses_limit(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    # A rule naming "LGPL-3.0-only WITH LLVM-exception" (the pair is unclassified, so it is
    # judged as LGPL-3.0-only, weak copyleft) assigns "deep".
    def edit(ev: mutate.Evidence) -> None:
        set_policy(
            ev,
            CLASS_DEEP,
            '[[assign]]\nwhen = { license = "LGPL-3.0-only WITH LLVM-exception" }\n'
            'profile = "deep"\n\n' + CLASS_DEEP,
        )

    forge(work, honest, edit)
    assert audit(work, honest)
    result = require(work, honest, tmp_path, '[licenses.limit]\n"LGPL-3.0-only" = ["surface"]\n')
    assert failing(result) == {"GT-REQ-LICENSE"}

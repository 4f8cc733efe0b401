"""The consumer sets the bar (issue 9, principle 5): a producer's lax policy, signed with the
producer's own key, passes plain verification but fails the consumer's requirements.

Each attack re-signs the tiny run with a policy a careless reader would trust (a reassuring
name and comment) that admits more than it says, while every admission decision of the run
still re-evaluates identically (so V1-V9 pass: the forgery is "honest" about its lax
policy). Each test asserts the exact failing code and that the honest run, under the same
requirements, passes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tinyrun
from support.evidence import Evidence

from attest.keys import load_signer
from attest.policy import Policy
from verifier.api import verify
from verifier.requirements import Requirements, requirements_note
from verifier.result import Result


def lax_policy() -> bytes:
    """The tiny run's policy, relaxed where no example of the run tells the difference."""
    pol = tinyrun.POLICY.decode()
    for old, new in (
        ('name = "adversarial-tiny"',
         '# Strict by design: refuses all copyleft and every kind of personal data.\n'
         'name = "strict-no-copyleft-gdpr"'),
        ('"GPL-3.0-only" = "strong-copyleft"',
         '"GPL-3.0-only" = "strong-copyleft"\n"GPL-2.0-only" = "permissive"'),
        ('detect = ["email", "phone", "credit-card"]', 'detect = ["email"]'),
    ):  # fmt: skip
        assert old in pol
        pol = pol.replace(old, new)
    return pol.encode()


@pytest.fixture(scope="module")
def lax_run(tiny_run: tinyrun.TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run re-signed by its producer under `lax_policy()`."""
    run = tmp_path_factory.mktemp("lax") / "run"
    shutil.copytree(tiny_run.run, run)
    ev = Evidence.load(run, tiny_run.pub)
    ev.policy_bytes = lax_policy()
    ev.steps[0]["policyDigest"] = Policy.from_toml(ev.policy_bytes).digest()
    ev.write(run, load_signer(tiny_run.key))
    return run


def honest_digest(tiny_run: tinyrun.TinyRun) -> str:
    return Policy.from_toml(tinyrun.POLICY).digest()


def failing_codes(r: Result) -> list[str]:
    return sorted({f.code for f in r.failures})


def req(doc: dict) -> Requirements:
    return Requirements.from_dict({"version": "0.1", **doc}, where="consumer.toml")


def test_lax_policy_passes_plain_verification_and_says_so(lax_run: Path, tiny_run) -> None:
    # Without a consumer bar the forgery conforms to its own policy: that is all a PASS
    # says, and it says so.
    r = verify(lax_run, keys=[tiny_run.pub])
    assert r.verdict == "PASS", failing_codes(r)
    assert r.verified["policy"]["name"] == "strict-no-copyleft-gdpr"
    assert requirements_note(r).startswith(
        "conforms to the producer's own policy; no consumer requirement was checked"
    )


def test_lax_policy_with_reassuring_name_fails_pinned_digest(lax_run: Path, tiny_run) -> None:
    digest = honest_digest(tiny_run)
    r = verify(lax_run, keys=[tiny_run.pub], policy_digest=digest)
    assert failing_codes(r) == ["GT-REQ-POLICY-DIGEST"]
    (f,) = r.failures
    assert f.message.startswith(f"requirement policy_digest (--policy-digest): expected the "
                                f"pinned policy digest {digest}, found ")  # fmt: skip
    assert f.message.endswith("(policy 'strict-no-copyleft-gdpr')")
    ok = verify(tiny_run.run, keys=[tiny_run.pub], policy_digest=digest.upper())
    assert ok.verdict == "PASS", failing_codes(ok)


def test_policy_that_admits_pii_fails_requirement(lax_run: Path, tiny_run) -> None:
    bar = req({"pii": {"reject": ["email", "phone", "credit-card"]}})
    r = verify(lax_run, keys=[tiny_run.pub], requirements=bar)
    assert failing_codes(r) == ["GT-REQ-PII"]
    assert [f.message for f in r.failures] == [
        f"requirement pii.reject (consumer.toml): pii {k!r}: expected detected with action "
        "reject, found not detected (pii.detect: email)"
        for k in ("phone", "credit-card")
    ]
    assert verify(tiny_run.run, keys=[tiny_run.pub], requirements=bar).verdict == "PASS"


def test_policy_that_classes_copyleft_as_permissive_fails_license_requirement(
    lax_run: Path, tiny_run
) -> None:
    bar = req({"licenses": {"refuse": ["GPL-2.0-only", "GPL-3.0-only"],
                            "limit_classes": {"weak-copyleft": ["surface"]}}})  # fmt: skip
    r = verify(lax_run, keys=[tiny_run.pub], requirements=bar)
    assert failing_codes(r) == ["GT-REQ-LICENSE"]
    (f,) = r.failures
    assert f.message == (
        "requirement licenses (consumer.toml): license 'GPL-2.0-only': expected refused, found "
        "admitted as class 'permissive' (profiles deep)"
    )
    assert verify(tiny_run.run, keys=[tiny_run.pub], requirements=bar).verdict == "PASS"


def test_policy_without_exposure_threshold_fails_memorization_requirement(tiny_run) -> None:
    # The tiny policy quarantines on loss drop but never thresholds canary exposure.
    met = req({"memorization": {"action": "quarantine", "loss_drop_max": 0.05, "holdout_min": 3}})
    assert verify(tiny_run.run, keys=[tiny_run.pub], requirements=met).verdict == "PASS"
    unmet = req({"memorization": {"action": "quarantine", "exposure_max": 8.0}})
    r = verify(tiny_run.run, keys=[tiny_run.pub], requirements=unmet)
    assert failing_codes(r) == ["GT-REQ-MEMORIZATION"]
    assert r.failures[0].message.endswith(
        "exposure_max: expected enabled and at most 8 bits, found disabled (0)"
    )


def test_canary_requirement_counts_only_verified_canaries(tiny_run) -> None:
    assert (
        verify(tiny_run.run, keys=[tiny_run.pub], requirements=req({"canaries": {"min_count": 1}}))
    ).verdict == "PASS"
    r = verify(tiny_run.run, keys=[tiny_run.pub], requirements=req({"canaries": {"min_count": 2}}))
    assert failing_codes(r) == ["GT-REQ-CANARIES"]


def test_replay_requirement_without_replay_fails_closed(tiny_run) -> None:
    bar = req({"replay": {"strict": True, "min_detection_probability": 0.5}})
    r = verify(tiny_run.run, keys=[tiny_run.pub], requirements=bar)
    assert failing_codes(r) == ["GT-REQ-REPLAY", "GT-REQ-STRICT"]
    assert all("no replay ran (--replay N not given)" in f.message for f in r.failures)


def test_unsigned_policy_edit_cannot_meet_a_pinned_digest(tiny_run, tmp_path: Path) -> None:
    # The consumer pins the lax policy's digest; a swapped, unsigned policy.toml of that
    # digest is not a verified policy, so the pin fails closed instead of matching it.
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run, run)
    (run / "provenance" / "policy.toml").write_bytes(lax_policy())
    digest = Policy.from_toml(lax_policy()).digest()
    r = verify(run, keys=[tiny_run.pub], policy_digest=digest)
    assert "GT-REQ-POLICY-DIGEST" in failing_codes(r)
    assert [f.message for f in r.failures if f.code == "GT-REQ-POLICY-DIGEST"] == [
        "requirement policy_digest (--policy-digest): required, but no verified producer policy "
        "(GT-POLICY-FORMAT, GT-POLICY-DIGEST did not pass)"
    ]


SURFACE = ["blocks.1.*", "ln_f.*", "lm_head.*"]


@pytest.fixture(scope="module")
def wide_surface_run(tiny_run: tinyrun.TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run re-signed with its "surface" profile widened to every tensor (the start
    record's resolved names follow, so routing and GT-CHAIN-PROFILES still pass)."""
    run = tmp_path_factory.mktemp("wide") / "run"
    shutil.copytree(tiny_run.run, run)
    pol = tinyrun.POLICY.decode()
    old = 'patterns = ["blocks.1.*", "ln_f.*", "lm_head.*"]'
    assert old in pol
    ev = Evidence.load(run, tiny_run.pub)
    ev.policy_bytes = pol.replace(old, 'patterns = ["*"]').encode()
    start = ev.steps[0]
    start["policyDigest"] = Policy.from_toml(ev.policy_bytes).digest()
    start["profiles"]["surface"] = sorted(t[0] for t in start["tensors"])  # [[name, dtype, shape]]
    ev.write(run, load_signer(tiny_run.key))
    return run


def test_surface_profile_widened_to_every_tensor_fails_limit_tensors(
    wide_surface_run: Path, tiny_run
) -> None:
    plain = verify(wide_surface_run, keys=[tiny_run.pub])
    assert plain.verdict == "PASS", [f"{f.code}: {f.message}" for f in plain.failures]
    # A limit by profile name is fooled: the profile is still called "surface" ...
    by_name = req({"licenses": {"limit": {"LGPL-3.0-only": ["surface"]}}})
    assert verify(wide_surface_run, keys=[tiny_run.pub], requirements=by_name).verdict == "PASS"
    # ... a limit by the consumer's own tensor patterns is not.
    bar = req({"licenses": {"limit_tensors": {"LGPL-3.0-only": SURFACE}}})
    r = verify(wide_surface_run, keys=[tiny_run.pub], requirements=bar)
    assert failing_codes(r) == ["GT-REQ-LICENSE"]
    (f,) = r.failures
    assert f.message.startswith(
        "requirement licenses (consumer.toml): license 'LGPL-3.0-only': expected only tensors "
        "matching blocks.1.*, ln_f.*, lm_head.*, found profile 'surface' allowing 'blocks.0."
    )
    assert verify(tiny_run.run, keys=[tiny_run.pub], requirements=bar).verdict == "PASS"

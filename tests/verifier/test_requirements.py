"""V11, the consumer's requirements (spec/requirements.md): each kind met and unmet, the
document's parsing rules, and fail closed on unverified facts.

The layer judges only verified facts, which reach it as a `Policy` object and the
findings of the earlier layers; the tests build those directly (no run needed), and
the end-to-end cases against a real signed run are in tests/adversarial/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from vector_helpers import VECTORS, cli_args, verify_kwargs

from attest.errors import UsageError
from attest.policy import Policy
from verifier.api import verify
from verifier.requirements import (
    NONE_GIVEN,
    REQUIREMENT_CODES,
    Requirements,
    check_requirements,
    load_requirements,
    requirements_note,
)
from verifier.result import Result

POLICY = b"""\
version = "0.1"
name = "strict-sounding"

[licenses]
allow = ["permissive", "weak-copyleft"]
deny = ["strong-copyleft"]

[licenses.classes]
"MIT" = "permissive"
"LGPL-3.0-only" = "weak-copyleft"
"GPL-3.0-only" = "strong-copyleft"

[pii]
detect = ["email", "phone"]
action = "reject"

[profiles.deep]
patterns = ["*"]

[profiles.surface]
patterns = ["blocks.1.*", "lm_head.*"]

[[assign]]
when = { license_class = "permissive" }
profile = "deep"

[[assign]]
when = { license_class = "weak-copyleft", source = "web:*" }
profile = "deep"

[[assign]]
when = { license_class = "weak-copyleft" }
profile = "surface"

[memorization]
action = "quarantine"
loss_drop_max = 1.5
reference_quantile = 0.02
holdout = 16
exposure_max = 8.0
eval_every = 50

[canaries]
count = 2
profile = "deep"
"""
VERIFIED = ("GT-POLICY-FORMAT", "GT-POLICY-DIGEST", "GT-ADMIT-CANARIES")
REPLAY_CODES = ("GT-REPLAY-SELECT", "GT-REPLAY-CHECKPOINT", "GT-REPLAY-STEP")
BITWISE = {"mode": "bitwise", "tolerance": None, "coverage": 0.25, "detectionProbability": 0.6}
TOLERANT = {
    "mode": "tolerant",
    "tolerance": {"value": 1e-5, "chosenBy": "auditor"},
    "coverage": 0.25,
    "detectionProbability": 0.6,
}


def policy() -> Policy:
    return Policy.from_toml(POLICY)


def result_with(*passed: str, replay: dict | None = None) -> Result:
    r = Result("run")
    for code in passed:
        r.add(code, "pass")
    r.scope = {"flags": {"replay": 2 if replay is not None else 0}}
    if replay is not None:
        for code in REPLAY_CODES:
            r.add(code, "pass")
        r.verified["replay"] = replay
    return r


def judge(doc: dict, pol: Policy | None = None, r: Result | None = None) -> Result:
    r = r if r is not None else result_with(*VERIFIED)
    req = Requirements.from_dict({"version": "0.1", **doc}, where="req.toml")
    check_requirements(r, req, pol if pol is not None else policy())
    return r


def req_findings(r: Result, status: str) -> list[tuple[str, str]]:
    return [
        (f.code, f.message) for f in r.findings if f.layer == "requirements" and f.status == status
    ]


DIGEST = policy().digest()
# (name, document, code, expected fragment of the failure message or None when met)
CASES = [
    ("digest-met", {"policy_digest": DIGEST}, "GT-REQ-POLICY-DIGEST", None),
    ("digest-unmet", {"policy_digest": "ab" * 32}, "GT-REQ-POLICY-DIGEST",
     f"expected the pinned policy digest {'ab' * 32}, found {DIGEST} (policy 'strict-sounding')"),
    ("pii-met", {"pii": {"reject": ["email", "phone"]}}, "GT-REQ-PII", None),
    ("pii-not-detected", {"pii": {"reject": ["credit-card"]}}, "GT-REQ-PII",
     "pii 'credit-card': expected detected with action reject, found not detected "
     "(pii.detect: email, phone)"),
    ("license-refuse-met", {"licenses": {"refuse": ["GPL-3.0-only", "CC-BY-4.0"]}},
     "GT-REQ-LICENSE", None),
    ("license-refuse-unmet", {"licenses": {"refuse": ["LGPL-3.0-only"]}}, "GT-REQ-LICENSE",
     "license 'LGPL-3.0-only': expected refused, found admitted as class 'weak-copyleft' "
     "(profiles deep, surface)"),
    ("class-refuse-met", {"licenses": {"refuse_classes": ["strong-copyleft", "other"]}},
     "GT-REQ-LICENSE", None),
    ("class-refuse-unmet", {"licenses": {"refuse_classes": ["weak-copyleft"]}}, "GT-REQ-LICENSE",
     "license class 'weak-copyleft': expected refused, found allowed (profiles deep, surface)"),
    ("limit-met", {"licenses": {"limit": {"MIT": ["deep"], "GPL-3.0-only": ["surface"]}}},
     "GT-REQ-LICENSE", None),
    # The web:* rule sends some weak copyleft to "deep": a limit to "surface" is unmet.
    ("limit-unmet-by-guarded-rule",
     {"licenses": {"limit_classes": {"weak-copyleft": ["surface"]}}}, "GT-REQ-LICENSE",
     "license class 'weak-copyleft': expected only profiles surface, found also deep"),
    ("canaries-met", {"canaries": {"min_count": 2}}, "GT-REQ-CANARIES", None),
    ("canaries-unmet", {"canaries": {"min_count": 3}}, "GT-REQ-CANARIES",
     "min_count: expected at least 3 canaries, found 2 (policy canaries.count)"),
    ("mem-met", {"memorization": {"action": "flag", "loss_drop_max": 2.0, "exposure_max": 8.0,
                                  "reference_quantile_min": 0.01, "holdout_min": 16,
                                  "eval_every_max": 50}}, "GT-REQ-MEMORIZATION", None),
    ("mem-action", {"memorization": {"action": "halt"}}, "GT-REQ-MEMORIZATION",
     "action: expected 'halt' or stronger, found 'quarantine'"),
    ("mem-loss-drop", {"memorization": {"loss_drop_max": 1.0}}, "GT-REQ-MEMORIZATION",
     "loss_drop_max: expected enabled and at most 1 nats, found 1.5 nats"),
    ("mem-exposure", {"memorization": {"exposure_max": 4.0}}, "GT-REQ-MEMORIZATION",
     "exposure_max: expected enabled and at most 4 bits, found 8 bits"),
    ("mem-quantile", {"memorization": {"reference_quantile_min": 0.05}}, "GT-REQ-MEMORIZATION",
     "reference_quantile: expected at least 0.05, found 0.02"),
    ("mem-holdout", {"memorization": {"holdout_min": 32}}, "GT-REQ-MEMORIZATION",
     "holdout: expected at least 32 examples, found 16"),
    ("mem-eval-every", {"memorization": {"eval_every_max": 10}}, "GT-REQ-MEMORIZATION",
     "eval_every: expected enabled and at most 10 steps, found 50 steps"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "doc", "code", "want"), CASES, ids=[c[0] for c in CASES])
def test_requirement_met_or_unmet(name: str, doc: dict, code: str, want: str | None) -> None:
    r = judge(doc)
    if want is None:
        assert req_findings(r, "fail") == []
        assert code in {c for c, _ in req_findings(r, "pass")}
    else:
        fails = req_findings(r, "fail")
        assert {c for c, _ in fails} == {code}
        assert any(m.endswith(want) and "(req.toml)" in m for _, m in fails), fails
    # Every code the document did not state is skipped, saying so.
    stated = {c for c, _ in req_findings(r, "pass") + req_findings(r, "fail")}
    for c, m in req_findings(r, "skip"):
        assert c not in stated and m == "not required by req.toml"
    assert len({f.code for f in r.findings if f.layer == "requirements"}) == len(REQUIREMENT_CODES)


def test_pii_masking_is_not_rejecting() -> None:
    masking = Policy.from_toml(POLICY.replace(b'action = "reject"', b'action = "mask"'))
    r = judge({"pii": {"reject": ["email"]}}, masking)
    assert req_findings(r, "fail") == [
        ("GT-REQ-PII", "requirement pii.reject (req.toml): pii 'email': expected action reject, "
                       "found 'mask'")
    ]  # fmt: skip


def test_disabled_threshold_never_meets_a_requirement() -> None:
    lax = Policy.from_toml(POLICY.replace(b"exposure_max = 8.0", b"exposure_max = 0"))
    r = judge({"memorization": {"exposure_max": 100.0}}, lax)
    assert req_findings(r, "fail")[0][1].endswith(
        "exposure_max: expected enabled and at most 100 bits, found disabled (0)"
    )


REPLAY_CASES = [
    ("coverage-met", {"min_coverage": 0.25}, BITWISE, "GT-REQ-REPLAY", None),
    ("coverage-unmet", {"min_coverage": 0.5}, BITWISE, "GT-REQ-REPLAY",
     "min_coverage: expected at least 0.5, found 0.25"),
    ("detection-met", {"min_detection_probability": 0.6}, BITWISE, "GT-REQ-REPLAY", None),
    ("detection-unmet", {"min_detection_probability": 0.9}, BITWISE, "GT-REQ-REPLAY",
     "min_detection_probability: expected at least 0.9, found 0.6"),
    ("detection-absent", {"min_detection_probability": 0.5}, {"mode": "bitwise"}, "GT-REQ-REPLAY",
     "min_detection_probability: expected at least 0.5, found no detectionProbability in the "
     "replay result"),
    ("strict-met", {"strict": True}, BITWISE, "GT-REQ-STRICT", None),
    ("strict-unmet", {"strict": True}, TOLERANT, "GT-REQ-STRICT",
     "strict: expected bitwise replay, found 'tolerant' replay"),
    ("tolerance-met", {"max_tolerance": 1e-4}, TOLERANT, "GT-REQ-STRICT", None),
    ("tolerance-too-large", {"max_tolerance": 1e-6}, TOLERANT, "GT-REQ-STRICT",
     "max_tolerance: expected at most 1e-06, found 1e-05"),
    ("tolerance-not-the-auditors", {"max_tolerance": 1e-4},
     {**TOLERANT, "tolerance": {"value": 1e-5, "chosenBy": "producer"}}, "GT-REQ-STRICT",
     "max_tolerance: expected a tolerance chosen by the auditor, found one chosen by producer"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "doc", "replay", "code", "want"), REPLAY_CASES, ids=[c[0] for c in REPLAY_CASES]
)
def test_replay_requirement(
    name: str, doc: dict, replay: dict, code: str, want: str | None
) -> None:
    r = judge({"replay": doc}, r=result_with(*VERIFIED, replay=replay))
    fails = req_findings(r, "fail")
    if want is None:
        assert fails == [] and code in {c for c, _ in req_findings(r, "pass")}
    else:
        assert [c for c, _ in fails] == [code]
        assert fails[0][1].endswith(want), fails


# -- fail closed: a fact that is not verified never meets a requirement -------------------


def test_replay_requirement_without_replay_fails_closed() -> None:
    r = judge({"replay": {"strict": True, "min_coverage": 0.1}})
    assert req_findings(r, "fail") == [
        ("GT-REQ-REPLAY", "requirement replay (req.toml): replay required, but no replay ran "
                          "(--replay N not given)"),
        ("GT-REQ-STRICT", "requirement replay.strict (req.toml): strict replay required, but no "
                          "replay ran (--replay N not given)"),
    ]  # fmt: skip


def test_failed_replay_does_not_meet_a_replay_requirement() -> None:
    r = result_with(*VERIFIED, replay=BITWISE)
    r.fail("GT-REPLAY-STEP", "step 3: expected ..., found ...")
    r = judge({"replay": {"strict": True}}, r=r)
    assert req_findings(r, "fail")[0][1].endswith(
        "strict replay required, but no verified replay result (GT-REPLAY-STEP did not pass)"
    )


@pytest.mark.parametrize("doc", [{"pii": {"reject": ["email"]}}, {"policy_digest": DIGEST}])
def test_unverified_policy_fails_every_policy_requirement(doc: dict) -> None:
    r = result_with("GT-POLICY-FORMAT")
    r.fail("GT-POLICY-DIGEST", "provenance/policy.toml: expected policy digest ..., found ...")
    r = judge(doc, r=r)
    (code, message), *rest = req_findings(r, "fail")
    assert not rest and message.endswith(
        "required, but no verified producer policy (GT-POLICY-DIGEST did not pass)"
    )
    assert "policyTerms" not in r.verified  # nothing unverified is published for the report


def test_canary_requirement_needs_the_verified_log() -> None:
    r = judge({"canaries": {"min_count": 1}}, r=result_with("GT-POLICY-FORMAT", "GT-POLICY-DIGEST"))
    assert req_findings(r, "fail")[0][1].endswith(
        "min_count: required, but no verified canary count (GT-ADMIT-CANARIES did not pass)"
    )


def test_no_requirement_skips_every_code_and_the_note_says_so() -> None:
    r = result_with(*VERIFIED)
    check_requirements(r, None, policy())
    assert [(f.code, f.status, f.message) for f in r.findings if f.layer == "requirements"] == [
        (c, "skip", NONE_GIVEN) for c in REQUIREMENT_CODES
    ]
    assert r.scope["requirements"] == {"checked": False, "source": None, "stated": None}
    assert requirements_note(r) == (
        "conforms to the producer's own policy; no consumer requirement was checked "
        "(--policy-digest, --require)"
    )
    assert r.verified["policyTerms"]["name"] == "strict-sounding"


# -- the document ------------------------------------------------------------------------


BAD = [
    ("unknown-top", b'version = "0.1"\nstrictness = 1\n',
     "req.toml: top level: unknown key 'strictness'"),
    ("unknown-nested", b'version = "0.1"\n[replay]\ncoverage = 0.1\n',
     "req.toml: replay: unknown key 'coverage'"),
    ("no-version", b'[pii]\nreject = ["email"]\n', "req.toml: version: expected '0.1', found None"),
    ("bool-is-not-int", b'version = "0.1"\n[canaries]\nmin_count = true\n',
     "req.toml: canaries.min_count: expected an integer >= 1, found True"),
    ("float-is-not-int", b'version = "0.1"\n[canaries]\nmin_count = 1.0\n',
     "req.toml: canaries.min_count: expected an integer >= 1, found 1.0"),
    ("negative", b'version = "0.1"\n[memorization]\nloss_drop_max = -1\n',
     "req.toml: memorization.loss_drop_max: expected a number > 0, found -1"),
    ("nan", b'version = "0.1"\n[memorization]\nexposure_max = nan\n',
     "req.toml: memorization.exposure_max: expected a number > 0, found nan"),
    ("unknown-kind", b'version = "0.1"\n[pii]\nreject = ["ssn"]\n',
     "req.toml: pii.reject: expected PII kinds among email, phone, credit-card, found 'ssn'"),
    ("string-not-list", b'version = "0.1"\n[pii]\nreject = "email"\n',
     "req.toml: pii.reject: expected a list of non-empty strings, found 'email'"),
    ("strict-not-bool", b'version = "0.1"\n[replay]\nstrict = "yes"\n',
     "req.toml: replay.strict: expected true or false, found 'yes'"),
    ("strict-and-tolerance", b'version = "0.1"\n[replay]\nstrict = true\nmax_tolerance = 1e-3\n',
     "req.toml: replay: strict = true and max_tolerance exclude each other"),
    ("bad-digest", b'version = "0.1"\npolicy_digest = "ABC"\n',
     "req.toml: policy_digest: expected 64 lowercase hex digits (the policy digest, policy.md §2), "
     "found 'ABC'"),
    ("empty", b'version = "0.1"\n',
     "req.toml: expected at least one requirement, found none (an empty bar checks nothing: "
     "fail closed)"),
    ("refuse-and-limit", b'version = "0.1"\n[licenses]\nrefuse = ["MIT"]\n[licenses.limit]\n'
     b'MIT = ["deep"]\n', "req.toml: licenses: 'MIT' is both in refuse and in limit"),
    ("not-toml", b"version = \n", "req.toml: expected TOML, found a syntax error"),
    ("not-utf8", b'version = "\xff"\n',
     "req.toml: expected UTF-8 TOML, found an invalid byte at 11"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "want"), BAD, ids=[b[0] for b in BAD])
def test_bad_requirements_document(name: str, data: bytes, want: str) -> None:
    with pytest.raises(UsageError) as e:
        Requirements.from_toml(data, where="req.toml")
    assert str(e.value).startswith(want)
    assert "\n" not in str(e.value)


def test_from_dict_copies_its_input_and_round_trips() -> None:
    doc = {"version": "0.1", "pii": {"reject": ["email"]}, "replay": {"strict": True}}
    before = repr(doc)
    req = Requirements.from_dict(doc, where="x")
    assert repr(doc) == before
    assert Requirements.from_dict(req.to_dict(), where="x") == req
    with pytest.raises(AttributeError):
        req.replay_strict = False  # type: ignore[misc]


def test_constructor_validates_without_from_dict() -> None:
    with pytest.raises(UsageError, match="canaries.min_count: expected an integer >= 1, found 0"):
        Requirements(canaries_min=0)


def test_cli_digest_must_agree_with_the_file() -> None:
    req = Requirements(policy_digest="ab" * 32, source="req.toml")
    assert req.with_policy_digest("AB" * 32).policy_digest == "ab" * 32
    with pytest.raises(UsageError, match=r"--policy-digest: expected the digest req.toml pins"):
        req.with_policy_digest("cd" * 32)


def test_load_requirements_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="expected a requirements file \\(TOML\\), found nothing"):
        load_requirements(tmp_path / "none.toml")


# -- through verify() and the CLI on the basic vector ------------------------------------


BASIC = VECTORS / "valid" / "basic"


def test_verify_pins_the_basic_vectors_policy() -> None:
    digest = verify(BASIC / "run", **verify_kwargs(BASIC)).verified["policy"]["digest"]
    ok = verify(BASIC / "run", policy_digest=digest, **verify_kwargs(BASIC))
    assert ok.verdict == "PASS" and requirements_note(ok).startswith(
        "meets the consumer's requirements (--policy-digest): GT-REQ-POLICY-DIGEST"
    )
    bad = verify(BASIC / "run", policy_digest="00" * 32, **verify_kwargs(BASIC))
    assert [f.code for f in bad.failures] == ["GT-REQ-POLICY-DIGEST"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "verifier.cli", "verify", *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_cli_verdict_line_says_no_consumer_requirement_was_checked() -> None:
    out = _cli(*cli_args(BASIC), "--quiet")
    assert out.returncode == 0, out.stderr
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "conforms to the producer's own policy; no consumer requirement was checked "
            "(--policy-digest, --require)"
        )
    )


def test_cli_require_unmet_is_exit_1_and_bad_file_exit_2(tmp_path: Path) -> None:
    req = tmp_path / "consumer.toml"
    req.write_text('version = "0.1"\n[pii]\nreject = ["email"]\n')
    out = _cli(*cli_args(BASIC), "--quiet", "--require", str(req))
    assert out.returncode == 1, out.stderr
    assert "GT-REQ-PII" in out.stderr.strip().splitlines()[-1]
    req.write_text('version = "0.1"\n[pii]\nrejected = ["email"]\n')
    out = _cli(*cli_args(BASIC), "--require", str(req))
    assert out.returncode == 2
    assert out.stderr.strip() == "govtune: error: consumer.toml: pii: unknown key 'rejected'"


TENSORS = ("blocks.0.w", "blocks.1.w", "lm_head.w", "tok_emb.w")
LIMIT_TENSORS = {"licenses": {"limit_tensors": {"LGPL-3.0-only": ["blocks.1.*", "lm_head.*"]}}}


def test_limit_tensors_judges_what_profiles_resolve_to_not_their_names() -> None:
    # POLICY's web:* rule sends LGPL to "deep" (every tensor): by the consumer's own patterns
    # that is too much, whatever the profile is called.
    r = result_with(*VERIFIED, "GT-CHAIN-PROFILES")
    req = Requirements.from_dict({"version": "0.1", **LIMIT_TENSORS}, where="req.toml")
    check_requirements(r, req, policy(), TENSORS)
    assert req_findings(r, "fail") == [
        ("GT-REQ-LICENSE", "requirement licenses (req.toml): license 'LGPL-3.0-only': expected "
                           "only tensors matching blocks.1.*, lm_head.*, found profile 'deep' "
                           "allowing 'blocks.0.w' and 1 more")
    ]  # fmt: skip
    narrow = Policy.from_toml(
        POLICY.replace(
            b'source = "web:*" }\nprofile = "deep"', b'source = "web:*" }\nprofile = "surface"'
        )
    )
    r = result_with(*VERIFIED, "GT-CHAIN-PROFILES")
    check_requirements(r, req, narrow, TENSORS)
    assert req_findings(r, "fail") == []
    assert "GT-REQ-LICENSE" in {c for c, _ in req_findings(r, "pass")}


def test_limit_tensors_without_verified_tensor_names_fails_closed() -> None:
    r = result_with(*VERIFIED)  # GT-CHAIN-PROFILES did not pass
    req = Requirements.from_dict({"version": "0.1", **LIMIT_TENSORS}, where="req.toml")
    check_requirements(r, req, policy(), TENSORS)
    assert [m for _, m in req_findings(r, "fail")] == [
        "requirement licenses (req.toml): license 'LGPL-3.0-only': limit_tensors required, but "
        "no verified tensor names (GT-CHAIN-PROFILES did not pass)"
    ]


def test_cli_report_lists_the_unmet_requirement(tmp_path: Path) -> None:
    req = tmp_path / "consumer.toml"
    req.write_text('version = "0.1"\n[pii]\nreject = ["email"]\n')
    out_file = tmp_path / "report.md"
    args = [*cli_args(BASIC), "--require", str(req), "--format", "md", "--output", str(out_file)]
    out = subprocess.run([sys.executable, "-m", "verifier.cli", "report", *args],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 1, out.stderr
    md = out_file.read_text()
    row = "| **▲** PII kinds that must be rejected | GT-REQ-PII | NOT MET | requirement pii.reject "
    assert row in md  # the unmet row is marked
    assert "found 'mask'" in md

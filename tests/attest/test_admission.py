"""The admission evaluator (decide, inspect_content) and PII detection."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from attest.admission import (
    RULES,
    Findings,
    Metadata,
    Outcome,
    content_digest,
    decide,
    inspect_content,
)
from attest.canonical import canonical_json
from attest.errors import FormatError
from attest.policy import Policy

OPTOUT_TEXT = "please do not train on me"

POLICY_TOML = f'''
name = "t"
[licenses]
classes = {{ MIT = "permissive", "GPL-3.0-only" = "copyleft", \
"LicenseRef-Proprietary" = "proprietary" }}
allow = ["permissive"]
deny = ["proprietary"]
[consent]
required = ["personal"]
[sources]
allow = ["github.com/*", "hf.co/*"]
deny = ["github.com/evil/*"]
[pii]
action = "reject"
[optout]
digests = ["{content_digest(OPTOUT_TEXT)}"]
[length]
min = 5
max = 100
[profiles.deep]
patterns = ["*"]
[profiles.shallow]
patterns = ["lm_head.*"]
[profiles.docs]
patterns = ["h.3.*"]
[[assign]]
when = {{ license_class = "permissive", source = "github.com/*" }}
profile = "deep"
[[assign]]
when = {{ data_class = "docs" }}
profile = "docs"
[[assign]]
when = {{ license = "MIT" }}
profile = "shallow"
[canaries]
count = 2
profile = "shallow"
'''.encode()


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_toml(POLICY_TOML)


def meta(**kw) -> Metadata:
    base = dict(license="MIT", source="github.com/a/b", data_class="code", consent=False, length=20)
    return Metadata(**(base | kw))


# (id, metadata overrides, findings, admitted, profile, failing rules, one expected detail)
DECIDE = [
    ("all-pass-deep", {}, Findings(), True, "deep", (), {}),
    (
        "license-unknown",
        {"license": "WTFPL"},
        Findings(),
        False,
        None,
        ("license", "profile"),
        {"reason": "license-unclassified", "license": "WTFPL"},
    ),
    (
        "license-denied",
        {"license": "LicenseRef-Proprietary"},
        Findings(),
        False,
        None,
        ("license", "profile"),
        {"reason": "license-denied", "license": "LicenseRef-Proprietary", "class": "proprietary"},
    ),
    (
        "license-neither",
        {"license": "GPL-3.0-only"},
        Findings(),
        False,
        None,
        ("license", "profile"),
        {"reason": "license-not-allowed", "license": "GPL-3.0-only", "class": "copyleft"},
    ),
    (
        "consent-required-missing",
        {"data_class": "personal"},
        Findings(),
        False,
        None,
        ("consent",),
        {"reason": "consent-required", "dataClass": "personal"},
    ),
    (
        "consent-required-given",
        {"data_class": "personal", "consent": True},
        Findings(),
        True,
        "deep",
        (),
        {},
    ),
    (
        "source-deny-wins",
        {"source": "github.com/evil/x"},
        Findings(),
        False,
        None,
        ("source",),
        {"reason": "source-denied", "pattern": "github.com/evil/*"},
    ),
    (
        "source-no-allow",
        {"source": "example.com/x"},
        Findings(),
        False,
        None,
        ("source",),
        {"reason": "source-not-allowed"},
    ),
    (
        "source-glob-is-case-sensitive",
        {"source": "GitHub.com/a"},
        Findings(),
        False,
        None,
        ("source",),
        {"reason": "source-not-allowed"},
    ),
    ("length-min-inclusive", {"length": 5}, Findings(), True, "deep", (), {}),
    ("length-max-inclusive", {"length": 100}, Findings(), True, "deep", (), {}),
    (
        "length-too-short",
        {"length": 4},
        Findings(),
        False,
        None,
        ("length",),
        {"reason": "length-out-of-range", "length": 4, "min": 5, "max": 100},
    ),
    (
        "length-too-long",
        {"length": 101},
        Findings(),
        False,
        None,
        ("length",),
        {"reason": "length-out-of-range", "length": 101, "min": 5, "max": 100},
    ),
    (
        "pii-reject",
        {},
        Findings(pii=("email", "phone")),
        False,
        None,
        ("pii",),
        {"reason": "pii-found", "kinds": ["email", "phone"]},
    ),
    (
        "optout",
        {},
        Findings(optout=True),
        False,
        None,
        ("optout",),
        {"reason": "optout"},
    ),
    (
        "duplicate-reject",
        {},
        Findings(duplicate=True),
        False,
        None,
        ("duplicate",),
        {"reason": "duplicate"},
    ),
    (
        "several-failures",
        {"license": "LicenseRef-Proprietary", "length": 1},
        Findings(optout=True),
        False,
        None,
        ("license", "length", "optout", "profile"),
        {"reason": "license-denied", "license": "LicenseRef-Proprietary", "class": "proprietary"},
    ),
    (
        "license-denied-but-profile-matches",
        {"license": "LicenseRef-Proprietary", "data_class": "docs"},
        Findings(),
        False,
        None,
        ("license",),
        {"reason": "license-denied", "license": "LicenseRef-Proprietary", "class": "proprietary"},
    ),
    ("assign-first-match-wins", {"data_class": "docs"}, Findings(), True, "deep", (), {}),
    (
        "assign-second-rule",
        {"data_class": "docs", "source": "hf.co/x"},
        Findings(),
        True,
        "docs",
        (),
        {},
    ),
    ("assign-by-license", {"source": "hf.co/x"}, Findings(), True, "shallow", (), {}),
    (
        "assign-no-match",
        {"license": "GPL-3.0-only", "source": "hf.co/x"},
        Findings(),
        False,
        None,
        ("license", "profile"),
        {"reason": "no-assignment"},
    ),
]


@pytest.mark.parametrize(
    "overrides,findings,admitted,profile,failing,detail",
    [c[1:] for c in DECIDE],
    ids=[c[0] for c in DECIDE],
)
def test_decide(policy, overrides, findings, admitted, profile, failing, detail):
    d = decide(policy, meta(**overrides), findings)
    assert d.admitted is admitted
    assert d.profile == profile
    assert d.reasons == failing
    assert tuple(o.rule for o in d.outcomes) == RULES  # every rule, in the fixed order
    if detail:
        assert detail in [o.detail for o in d.outcomes]
    for o in d.outcomes:
        assert (o.detail == {}) == (o.outcome == "pass")


def test_decide_pii_mask(policy):
    masking = dataclasses.replace(policy, pii_action="mask")
    d = decide(masking, meta(), Findings(pii=("credit-card",)))
    assert d.admitted and d.profile == "deep"
    assert (
        Outcome("pii", "masked", {"reason": "pii-masked", "kinds": ["credit-card"]}) in d.outcomes
    )
    clean = decide(masking, meta(), Findings())
    assert Outcome("pii", "pass") in clean.outcomes


def test_decide_duplicates_allowed(policy):
    d = decide(dataclasses.replace(policy, duplicates="allow"), meta(), Findings(duplicate=True))
    assert d.admitted and d.reasons == ()


def test_decide_canary_with_policy_canaries(policy):
    d = decide(
        policy,
        meta(
            license="LicenseRef-govtune-canary",
            source="govtune:canary",
            data_class="canary",
            consent=True,
            canary=True,
        ),
        Findings(),
    )
    assert d.admitted and d.profile == "shallow"
    assert d.outcomes == (Outcome("canary", "pass"),)


def test_decide_canary_without_policy_canaries(policy):
    """Attack: a producer plants 'canaries' the policy never asked for to bypass the rules."""
    no_canaries = dataclasses.replace(
        policy, canaries=dataclasses.replace(policy.canaries, count=0)
    )
    d = decide(
        no_canaries, meta(license="LicenseRef-Proprietary", canary=True), Findings(pii=("email",))
    )
    assert not d.admitted and d.profile is None
    assert d.outcomes == (Outcome("canary", "fail", {"reason": "no-canaries"}),)


def test_decide_is_deterministic(policy):
    m, f = meta(license="WTFPL"), Findings(pii=("email",))
    assert decide(policy, m, f) == decide(policy, m, f)


# --------------------------------------------------------------------------- inspect_content


def test_inspect_content_in_order(policy):
    seen: set[str] = set()
    f1, t1 = inspect_content(policy, "hello world", seen)
    f2, t2 = inspect_content(policy, "hello world", seen)
    f3, _ = inspect_content(policy, OPTOUT_TEXT, seen)
    f4, t4 = inspect_content(policy, "mail bob@example.com or +1 415 555 2671", seen)
    assert f1 == Findings() and t1 == "hello world"
    assert f2 == Findings(duplicate=True) and t2 == "hello world"
    assert f3 == Findings(optout=True)
    assert f4 == Findings(pii=("email", "phone"))
    assert t4 == "mail bob@example.com or +1 415 555 2671"  # reject policy: text unchanged
    assert seen == {content_digest(t) for t in ("hello world", OPTOUT_TEXT, t4)}


def test_inspect_content_masks(policy):
    masking = dataclasses.replace(policy, pii_action="mask")
    findings, text = inspect_content(masking, "card 4111 1111 1111 1111, mail a@b.io", set())
    assert findings.pii == ("credit-card", "email")
    assert text == "card [CREDIT-CARD], mail [EMAIL]"


def test_content_digest_is_sha256_of_canonical_json_string():
    import hashlib

    assert content_digest("é") == hashlib.sha256(b'"\xc3\xa9"').hexdigest()
    assert content_digest("é") == hashlib.sha256(canonical_json("é")).hexdigest()


# --------------------------------------------------------------------------- model round trips


def test_metadata_findings_outcome_round_trip():
    m = meta(canary=True, consent=True)
    assert Metadata.from_dict(m.to_dict()) == m
    assert m.to_dict()["dataClass"] == "code"
    f = Findings(("email", "phone"), True, False)
    assert Findings.from_dict(f.to_dict()) == f
    o = Outcome("pii", "masked", {"reason": "pii-masked", "kinds": ["email"]})
    assert Outcome.from_dict(o.to_dict()) == o


MODEL_BAD = [
    ("metadata-not-map", lambda: Metadata.from_dict([]), r"metadata: expected a map"),
    (
        "metadata-missing-key",
        lambda: Metadata.from_dict({"license": "MIT"}),
        r"metadata: expected keys canary, consent, dataClass, length, license, source, got license",
    ),
    (
        "metadata-consent-str",
        lambda: Metadata.from_dict(meta().to_dict() | {"consent": "yes"}),
        r"metadata\.consent: expected a boolean, got 'yes'",
    ),
    (
        "metadata-license-int",
        lambda: Metadata.from_dict(meta().to_dict() | {"license": 1}),
        r"metadata\.license: expected a string",
    ),
    (
        "metadata-length-negative",
        lambda: meta(length=-1),
        r"metadata\.length: expected a non-negative integer",
    ),
    (
        "metadata-length-bool",
        lambda: meta(length=True),
        r"metadata\.length: expected a non-negative integer",
    ),
    (
        "metadata-length-float",
        lambda: Metadata.from_dict(meta().to_dict() | {"length": 3.0}),
        r"metadata\.length",
    ),
    (
        "findings-unsorted-pii",
        lambda: Findings.from_dict(
            {"pii": ["phone", "email"], "optout": False, "duplicate": False}
        ),
        r"findings\.pii: expected a sorted list of distinct kinds",
    ),
    (
        "findings-duplicate-pii",
        lambda: Findings.from_dict(
            {"pii": ["email", "email"], "optout": False, "duplicate": False}
        ),
        r"distinct kinds",
    ),
    (
        "findings-extra-key",
        lambda: Findings.from_dict({"pii": [], "optout": False, "duplicate": False, "x": 1}),
        r"findings: expected keys duplicate, optout, pii",
    ),
    (
        "outcome-unknown-rule",
        lambda: Outcome.from_dict({"rule": "vibes", "outcome": "pass", "detail": {}}),
        r"outcome: unknown rule/outcome 'vibes'/'pass'",
    ),
    (
        "outcome-unknown-outcome",
        lambda: Outcome.from_dict({"rule": "pii", "outcome": "ok", "detail": {}}),
        r"unknown rule/outcome 'pii'/'ok'",
    ),
]


@pytest.mark.parametrize("make,match", [c[1:] for c in MODEL_BAD], ids=[c[0] for c in MODEL_BAD])
def test_model_validation(make, match):
    with pytest.raises(FormatError, match=match):
        make()


# --------------------------------------------------------------------------- SPDX expressions

EXPR_POLICY = Policy.from_toml(
    b"""
name = "spdx"
[licenses]
allow = ["public-domain", "permissive", "weak"]
deny = ["strong"]
classes = { "CC0-1.0" = "public-domain", MIT = "permissive", ISC = "permissive", \
"MPL-2.0" = "weak", "GPL-3.0-only" = "strong", "GPL-2.0-only" = "strong", \
"GPL-2.0-only WITH Classpath-exception-2.0" = "weak", "LicenseRef-odd" = "other" }
[profiles.deep]
patterns = ["*"]
[profiles.surface]
patterns = ["lm_head.*"]
[profiles.pd]
patterns = ["h.*"]
[[assign]]
when = { license = "MIT" }
profile = "deep"
[[assign]]
when = { license_class = "public-domain" }
profile = "pd"
[[assign]]
profile = "surface"
"""
)

# (id, declared license, admitted, profile, license outcome detail ({} = pass))
EXPRESSIONS = [
    ("id", "MIT", True, "deep", {}),
    ("id-any-case", "mit", True, "deep", {}),
    ("or-picks-first-allowed-class", "GPL-3.0-only OR CC0-1.0 OR MIT", True, "pd", {}),
    ("or-of-equal-rank-first-written", "ISC OR MIT", True, "surface", {}),
    ("or-rescues-denied", "GPL-3.0-only OR MPL-2.0", True, "surface", {}),
    ("and-takes-most-restrictive", "MIT AND MPL-2.0", True, "surface", {}),
    ("and-with-denied-refused", "MIT AND GPL-3.0-only", False, None,
     {"reason": "license-denied", "license": "GPL-3.0-only", "class": "strong"}),
    ("with-classified-pair", "GPL-2.0-only WITH Classpath-exception-2.0", True, "surface", {}),
    ("with-unclassified-pair-falls-back-to-id", "MIT WITH LLVM-exception", True, "surface", {}),
    ("with-on-denied-id-stays-denied", "GPL-3.0-only WITH GCC-exception-3.1", False, None,
     {"reason": "license-denied", "license": "GPL-3.0-only WITH GCC-exception-3.1",
      "class": "strong"}),
    ("and-unclassified-refused", "MIT AND BSD-3-Clause", False, None,
     {"reason": "license-unclassified", "license": "BSD-3-Clause"}),
    ("or-unclassified-ignored", "BSD-3-Clause OR MIT", True, "deep", {}),
    ("class-in-neither-list", "LicenseRef-odd", False, None,
     {"reason": "license-not-allowed", "license": "LicenseRef-odd", "class": "other"}),
    ("homoglyph-hyphen", "MPL\u20102.0", False, None,
     {"reason": "license-invalid", "license": "MPL\u20102.0"}),
    ("unknown-id", "Apache-2", False, None, {"reason": "license-invalid", "license": "Apache-2"}),
    ("free-text", "MIT License", False, None,
     {"reason": "license-invalid", "license": "MIT License"}),
]  # fmt: skip


@pytest.mark.parametrize(
    "declared,admitted,profile,detail",
    [c[1:] for c in EXPRESSIONS],
    ids=[c[0] for c in EXPRESSIONS],
)
def test_decide_license_expressions(declared, admitted, profile, detail):
    d = decide(EXPR_POLICY, meta(license=declared), Findings())
    assert (d.admitted, d.profile) == (admitted, profile)
    (lic,) = [o for o in d.outcomes if o.rule == "license"]
    assert lic.detail == detail
    assert lic.outcome == ("fail" if detail else "pass")


def test_outcome_detail_is_structured_and_validated():
    o = Outcome(
        "length", "fail", {"reason": "length-out-of-range", "length": 3, "min": 5, "max": 9}
    )
    assert o.to_dict() == {
        "rule": "length",
        "outcome": "fail",
        "detail": {"reason": "length-out-of-range", "length": 3, "min": 5, "max": 9},
    }
    assert Outcome.from_dict(o.to_dict()) == o
    kinds = ["email"]
    masked = Outcome("pii", "masked", {"reason": "pii-masked", "kinds": kinds})
    kinds.append("phone")  # the outcome keeps its own copy
    assert masked.detail["kinds"] == ["email"]


DETAIL_BAD = [
    ("repr-string", {"rule": "pii", "outcome": "fail", "detail": "contains email"},
     r"outcome\.detail: expected a map, got 'contains email'"),
    ("pass-with-detail", {"rule": "pii", "outcome": "pass", "detail": {"reason": "pii-found"}},
     r"outcome\.detail: expected an empty map on pass"),
    ("unknown-reason", {"rule": "pii", "outcome": "fail", "detail": {"reason": "vibes"}},
     r"outcome\.detail\.reason: expected a reason code, got 'vibes'"),
    ("reason-of-other-rule", {"rule": "pii", "outcome": "fail", "detail": {"reason": "optout"}},
     r"'optout' is not a pii fail reason"),
    ("masked-reason-on-fail",
     {"rule": "pii", "outcome": "fail", "detail": {"reason": "pii-masked", "kinds": []}},
     r"'pii-masked' is not a pii fail reason"),
    ("missing-argument",
     {"rule": "consent", "outcome": "fail", "detail": {"reason": "consent-required"}},
     r"outcome\.detail: expected keys dataClass, reason, got reason"),
    ("extra-argument",
     {"rule": "optout", "outcome": "fail", "detail": {"reason": "optout", "why": "x"}},
     r"expected keys reason, got reason, why"),
    ("argument-wrong-type",
     {"rule": "length", "outcome": "fail",
      "detail": {"reason": "length-out-of-range", "length": "3", "min": 1, "max": 2}},
     r"outcome\.detail\.length: expected int, got '3'"),
    ("argument-bool-is-not-int",
     {"rule": "length", "outcome": "fail",
      "detail": {"reason": "length-out-of-range", "length": True, "min": 1, "max": 2}},
     r"outcome\.detail\.length: expected int, got True"),
    ("kinds-not-strings",
     {"rule": "pii", "outcome": "fail", "detail": {"reason": "pii-found", "kinds": [1]}},
     r"outcome\.detail\.kinds: expected list"),
    ("masked-on-other-rule",
     {"rule": "optout", "outcome": "masked", "detail": {"reason": "optout"}},
     r"'optout' is not a optout masked reason"),
]  # fmt: skip


@pytest.mark.parametrize("doc,match", [c[1:] for c in DETAIL_BAD], ids=[c[0] for c in DETAIL_BAD])
def test_outcome_detail_errors(doc, match):
    with pytest.raises(FormatError, match=match):
        Outcome.from_dict(doc)


_OUTCOME_PARTS = st.one_of(
    st.sampled_from(["canary", "license", "pii", "nope", ""]), st.integers(), st.none(),
    st.just({}), st.just({"reason": "no-canaries"}), st.just([]),
    st.sampled_from(["pass", "fail", "masked"]),
)  # fmt: skip


@given(st.dictionaries(st.sampled_from(["rule", "outcome", "detail", "x"]), _OUTCOME_PARTS))
@example({"rule": "pii", "outcome": "pass", "detail": {}})
@example({"rule": "license", "outcome": "pass", "detail": {"reason": "no-canaries"}})
@example({"rule": "canary", "outcome": "fail", "detail": {"reason": "no-canaries"}})
def test_pass_fast_path_agrees_with_from_dict(d: dict) -> None:
    """`pass_outcome_of` answers only for a dict that `Outcome.from_dict` accepts as the
    very same pass outcome; for everything else it defers (None)."""
    from attest.admission import Outcome, pass_outcome_of

    fast = pass_outcome_of(d)
    try:
        slow = Outcome.from_dict(d)
    except FormatError:
        assert fast is None
        return
    assert fast is None or fast == slow
    if slow.outcome == "pass":
        assert fast is slow or fast == slow
    else:
        assert fast is None

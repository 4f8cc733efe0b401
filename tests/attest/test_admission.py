"""The admission evaluator (decide, inspect_content) and PII detection."""

from __future__ import annotations

import dataclasses

import pytest

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
from attest.pii import find_pii, luhn_ok, mask_pii
from attest.policy import Policy

OPTOUT_TEXT = "please do not train on me"

POLICY_TOML = f'''
name = "t"
[licenses]
classes = {{ MIT = "permissive", "GPL-3.0-only" = "copyleft", Proprietary = "proprietary" }}
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


# (id, metadata overrides, findings, admitted, profile, failing rules, detail fragment)
DECIDE = [
    ("all-pass-deep", {}, Findings(), True, "deep", (), ""),
    (
        "license-unknown",
        {"license": "WTFPL"},
        Findings(),
        False,
        None,
        ("license", "profile"),
        "license 'WTFPL' has no class in the policy",
    ),
    (
        "license-denied",
        {"license": "Proprietary"},
        Findings(),
        False,
        None,
        ("license", "profile"),
        "license class 'proprietary' is denied",
    ),
    (
        "license-neither",
        {"license": "GPL-3.0-only"},
        Findings(),
        False,
        None,
        ("license", "profile"),
        "license class 'copyleft' is not allowed",
    ),
    (
        "consent-required-missing",
        {"data_class": "personal"},
        Findings(),
        False,
        None,
        ("consent",),
        "data class 'personal' requires consent",
    ),
    (
        "consent-required-given",
        {"data_class": "personal", "consent": True},
        Findings(),
        True,
        "deep",
        (),
        "",
    ),
    (
        "source-deny-wins",
        {"source": "github.com/evil/x"},
        Findings(),
        False,
        None,
        ("source",),
        "source matches deny pattern 'github.com/evil/*'",
    ),
    (
        "source-no-allow",
        {"source": "example.com/x"},
        Findings(),
        False,
        None,
        ("source",),
        "source matches no allow pattern",
    ),
    (
        "source-glob-is-case-sensitive",
        {"source": "GitHub.com/a"},
        Findings(),
        False,
        None,
        ("source",),
        "source matches no allow pattern",
    ),
    ("length-min-inclusive", {"length": 5}, Findings(), True, "deep", (), ""),
    ("length-max-inclusive", {"length": 100}, Findings(), True, "deep", (), ""),
    (
        "length-too-short",
        {"length": 4},
        Findings(),
        False,
        None,
        ("length",),
        "length 4 outside [5, 100]",
    ),
    (
        "length-too-long",
        {"length": 101},
        Findings(),
        False,
        None,
        ("length",),
        "length 101 outside [5, 100]",
    ),
    (
        "pii-reject",
        {},
        Findings(pii=("email", "phone")),
        False,
        None,
        ("pii",),
        "contains email,phone",
    ),
    (
        "optout",
        {},
        Findings(optout=True),
        False,
        None,
        ("optout",),
        "content is on the opt-out list",
    ),
    (
        "duplicate-reject",
        {},
        Findings(duplicate=True),
        False,
        None,
        ("duplicate",),
        "exact duplicate of an earlier example",
    ),
    (
        "several-failures",
        {"license": "Proprietary", "length": 1},
        Findings(optout=True),
        False,
        None,
        ("license", "length", "optout", "profile"),
        "is denied",
    ),
    (
        "license-denied-but-profile-matches",
        {"license": "Proprietary", "data_class": "docs"},
        Findings(),
        False,
        None,
        ("license",),
        "license class 'proprietary' is denied",
    ),
    ("assign-first-match-wins", {"data_class": "docs"}, Findings(), True, "deep", (), ""),
    (
        "assign-second-rule",
        {"data_class": "docs", "source": "hf.co/x"},
        Findings(),
        True,
        "docs",
        (),
        "",
    ),
    ("assign-by-license", {"source": "hf.co/x"}, Findings(), True, "shallow", (), ""),
    (
        "assign-no-match",
        {"license": "GPL-3.0-only", "source": "hf.co/x"},
        Findings(),
        False,
        None,
        ("license", "profile"),
        "no assignment rule matches",
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
    details = " | ".join(o.detail for o in d.outcomes)
    assert detail in details
    for o in d.outcomes:
        assert (o.detail == "") == (o.outcome == "pass")


def test_decide_pii_mask(policy):
    masking = dataclasses.replace(policy, pii_action="mask")
    d = decide(masking, meta(), Findings(pii=("credit-card",)))
    assert d.admitted and d.profile == "deep"
    assert Outcome("pii", "masked", "masked credit-card") in d.outcomes
    clean = decide(masking, meta(), Findings())
    assert Outcome("pii", "pass", "") in clean.outcomes


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
    assert d.outcomes == (Outcome("canary", "pass", ""),)


def test_decide_canary_without_policy_canaries(policy):
    """Attack: a producer plants 'canaries' the policy never asked for to bypass the rules."""
    no_canaries = dataclasses.replace(
        policy, canaries=dataclasses.replace(policy.canaries, count=0)
    )
    d = decide(no_canaries, meta(license="Proprietary", canary=True), Findings(pii=("email",)))
    assert not d.admitted and d.profile is None
    assert d.outcomes == (Outcome("canary", "fail", "the policy plants no canaries"),)


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
    o = Outcome("pii", "masked", "masked email")
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
        lambda: Outcome.from_dict({"rule": "vibes", "outcome": "pass", "detail": ""}),
        r"outcome: unknown rule/outcome 'vibes'/'pass'",
    ),
    (
        "outcome-unknown-outcome",
        lambda: Outcome.from_dict({"rule": "pii", "outcome": "ok", "detail": ""}),
        r"unknown rule/outcome 'pii'/'ok'",
    ),
]


@pytest.mark.parametrize("make,match", [c[1:] for c in MODEL_BAD], ids=[c[0] for c in MODEL_BAD])
def test_model_validation(make, match):
    with pytest.raises(FormatError, match=match):
        make()


# --------------------------------------------------------------------------- PII

PII = [
    ("email", "write to alice.b+x@example.co.uk today", [("email", "alice.b+x@example.co.uk")]),
    ("email-at-start", "bob@example.org", [("email", "bob@example.org")]),
    ("phone-international", "call +1 415 555 2671 now", [("phone", "+1 415 555 2671")]),
    ("phone-parens", "(415) 555-2671", [("phone", "(415) 555-2671")]),
    # regression: a phone number ending a sentence was missed (the '.' lookahead)
    ("phone-dashes-end-of-sentence", "tel 415-555-2671.", [("phone", "415-555-2671")]),
    ("phone-dotted", "tel 415.555.2671, thanks", [("phone", "415.555.2671")]),
    ("dotted-continuation", "build 415.555.2671.3", []),
    ("phone-uk", "+44 20 7946 0958", [("phone", "+44 20 7946 0958")]),
    ("card-visa-spaced", "pay 4111 1111 1111 1111 ok", [("credit-card", "4111 1111 1111 1111")]),
    ("card-visa-plain", "4111111111111111", [("credit-card", "4111111111111111")]),
    ("card-mastercard-dashes", "5500-0000-0000-0004", [("credit-card", "5500-0000-0000-0004")]),
    ("card-amex-15", "378282246310005", [("credit-card", "378282246310005")]),
    (
        "mixed",
        "a@b.io, 4111111111111111",
        [("email", "a@b.io"), ("credit-card", "4111111111111111")],
    ),
    # Luhn-invalid numbers and lookalikes are not PII
    ("card-luhn-invalid-plain", "4111111111111112", []),
    # regression: the phone pattern used to fire inside a Luhn-invalid spaced card number
    ("card-luhn-invalid-spaced", "pay 4111 1111 1111 1112 ok", []),
    ("version-string", "requires numpy 1.26.4 and torch 2.3.1", []),
    ("long-version", "Windows 10.0.19041.1234", []),
    ("ip-address", "host 192.168.100.200", []),
    ("sha1-hex", "commit 3f786850e387550fdab836ed7e6dc881de23001b", []),
    ("sha256-hex", "a" * 64, []),
    ("date", "released 2023-01-15", []),
    ("pinned-requirement", "pkg==2.31.0", []),
    ("no-tld", "user@localhost", []),
    ("too-few-digits", "call 555-2671", []),
    ("long-digit-run", "id 12345678901234567890123", []),
    # regression: Unicode \d matched non-ASCII digits, which luhn_ok (ord(c) - 48) misreads;
    # card and phone patterns are re.ASCII now (spec/policy.md §4.2)
    ("card-fullwidth-digits-bogus-luhn", "pay \uff14" + "\uff11" * 15, []),
    ("card-arabic-indic-digits-bogus-luhn", "pay \u0664" + "\u0661" * 14 + "\u0667", []),
    (
        "phone-arabic-indic-digits",
        "call \u0664\u0661\u0665-\u0665\u0665\u0665-\u0662\u0666\u0667\u0661",
        [],
    ),
    (
        "card-after-arabic-indic-digit",
        "\u0664 4111111111111111",
        [("credit-card", "4111111111111111")],
    ),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in PII], ids=[c[0] for c in PII])
def test_find_pii(text, expected):
    assert [(m.kind, text[m.start : m.end]) for m in find_pii(text)] == expected


def test_find_pii_respects_kinds():
    text = "a@b.io 4111111111111111 +1 415 555 2671"
    assert [m.kind for m in find_pii(text, ["phone"])] == ["phone"]
    assert [m.kind for m in find_pii(text, ["email", "credit-card"])] == ["email", "credit-card"]
    assert find_pii(text, []) == []


def test_mask_pii():
    text = "mail a@b.io or call (415) 555-2671!"
    assert mask_pii(text, find_pii(text)) == "mail [EMAIL] or call [PHONE]!"
    assert mask_pii(text, []) == text


LUHN = [
    ("4111111111111111", True),
    ("4111111111111112", False),
    ("79927398713", True),
    ("79927398710", False),
    ("0", True),
    ("18", True),
    ("19", False),
]


@pytest.mark.parametrize("digits,ok", LUHN, ids=[c[0] for c in LUHN])
def test_luhn(digits, ok):
    assert luhn_ok(digits) is ok

"""The policy document: TOML loading, every PolicyError path, digest identity, round trips."""

from __future__ import annotations

import copy
import dataclasses
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import fuzz

from attest.errors import PolicyError, UsageError
from attest.limits import Limits
from attest.policy import Policy, Profile, load_policy

FULL = (
    b'''
name = "demo"

[licenses]
classes = { MIT = "permissive", "Apache-2.0" = "permissive", "GPL-3.0-only" = "copyleft", \
"LicenseRef-Proprietary" = "proprietary" }
allow = ["permissive"]
deny = ["proprietary"]

[consent]
required = ["personal"]

[sources]
allow = ["github.com/*", "hf.co/*"]
deny = ["github.com/evil/*"]

[pii]
detect = ["email", "phone", "credit-card"]
action = "mask"

[optout]
digests = ["'''
    + b"a" * 64
    + b""""]

[duplicates]
action = "reject"

[length]
min = 5
max = 1000

[profiles.shallow]
patterns = ["h.3.*", "lm_head.*"]

[profiles.deep]
patterns = ["h.*"]
exclude = ["h.0.*"]

[[assign]]
when = { license_class = "permissive", source = "github.com/*" }
profile = "deep"

[[assign]]
profile = "shallow"

[memorization]
action = "quarantine"
loss_drop_max = 2.5
reference_quantile = 0.01
holdout = 8
exposure_max = 10
eval_every = 50

[canaries]
count = 2
repeats = 3
template = "my code is {secret}"
digits = 6
candidates = 500
profile = "shallow"
"""
)

# The same policy, reformatted: other key order, comments, dotted keys, array tables spelled out.
REFORMATTED = (
    b'''
# a comment that does not change the policy
[profiles.deep]
exclude = [ "h.0.*" ]
patterns = [ "h.*" ]
[profiles.shallow]
patterns = [
  "h.3.*",     # last block
  "lm_head.*",
]

[licenses]
deny = ["proprietary"]
allow = ["permissive"]
[licenses.classes]
"LicenseRef-Proprietary" = "proprietary"
"GPL-3.0-only" = "copyleft"
"Apache-2.0" = "permissive"
MIT = "permissive"

[canaries]
profile = "shallow"
candidates = 500
digits = 6
template = 'my code is {secret}'
repeats = 3
count = 2

[memorization]
eval_every = 50
exposure_max = 10.0
holdout = 8
reference_quantile = 1e-2
loss_drop_max = 2.50
action = "quarantine"

[[assign]]
profile = "deep"
when.source = "github.com/*"
when.license_class = "permissive"

[[assign]]
profile = "shallow"
when = {}

[length]
max = 1_000
min = 5

[optout]
digests = ["'''
    + b"a" * 64
    + b""""]
[pii]
action = "mask"
[sources]
deny = ["github.com/evil/*"]
allow = ["github.com/*", "hf.co/*"]
[consent]
required = ["personal"]
"""
)
# name and version at top level must precede tables
REFORMATTED = b'version = "0.1"\nname = "demo"  # the name\n' + REFORMATTED

MINIMAL = b"""
name = "m"
[licenses]
classes = { MIT = "permissive" }
allow = ["permissive"]
[profiles.all]
patterns = ["*"]
[[assign]]
profile = "all"
"""


@pytest.fixture()
def full() -> Policy:
    return Policy.from_toml(FULL)


def test_full_policy_fields(full):
    assert full.name == "demo"
    assert full.license_class("MIT") == "permissive"
    assert full.license_class("WTFPL") is None
    assert full.license_allow == ("permissive",) and full.license_deny == ("proprietary",)
    assert full.consent_required == ("personal",)
    assert full.source_deny == ("github.com/evil/*",)
    assert full.pii_action == "mask"
    assert full.optout_digests == frozenset({"a" * 64})
    assert (full.length_min, full.length_max) == (5, 1000)
    assert full.profiles["deep"] == Profile("deep", ("h.*",), ("h.0.*",))
    assert full.assign[0].when == {"license_class": "permissive", "source": "github.com/*"}
    assert full.memorization.action == "quarantine"
    assert full.memorization.exposure_max == 10.0 and isinstance(
        full.memorization.exposure_max, float
    )
    assert full.canaries.count == 2 and full.canaries.profile == "shallow"


def test_minimal_policy_defaults():
    p = Policy.from_toml(MINIMAL)
    assert p.source_allow == ("*",) and p.source_deny == ()
    assert p.pii_detect == ("credit-card", "email", "phone") and p.pii_action == "reject"
    assert p.duplicates == "reject"
    assert (p.length_min, p.length_max) == (1, 1 << 20)
    assert p.memorization.action == "flag" and p.canaries.count == 0


def test_digest_golden_and_stable_under_reformatting(full):
    again = Policy.from_toml(REFORMATTED)
    assert again == full
    assert again.digest() == full.digest()
    assert len(full.digest()) == 64
    assert Policy.from_toml(MINIMAL).digest() == (
        Policy.from_toml(MINIMAL.replace(b"\n", b"\n\n# c\n")).digest()
    )


def test_to_dict_from_dict_round_trip(full):
    d = full.to_dict()
    snapshot = copy.deepcopy(d)
    back = Policy.from_dict(d)
    assert d == snapshot  # from_dict does not mutate its input
    assert back == full
    assert back.to_dict() == d
    assert back.digest() == full.digest()


def _set(path: str, value):
    def mutate(d):
        *parents, last = path.split(".")
        node = d
        for p in parents:
            node = node[p]
        node[last] = value
        return d

    return mutate


RULE_CHANGES = [
    ("name", _set("name", "other")),
    ("license-class", _set("licenses.classes.MIT", "copyleft")),
    ("license-class-added", _set("licenses.classes.BSD-2-Clause", "permissive")),
    ("license-allow", _set("licenses.allow", ["permissive", "copyleft"])),
    ("license-deny", _set("licenses.deny", [])),
    ("consent", _set("consent.required", [])),
    ("source-allow", _set("sources.allow", ["*"])),
    ("source-deny", _set("sources.deny", ["github.com/evil/*", "x/*"])),
    ("pii-detect", _set("pii.detect", ["email"])),
    ("pii-action", _set("pii.action", "reject")),
    ("optout", _set("optout.digests", ["b" * 64])),
    ("duplicates", _set("duplicates.action", "allow")),
    ("length-min", _set("length.min", 4)),
    ("length-max", _set("length.max", 1001)),
    ("profile-pattern", _set("profiles.shallow.patterns", ["h.3.*"])),
    ("profile-exclude", _set("profiles.deep.exclude", [])),
    ("assign-order", lambda d: d | {"assign": list(reversed(d["assign"]))}),
    (
        "assign-when",
        _set(
            "assign",
            [
                {"when": {"data_class": "code"}, "profile": "deep"},
                {"when": {}, "profile": "shallow"},
            ],
        ),
    ),
    ("memorization-action", _set("memorization.action", "halt")),
    ("loss-drop", _set("memorization.loss_drop_max", 2.6)),
    ("quantile", _set("memorization.reference_quantile", 0.02)),
    ("holdout", _set("memorization.holdout", 9)),
    ("exposure", _set("memorization.exposure_max", 11)),
    ("eval-every", _set("memorization.eval_every", 0)),
    ("canary-count", _set("canaries.count", 3)),
    ("canary-repeats", _set("canaries.repeats", 1)),
    ("canary-template", _set("canaries.template", "code {secret}")),
    ("canary-digits", _set("canaries.digits", 7)),
    ("canary-candidates", _set("canaries.candidates", 501)),
    ("canary-profile", _set("canaries.profile", "deep")),
]


def test_every_rule_change_changes_the_digest(full):
    digests = {full.digest()}
    for name, mutate in RULE_CHANGES:
        changed = Policy.from_dict(mutate(copy.deepcopy(full.to_dict())))
        assert changed.digest() not in digests, name
        digests.add(changed.digest())
    assert len(digests) == len(RULE_CHANGES) + 1


def _drop(path: str):
    def mutate(d):
        *parents, last = path.split(".")
        node = d
        for p in parents:
            node = node[p]
        del node[last]
        return d

    return mutate


def _cls(key: str, value):
    """Add a licenses.classes entry (keys hold dots, which _set would split on)."""

    def mutate(d):
        d["licenses"]["classes"][key] = value
        return d

    return mutate


# (id, mutation of the FULL policy's TOML dict, expected message)
POLICY_BAD = [
    ("unknown-top-key", _set("retention", {"days": 3}), r"policy: unknown key\(s\) retention"),
    ("unknown-nested-key", _set("licenses.aliases", {}), r"licenses: unknown key\(s\) aliases"),
    (
        "unknown-profile-key",
        _set("profiles.deep.depth", 3),
        r"profiles\.deep: unknown key\(s\) depth",
    ),
    (
        "unknown-memorization-key",
        _set("memorization.window", 3),
        r"memorization: unknown key\(s\) window",
    ),
    ("section-not-table", _set("licenses", ["MIT"]), r"licenses: expected a table, got list"),
    ("version", _set("version", "0.2"), r"version: expected '0.1', got '0.2'"),
    ("name-missing", _drop("name"), r"name: expected a non-empty string"),
    ("name-empty", _set("name", ""), r"name: expected a non-empty string"),
    (
        "license-class-not-str",
        _set("licenses.classes.MIT", 1),
        r"licenses\.classes: expected a table of SPDX id",
    ),
    (
        "license-allow-empty",
        _set("licenses.allow", []),
        r"licenses\.allow: expected at least one allowed",
    ),
    (
        "license-allow-not-list",
        _set("licenses.allow", "permissive"),
        r"licenses\.allow: expected a list of strings",
    ),
    (
        "license-allow-and-deny",
        _set("licenses.deny", ["permissive"]),
        r"licenses: classes both allowed and denied: permissive",
    ),
    (
        "consent-not-list",
        _set("consent.required", "personal"),
        r"consent\.required: expected a list of strings",
    ),
    (
        "source-deny-not-strings",
        _set("sources.deny", [1]),
        r"sources\.deny: expected a list of strings",
    ),
    (
        "pii-kind",
        _set("pii.detect", ["ssn"]),
        r"pii\.detect: expected kinds from email, phone, credit-card, got 'ssn'",
    ),
    (
        "pii-action",
        _set("pii.action", "drop"),
        r"pii\.action: expected 'reject' or 'mask', got 'drop'",
    ),
    (
        "optout-not-hex",
        _set("optout.digests", ["A" * 64]),
        r"optout\.digests\[0\]: expected 64 lowercase hex",
    ),
    (
        "optout-short",
        _set("optout.digests", ["a" * 63]),
        r"optout\.digests\[0\]: expected 64 lowercase hex",
    ),
    (
        "duplicates-action",
        _set("duplicates.action", "keep"),
        r"duplicates\.action: expected 'reject' or 'allow'",
    ),
    ("length-min-above-max", _set("length.min", 2000), r"length: min 2000 exceeds max 1000"),
    ("length-negative", _set("length.min", -1), r"length\.min: expected an integer >= 0, got -1"),
    ("length-float", _set("length.max", 10.5), r"length\.max: expected an integer >= 0, got 10\.5"),
    ("length-bool", _set("length.max", True), r"length\.max: expected an integer >= 0, got True"),
    # regression: integers past 2^53 passed here and failed later in digest()
    (
        "length-past-2^53",
        _set("length.max", 2**53),
        r"length\.max: expected an integer below 2\^53, got 9007199254740992",
    ),
    # regression: math.isfinite() raised OverflowError on integers past the float range
    (
        "length-10^400",
        _set("length.max", 10**400),
        r"length\.max: expected an integer below 2\^53, got 1000",
    ),
    (
        "loss-drop-10^400",
        _set("memorization.loss_drop_max", 10**400),
        r"loss_drop_max: expected a number below 2\^53",
    ),
    (
        "exposure-float-2^53",
        _set("memorization.exposure_max", 2.0**53),
        r"exposure_max: expected a number below 2\^53, got 9007199254740992\.0",
    ),
    (
        "profiles-missing",
        _drop("profiles"),
        r"profiles: expected at least one \[profiles\.NAME\] table",
    ),
    ("profiles-empty", _set("profiles", {}), r"profiles: expected at least one"),
    (
        "profile-no-patterns",
        _set("profiles.deep.patterns", []),
        r"profiles\.deep\.patterns: expected at least one",
    ),
    (
        "profile-patterns-missing",
        _drop("profiles.deep.patterns"),
        r"profiles\.deep\.patterns: expected at least one pattern or layer range",
    ),
    (
        "profile-not-table",
        _set("profiles.deep", "h.*"),
        r"profiles\.deep: expected a table, got str",
    ),
    ("assign-missing", _drop("assign"), r"assign: expected an array of \[\[assign\]\] tables"),
    (
        "assign-empty",
        _set("assign", []),
        r"assign: expected at least one assignment rule, got none",
    ),
    (
        "assign-unknown-profile",
        _set("assign", [{"profile": "nope"}]),
        r"assign\[0\]\.profile: unknown profile 'nope'",
    ),
    (
        "assign-bad-when-key",
        _set("assign", [{"when": {"size": "big"}, "profile": "deep"}]),
        r"assign\[0\]\.when: expected string values for keys among",
    ),
    (
        "assign-when-not-str",
        _set("assign", [{"when": {"source": 1}, "profile": "deep"}]),
        r"assign\[0\]\.when",
    ),
    (
        "assign-profile-not-str",
        _set("assign", [{"profile": 1}]),
        r"assign\[0\]\.profile: expected a profile name",
    ),
    (
        "assign-unknown-key",
        _set("assign", [{"profile": "deep", "if": {}}]),
        r"assign\[0\]: unknown key\(s\) if",
    ),
    (
        "memorization-action",
        _set("memorization.action", "warn"),
        r"memorization\.action: expected one of flag, quarantine, halt, got 'warn'",
    ),
    (
        "quantile-one",
        _set("memorization.reference_quantile", 1.0),
        r"reference_quantile: expected a value below 1",
    ),
    (
        "loss-drop-negative",
        _set("memorization.loss_drop_max", -0.5),
        r"loss_drop_max: expected a number >= 0",
    ),
    (
        "loss-drop-string",
        _set("memorization.loss_drop_max", "2"),
        r"loss_drop_max: expected a number >= 0, got '2'",
    ),
    # regression: NaN compares false with 0 and slipped through, then broke digest()
    (
        "loss-drop-nan",
        _set("memorization.loss_drop_max", float("nan")),
        r"loss_drop_max: expected a number >= 0, got nan",
    ),
    (
        "exposure-inf",
        _set("memorization.exposure_max", float("inf")),
        r"exposure_max: expected a number >= 0, got inf",
    ),
    (
        "holdout-float",
        _set("memorization.holdout", 1.5),
        r"memorization\.holdout: expected an integer",
    ),
    (
        "canary-template-no-secret",
        _set("canaries.template", "no slot"),
        r"canaries\.template: expected a string with one",
    ),
    (
        "canary-template-two-secrets",
        _set("canaries.template", "{secret}{secret}"),
        r"canaries\.template",
    ),
    (
        "canary-repeats-zero",
        _set("canaries.repeats", 0),
        r"canaries\.repeats: expected an integer >= 1, got 0",
    ),
    (
        "canary-digits-19",
        _set("canaries.digits", 19),
        r"canaries\.digits: expected at most 18, got 19",
    ),
    (
        "canary-candidates-zero",
        _set("canaries.candidates", 0),
        r"canaries\.candidates: expected an integer >= 1",
    ),
    (
        "canary-count-bool",
        _set("canaries.count", True),
        r"canaries\.count: expected an integer >= 0, got True",
    ),
    (
        "canary-unknown-profile",
        _set("canaries.profile", "nope"),
        r"canaries\.profile: unknown profile 'nope'",
    ),
    # v0.2: license identifiers are SPDX (spec/policy.md §3.2.1)
    (
        "license-homoglyph-hyphen",
        _cls("MPL\u20102.0", "permissive"),
        r"licenses\.classes\.MPL.2\.0: expected printable ASCII, got U\+2010 at 3",
    ),
    (
        "license-unknown-id",
        _cls("Apache-2", "permissive"),
        r"licenses\.classes\.Apache-2: expected an SPDX License List 3\.27 license identifier "
        r"or LicenseRef-, got 'Apache-2'",
    ),
    (
        "license-scancode-alias-is-not-spdx",
        _cls("GPL 2.0+", "copyleft"),
        r"licenses\.classes\.GPL 2\.0\+: expected",
    ),
    (
        "license-expression-as-key",
        _cls("MIT OR ISC", "permissive"),
        r"licenses\.classes\.MIT OR ISC: expected one license \(no AND/OR\)",
    ),
    (
        "license-documentref",
        _cls("DocumentRef-x:LicenseRef-y", "permissive"),
        r"got 'DocumentRef-x:LicenseRef-y'",
    ),
    (
        "license-plus-on-unlisted-id",
        _cls("MIT+", "permissive"),
        r"got 'MIT\+'",
    ),
    (
        "license-same-id-two-casings",
        _cls("mit", "copyleft"),
        r"licenses\.classes\.(mit|MIT): expected each license once",
    ),
    (
        "license-class-empty",
        _cls("ISC", ""),
        r"licenses\.classes: expected a table of SPDX id -> class name",
    ),
    (
        "license-allow-duplicate",
        _set("licenses.allow", ["permissive", "permissive"]),
        r"licenses\.allow: expected distinct classes",
    ),
    (
        "assign-license-not-spdx",
        _set("assign", [{"when": {"license": "Apache 2"}, "profile": "deep"}]),
        r"assign\[0\]\.when\.license: expected",
    ),
    # v0.2: glob patterns follow spec/policy.md §3.12, not fnmatch
    (
        "glob-unclosed-bracket-source",
        _set("sources.allow", ["github.com/[abc"]),
        r"sources\.allow: pattern 'github\.com/\[abc': '\[' at 15 is never closed",
    ),
    (
        "glob-reversed-range-profile",
        _set("profiles.deep.patterns", ["h.[9-0].*"]),
        r"profiles\.deep\.patterns: pattern 'h\.\[9-0\]\.\*': range 9-0 is reversed",
    ),
    (
        "glob-bad-exclude",
        _set("profiles.deep.exclude", ["["]),
        r"profiles\.deep\.exclude: pattern '\[': '\[' at 1 is never closed",
    ),
    (
        "glob-bad-assign-source",
        _set("assign", [{"when": {"source": "[!"}, "profile": "deep"}]),
        r"assign\[0\]\.when\.source: pattern '\[!'",
    ),
    # TOML values outside the policy's types (spec/policy.md §1): a date is never a string
    (
        "toml-date-as-name",
        _set("name", __import__("datetime").date(1979, 5, 27)),
        r"name: expected a non-empty string",
    ),
    (
        "toml-datetime-in-list",
        _set("consent.required", [__import__("datetime").datetime(1979, 5, 27)]),
        r"consent\.required: expected a list of strings",
    ),
]


@pytest.mark.parametrize(
    "mutate,match", [c[1:] for c in POLICY_BAD], ids=[c[0] for c in POLICY_BAD]
)
def test_policy_error_paths(mutate, match):
    doc = mutate(tomllib.loads(FULL.decode()))
    with pytest.raises(PolicyError, match=match) as e:
        Policy.from_dict(doc)
    assert "\n" not in str(e.value)


CANARY_PROFILE_NOT_STR = [("int", 1), ("list", ["deep"]), ("bool", False), ("table", {})]


@pytest.mark.parametrize(
    "value", [c[1] for c in CANARY_PROFILE_NOT_STR], ids=[c[0] for c in CANARY_PROFILE_NOT_STR]
)
@pytest.mark.parametrize("count", [0, 1])
def test_canary_profile_not_a_string_is_refused(value, count):
    # regression: a non-string profile was silently turned into "" (then "unknown profile ''")
    doc = _set("canaries.profile", value)(
        _set("canaries.count", count)(tomllib.loads(FULL.decode()))
    )
    kind = type(value).__name__
    with pytest.raises(
        PolicyError, match=rf"^policy: canaries\.profile: expected a profile name, got {kind}$"
    ):
        Policy.from_dict(doc)


def test_from_toml_names_the_file_once(tmp_path):
    path = tmp_path / "p.toml"
    path.write_bytes(MINIMAL.replace(b'name = "m"', b'name = "m"\nnmae = "x"'))
    with pytest.raises(PolicyError, match=r"^p\.toml: unknown key\(s\) nmae$"):
        load_policy(path)


def test_canary_profile_unchecked_without_canaries():
    doc = _set("canaries.profile", "nope")(_set("canaries.count", 0)(tomllib.loads(FULL.decode())))
    assert Policy.from_dict(doc).canaries.profile == "nope"


TOML_BAD = [
    ("invalid-toml", b"name = ", r"^policy: expected TOML, got"),
    ("invalid-utf8", b'name = "\xff"', r"^policy: expected UTF-8 TOML, got an invalid byte at 8"),
    ("duplicate-key", b'name = "again"\n' + MINIMAL, r"^policy: expected TOML"),
    (
        "unknown-key-prefixed",
        MINIMAL.replace(b'name = "m"', b'name = "m"\nnmae = "x"'),
        # regression: the document was named twice ("policy: policy: unknown key(s)")
        r"^policy: unknown key\(s\) nmae$",
    ),
    (
        "nested-error-prefixed-once",
        MINIMAL.replace(b'name = "m"', b'name = "m"\n[retention]\ndays = 3'),
        r"^policy: unknown key\(s\) retention$",
    ),
    (
        "datetime-name",
        MINIMAL.replace(b'name = "m"', b"name = 2024-01-01"),
        r"^policy: name: expected a non-empty",
    ),
]


@pytest.mark.parametrize("data,match", [c[1:] for c in TOML_BAD], ids=[c[0] for c in TOML_BAD])
def test_from_toml_errors(data, match):
    with pytest.raises(PolicyError, match=match):
        Policy.from_toml(data)


def test_deeply_nested_toml_is_policy_error():
    data = b"name = " + b"[" * 5000 + b"]" * 5000 + b"\n"
    with pytest.raises(PolicyError, match=r"^policy: expected TOML"):
        Policy.from_toml(data)


def test_load_policy(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_bytes(FULL)
    policy, data = load_policy(path)
    assert data == FULL
    assert policy == Policy.from_toml(FULL)


def test_load_policy_errors(tmp_path):
    with pytest.raises(UsageError, match="policy.toml: policy file not found"):
        load_policy(tmp_path / "policy.toml")
    path = tmp_path / "big.toml"
    path.write_bytes(MINIMAL)
    with pytest.raises(PolicyError, match="big.toml: larger than 10 bytes"):
        load_policy(path, limits=Limits(policy_max=10))
    path.write_bytes(MINIMAL + b"[pii]\naction = 'x'\n")
    with pytest.raises(PolicyError, match=r"^big.toml: pii\.action"):
        load_policy(path)


PROFILE_MATCH = [
    ("h.3.mlp.w", {"shallow", "deep"}),
    ("h.0.attn.w", set()),
    ("h.1.attn.w", {"deep"}),
    ("lm_head.weight", {"shallow"}),
    ("wte.weight", set()),
    ("H.3.mlp.w", set()),  # case-sensitive
]


@pytest.mark.parametrize("param,profiles", PROFILE_MATCH, ids=[c[0] for c in PROFILE_MATCH])
def test_profile_matching(full, param, profiles):
    assert {n for n, p in full.profiles.items() if p.matches(param)} == profiles


def test_resolve_profiles(full):
    names = ["lm_head.weight", "h.0.attn.w", "h.3.mlp.w", "h.1.attn.w", "wte.weight"]
    assert full.resolve_profiles(names) == {
        "deep": ("h.1.attn.w", "h.3.mlp.w"),
        "shallow": ("h.3.mlp.w", "lm_head.weight"),
    }


def test_policy_is_frozen_and_validates_on_replace(full):
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.name = "x"  # type: ignore[misc]
    with pytest.raises(PolicyError, match="length: min 9 exceeds max 3"):
        dataclasses.replace(full, length_min=9, length_max=3)


# ------------------------------------------------------------------ fuzz: one field replaced


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_field_replaced_raises_only_policy_error(data):
    d = tomllib.loads(FULL.decode())
    path = data.draw(st.sampled_from(list(fuzz.paths(d))))
    mutated = fuzz.replace(d, path, data.draw(fuzz.junk))
    try:
        policy = Policy.from_dict(mutated)
    except PolicyError as e:
        assert "\n" not in str(e)
        return
    # whatever is accepted can be digested and round-trips
    assert Policy.from_dict(policy.to_dict()).digest() == policy.digest()


# --------------------------------------------------------------------------- v0.2 normal form

SET_PERMUTATIONS = [
    ("license-deny", "licenses.deny", ["proprietary", "copyleft"]),
    ("consent", "consent.required", ["personal", "chat", "personal"]),
    ("source-allow", "sources.allow", ["hf.co/*", "github.com/*"]),
    ("source-deny", "sources.deny", ["x/*", "github.com/evil/*", "x/*"]),
    ("pii-detect", "pii.detect", ["phone", "email", "credit-card", "email"]),
    ("profile-patterns", "profiles.shallow.patterns", ["lm_head.*", "h.3.*"]),
    ("profile-exclude", "profiles.deep.exclude", ["h.1.*", "h.0.*"]),
]


@pytest.mark.parametrize(
    "path,value", [c[1:] for c in SET_PERMUTATIONS], ids=[c[0] for c in SET_PERMUTATIONS]
)
def test_lists_that_are_sets_are_sorted_and_deduplicated(path, value):
    """spec/policy.md §2: order and repeats in a set-valued list do not change the digest."""
    a = Policy.from_dict(_set(path, value)(tomllib.loads(FULL.decode())))
    b = Policy.from_dict(_set(path, sorted(set(value)))(tomllib.loads(FULL.decode())))
    assert a == b and a.digest() == b.digest()
    node = a.to_dict()
    for part in path.split("."):
        node = node[part]
    assert node == sorted(set(value))


def test_ordered_lists_keep_their_order(full):
    """licenses.allow (a preference order) and assign (first match) are not sets."""
    doc = tomllib.loads(FULL.decode())
    doc["licenses"]["classes"]["ISC"] = "weak"
    one = Policy.from_dict(_set("licenses.allow", ["permissive", "weak"])(copy.deepcopy(doc)))
    two = Policy.from_dict(_set("licenses.allow", ["weak", "permissive"])(copy.deepcopy(doc)))
    assert one.digest() != two.digest()
    assert one.to_dict()["licenses"]["allow"] == ["permissive", "weak"]


LICENSE_KEYS = [
    ("lowercase-id", "mit", "MIT"),
    ("mixed-case-id", "aPaChE-2.0", "Apache-2.0"),
    ("with-exception", "apache-2.0 with llvm-exception", "Apache-2.0 WITH LLVM-exception"),
    ("licenseref-prefix", "licenseref-acme-1.0", "LicenseRef-acme-1.0"),
    ("deprecated-id-kept", "GPL-2.0+", "GPL-2.0+"),
    ("scancode-alias-not-applied", "LicenseRef-MIT-Discord", "LicenseRef-MIT-Discord"),
]


@pytest.mark.parametrize(
    "key,canonical", [c[1:] for c in LICENSE_KEYS], ids=[c[0] for c in LICENSE_KEYS]
)
def test_license_keys_are_canonicalised(key, canonical):
    doc = tomllib.loads(MINIMAL.decode())
    doc["licenses"] = {"classes": {key: "permissive"}, "allow": ["permissive"]}
    p = Policy.from_dict(doc)
    assert list(p.license_classes) == [canonical]
    assert p.to_dict()["licenses"]["classes"] == {canonical: "permissive"}
    assert p.license_class(key.upper()) == "permissive"  # matching is case-insensitive


def test_policy_constructor_refuses_non_canonical_license_key(full):
    with pytest.raises(PolicyError, match=r"licenses\.classes: expected 'MIT', got 'mit'"):
        dataclasses.replace(full, license_classes={"mit": "permissive"})


def test_assign_license_condition_is_canonicalised():
    doc = tomllib.loads(FULL.decode())
    doc["assign"] = [{"when": {"license": "apache-2.0"}, "profile": "deep"}]
    p = Policy.from_dict(doc)
    assert p.assign[0].when == {"license": "Apache-2.0"}

"""SPDX license expressions (spec/policy.md §3.2.1): parsing, validation, the license used."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from attest.spdx import (
    EXPRESSION_MAX,
    Compound,
    License,
    LicenseError,
    decide_license,
    parse,
    parse_simple,
)

VALID = [
    ("id", "MIT", "MIT"),
    ("id-lowercase", "mit", "MIT"),
    ("operators-lowercase", "mit or apache-2.0", "MIT OR Apache-2.0"),
    ("with", "Apache-2.0 WITH LLVM-exception", "Apache-2.0 WITH LLVM-exception"),
    ("with-lowercase-exception", "GPL-2.0-only with classpath-exception-2.0",
     "GPL-2.0-only WITH Classpath-exception-2.0"),
    ("licenseref", "LicenseRef-acme.internal-2", "LicenseRef-acme.internal-2"),
    ("licenseref-prefix-case", "LICENSEREF-x", "LicenseRef-x"),
    ("deprecated-id", "GPL-2.0+", "GPL-2.0+"),
    ("precedence-and-over-or", "MIT OR ISC AND 0BSD", "MIT OR (ISC AND 0BSD)"),
    ("parentheses", "(MIT OR ISC) AND 0BSD", "(MIT OR ISC) AND 0BSD"),
    ("redundant-parentheses", "((MIT))", "MIT"),
    ("outer-spaces", "  MIT  ", "MIT"),
    ("operators-mixed-case", "MIT aNd ISC", "MIT AND ISC"),
    ("parentheses-need-no-spaces", "(MIT)AND(ISC)", "MIT AND ISC"),
    ("real-metadata", "Apache-2.0 AND Apache-2.0 WITH LLVM-exception AND BSD-2-Clause",
     "Apache-2.0 AND Apache-2.0 WITH LLVM-exception AND BSD-2-Clause"),
]  # fmt: skip


@pytest.mark.parametrize("text,rendered", [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_parse_valid(text, rendered):
    assert str(parse(text)) == rendered


INVALID = [
    ("empty", "", r"got an empty string"),
    ("blank", "   ", r"got an empty string"),
    ("homoglyph-hyphen", "MPL\u20102.0", r"expected printable ASCII, got U\+2010 at 3"),
    ("fullwidth-letters", "\uff2d\uff29\uff34", r"expected printable ASCII, got U\+FF2D at 0"),
    ("cyrillic-letter", "\u041cIT", r"got U\+041C"),
    ("nbsp-between-tokens", "MIT\u00a0OR ISC", r"got U\+00A0"),
    ("tab", "MIT\tOR ISC", r"got U\+0009"),
    ("zero-width-space", "MIT\u200b", r"got U\+200B"),
    ("unknown-id", "Apache-2", r"3\.27 license identifier or LicenseRef-, got 'Apache-2'"),
    ("free-text", "Apache 2.0", r"got 'Apache 2\.0'|expected an SPDX license expression"),
    ("plus-on-unlisted-id", "MIT+", r"got 'MIT\+'"),
    ("documentref", "DocumentRef-a:LicenseRef-b", r"got 'DocumentRef-a:LicenseRef-b'"),
    ("empty-licenseref", "LicenseRef-", r"got 'LicenseRef-'"),
    ("licenseref-underscore", "LicenseRef-a_b", r"got 'LicenseRef-a_b'"),
    ("exception-alone", "LLVM-exception", r"expected an SPDX license expression"),
    ("license-as-exception", "MIT WITH MIT", r"expected an SPDX license expression"),
    ("unknown-exception", "MIT WITH LicenseRef-x", r"expected an SPDX license expression"),
    ("dangling-operator", "MIT OR", r"expected an SPDX license expression"),
    ("unbalanced", "(MIT", r"expected an SPDX license expression"),
    ("slash", "MIT/Apache-2.0", r"expected an SPDX license expression"),
    ("two-ids", "MIT Apache-2.0", r"expected an SPDX license expression"),
    ("parenthesised-exception", "MIT WITH(LLVM-exception)", r"expected an SPDX license expression"),
    ("empty-parentheses", "()", r"expected an SPDX license expression"),
    ("too-long", "MIT OR " * (EXPRESSION_MAX // 7) + "MIT", r"expected at most 1024 characters"),
]  # fmt: skip


@pytest.mark.parametrize("text,match", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_parse_invalid(text, match):
    with pytest.raises(LicenseError, match=match) as e:
        parse(text)
    assert "\n" not in str(e.value)


def test_parse_simple_refuses_compounds():
    assert parse_simple("apache-2.0 WITH llvm-exception") == License("Apache-2.0", "LLVM-exception")
    with pytest.raises(LicenseError, match=r"expected one license \(no AND/OR\)"):
        parse_simple("MIT AND ISC")


def test_parse_keeps_written_order_and_nesting():
    node = parse("ISC OR (MIT AND 0BSD)")
    assert node == Compound(
        "OR", (License("ISC"), Compound("AND", (License("MIT"), License("0BSD"))))
    )


def test_parse_random_token_soup_raises_only_license_error():
    """The library raises IndexError/AssertionError on some inputs: all must be LicenseError."""
    rng = random.Random(7)
    tokens = ["MIT", "ISC", "LLVM-exception", "AND", "OR", "WITH", "(", ")", "and", "x", "+", ":"]
    outcomes = {"valid": 0, "refused": 0}
    for _ in range(3000):
        text = " ".join(rng.choice(tokens) for _ in range(rng.randint(1, 7)))
        try:
            parse(text)
            outcomes["valid"] += 1
        except LicenseError:  # anything else escaping fails the test
            outcomes["refused"] += 1
    assert outcomes["valid"] > 50 and outcomes["refused"] > 50


# Rank: lower is more permissive (Policy.license_rank gives the real one).
RANK = {"0BSD": 0, "MIT": 1, "MPL-2.0": 2, "GPL-3.0-only": 3}


def rank(lic: License) -> int:
    return RANK.get(lic.id, 9)


DECIDED = [
    ("single", "MIT", "MIT"),
    ("or-takes-most-permissive", "GPL-3.0-only OR MIT", "MIT"),
    ("and-takes-most-restrictive", "MIT AND MPL-2.0", "MPL-2.0"),
    ("nested", "(GPL-3.0-only OR MIT) AND MPL-2.0", "MPL-2.0"),
    ("nested-or", "GPL-3.0-only OR (MIT AND 0BSD)", "MIT"),
    ("or-unknown-loses", "LicenseRef-x OR GPL-3.0-only", "GPL-3.0-only"),
    ("and-unknown-wins", "LicenseRef-x AND MIT", "LicenseRef-x"),
    ("tie-first-written", "LicenseRef-b AND LicenseRef-a", "LicenseRef-b"),
    ("with-kept-on-leaf", "MIT WITH LLVM-exception OR GPL-3.0-only", "MIT WITH LLVM-exception"),
]


@pytest.mark.parametrize("text,used", [c[1:] for c in DECIDED], ids=[c[0] for c in DECIDED])
def test_decide_license(text, used):
    assert str(decide_license(parse(text), rank)) == used


def test_bundled_spdx_list_is_the_one_the_spec_names():
    from attest.spdx import LIST_VERSION, bundled_list_version

    assert bundled_list_version() == LIST_VERSION == "3.27"
    spec = (Path(__file__).parents[2] / "spec" / "policy.md").read_text()
    assert f"SPDX License List {LIST_VERSION}" in spec

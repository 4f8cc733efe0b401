"""Glob patterns (spec/policy.md §3.12): the one matcher of sources, assign and profiles."""

from __future__ import annotations

import fnmatch

import pytest

from attest.glob import PatternError, glob_match

# (id, pattern, name, matches)
MATCHES = [
    ("star-any", "*", "", True),
    ("star-crosses-dots-and-slashes", "h.*", "h.3.mlp/w", True),
    ("literal", "lm_head.weight", "lm_head.weight", True),
    ("whole-string", "h.3", "h.3.mlp", False),
    ("case-sensitive", "H.*", "h.3", False),
    ("question-one", "h.?.w", "h.3.w", True),
    ("question-not-zero", "h.?.w", "h..w", False),
    ("question-one-code-point", "?", "\u00e9", True),
    ("set", "h.[0-3].w", "h.2.w", True),
    ("set-miss", "h.[0-3].w", "h.4.w", False),
    ("negated-set", "h.[!0-3].w", "h.4.w", True),
    ("bracket-first-is-literal", "[]]", "]", True),
    ("negated-bracket-first", "[!]]", "a", True),
    ("dash-last-is-literal", "[a-]", "-", True),
    ("dash-first-is-literal", "[-a]", "-", True),
    ("literal-star-in-set", "a[*]", "a*", True),
    ("literal-star-in-set-no-wildcard", "a[*]", "ab", False),
    ("regex-meta-is-literal", "a.b", "axb", False),
    ("caret-literal-in-set", "[^]", "^", True),
    ("backslash-is-literal", "a\\*", "a\\xyz", True),
    ("newline-matched-by-star", "a*b", "a\nb", True),
]


@pytest.mark.parametrize("pattern,name,ok", [c[1:] for c in MATCHES], ids=[c[0] for c in MATCHES])
def test_glob_match(pattern, name, ok):
    assert glob_match(name, pattern) is ok


def test_agrees_with_fnmatchcase_on_well_formed_patterns():
    """v0.1 used fnmatch.fnmatchcase; every well-formed pattern keeps its meaning."""
    for _, pattern, name, ok in MATCHES:
        assert fnmatch.fnmatchcase(name, pattern) is ok, pattern


BAD = [
    ("unclosed", "a[bc", r"'\[' at 4 is never closed"),
    ("unclosed-negated", "[!", r"never closed"),
    ("only-bracket", "[", r"never closed"),
    ("empty-set-is-unclosed", "[]", r"never closed"),
    ("reversed-range", "[z-a]", r"range z-a is reversed"),
]


@pytest.mark.parametrize("pattern,match", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_malformed_patterns_are_errors(pattern, match):
    with pytest.raises(PatternError, match=match):
        glob_match("x", pattern)

"""The exception tree and the one-line message rule."""

from __future__ import annotations

import pytest

from attest.errors import (
    AdmissionError,
    FormatError,
    GovtuneError,
    PolicyError,
    UsageError,
    VerificationError,
)
from attest.policy import Policy


def test_hierarchy():
    assert issubclass(PolicyError, FormatError)
    for cls in (FormatError, VerificationError, AdmissionError, UsageError):
        assert issubclass(cls, GovtuneError)
    assert not issubclass(VerificationError, FormatError)
    assert not issubclass(UsageError, FormatError)


def test_verification_error_carries_code():
    e = VerificationError("GT-CHAIN-GAP", "step 4: expected prev of step 3")
    assert e.code == "GT-CHAIN-GAP"
    assert e.message == "step 4: expected prev of step 3"
    assert str(e) == "GT-CHAIN-GAP: step 4: expected prev of step 3"


ONE_LINE = [
    ("newline", "a\nb", "a\\nb"),
    ("carriage-return", "a\rb", "a\\rb"),
    ("ansi-escape", "name \x1b[31mred", "name \\x1b[31mred"),
    ("line-separator", "a\u2028b", "a\\u2028b"),
    ("rtl-override", "a\u202eb", "a\\u202eb"),
    ("printable-unicode-kept", "tensor 'é.w' ✓", "tensor 'é.w' ✓"),
]


@pytest.mark.parametrize("raw,shown", [c[1:] for c in ONE_LINE], ids=[c[0] for c in ONE_LINE])
def test_messages_are_one_line(raw, shown):
    assert str(FormatError(raw)) == shown
    assert str(UsageError(raw)) == shown
    v = VerificationError("GT-X", raw)
    assert str(v) == f"GT-X: {shown}" and v.message == shown


def test_untrusted_toml_key_cannot_forge_a_line():
    """Attack: an unknown policy key with a newline that fakes an OK line in the output."""
    toml = b'name = "m"\n"x\\nOK: policy accepted" = 1\n'
    with pytest.raises(PolicyError) as e:
        Policy.from_toml(toml)
    assert "\n" not in str(e.value)
    assert "x\\nOK: policy accepted" in str(e.value)

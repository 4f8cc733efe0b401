"""Salted example commitments and their openings."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from attest.commitment import Opening, commit, derive_salt, new_run_secret
from attest.errors import FormatError

SECRET = bytes(range(32))


def test_derive_salt_golden():
    salt = derive_salt(SECRET, 5)
    assert salt.hex() == "6a99e7e46b1ce08c6988a6dda8568b46cd2d51fb9983b1591c38e1d8a23d7e4a"
    assert (
        salt
        == hmac.new(SECRET, b"govtune.salt.v1" + (5).to_bytes(8, "big"), hashlib.sha256).digest()
    )


def test_commit_golden():
    salt = derive_salt(SECRET, 5)
    assert (
        commit(salt, "hello").hex()
        == "4cc97369541bb9ff23775e6d29c2725b7d4217b0cf6d5f4b4861d04c941626bf"
    )
    assert (
        commit(salt, "hello")
        == hashlib.sha256(b"govtune.example.v1\x00" + salt + b'"hello"').digest()
    )
    # the content is the canonical JSON string: raw UTF-8, minimal escapes
    assert (
        commit(salt, "é").hex()
        == "2011992490a2c6fbc90b2458a3806aff78284fada4744fe728cbe97ed687a8dd"
    )
    assert (
        commit(salt, 'a"\n')
        == hashlib.sha256(b"govtune.example.v1\x00" + salt + b'"a\\"\\n"').digest()
    )


def test_determinism_and_separation():
    assert derive_salt(SECRET, 0) == derive_salt(SECRET, 0)
    salts = {derive_salt(SECRET, i) for i in range(50)}
    assert len(salts) == 50
    assert derive_salt(bytes(32), 0) != derive_salt(SECRET, 0)
    assert derive_salt(SECRET, 2**64 - 1) != derive_salt(SECRET, 0)
    s = derive_salt(SECRET, 1)
    assert commit(s, "a") == commit(s, "a") != commit(s, "b")
    assert commit(s, "a") != commit(derive_salt(SECRET, 2), "a")


def test_new_run_secret():
    a, b = new_run_secret(), new_run_secret()
    assert len(a) == len(b) == 32 and a != b


def test_opening_round_trip_and_opens():
    salt = derive_salt(SECRET, 7)
    c = commit(salt, "text as trained on")
    op = Opening(7, salt)
    assert op.to_dict() == {"index": 7, "salt": salt.hex()}
    assert Opening.from_dict(op.to_dict()) == op
    assert op.opens(c, "text as trained on")


def test_wrong_salt_or_content_does_not_open():
    """Attack: claim a commitment opens to another text, or with another example's salt."""
    salt = derive_salt(SECRET, 7)
    c = commit(salt, "secret text")
    assert not Opening(7, derive_salt(SECRET, 8)).opens(c, "secret text")
    assert not Opening(7, salt).opens(c, "secret text ")
    assert not Opening(7, salt).opens(c, "Secret text")


BAD = [
    ("secret-short", lambda: derive_salt(b"x" * 31, 0), r"run secret: expected 32 bytes"),
    ("secret-str", lambda: derive_salt("x" * 32, 0), r"run secret: expected 32 bytes"),
    # regression: negative or too large indices raised struct.error
    (
        "index-negative",
        lambda: derive_salt(SECRET, -1),
        r"salt index: expected an integer in \[0, 2\^64\), got -1",
    ),
    (
        "index-2^64",
        lambda: derive_salt(SECRET, 2**64),
        r"salt index: expected an integer in \[0, 2\^64\)",
    ),
    ("index-bool", lambda: derive_salt(SECRET, True), r"salt index: expected an integer"),
    ("salt-short", lambda: commit(b"x" * 16, "a"), r"salt: expected 32 bytes, got 16"),
    ("content-bytes", lambda: commit(bytes(32), b"a"), r"expected a JSON value, got bytes"),
    (
        "opening-not-object",
        lambda: Opening.from_dict([1]),
        r"opening: expected an object with integer index",
    ),
    (
        "opening-str-index",
        lambda: Opening.from_dict({"index": "1", "salt": "00" * 32}),
        r"integer index",
    ),
    (
        # regression: True was accepted as index 1 (bool is an int in Python)
        "opening-bool-index",
        lambda: Opening.from_dict({"index": True, "salt": "00" * 32}, "openings.jsonl:2"),
        r"^openings\.jsonl:2\.index: expected a non-negative integer, got True$",
    ),
    (
        "opening-negative-index",
        lambda: Opening.from_dict({"index": -1, "salt": "00" * 32}),
        r"^opening\.index: expected a non-negative integer, got -1$",
    ),
    (
        "opening-constructor-bool",
        lambda: Opening(False, bytes(32)),
        r"^opening\.index: expected a non-negative integer, got False$",
    ),
    (
        "opening-bad-hex",
        lambda: Opening.from_dict({"index": 1, "salt": "zz"}, "openings[3]"),
        r"openings\[3\]\.salt: expected 64 hex digits",
    ),
    (
        "opening-salt-int",
        lambda: Opening.from_dict({"index": 1, "salt": 5}),
        r"opening\.salt: expected 64 hex",
    ),
    (
        "opening-short-salt",
        lambda: Opening.from_dict({"index": 1, "salt": "00" * 31}),
        r"opening\.salt: expected 32 bytes, got 31",
    ),
]


@pytest.mark.parametrize("make,match", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_errors(make, match):
    with pytest.raises(FormatError, match=match):
        make()

"""PII detection (spec/policy.md §4.2): normalisation, the three detectors, overlaps."""

from __future__ import annotations

import pytest

from attest.pii import confusables, find_pii, luhn_ok, mask_pii, nfkc, normalise

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
    # Luhn over the digit values (v0.1 read fullwidth/Arabic-Indic digits as not digits;
    # v0.2 maps every decimal digit to ASCII first): these two are Luhn-invalid
    ("card-fullwidth-digits-luhn-invalid", "pay \uff14" + "\uff11" * 14 + "\uff12", []),
    ("card-arabic-indic-digits-luhn-invalid", "pay \u0664" + "\u0661" * 14 + "\u0667", []),
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


# Normalisation edges (§4.2 steps 1-5): each hides PII from an ASCII-only detector.
ARABIC_CARD = "".join(chr(0x0660 + int(c)) for c in "4111111111111111")
FULLWIDTH_CARD = "".join(chr(0xFF10 + int(c)) for c in "4111111111111111")
NORMALISED = [
    ("fullwidth-digits-card", f"pay {FULLWIDTH_CARD}", [("credit-card", "4111111111111111")]),
    ("arabic-indic-digits-card", f"pay {ARABIC_CARD} now", [("credit-card", ARABIC_CARD)]),
    (
        "devanagari-digits-phone",
        "call " + "".join(chr(0x0966 + int(c)) if c.isdigit() else c for c in "415-555-2671"),
        [("phone", "".join(chr(0x0966 + int(c)) if c.isdigit() else c for c in "415-555-2671"))],
    ),
    (
        "nbsp-separated-card",
        "4111\u00a01111\u00a01111\u00a01111",
        [("credit-card", "4111 1111 1111 1111")],
    ),
    ("narrow-nbsp-phone", "tel 415\u202f555\u202f2671", [("phone", "415 555 2671")]),
    (
        "ogham-space-card",
        "4111\u16801111\u16801111\u16801111",
        [("credit-card", "4111\u16801111\u16801111\u16801111")],
    ),
    (
        "en-dash-card",
        "4111\u20131111\u20131111\u20131111",
        [("credit-card", "4111\u20131111\u20131111\u20131111")],
    ),
    ("minus-sign-phone", "tel 415\u2212555\u22122671", [("phone", "415\u2212555\u22122671")]),
    (
        "zero-width-joiner-card",
        "4111\u200d1111\u200d1111\u200d1111",
        [("credit-card", "4111\u200d1111\u200d1111\u200d1111")],
    ),
    ("zero-width-space-in-email", "bob\u200b@example.com", [("email", "bob\u200b@example.com")]),
    ("soft-hyphen-in-card", "41111111\u00ad11111111", [("credit-card", "41111111\u00ad11111111")]),
    (
        "cyrillic-a-in-email",
        "write j\u0430ne@ex\u0430mple.com",
        [("email", "j\u0430ne@ex\u0430mple.com")],
    ),
    (
        "greek-omicron-in-email",
        "b\u03bfb@example.\u03bfrg",
        [("email", "b\u03bfb@example.\u03bfrg")],
    ),
    ("fullwidth-at-email", "bob\uff20example.com", [("email", "bob@example.com")]),
    (
        "all-cyrillic-lookalike-email",
        "\u0430\u0435@\u0435\u0445.\u0441\u043e",
        [("email", "\u0430\u0435@\u0435\u0445.\u0441\u043e")],
    ),
    # not PII after normalisation either
    ("cyrillic-word-no-at", "\u043f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440", []),
    ("arabic-digits-short", "\u0664\u0661\u0665", []),
    ("luhn-invalid-fullwidth-spaced", "\uff14\uff11\uff11\uff11 1111 1111 1112", []),
]


@pytest.mark.parametrize(
    "text,expected", [c[1:] for c in NORMALISED], ids=[c[0] for c in NORMALISED]
)
def test_find_pii_after_normalisation(text, expected):
    base = nfkc(text)
    assert [(m.kind, base[m.start : m.end]) for m in find_pii(text)] == expected


# The overlap rule (§4.2): one answer for every text where detectors disagree.
OVERLAPS = [
    # card [0,16) inside e-mail [0,28): the longer match at the same start wins
    (
        "card-as-email-local-part",
        "4111111111111111@example.com",
        None,
        [("email", "4111111111111111@example.com")],
    ),
    (
        "card-as-email-local-part-card-only",
        "4111111111111111@example.com",
        ["credit-card"],
        [("credit-card", "4111111111111111")],
    ),
    ("card-as-email-local-part-phone-only", "4111111111111111@example.com", ["phone"], []),
    # a phone inside an e-mail's local part yields to the e-mail
    ("phone-in-email", "4155552671@example.com", None, [("email", "4155552671@example.com")]),
    # a card followed by more digit groups: the longest Luhn-valid prefix of groups
    (
        "card-then-year",
        "x 4111 1111 1111 1111 2024",
        None,
        [("credit-card", "4111 1111 1111 1111")],
    ),
]


@pytest.mark.parametrize(
    "text,kinds,expected", [c[1:] for c in OVERLAPS], ids=[c[0] for c in OVERLAPS]
)
def test_overlap_rule(text, kinds, expected):
    found = find_pii(text) if kinds is None else find_pii(text, kinds)
    assert [(m.kind, text[m.start : m.end]) for m in found] == expected


def test_normalise_maps_offsets_back():
    view, where = normalise("a\u200bb\u0661\u00a0-")
    assert view == "ab1 -"
    assert where == [0, 2, 3, 4, 5]


def test_mask_works_on_the_nfkc_form():
    text = "mail b\u03bfb\uff20example.com now"
    assert mask_pii(text, find_pii(text)) == "mail [EMAIL] now"
    assert nfkc("\uff14\u00a0") == "4 "


def test_confusables_table_targets_are_single_ascii_characters():
    table = confusables()
    assert table["\u0430"] == "a" and table["\u03bf"] == "o"
    assert all(
        len(k) == 1 and ord(k) > 127 and len(v) == 1 and ord(v) < 128 for k, v in table.items()
    )
    assert "@" not in table.values()  # so find_pii skips e-mail detection without an '@'


def test_long_digit_text_is_linear_enough():
    import time

    text = "1 " * 5_000 + "4111111111111111" + "x" * 100_000
    t = time.perf_counter()
    assert [m.kind for m in find_pii(text)] == ["credit-card"]
    assert time.perf_counter() - t < 10  # seconds: a bound, not a benchmark


# --------------------------------------------------------------------------- naive oracle
# spec/policy.md §4.2 read literally: every (s, e), longest first at the leftmost s. The
# module enumerates only candidates the boundary rules allow; this checks that it loses none.

import random  # noqa: E402
import re  # noqa: E402
import unicodedata  # noqa: E402

from attest import pii  # noqa: E402

W = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def _is_d(v, i):
    return 0 <= i < len(v) and v[i].isascii() and v[i].isdigit()


def _word(c):
    return c == "_" or unicodedata.category(c)[0] in "LMN"


def _card_ok(v, s, e):
    return (
        pii.CARD.fullmatch(v[s:e]) is not None
        and not _is_d(v, s - 1)
        and not _is_d(v, e)
        and luhn_ok(re.sub("[^0-9]", "", v[s:e]))
    )


def _phone_ok(v, s, e):
    if pii.PHONE.fullmatch(v[s:e]) is None:
        return False
    if s and (v[s - 1] in W or v[s - 1] in "+.-"):
        return False
    if v[s] != "+" and s >= 2 and v[s - 1] == " " and _is_d(v, s - 2):
        return False
    if e < len(v):
        if v[e] in W or v[e] == "-":
            return False
        if e + 1 < len(v) and (
            (v[e] == "." and v[e + 1] in W) or (v[e] == " " and _is_d(v, e + 1))
        ):
            return False
    return 10 <= sum(c.isdigit() for c in v[s:e]) <= 15


def _email_ok(v, s, e):
    at = v.find("@", s, e)
    return (
        at > s
        and pii.EMAIL_LOCAL.fullmatch(v[s:at]) is not None
        and pii.EMAIL_DOMAIN.fullmatch(v[at:e]) is not None
        and e - at <= 256
        and not (s and (_word(v[s - 1]) or v[s - 1] in ".+-"))
        and not (e < len(v) and (_word(v[e]) or v[e] == "-"))
    )


def _naive(v, ok):
    out, s = [], 0
    while s < len(v):
        e = next((e for e in range(len(v), s, -1) if ok(v, s, e)), None)
        if e is None:
            s += 1
        else:
            out.append((s, e))
            s = e
    return out


ALPHABET = ["4", "1", "5", "0", "2", " ", "-", ".", "(", ")", "+", "@", "a", "x", "o",
            "\u0430", "\u0661", "\u00a0", "\u200d", "_"]  # fmt: skip


def test_matches_equal_the_naive_reading_of_the_spec():
    rng = random.Random(11)
    seeds = ["4111 1111 1111 1111", "+1 415 555 2671", "(415) 555-2671", "ab@cd.io", "x.y@a.b.co"]
    found = {"card": 0, "phone": 0, "email": 0}
    for _ in range(150):
        parts = [
            rng.choice(seeds) if rng.random() < 0.3 else rng.choice(ALPHABET) for _ in range(10)
        ]
        text = "".join(parts)
        v, _ = normalise(nfkc(text))
        e = pii.email_view(v)
        cards, phones, emails = _naive(v, _card_ok), _naive(v, _phone_ok), _naive(e, _email_ok)
        assert list(pii._cards(v, pii._Digits(v))) == cards, text
        assert list(pii._phones(v, pii._Digits(v))) == phones, text
        assert list(pii._emails(e)) == emails, text
        found["card"] += len(cards)
        found["phone"] += len(phones)
        found["email"] += len(emails)
    assert min(found.values()) > 5, found  # the oracle saw every detector fire

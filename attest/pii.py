"""PII detection for admission rules: e-mail addresses, phone numbers, payment cards.

Deliberately conservative regular expressions plus a Luhn check for card numbers
(ISO/IEC 7812-1 Annex B), so that version strings and hex digests in docstrings are
not mistaken for PII. Pure functions: trainer and verifier (`--data`) share them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

KINDS = ("email", "phone", "credit-card")

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}(?![\w-])"
)
# International (+CC ...) or North-American style numbers; 10-15 digits in all. Not part of
# a longer run of digit groups (a Luhn-invalid card number is not a phone number); a
# sentence-ending period may follow, a dotted continuation (a version string) may not.
# Card and phone patterns are ASCII-only (re.ASCII: \d is [0-9], \w is [A-Za-z0-9_]):
# Unicode \d also matches e.g. Arabic-Indic or fullwidth digits, which luhn_ok's
# ord(c) - 48 would misread as other values (spec/policy.md §4.2).
_PHONE = re.compile(
    r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?|(?<!\d ))(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}"
    r"(?![\w-]|\.\w)(?! \d)",
    re.ASCII,
)
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])", re.ASCII)


def luhn_ok(digits: str) -> bool:
    """Luhn check over ASCII digits ``0-9`` (the only digits _CARD matches)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class PiiMatch:
    kind: str
    start: int
    end: int


def find_pii(text: str, kinds: Iterable[str] = KINDS) -> list[PiiMatch]:
    """All PII matches of the requested kinds, in text order, non-overlapping."""
    wanted = set(kinds)
    found: list[PiiMatch] = []
    if "credit-card" in wanted:
        for m in _CARD.finditer(text):
            digits = re.sub(r"[ -]", "", m.group())
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                found.append(PiiMatch("credit-card", m.start(), m.end()))
    if "email" in wanted:
        found += [PiiMatch("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    if "phone" in wanted:
        for m in _PHONE.finditer(text):
            n = sum(c.isdigit() for c in m.group())
            if 10 <= n <= 15 and not any(p.start < m.end() and m.start() < p.end for p in found):
                found.append(PiiMatch("phone", m.start(), m.end()))
    found.sort(key=lambda p: (p.start, -p.end))
    out: list[PiiMatch] = []
    for p in found:
        if not out or p.start >= out[-1].end:
            out.append(p)
    return out


def mask_pii(text: str, matches: list[PiiMatch]) -> str:
    """Replace each match by ``[KIND]`` (e.g. ``[EMAIL]``)."""
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts += [text[pos : m.start], f"[{m.kind.upper()}]"]
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)

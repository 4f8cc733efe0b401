"""PII detection for admission rules: e-mail addresses, phone numbers, payment cards.

spec/policy.md §4.2 is the definition; this module follows it step by step:

1. the text is normalised (NFKC; format characters removed; every decimal digit, space
   separator and dash mapped to ASCII), so fullwidth or Arabic-Indic digits, NBSP
   separators and zero-width joiners cannot hide a number;
2. for e-mail only, characters confusable with ASCII (Cyrillic ``а``, Greek ``ο``...)
   are mapped to it, with the confusables table of `confusable-homoglyphs` (Unicode
   confusables.txt, UTS #39) restricted to single ASCII targets;
3. each detector is a pattern in a portable regex subset plus explicit boundary
   conditions, matched leftmost-longest (not by any engine's backtracking order);
4. overlaps are resolved by one rule (longest first among equal starts, phone last).

Conservative patterns plus a Luhn check for card numbers (ISO/IEC 7812-1 Annex B), so
that version strings and hex digests in docstrings are not mistaken for PII. Pure
functions: trainer and verifier (`--data`) share them.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

KINDS = ("email", "phone", "credit-card")
UNICODE_VERSION = unicodedata.unidata_version  # spec/policy.md §4.2: 14.0.0 or later

# Core patterns: literals, ASCII classes, ?, {m,n}, +, | and groups only (§4.2).
CARD = re.compile(r"[0-9]([ -]?[0-9]){12,18}")
PHONE = re.compile(
    r"(\+[0-9]{1,3}[ .-]?)?(\([0-9]{2,4}\)[ .-]?|[0-9]{2,4}[ .-])[0-9]{3,4}[ .-][0-9]{3,4}"
)
EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+-]{1,64}")
EMAIL_DOMAIN = re.compile(r"@([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}")
CARD_MAX, PHONE_MAX, DOMAIN_MAX = 37, 21, 256  # longest strings the patterns can match
# Candidate starts, found fast; the boundary rules are checked again per candidate.
_RUN = re.compile(r"[0-9]+")
_DOMAIN_RUN = re.compile(r"[A-Za-z0-9.-]+")
_CARD_START = re.compile(r"(?<![0-9])[0-9]")
_PHONE_START = re.compile(r"(?<![0-9])[0-9+(]")
_ASCII_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_TARGETS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-@")


@dataclass(frozen=True)
class PiiMatch:
    kind: str
    start: int  # code point offsets into nfkc(text) of the text `find_pii` was given
    end: int


# --------------------------------------------------------------------------- normalisation


def nfkc(text: str) -> str:
    """Step 1: Unicode NFKC. Offsets of `find_pii` index this string."""
    return unicodedata.normalize("NFKC", text)


def _fold(c: str) -> str:
    """Steps 2-4 for one code point of the NFKC text: '' (removed) or one code point."""
    if c < "\x80":
        return c
    cat = unicodedata.category(c)
    if cat == "Cf":  # zero-width (non-)joiners and spaces, soft hyphen, bidi controls
        return ""
    if cat == "Nd":
        return chr(48 + unicodedata.decimal(c))
    if cat == "Zs":
        return " "
    if cat == "Pd" or c == "\u2212":  # dashes and MINUS SIGN
        return "-"
    return c


def normalise(text: str) -> tuple[str, list[int]]:
    """The detection view V of an NFKC text and, per code point of V, its offset there."""
    out: list[str] = []
    where: list[int] = []
    for i, c in enumerate(text):
        f = _fold(c)
        if f:
            out.append(f)
            where.append(i)
    return "".join(out), where


@functools.cache
def confusables() -> dict[str, str]:
    """Non-ASCII code point -> the one ASCII e-mail character it is confusable with."""
    from confusable_homoglyphs import confusables as data  # loaded on first use (1 MB JSON)

    table: dict[str, str] = {}
    for ch, glyphs in data.confusables_data.items():
        if len(ch) != 1 or ch < "\x80":
            continue
        targets = sorted({g["c"] for g in glyphs if g["c"] in _TARGETS})
        if len(targets) == 1:  # an ambiguous target would make the view depend on a choice
            table[ch] = targets[0]
    return table


def email_view(view: str) -> str:
    """Step 5 (e-mail only): confusable characters mapped to ASCII, one for one."""
    table = confusables()
    return "".join(table.get(c, c) for c in view)


# --------------------------------------------------------------------------- detectors


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # 2d, minus 9 when above 9


def luhn_ok(digits: str) -> bool:
    """Luhn check over ASCII digits ``0-9`` (ISO/IEC 7812-1 Annex B)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _DOUBLED[d] if i % 2 else d
    return total % 10 == 0


class _Digits:
    """Where the digit runs of a view end, and digit counts by prefix, for fast scans."""

    def __init__(self, v: str) -> None:
        self.ends = [m.end() for m in _RUN.finditer(v)]
        self.count = [0]
        for c in v:
            self.count.append(self.count[-1] + ("0" <= c <= "9"))

    def candidates(self, s: int, limit: int, lo: int, hi: int) -> list[int]:
        """Run ends e in (s, s + limit] with lo..hi digits in [s, e), longest first."""
        i, j = bisect.bisect_right(self.ends, s), bisect.bisect_right(self.ends, s + limit)
        c = self.count
        return [e for e in reversed(self.ends[i:j]) if lo <= c[e] - c[s] <= hi]


def _digit(v: str, i: int) -> bool:
    return 0 <= i < len(v) and "0" <= v[i] <= "9"


def _cards(v: str, runs: _Digits) -> Iterator[tuple[int, int]]:
    pos = 0
    for m in _CARD_START.finditer(v):  # starts: a digit not preceded by one
        s = m.start()
        if s < pos:
            continue
        for e in runs.candidates(s, CARD_MAX, 13, 19):
            if CARD.fullmatch(v, s, e) and luhn_ok(re.sub("[^0-9]", "", v[s:e])):
                yield s, e
                pos = e
                break


def _phone_bounds(v: str, s: int, e: int) -> bool:
    before = v[s - 1] if s else ""
    if before and (before in _ASCII_WORD or before in "+.-"):
        return False
    if v[s] != "+" and s >= 2 and v[s - 1] == " " and _digit(v, s - 2):
        return False  # the tail of a longer run of digit groups (a card number, say)
    after = v[e] if e < len(v) else ""
    if after and (after in _ASCII_WORD or after == "-"):
        return False
    if after in (".", " ") and e + 1 < len(v):
        nxt = v[e + 1]
        if (after == "." and nxt in _ASCII_WORD) or (after == " " and _digit(v, e + 1)):
            return False  # a dotted continuation (a version string) or more digit groups
    return True


def _phones(v: str, runs: _Digits) -> Iterator[tuple[int, int]]:
    pos = 0
    for m in _PHONE_START.finditer(v):  # starts: '+', '(' or a digit, not after a digit
        s = m.start()
        if s < pos:
            continue
        for e in runs.candidates(s, PHONE_MAX, 10, 15):
            if PHONE.fullmatch(v, s, e) and _phone_bounds(v, s, e):
                yield s, e
                pos = e
                break


def _word(c: str) -> bool:
    """A letter, mark or number of any script, or '_' (the e-mail boundary class)."""
    return c == "_" or unicodedata.category(c)[0] in "LMN"


def _emails(v: str) -> Iterator[tuple[int, int]]:
    # Local part and domain meet at the one '@' of a match, so they are found apart:
    # the leftmost valid start and the rightmost valid end around each '@'.
    pos = 0
    for m in re.finditer("@", v):
        a = m.start()
        if a < pos:
            continue
        start = next(
            (
                s
                for s in range(max(pos, a - 64), a)
                if EMAIL_LOCAL.fullmatch(v, s, a)
                and not (s and (_word(v[s - 1]) or v[s - 1] in ".+-"))
            ),
            None,
        )
        if start is None:
            continue
        run = _DOMAIN_RUN.match(v, a + 1)  # a domain holds only these characters
        top = min(len(v), a + DOMAIN_MAX, run.end() if run else a + 1)
        end = next(
            (
                e
                for e in range(top, a + 1, -1)
                if EMAIL_DOMAIN.fullmatch(v, a, e)
                and not (e < len(v) and (_word(v[e]) or v[e] == "-"))
            ),
            None,
        )
        if end is not None:
            yield start, end
            pos = end


def find_pii(text: str, kinds: Iterable[str] = KINDS) -> list[PiiMatch]:
    """All PII matches of the requested kinds in ``nfkc(text)``, in order, non-overlapping.

    Offsets index the NFKC form of ``text`` (equal to ``text`` for most texts); mask
    with `mask_pii` on that form.
    """
    wanted = set(kinds)
    base = nfkc(text)
    v, where = normalise(base)

    def span(kind: str, s: int, e: int) -> PiiMatch:
        return PiiMatch(kind, where[s], where[e - 1] + 1)

    runs = _Digits(v)
    found: list[PiiMatch] = []
    if "credit-card" in wanted:
        found += [span("credit-card", s, e) for s, e in _cards(v, runs)]
    # An e-mail holds an '@' and no confusable maps to '@' (a test checks it), so most
    # texts skip the table (1 MB of JSON, loaded on first use).
    if "email" in wanted and "@" in v:
        found += [span("email", s, e) for s, e in _emails(email_view(v))]
    if "phone" in wanted:
        for s, e in _phones(v, runs):
            m = span("phone", s, e)
            if not any(p.start < m.end and m.start < p.end for p in found):
                found.append(m)
    found.sort(key=lambda p: (p.start, -p.end))
    out: list[PiiMatch] = []
    for p in found:
        if not out or p.start >= out[-1].end:
            out.append(p)
    return out


def mask_pii(text: str, matches: list[PiiMatch]) -> str:
    """``nfkc(text)`` with each match replaced by ``[KIND]`` (e.g. ``[EMAIL]``)."""
    base = nfkc(text)
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts += [base[pos : m.start], f"[{m.kind.upper()}]"]
        pos = m.end
    parts.append(base[pos:])
    return "".join(parts)

"""Glob patterns of the policy (spec/policy.md §3.12): one matcher for every caller.

Sources, `assign.when.source`, depth-profile patterns and the trainer's profile
resolution all match through `glob_match`, so the rule is written once. The syntax is
spec/policy.md's own, not `fnmatch`'s: fnmatch reads an unterminated ``[`` as a literal
and a reversed range as an empty set; here both are errors at policy load, so a typo
cannot silently turn into a pattern that matches nothing (or everything).
"""

from __future__ import annotations

import functools
import re

from .errors import FormatError


class PatternError(FormatError):
    """A glob pattern that breaks the syntax of spec/policy.md §3.12."""


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """The pattern as an anchored regular expression. Raises PatternError.

    Hand-written translation (about 30 lines) because no maintained library matches
    the spec's rules exactly; each literal goes through `re.escape`.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            negate = i < n and pattern[i] == "!"
            i += negate
            items: list[str] = []
            first = True
            while True:
                if i >= n:
                    raise PatternError(f"pattern {pattern!r:.80}: '[' at {i} is never closed")
                a = pattern[i]
                if a == "]" and not first:
                    i += 1
                    break
                first = False
                if i + 2 < n and pattern[i + 1] == "-" and pattern[i + 2] != "]":
                    b = pattern[i + 2]
                    if ord(b) < ord(a):
                        raise PatternError(f"pattern {pattern!r:.80}: range {a}-{b} is reversed")
                    items.append(f"{re.escape(a)}-{re.escape(b)}")
                    i += 3
                else:
                    items.append(re.escape(a))
                    i += 1
            out.append(("[^" if negate else "[") + "".join(items) + "]")
        else:
            out.append(re.escape(c))
    return re.compile("".join(out), re.DOTALL)


def glob_match(name: str, pattern: str) -> bool:
    """Whether the whole of ``name`` matches ``pattern``, case-sensitively.

    Raises PatternError for a malformed pattern (the policy loader checks every
    pattern first, so evaluation never does).
    """
    return compile_glob(pattern).fullmatch(name) is not None

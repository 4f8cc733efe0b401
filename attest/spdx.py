"""SPDX license expressions (spec/policy.md §3.2.1): parse, validate, reduce to one license.

Parsing is the `license-expression` library's (a maintained SPDX parser) over our own
symbol table: the identifiers of the SPDX License List, taken from the ScanCode
LicenseDB index the library ships (``spdx_license_key`` plus the listed deprecated
``other_spdx_license_keys``). We deliberately do not use ``get_spdx_licensing()``:
it also resolves ScanCode aliases (``LicenseRef-MIT-Discord`` reads as ``MIT``,
``GPL-2.0+`` as ``GPL-2.0-or-later``), a mapping SPDX does not define, so another
implementation could not reproduce it.

Rules the library does not enforce are checked here, before and after it parses:
printable ASCII only (``MPL‐2.0`` with U+2010 is no identifier), a length bound, every
identifier listed or a well-formed ``LicenseRef-``, no ``DocumentRef-``, no ``+``
suffix unless the listed identifier carries it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .errors import FormatError

LIST_VERSION = "3.27"  # SPDX License List version of the bundled index (its .ABOUT file)
EXPRESSION_MAX = 1024  # characters: far above any real expression, bounds parser work
_REF = re.compile(r"LicenseRef-[A-Za-z0-9.-]+", re.ASCII | re.IGNORECASE)


class LicenseError(FormatError):
    """Not a valid SPDX license expression under spec/policy.md §3.2.1."""


@dataclass(frozen=True)
class License:
    """One simple expression: a license identifier, optionally ``WITH`` an exception.

    ``id`` and ``exception`` are in canonical casing (the SPDX list's; a LicenseRef
    as written after its ``LicenseRef-`` prefix).
    """

    id: str
    exception: str = ""

    @property
    def key(self) -> str:
        """The matching key: identifiers are compared ASCII case-insensitively."""
        return str(self).lower()

    def __str__(self) -> str:
        return f"{self.id} WITH {self.exception}" if self.exception else self.id


@dataclass(frozen=True)
class Compound:
    """``AND`` or ``OR`` over two or more operands, in written order."""

    op: str  # "AND" | "OR"
    args: tuple[Node, ...]

    def __str__(self) -> str:
        parts = [f"({a})" if isinstance(a, Compound) else str(a) for a in self.args]
        return f" {self.op} ".join(parts)


Node = License | Compound


def bundled_list_version() -> str:
    """The SPDX License List version of the index `license-expression` ships (its .ABOUT)."""
    about = resources.files("license_expression").joinpath("data/license_key_index.json.ABOUT")
    for line in about.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "spdx_license_list_version":
            return value.strip()
    return ""


@functools.cache
def _table() -> tuple[dict[str, str], dict[str, str]]:
    """(lowercase license id -> canonical id, lowercase exception id -> canonical id).

    Raises LicenseError if the installed library ships another SPDX list than the spec
    names: identifiers added or withdrawn would silently change verdicts.
    """
    if bundled_list_version() != LIST_VERSION:
        raise LicenseError(
            f"license-expression data: expected SPDX License List {LIST_VERSION}, "
            f"got {bundled_list_version() or 'no version'} (install the pinned version)"
        )
    raw = resources.files("license_expression").joinpath("data/scancode-licensedb-index.json")
    entries: list[dict[str, Any]] = json.loads(raw.read_text(encoding="utf-8"))
    licenses: dict[str, str] = {}
    exceptions: dict[str, str] = {}
    for e in entries:
        main = e.get("spdx_license_key") or ""
        if not main or main.startswith("LicenseRef-"):
            continue  # a ScanCode-only license: not on the SPDX list
        target = exceptions if e.get("is_exception") else licenses
        for key in [main, *e.get("other_spdx_license_keys", [])]:
            # other keys hold deprecated SPDX ids (GPL-2.0+) and ScanCode spellings
            # ("GPL 2.0+", LicenseRef-...): only the former are SPDX identifiers.
            if re.fullmatch(r"[A-Za-z0-9.+-]+", key) and not key.startswith("LicenseRef-"):
                target.setdefault(key.lower(), key)
    return licenses, exceptions


@functools.cache
def _licensing() -> Any:
    import license_expression as le  # imported on first use: the verifier's start-up stays cheap

    licenses, exceptions = _table()
    symbols = [le.LicenseSymbol(k) for k in licenses.values()]
    symbols += [le.LicenseSymbol(k, is_exception=True) for k in exceptions.values()]
    return le.Licensing(symbols)


def _check_text(text: str) -> None:
    if not text.strip():
        raise LicenseError("expected an SPDX license expression, got an empty string")
    if len(text) > EXPRESSION_MAX:
        raise LicenseError(f"expected at most {EXPRESSION_MAX} characters, got {len(text)}")
    bad = next((c for c in text if not " " <= c <= "~"), None)
    if bad is not None:
        raise LicenseError(
            f"expected printable ASCII, got U+{ord(bad):04X} at {text.index(bad)} in {text!r:.80}"
        )


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Node:
    """Parse and validate an SPDX license expression. Raises LicenseError.

    Cached: a dataset repeats a handful of expressions thousands of times.
    """
    _check_text(text)
    import license_expression as le

    try:
        tree = _licensing().parse(text, validate=False, strict=True)
    # The library signals bad syntax with ExpressionError, but some malformed inputs
    # reach internal errors instead (found by fuzzing, tests/attest/test_spdx.py).
    except (le.ExpressionError, IndexError, AssertionError, AttributeError, TypeError) as e:
        raise LicenseError(f"expected an SPDX license expression, got {text!r:.80}: {e}") from e
    if tree is None:
        raise LicenseError(f"expected an SPDX license expression, got {text!r:.80}")
    return _convert(tree, text)


def _symbol(key: str, *, exception: bool, text: str) -> str:
    licenses, exceptions = _table()
    known = (exceptions if exception else licenses).get(key.lower())
    if known is not None:
        return known
    if not exception and _REF.fullmatch(key):
        return "LicenseRef-" + key[len("LicenseRef-") :]
    kind = "exception" if exception else "license identifier"
    raise LicenseError(
        f"expected an SPDX License List {LIST_VERSION} {kind} or LicenseRef-, "
        f"got {key!r:.80} in {text!r:.80}"
    )


def _convert(node: Any, text: str) -> Node:
    import license_expression as le

    if isinstance(node, le.LicenseWithExceptionSymbol):
        return License(
            _symbol(node.license_symbol.key, exception=False, text=text),
            _symbol(node.exception_symbol.key, exception=True, text=text),
        )
    if isinstance(node, le.LicenseSymbol):
        if getattr(node, "is_exception", False):
            raise LicenseError(f"expected a license, got the exception {node.key!r} in {text!r}")
        return License(_symbol(node.key, exception=False, text=text))
    op = type(node).__name__
    if op not in ("AND", "OR"):
        raise LicenseError(f"expected AND, OR or WITH, got {op} in {text!r:.80}")
    return Compound(op, tuple(_convert(a, text) for a in node.args))


def parse_simple(text: str) -> License:
    """An identifier or ``id WITH exception`` (a policy's class key). Raises LicenseError."""
    node = parse(text)
    if not isinstance(node, License):
        raise LicenseError(f"expected one license (no AND/OR), got {text!r:.80}")
    return node


def decide_license(node: Node, rank: Callable[[License], int]) -> License:
    """The license an expression is used under (spec/policy.md §3.2.1).

    ``OR`` offers a choice: the operand of lowest rank (most permissive) is taken;
    ``AND`` binds them all: the operand of highest rank (most restrictive). Among
    equal ranks the first in written order wins, so the result is deterministic.
    """
    if isinstance(node, License):
        return node
    picked = [decide_license(a, rank) for a in node.args]
    pick = min if node.op == "OR" else max
    return pick(picked, key=rank)  # min/max return the first of equal keys

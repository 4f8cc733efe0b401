"""The per-example view of an admission: one row per example, totals that add up.

One implementation for both sides: `govtune admit CONFIG` (the producer's dry run,
trainer/admit_command.py) and `govtune show RUN` (the same view of a finished run from
its public admission log, verifier/show.py). Rendered as aligned text, JSON or CSV with
the standard library only (attest/ imports no report library).

Totals: each refused example is counted once under the *first* rule it failed, in the
evaluator's rule order (spec/policy.md §4.3), so "refused, by first failing rule" sums
to the refused count; "rules failed" counts every failing rule of every refused
example, so it may sum to more (an example may fail several rules).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .admission import RULES
from .errors import UsageError
from .records import AdmissionRecord

FORMATS = ("text", "json", "csv")
PREVIEW_CHARS = 40  # characters of an example's text shown where the viewer may see it


@dataclass(frozen=True)
class Row:
    """One example's admission: its decision, the rule that decided and its profile."""

    index: int
    decision: str  # "admit" | "refuse"
    rule: str  # refused: the first failing rule; admitted: "" (every rule passed)
    failed: tuple[str, ...]  # every failing rule, in rule order
    masked: bool  # the pii rule masked the text before training
    profile: str  # "" when refused
    license: str
    source: str
    data_class: str
    canary: bool
    length: int  # characters as trained on
    commitment: str  # hex
    text: str = ""  # a preview (first PREVIEW_CHARS), where the viewer holds the text
    text_sha256: str = ""  # hex digest of the text as trained on, where known

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["failed"] = list(self.failed)
        return d


def row_of(rec: AdmissionRecord, text: str | None = None, text_sha256: str = "") -> Row:
    """The row of one admission record (``text``: the text as trained on, if known)."""
    failed = tuple(o.rule for o in sorted(rec.outcomes, key=lambda o: RULES.index(o.rule))
                   if o.outcome == "fail")  # fmt: skip
    m = rec.metadata
    return Row(
        rec.index,
        "admit" if rec.admitted else "refuse",
        "" if rec.admitted else (failed[0] if failed else "(none recorded)"),
        failed,
        any(o.outcome == "masked" for o in rec.outcomes),
        rec.profile or "",
        m.license,
        m.source,
        m.data_class,
        m.canary,
        m.length,
        rec.commitment.hex(),
        (text or "")[:PREVIEW_CHARS],
        text_sha256,
    )


@dataclass(frozen=True)
class Table:
    rows: tuple[Row, ...]
    profiles: Mapping[str, int] = field(default_factory=dict)  # profile -> parameters allowed

    def totals(self) -> dict[str, Any]:
        refused = [r for r in self.rows if r.decision == "refuse"]
        return {
            "examples": len(self.rows),
            "admitted": len(self.rows) - len(refused),
            "refused": len(refused),
            "canaries": sum(r.canary for r in self.rows),
            "masked": sum(r.masked for r in self.rows),
            # sums to "refused": each refused example under its first failing rule
            "refusedByFirstFailingRule": dict(sorted(Counter(r.rule for r in refused).items())),
            # may sum to more: every failing rule of every refused example
            "rulesFailed": dict(sorted(Counter(x for r in refused for x in r.failed).items())),
            "admittedByProfile": dict(
                sorted(Counter(r.profile for r in self.rows if r.decision == "admit").items())
            ),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "totals": self.totals(),
            "profiles": dict(self.profiles),
            "examples": [r.to_dict() for r in self.rows],
        }


def table_of(
    records: Iterable[AdmissionRecord],
    texts: Mapping[int, str] | None = None,
    digests: Mapping[int, str] | None = None,
    profiles: Mapping[str, int] | None = None,
) -> Table:
    texts, digests = texts or {}, digests or {}
    rows = tuple(row_of(r, texts.get(r.index), digests.get(r.index, "")) for r in records)
    return Table(rows, dict(profiles or {}))


_COLUMNS = ("index", "decision", "rule", "profile", "license", "data_class", "length")


def render(table: Table, fmt: str) -> str:
    """``table`` as ``fmt`` (text, json or csv). Raises UsageError for another format."""
    if fmt == "json":
        return json.dumps(table.to_dict(), indent=2, sort_keys=True) + "\n"
    show_text = any(r.text or r.text_sha256 for r in table.rows)
    if fmt == "csv":
        buf = io.StringIO()
        cols = [*_COLUMNS, "failed", "masked", "canary", "source", "commitment"]
        cols += ["text_sha256", "text"] if show_text else []
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in table.rows:
            d = r.to_dict()
            d["failed"] = " ".join(r.failed)
            w.writerow([d[c] for c in cols])
        return buf.getvalue()
    if fmt != "text":
        raise UsageError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r:.20}")
    return _text(table, show_text)


def _text(table: Table, show_text: bool) -> str:
    cols = [*_COLUMNS, "failed", "commitment"] + (["text"] if show_text else [])
    cells = []
    for r in table.rows:
        d = r.to_dict()
        d["failed"] = ",".join(r.failed) or "-"
        d["rule"] = r.rule or "-"
        d["profile"] = r.profile or "-"
        d["commitment"] = r.commitment[:12] + "…"
        d["text"] = json.dumps(r.text, ensure_ascii=False)  # quoted: no control characters
        if r.canary:
            d["data_class"] = f"{r.data_class} (canary)"
        cells.append([str(d[c]) for c in cols])
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    fmt_row = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt_row.format(*cols).rstrip(), *(fmt_row.format(*row).rstrip() for row in cells), ""]
    t = table.totals()
    lines.append(
        f"examples {t['examples']}: {t['admitted']} admitted, {t['refused']} refused "
        f"({t['canaries']} canary copies, {t['masked']} masked)"
    )
    if t["refused"]:
        lines.append(
            "refused, by first failing rule (sums to the refused count): "
            + ", ".join(f"{k} {v}" for k, v in t["refusedByFirstFailingRule"].items())
        )
        lines.append(
            "rules failed (an example may fail several): "
            + ", ".join(f"{k} {v}" for k, v in t["rulesFailed"].items())
        )
    lines.append(
        "admitted, by profile: "
        + (", ".join(f"{k} {v}" for k, v in t["admittedByProfile"].items()) or "none")
    )
    for name, n in table.profiles.items():
        lines.append(f"profile {name}: {n} parameters")
    return "\n".join(lines) + "\n"


__all__ = ["FORMATS", "Row", "Table", "render", "row_of", "table_of"]

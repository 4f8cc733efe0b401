"""V8 data (auditor, ``--data FILE --openings DIR``): commitments open, content rules re-run.

The dataset is read with `attest.dataset.read_dataset`, the trainer's reader (one
example per line, strict; spec/README.md "Dataset file"). The openings folder holds the run's
``openings.jsonl`` ({"index", "salt"} per example). Content findings are re-derived
with `attest.admission.inspect_example` in dataset order (duplicates depend on
order), which also gives the text as trained on (PII masked where the policy says),
the text the commitment is over. Canary texts are not in the dataset: they are
checked only if the folder holds ``canaries.jsonl`` ({"index", "text"}), else skipped
and said so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attest.admission import Metadata, inspect_example
from attest.canonical import parse_json
from attest.commitment import Content, Opening
from attest.dataset import read_dataset
from attest.errors import FormatError, UsageError
from attest.log import iter_log
from attest.predicates import ADMISSIONS_FILE
from attest.records import AdmissionRecord

from .context import Context, Tally, skip_all

DATA_CODES = ("GT-DATA-FORMAT", "GT-DATA-COMMITMENT", "GT-DATA-METADATA", "GT-DATA-FINDINGS")
OPENINGS_FILE = "openings.jsonl"
CANARIES_FILE = "canaries.jsonl"


def _read_jsonl(path: Path, ctx: Context, where: str) -> list[Any]:
    out = []
    with open(path, "rb") as f:
        for n, line in enumerate(iter(lambda: f.readline(ctx.limits.dataset_line_max + 1), b""), 1):
            if len(line) > ctx.limits.dataset_line_max:
                raise FormatError(
                    f"{where}:{n}: line longer than {ctx.limits.dataset_line_max} bytes"
                )
            if line.strip():
                out.append(parse_json(line, where=f"{where}:{n}", limits=ctx.limits))
    return out


def check_data(ctx: Context, data: Path | None, openings: Path | None) -> None:
    r = ctx.result
    if data is None or openings is None:
        skip_all(r, DATA_CODES, "no --data/--openings given")
        return
    pred, policy = ctx.admissions_pred, ctx.policy
    if pred is None or policy is None or not ctx.admissions_log_ok:
        skip_all(r, DATA_CODES, "the admission log or the policy was not verified")
        return
    t = Tally(r, DATA_CODES)
    try:
        salts: dict[int, bytes] = {}
        for i, o in enumerate(_read_jsonl(openings / OPENINGS_FILE, ctx, OPENINGS_FILE)):
            op = Opening.from_dict(o, f"{OPENINGS_FILE}:{i + 1}")
            salts[op.index] = op.salt
        canary_texts: dict[int, str] = {}
        if (openings / CANARIES_FILE).is_file():
            for i, c in enumerate(_read_jsonl(openings / CANARIES_FILE, ctx, CANARIES_FILE)):
                if (
                    not isinstance(c, dict)
                    or not isinstance(c.get("index"), int)
                    or not isinstance(c.get("text"), str)
                ):
                    raise FormatError(f"{CANARIES_FILE}:{i + 1}: expected {{index, text}}")
                canary_texts[c["index"]] = c["text"]
        lines, sha = read_dataset(data, limits=ctx.limits)
    except (OSError, FormatError, UsageError) as e:
        msg = f"{e.filename}: cannot read: {e.strerror}" if isinstance(e, OSError) else str(e)
        t.fail("GT-DATA-FORMAT", msg)
        for c in DATA_CODES[1:]:
            t.skip(c, "the dataset or openings are unreadable")
        t.flush()
        return
    if sha != pred.dataset.get("sha256"):
        t.fail(
            "GT-DATA-COMMITMENT",
            f"{data.name}: expected sha256:{pred.dataset.get('sha256')} (signed), found "
            f"sha256:{sha}",
        )
    seen: set[str] = set()
    checked = canaries_checked = canaries_skipped = 0
    for rec in iter_log(ctx.prov / ADMISSIONS_FILE, limits=ctx.limits):
        a = AdmissionRecord.from_record(rec.value, f"{ADMISSIONS_FILE}: record {rec.index}")
        where = f"example {a.index}"
        trained: Content
        if a.metadata.canary:
            if a.index not in canary_texts:
                canaries_skipped += 1
                continue
            trained = canary_texts[a.index]
            canaries_checked += 1
        else:
            if a.index >= len(lines):
                t.fail(
                    "GT-DATA-FORMAT",
                    f"{where}: expected a dataset line, found only {len(lines)} lines",
                )
                continue
            ex = lines[a.index]
            findings, tr = inspect_example(policy, ex, seen)  # any dataset form
            trained = tr.content  # what the commitment hashes (spec/format.md §6)
            meta = Metadata(
                ex.license, ex.source, ex.data_class, ex.consent, len(tr.text)
            ).to_dict()
            if meta != a.metadata.to_dict():
                diff = {
                    k: (v, a.metadata.to_dict()[k])
                    for k, v in meta.items()
                    if a.metadata.to_dict()[k] != v
                }
                t.fail(
                    "GT-DATA-METADATA",
                    f"{where}: expected (dataset) vs found (log): "
                    + ", ".join(f"{k} {w!r} vs {g!r}" for k, (w, g) in diff.items()),
                )
            if findings != a.findings:
                t.fail(
                    "GT-DATA-FINDINGS",
                    f"{where}: expected findings {findings.to_dict()} (re-derived), found "
                    f"{a.findings.to_dict()}",
                )
            checked += 1
        if a.index not in salts:
            t.fail(
                "GT-DATA-FORMAT", f"{OPENINGS_FILE}: expected an opening for {where}, found none"
            )
            continue
        if not Opening(a.index, salts[a.index]).opens(a.commitment, trained):
            t.fail(
                "GT-DATA-COMMITMENT",
                f"{where}: expected the commitment {a.commitment.hex()[:16]}… to open to the text "
                f"as trained on, it does not",
            )
    if checked != len(lines):
        t.fail(
            "GT-DATA-FORMAT",
            f"{data.name}: expected {checked} examples (the log's), found {len(lines)} lines",
        )
    note = f"{checked} examples" + (f", {canaries_checked} canaries" if canaries_checked else "")
    if canaries_skipped:
        note += f"; {canaries_skipped} canary commitment(s) not opened (no {CANARIES_FILE})"
    t.flush({c: note for c in DATA_CODES})
    r.verified["data"] = {
        "examples": checked,
        "canariesOpened": canaries_checked,
        "canariesNotOpened": canaries_skipped,
        "sha256": sha,
    }

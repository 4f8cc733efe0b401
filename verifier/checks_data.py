"""V8 data (auditor, ``--data FILE --openings DIR``): commitments open, content rules re-run.

The dataset is read with `attest.dataset.read_dataset`, the trainer's reader (one
example per line, strict; spec/README.md "Dataset file"). The openings folder holds the run's
``openings.jsonl`` ({"index", "salt"} per example). Content findings are re-derived
with `attest.admission.inspect_example` in dataset order (duplicates depend on
order), which also gives the text as trained on (PII masked where the policy says),
the text the commitment is over. Canary texts are not in the dataset: they are derived
from the folder's ``run-secret`` (attest.canary, policy.md §7), whose salts must be the
openings' salts; ``canaries.jsonl`` is never trusted (GT-DATA-CANARY).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from attest.admission import Metadata, inspect_example
from attest.canary import canary_text
from attest.canonical import parse_json
from attest.commitment import Opening, derive_salt
from attest.dataset import read_dataset
from attest.errors import FormatError, UsageError
from attest.layout import OPENINGS_FILE, RUN_SECRET_FILE
from attest.log import iter_log
from attest.predicates import ADMISSIONS_FILE
from attest.records import AdmissionRecord

from .context import Context, Tally, all_passed, missing_inputs, skip_all
from .verified import VerifiedAdmissions, VerifiedBundle, VerifiedPolicy

DATA_CODES = (
    "GT-DATA-FORMAT",
    "GT-DATA-COMMITMENT",
    "GT-DATA-CANARY",
    "GT-DATA-METADATA",
    "GT-DATA-FINDINGS",
)
_HEX64 = re.compile(r"[0-9a-f]{64}")


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


def _read_openings(path: Path, ctx: Context) -> dict[int, bytes]:
    """openings.jsonl, strictly: each line exactly {"index", "salt"} with 64 lowercase hex
    digits, no index twice (spec/format.md §6). Raises FormatError, OSError."""
    salts: dict[int, bytes] = {}
    for i, o in enumerate(_read_jsonl(path, ctx, OPENINGS_FILE)):
        where = f"{OPENINGS_FILE}:{i + 1}"
        if not isinstance(o, dict) or set(o) != {"index", "salt"}:
            got = sorted(o) if isinstance(o, dict) else type(o).__name__
            raise FormatError(f"{where}: expected exactly the keys index, salt, got {got}")
        if not isinstance(o["salt"], str) or not _HEX64.fullmatch(o["salt"]):
            raise FormatError(f"{where}.salt: expected 64 lowercase hex digits")
        op = Opening.from_dict(o, where)
        if op.index in salts:
            raise FormatError(
                f"{where}: expected one opening per index, got index {op.index} again"
            )
        salts[op.index] = op.salt
    return salts


def read_run_secret(path: Path) -> bytes:
    """private/run-secret: exactly 64 lowercase hex digits and a newline. Raises FormatError,
    OSError."""
    data = path.read_bytes()
    if (
        len(data) != 65
        or not data.endswith(b"\n")
        or not _HEX64.fullmatch(data[:64].decode("latin-1"))
    ):
        raise FormatError(f"{RUN_SECRET_FILE}: expected 64 lowercase hex digits and a newline")
    return bytes.fromhex(data[:64].decode())


def check_data(
    ctx: Context,
    data: Path | None,
    openings: Path | None,
    bundle: VerifiedBundle | None,
    vpolicy: VerifiedPolicy | None,
    table: VerifiedAdmissions | None,
) -> None:
    r = ctx.result
    if data is None or openings is None:
        skip_all(r, DATA_CODES, "no --data/--openings given")
        return
    needed = {"bundle": bundle, "policy": vpolicy, "admission log": table}
    if missing_inputs(r, DATA_CODES, needed):
        return
    assert bundle is not None and vpolicy is not None and table is not None
    pred, policy = bundle.admissions_pred, vpolicy.policy
    t = Tally(r, DATA_CODES)
    secret: bytes | None = None
    try:
        salts = _read_openings(openings / OPENINGS_FILE, ctx)
        if table.canaries or (openings / RUN_SECRET_FILE).exists():
            secret = read_run_secret(openings / RUN_SECRET_FILE)
        lines, sha = read_dataset(data, limits=ctx.limits)
    except (OSError, FormatError, UsageError) as e:
        msg = f"{e.filename}: cannot read: {e.strerror}" if isinstance(e, OSError) else str(e)
        code = "GT-DATA-CANARY" if RUN_SECRET_FILE in msg else "GT-DATA-FORMAT"
        t.fail(code, msg)
        for c in DATA_CODES:
            if c != code:
                t.skip(c, "the dataset, openings or run secret are unreadable")
        t.flush()
        return
    # Canary texts are derived from the run secret (policy.md §7), never read from a file.
    derived: dict[int, str] = {}
    if secret is not None:
        for k, group in enumerate(table.canary_groups):
            text = canary_text(secret, policy.canaries, k)
            derived.update({i: text for i in group})
    if sha != pred.dataset.get("sha256"):
        t.fail(
            "GT-DATA-COMMITMENT",
            f"{data.name}: expected sha256:{pred.dataset.get('sha256')} (signed), found "
            f"sha256:{sha}",
        )
    seen: set[str] = set()
    checked = canaries_checked = 0
    file_hash = hashlib.sha256()
    try:
        records = iter_log(ctx.prov / ADMISSIONS_FILE, limits=ctx.limits)
        for rec in records:
            file_hash.update(rec.raw)
            a = AdmissionRecord.from_record(rec.value, f"{ADMISSIONS_FILE}: record {rec.index}")
            where = f"example {a.index}"
            if a.index not in salts:
                t.fail(
                    "GT-DATA-FORMAT",
                    f"{OPENINGS_FILE}: expected an opening for {where}, found none",
                )
                continue
            if secret is not None and derive_salt(secret, a.index) != salts[a.index]:
                t.fail(
                    "GT-DATA-COMMITMENT",
                    f"{OPENINGS_FILE}: {where}: expected the salt derived from {RUN_SECRET_FILE}, "
                    f"found another",
                )
            if a.index in table.canaries:
                canaries_checked += 1
                if not Opening(a.index, salts[a.index]).opens(a.commitment, derived[a.index]):
                    t.fail(
                        "GT-DATA-CANARY",
                        f"{where}: expected the canary commitment to open to the canary text "
                        f"derived from {RUN_SECRET_FILE} (policy.md §7), it does not",
                    )
                continue
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
            if not Opening(a.index, salts[a.index]).opens(a.commitment, trained):
                t.fail(
                    "GT-DATA-COMMITMENT",
                    f"{where}: expected the commitment {a.commitment.hex()[:16]}… to open to the "
                    f"text as trained on, it does not",
                )
    except (FormatError, OSError) as e:
        t.fail("GT-DATA-FORMAT", f"{ADMISSIONS_FILE}: re-read failed: {e}")
    if file_hash.hexdigest() != table.sha256:
        t.fail(
            "GT-DATA-FORMAT",
            f"{ADMISSIONS_FILE}: expected sha256:{table.sha256} (verified in V1/V3), found "
            f"sha256:{file_hash.hexdigest()} on re-reading: the file changed",
        )
    extra = sorted(i for i in salts if i not in table.admitted)  # no set of every index
    if extra:
        t.fail("GT-DATA-FORMAT", f"{OPENINGS_FILE}: expected openings only for admission "
               f"records, found index {extra[0]} ({len(extra)} extra)")  # fmt: skip
    if checked != len(lines):
        t.fail(
            "GT-DATA-FORMAT",
            f"{data.name}: expected {checked} examples (the log's), found {len(lines)} lines",
        )
    note = f"{checked} examples" + (f", {canaries_checked} canaries" if canaries_checked else "")
    passes = {c: note for c in DATA_CODES}
    passes["GT-DATA-CANARY"] = (
        f"{canaries_checked} canary commitment(s) open to the texts derived from {RUN_SECRET_FILE}"
    )
    t.flush(passes)
    if all_passed(r, DATA_CODES):
        r.verified["data"] = {
            "examples": checked,
            "canariesOpened": canaries_checked,
            "canariesNotOpened": 0,
            "sha256": sha,
        }

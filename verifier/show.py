"""`govtune show RUN --key PUB`: the per-example admission view of a finished run.

The same table as the producer's `govtune admit` dry run (attest.admission_table),
built from the run's public evidence only: the run is verified first, and the rows are
read from admission-log bytes whose SHA-256 equals the signed, verified one (nothing of
a run that failed V1–V3 is shown). Commitments only; with ``--data`` and
``--openings`` (the auditor's evidence, checked by V8) each example's text digest and
first characters are shown too.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from attest.admission_table import render, table_of
from attest.dataset import read_dataset
from attest.digest import sha256_hex
from attest.errors import VerificationError
from attest.keys import require_key_file
from attest.log import iter_log
from attest.predicates import ADMISSIONS_FILE
from attest.records import AdmissionRecord

from .api import verify
from .commands import _verdict_line

EXIT_OK = 0


def show(args: argparse.Namespace) -> int:
    """Raises UsageError (bad request) or VerificationError (the admissions did not verify)."""
    for k in args.key:
        require_key_file(Path(k))  # before any work
    run = Path(args.path)
    result = verify(run, [Path(k) for k in args.key], threshold=args.threshold,
                    data=args.data, openings=args.openings)  # fmt: skip
    adm = result.verified.get("admissions")
    if not isinstance(adm, dict):
        raise VerificationError(
            "GT-ADMIT-LOG-FORMAT" if result.failures else "GT-BUNDLE-MISSING",
            f"{run}: the admission log did not verify; nothing shown ({_verdict_line(result)})",
        )
    digest, records = hashlib.sha256(), []
    for rec in iter_log(run / "provenance" / ADMISSIONS_FILE):
        digest.update(rec.raw)
        records.append(AdmissionRecord.from_record(rec.value, f"{ADMISSIONS_FILE}: {rec.index}"))
    if digest.hexdigest() != adm["sha256"]:  # changed since it was verified a moment ago
        raise VerificationError(
            "GT-ADMIT-LOG-SUMMARY",
            f"{ADMISSIONS_FILE}: expected sha256:{adm['sha256']} (verified), "
            f"found sha256:{digest.hexdigest()}",
        )
    texts: dict[int, str] = {}
    digests: dict[int, str] = {}
    data_ok = isinstance(result.verified.get("data"), dict) and not any(
        f.code.startswith("GT-DATA") for f in result.failures
    )
    if args.data is not None and data_ok:  # commitments opened by V8: the texts are these
        examples, _ = read_dataset(Path(args.data))
        for i, ex in enumerate(examples):
            texts[i], digests[i] = ex.text, sha256_hex(ex.text.encode("utf-8"))
    elif args.data is not None:
        print("note: the dataset did not open the commitments (see `govtune verify`); "
              "texts not shown", file=sys.stderr)  # fmt: skip
    sys.stdout.write(render(table_of(records, texts, digests), args.format))
    print(_verdict_line(result), file=sys.stderr)
    return EXIT_OK if result else 1

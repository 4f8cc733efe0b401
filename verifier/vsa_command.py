"""`govtune verify … --vsa OUT --sign-key KEY` and `govtune verify --vsa-only VSA --key PUB`.

The thin shell around verifier/vsa.py (exit codes: verifier/cli.py). Flag combinations
are checked before any verification work (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from attest.errors import UsageError
from attest.keys import load_public_key, load_signer, require_key_file

from .commands import print_human
from .result import Result
from .vsa import check_vsa, write_vsa

EXIT_PASS, EXIT_FAIL = 0, 1


def require(args: argparse.Namespace) -> None:
    """Refuse incomplete flag sets. Raises UsageError."""
    if args.path is None:
        raise UsageError("verify: expected a run or release folder (or --vsa-only VSA)")
    if bool(args.vsa) != bool(args.sign_key):
        raise UsageError("--vsa OUT and --sign-key KEY go together")
    if args.sign_key:
        require_key_file(Path(args.sign_key))
    out = Path(args.vsa)
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent}: output folder does not exist")


def write(result: Result, args: argparse.Namespace) -> None:
    signer = load_signer(Path(args.sign_key))
    st = write_vsa(result, Path(args.path), Path(args.vsa), [signer])
    print(
        f"wrote verification summary ({st.predicate['verificationResult']}) to {args.vsa}",
        file=sys.stderr,
    )


def check(args: argparse.Namespace) -> int:
    if args.vsa or args.sign_key:
        raise UsageError("--vsa-only checks a summary; it does not take --vsa or --sign-key")
    if not args.key:
        raise UsageError("--key: expected the verifier's public key")
    keys = [load_public_key(Path(k)) for k in args.key]
    folder = Path(args.path) if args.path else None
    if folder is not None and not folder.is_dir():
        raise UsageError(f"{folder}: expected the folder the summary is about")
    result = check_vsa(Path(args.vsa_only), keys, args.threshold, folder)
    print_human(result, sys.stderr, quiet=getattr(args, "quiet", False))
    if getattr(args, "format", "text") == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
    return EXIT_PASS if result else EXIT_FAIL

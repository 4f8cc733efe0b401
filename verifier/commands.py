"""`govtune verify` and `govtune report`: parse, call `verifier.api.verify`, print, exit.

Exit codes (verifier/cli.py): 0 PASS, 1 FAIL, 2 could not run. Streams compose: in
text mode the table of checks goes to stdout (so `| less` and `> file` work) and the
one-line verdict to stderr; with ``--format json`` stdout holds `Result.to_dict()` only
and stderr the one-line verdict only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from attest.atomic import STDOUT, write_output
from attest.errors import UsageError
from attest.keys import require_key_file
from attest.progress import is_enabled

from .api import verify as api_verify
from .requirements import requirements_note
from .result import Result

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
STATUS_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}


def _run(args: argparse.Namespace) -> Result:
    if not args.key:
        raise UsageError("--key: expected at least one trusted public key")
    for k in args.key:
        require_key_file(Path(k))  # before any work
    return api_verify(
        Path(args.path),
        [Path(k) for k in args.key],
        threshold=args.threshold,
        base=args.base,
        data=args.data,
        openings=args.openings,
        replay=getattr(args, "replay", 0) or 0,
        replay_top=getattr(args, "replay_top", 1),
        replay_nonce=getattr(args, "replay_nonce", None),
        policy_digest=getattr(args, "policy_digest", None),
        requirements=getattr(args, "require", None),
        replay_tolerance=getattr(args, "replay_tolerance", None),
        # the CLI's one choice (verifier/cli.py run): off for --quiet and --format json
        # (stderr then holds the verdict line only); on for text, and for a report's html/md
        progress=is_enabled(),
    )


def _verdict_line(result: Result) -> str:
    n_pass = sum(f.status == "pass" for f in result.findings)
    n_skip = sum(f.status == "skip" for f in result.findings)
    if result:
        return (
            f"OK: PASS {result.target} ({n_pass} checks passed, {n_skip} skipped); "
            + requirements_note(result)
        )
    codes = sorted({f.code for f in result.failures})
    if not codes:
        return f"FAIL: {result.target}: no check passed"
    first = result.failures[0]
    more = len(result.failures) - 1
    rest = f" (and {more} more: {', '.join(codes)})" if more else ""
    # The first failure in full: the one line a script or a log keeps says what broke.
    return f"FAIL: {result.target}: {first.code}: {first.message}{rest}"


def print_human(
    result: Result, stream: TextIO, quiet: bool = False, verdict: TextIO | None = None
) -> None:
    """The table on ``stream``: each check with its code and status, each failure in full;
    the one-line verdict on ``verdict`` (default ``stream`` too)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, highlight=False, soft_wrap=True)
    if not quiet:
        table = Table(title=f"govtune verify {result.target}", show_lines=False, expand=False)
        for col in ("layer", "code", "status", "detail"):
            table.add_column(col, overflow="fold")
        for f in result.findings:
            table.add_row(
                f.layer,
                f.code,
                Text(f.status.upper(), style=STATUS_STYLE[f.status]),
                f.message if f.status != "fail" else "",
            )
        console.print(table)
        for f in result.failures:
            console.print(Text(f"{f.code}: {f.message}", style="red"))
        ignored = result.scope.get("ignored") or []
        for item in ignored:
            console.print(
                f"note: bundle line {item['line']}: ignored {item['predicateType']} "
                f"({item['reason']})"
            )
    line = Text(_verdict_line(result), style="bold green" if result else "bold red")
    if verdict is not None and verdict is not stream:
        console = Console(file=verdict, highlight=False, soft_wrap=True)
    # The nonce beside the verdict (stderr): what repeating the audit needs, not a check row.
    if nonce := _replay_nonce_line(result):
        console.print(nonce)
    console.print(line)


def _replay_nonce_line(result: Result) -> str:
    """The replay nonce the verifier drew itself (V9.1), so the audit can be repeated."""
    rep = result.verified.get("replay")
    if not isinstance(rep, dict) or rep.get("nonceSource") != "os":
        return ""
    return (
        f"replay nonce: {rep['nonce']} (drawn from the OS; repeat this audit with "
        f"--replay-nonce {rep['nonce']})"
    )


def verify(args: argparse.Namespace) -> int:
    result = _run(args)
    if getattr(args, "vsa", None):  # spec/release.md §6
        from .vsa_command import write

        write(result, args)
    if args.format == "json":
        text = json.dumps(result.to_dict(), indent=2, sort_keys=True, default=_json_default) + "\n"
        _write_stdout(text)
        print(_verdict_line(result), file=sys.stderr)  # the nonce is in the JSON
    else:
        try:
            print_human(result, sys.stdout, quiet=getattr(args, "quiet", False), verdict=sys.stderr)
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: the reader left; the verdict still goes out
            _detach_stdout()
            print(_verdict_line(result), file=sys.stderr)
    return EXIT_PASS if result else EXIT_FAIL


def _detach_stdout() -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _write_stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader left; the verdict stands
        _detach_stdout()


def _json_default(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, set | frozenset | tuple):
        return sorted(v)
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


def report(args: argparse.Namespace) -> int:
    result = _run(args)
    try:
        from . import report as report_mod  # written in parallel; imported lazily
    except ImportError as e:
        raise UsageError(f"report rendering is not available ({e})") from e
    text = report_mod.render(result, args.format)
    data = text.encode("utf-8") if isinstance(text, str) else text
    if args.output == STDOUT:
        write_output(STDOUT, data)
    else:
        out = Path(args.output)
        if not out.parent.is_dir():
            raise UsageError(f"{out.parent}: output folder does not exist")
        write_output(out, data)  # never replaces a symlink, FIFO or device (attest.atomic)
        # a regular file by its absolute path; /dev/stdout or a FIFO as given (not pipe:[…])
        where = out.resolve() if out.resolve().is_file() else out
        print(f"wrote {args.format} report to {where}", file=sys.stderr)
    if nonce := _replay_nonce_line(result):
        print(nonce, file=sys.stderr)
    print(_verdict_line(result), file=sys.stderr)
    return EXIT_PASS if result else EXIT_FAIL

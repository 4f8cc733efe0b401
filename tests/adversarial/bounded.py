"""Run one parser call in a fresh interpreter and report its outcome and peak memory.

A resource-exhaustion attack must be measured where nothing else shares the heap:
the child builds nothing big itself (inputs are files on disk), calls the code under
test, and prints one JSON line: the error class and message (or "ok"/"crash") and its
peak resident set size (VmHWM from /proc/self/status, in MiB).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

PRELUDE = """
import json, sys
from pathlib import Path
from attest.errors import GovtuneError

def _peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status")

out = {}
try:
{body}
    out.setdefault("outcome", "ok")
except GovtuneError as e:
    out.update(outcome="refused", error=type(e).__name__, message=str(e))
except BaseException as e:
    out.update(outcome="crash", error=type(e).__name__, message=str(e)[:500])
out["peak_mib"] = _peak_mib()
print("RESULT " + json.dumps(out))
"""

HANG_GUARD = 300  # seconds; a child still running then has not been bounded at all


def run_bounded(body: str, *args: str) -> dict[str, Any]:
    """Run ``body`` (statements; ``sys.argv[1:]`` holds ``args``) in a child. Returns its report.

    ``body`` may set ``out["outcome"]`` and other keys itself (e.g. a verifier verdict).
    """
    code = PRELUDE.replace("{body}", textwrap.indent(textwrap.dedent(body).strip(), "    "))
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"child exited {proc.returncode}: {proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])  # type: ignore[no-any-return]

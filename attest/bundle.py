"""The provenance bundle: JSON Lines of DSSE envelopes, ``*.intoto.jsonl``
(in-toto attestation spec, "Bundle layer").

Consumers MUST NOT depend on line order and MUST ignore statements they do not
understand; the verifier decides what is required, not this reader.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securesystemslib.dsse import Envelope

from .atomic import write_atomic
from .canonical import parse_json
from .errors import FormatError
from .limits import DEFAULT_LIMITS, Limits

BUNDLE_SUFFIX = ".intoto.jsonl"


def encode_bundle(envelopes: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(
        json.dumps(e, separators=(",", ":"), sort_keys=True).encode() + b"\n" for e in envelopes
    )


def write_bundle(path: Path, envelopes: Iterable[dict[str, Any]]) -> None:
    write_atomic(Path(path), encode_bundle(envelopes))


@dataclass(frozen=True)
class BundleLine:
    line: int  # 1-based
    envelope: Envelope


def read_bundle(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> list[BundleLine]:
    """Read and parse every envelope line. Raises FormatError on any malformed line.

    Reads line by line with a length cap, so a single huge line is refused without
    being held in memory whole.
    """
    from .envelope import parse_envelope  # envelope imports statement; keep bundle light

    path = Path(path)
    out: list[BundleLine] = []
    try:
        f = open(path, "rb")
    except OSError as e:
        raise FormatError(f"{path.name}: cannot read bundle: {e.strerror or e}") from e
    with f:
        n = 0
        while True:
            raw = f.readline(limits.bundle_line_max + 1)
            if not raw:
                break
            n += 1
            if len(raw) > limits.bundle_line_max:
                raise FormatError(
                    f"{path.name}:{n}: line longer than {limits.bundle_line_max} bytes"
                )
            if not raw.endswith(b"\n"):
                raise FormatError(
                    f"{path.name}:{n}: expected a newline-terminated line (truncated?)"
                )
            if not raw.strip():
                raise FormatError(f"{path.name}:{n}: expected an envelope, got an empty line")
            cr = raw.find(b"\r")
            if cr >= 0:  # spec/format.md §1.4 rule 2: LF only, no CR LF line ends
                raise FormatError(
                    f"{path.name}:{n}: expected lines ending in LF only, got CR (0x0D) "
                    f"at byte {cr + 1}"
                )
            if n > limits.bundle_lines_max:
                raise FormatError(f"{path.name}: more than {limits.bundle_lines_max} envelopes")
            obj = parse_json(raw, where=f"{path.name}:{n}", limits=limits)
            out.append(BundleLine(n, parse_envelope(obj, where=f"{path.name}:{n}")))
    if not out:
        raise FormatError(f"{path.name}: expected at least one envelope, got an empty bundle")
    return out

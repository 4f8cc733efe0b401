"""Salted example commitments (spec/format.md §6).

    salt_i     = HMAC-SHA256(run_secret, "govtune.salt.v1" || u64be(i))
    commit_i   = SHA-256("govtune.example.v1\\x00" || salt_i || canonical_json(content_i))

The run secret never enters the public bundle, so a consumer holding a known text
cannot test whether it was trained on; an auditor given the openings (per-example
salts, or the run secret) checks every commitment. Content is the example's text
exactly as trained on (after any masking), as a JSON string; for the labelled and
prompt-response dataset forms it is the object {"text", "label"} or {"prompt",
"response"} (attest.admission.Trained.content).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from .canonical import canonical_json
from .errors import FormatError

SALT_TAG = b"govtune.salt.v1"
EXAMPLE_TAG = b"govtune.example.v1\x00"


def new_run_secret() -> bytes:
    return secrets.token_bytes(32)


def derive_salt(run_secret: bytes, index: int) -> bytes:
    if not isinstance(run_secret, bytes) or len(run_secret) != 32:
        raise FormatError(f"run secret: expected 32 bytes, got {run_secret!r:.20}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 2**64:
        raise FormatError(f"salt index: expected an integer in [0, 2^64), got {index!r:.40}")
    return hmac.new(run_secret, SALT_TAG + struct.pack(">Q", index), hashlib.sha256).digest()


Content = str | Mapping[str, str]  # a JSON string (text form) or object (other forms)


def commit(salt: bytes, content: Content) -> bytes:
    if len(salt) != 32:
        raise FormatError(f"salt: expected 32 bytes, got {len(salt)}")
    # canonical_json refuses anything but JSON data (bytes included): FormatError
    data = dict(content) if isinstance(content, Mapping) else content
    return hashlib.sha256(EXAMPLE_TAG + salt + canonical_json(data)).digest()


@dataclass(frozen=True)
class Opening:
    """What an auditor needs to open commitment ``index``."""

    index: int
    salt: bytes

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "salt": self.salt.hex()}

    def __post_init__(self) -> None:
        # bool is an int in Python: True would silently open commitment 1
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise FormatError(
                f"opening.index: expected a non-negative integer, got {self.index!r:.40}"
            )

    @classmethod
    def from_dict(cls, d: object, where: str = "opening") -> Opening:
        """One ``{"index", "salt"}`` line of openings.jsonl. Raises FormatError."""
        if not isinstance(d, dict) or not isinstance(d.get("index"), int):
            raise FormatError(f"{where}: expected an object with integer index")
        index = d["index"]
        if isinstance(index, bool) or index < 0:
            raise FormatError(f"{where}.index: expected a non-negative integer, got {index!r}")
        try:
            salt = bytes.fromhex(d.get("salt", ""))
        except (TypeError, ValueError) as e:
            raise FormatError(f"{where}.salt: expected 64 hex digits") from e
        if len(salt) != 32:
            raise FormatError(f"{where}.salt: expected 32 bytes, got {len(salt)}")
        return cls(index, salt)

    def opens(self, commitment: bytes, content: Content) -> bool:
        return hmac.compare_digest(commit(self.salt, content), commitment)

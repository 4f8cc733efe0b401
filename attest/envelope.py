"""DSSE envelopes around in-toto Statements (DSSE v1.0 spec, "Protocol").

Signed bytes stay bytes: `SignedStatement` keeps the payload exactly as received
beside its parsed view, and verification is over those bytes. securesystemslib's
`Envelope.from_dict` mutates its argument and `Envelope.verify` ignores
``payloadType``; this module copies the input and checks the type itself.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from securesystemslib import exceptions as sslib_exceptions
from securesystemslib.dsse import Envelope
from securesystemslib.signer import Key, Signer

from .canonical import canonical_json
from .errors import FormatError, VerificationError
from .statement import Statement

PAYLOAD_TYPE = "application/vnd.in-toto+json"


def sign_statement(statement: Statement, signers: Sequence[Signer]) -> dict[str, Any]:
    """Serialize ``statement`` once as RFC 8785 JSON and sign it. Returns the envelope dict."""
    if not signers:
        raise FormatError("sign: expected at least one signer, got none")
    env = Envelope(canonical_json(statement.to_dict()), PAYLOAD_TYPE, {})
    for s in signers:
        env.sign(s)
    return env.to_dict()


def _b64(value: object, where: str) -> bytes:
    """Decode standard padded base64 and require the canonical spelling (spec/format.md
    §1.1.3): re-encoding must give back ``value``. This refuses non-zero unused bits
    (``QR==`` for ``QQ==``), which Python's and most decoders accept silently, so one
    envelope's bytes have one base64 text. Raises FormatError."""
    if not isinstance(value, str):
        raise FormatError(f"{where}: expected a base64 string, got {type(value).__name__}")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise FormatError(f"{where}: expected standard base64, got invalid data") from e
    if base64.b64encode(data).decode("ascii") != value:
        raise FormatError(
            f"{where}: expected canonical base64, got another spelling of its bytes "
            "(non-zero unused bits or extra padding)"
        )
    return data


def parse_envelope(obj: object, *, where: str = "envelope") -> Envelope:
    """Build an Envelope from a parsed JSON object without mutating it. Raises FormatError."""
    if not isinstance(obj, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = {"payload", "payloadType", "signatures"} - set(obj)
    if missing:
        raise FormatError(f"{where}: missing {', '.join(sorted(missing))}")
    sigs = obj["signatures"]
    if not isinstance(sigs, list):
        raise FormatError(f"{where}.signatures: expected a list")
    _b64(obj["payload"], f"{where}.payload")
    for i, s in enumerate(sigs):
        if not isinstance(s, dict) or not isinstance(s.get("keyid"), str):
            raise FormatError(f"{where}.signatures[{i}]: expected an object with a keyid")
        _b64(s.get("sig"), f"{where}.signatures[{i}].sig")
    try:
        return Envelope.from_dict(copy.deepcopy(obj))
    except (KeyError, TypeError, ValueError, sslib_exceptions.FormatError) as e:
        raise FormatError(f"{where}: malformed DSSE envelope ({e})") from e


@dataclass(frozen=True)
class SignedStatement:
    """A statement whose envelope verified, with the exact payload bytes and signer keyids."""

    payload: bytes
    statement: Statement
    keyids: tuple[str, ...]


def verify_envelope(
    env: Envelope, keys: Sequence[Key], threshold: int = 1, *, where: str = "envelope"
) -> SignedStatement:
    """Check payload type and ``threshold`` signatures by distinct trusted keys.

    Fails closed: no keys, a threshold below 1, or a threshold above the number of
    keys is an error, never a pass. Raises VerificationError (GT-SIG-*) or FormatError.
    """
    if threshold < 1:
        raise VerificationError(
            "GT-SIG-THRESHOLD", f"{where}: expected threshold >= 1, got {threshold}"
        )
    if len(keys) < threshold:
        raise VerificationError(
            "GT-SIG-THRESHOLD",
            f"{where}: threshold {threshold} exceeds the {len(keys)} trusted keys",
        )
    if env.payload_type != PAYLOAD_TYPE:
        raise VerificationError(
            "GT-SIG-PAYLOAD-TYPE",
            f"{where}: expected payloadType {PAYLOAD_TYPE}, got {env.payload_type!r:.80}",
        )
    if not env.signatures:
        raise VerificationError("GT-SIG-NONE", f"{where}: envelope carries no signatures")
    try:
        accepted = env.verify(list(keys), threshold)
    except sslib_exceptions.VerificationError as e:
        trusted = {k.keyid for k in keys}
        present = sorted(env.signatures)
        if not trusted & set(present):
            raise VerificationError(
                "GT-SIG-UNTRUSTED",
                f"{where}: expected a signature by a trusted key (given keyids "
                f"{', '.join(sorted(k[:16] for k in trusted))}), "
                f"got keyids {', '.join(k[:16] for k in present)}",
            ) from e
        raise VerificationError(
            "GT-SIG-INVALID",
            f"{where}: expected {threshold} valid signature(s) by trusted keys, got fewer",
        ) from e
    except (ValueError, sslib_exceptions.FormatError) as e:
        raise VerificationError("GT-SIG-INVALID", f"{where}: signature check failed ({e})") from e
    statement = Statement.from_payload(env.payload, where=where)
    return SignedStatement(env.payload, statement, tuple(sorted(accepted)))

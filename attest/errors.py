"""The one exception tree of govtune, split by whose fault a failure is.

- `FormatError`: the input is malformed (bad bytes, wrong types, over a bound).
- `VerificationError`: the input is well-formed but trust fails (bad signature,
  broken chain, a claim that does not match the evidence). Carries a stable check
  code from spec/verification.md.
- `AdmissionError`: the data was refused by policy where refusal is fatal.
- `PolicyError`: the policy document itself is invalid (a FormatError).
- `UsageError`: the caller asked for something impossible (missing file, bad flag);
  the CLI maps it to exit code 2.

Messages say where, what was expected and what was found, on one line.
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """``text`` with line breaks and other non-printable characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class GovtuneError(Exception):
    """Root of every error govtune raises on purpose."""

    def __init__(self, *args: object) -> None:
        # Messages are one line (STYLE §4) even when they quote untrusted text (a TOML
        # key, a tensor name): no forged extra lines or terminal escapes in the output.
        if len(args) == 1 and isinstance(args[0], str):
            args = (one_line(args[0]),)
        super().__init__(*args)


class FormatError(GovtuneError):
    """Malformed input: the bytes or structure do not follow spec/."""


class PolicyError(FormatError):
    """The policy document is invalid."""


class VerificationError(GovtuneError):
    """Well-formed evidence that fails a verification check.

    `code` is the stable check code (e.g. ``GT-CHAIN-GAP``) from spec/verification.md.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = one_line(message)


class AdmissionError(GovtuneError):
    """Data refused by the policy where the caller required admission."""


class UsageError(GovtuneError):
    """The request cannot be carried out (missing file, bad argument)."""

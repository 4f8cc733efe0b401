"""The dataset file (spec/README.md, "Dataset file"): the one reader for trainer and verifier.

JSON Lines, UTF-8, one example per line::

    {"text": "...", "license": "MIT", "source": "https://...", "data_class": "docs",
     "consent": false}

Line ``k`` (1-based) is admission index ``k - 1``, so the reader is strict: the
producer and an auditor (verification V8) must read the very same examples from
the very same bytes, or commitments open to different texts. Every line is parsed
with `attest.canonical.parse_json` (no duplicate keys, no NaN, bounded depth),
is at most ``Limits.dataset_line_max`` bytes, and has one of three forms (FORMS):

- ``text``: the five fields above (v0.1);
- ``labelled``: the five fields and ``"label": str`` (a class name, for classifiers);
- ``prompt-response``: ``"prompt"`` and ``"response"`` instead of ``"text"`` (causal LMs
  trained on the response only); `Example.text` is then ``prompt + response``, the
  text the content rules inspect.
A blank line is refused, not skipped: skipping it would shift every later index.
Unknown fields are refused too (unlike predicates): a field this version does not
read could carry metadata the admission rules would then silently ignore.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .canonical import parse_json
from .errors import FormatError, UsageError
from .limits import DEFAULT_LIMITS, Limits

# field -> type, in the order of the line format
FIELDS: dict[str, type] = {
    "text": str,
    "license": str,
    "source": str,
    "data_class": str,
    "consent": bool,
}
# optional task fields -> type (spec/README.md, "Dataset file")
TASK_FIELDS: dict[str, type] = {"label": str, "prompt": str, "response": str}
FORMS = ("text", "labelled", "prompt-response")


@dataclass(frozen=True)
class Example:
    """One dataset line: its content (before masking) and its declared metadata."""

    text: str
    license: str  # SPDX identifier
    source: str
    data_class: str
    consent: bool
    label: str | None = None  # the labelled form
    prompt: str | None = None  # the prompt-response form: text == prompt + response
    response: str | None = None

    def __post_init__(self) -> None:
        for name, typ in FIELDS.items():
            value = getattr(self, name)
            if not isinstance(value, typ):
                raise FormatError(
                    f"example.{name}: expected {typ.__name__}, got {type(value).__name__}"
                )
        for name, typ in TASK_FIELDS.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, typ):
                raise FormatError(
                    f"example.{name}: expected {typ.__name__}, got {type(value).__name__}"
                )
        if (self.prompt is None) != (self.response is None):
            raise FormatError("example: expected both prompt and response, or neither")
        if self.prompt is not None:
            if self.label is not None:
                raise FormatError("example: expected label or prompt/response, got both")
            if self.text != self.prompt + self.response:  # type: ignore[operator]
                raise FormatError("example.text: expected prompt + response")

    @property
    def form(self) -> str:
        """One of FORMS."""
        if self.prompt is not None:
            return "prompt-response"
        return "text" if self.label is None else "labelled"

    def to_dict(self) -> dict[str, Any]:
        """The line format (keys as in the file)."""
        d = {name: getattr(self, name) for name in FIELDS}
        if self.prompt is not None:
            del d["text"]
        d.update({n: getattr(self, n) for n in TASK_FIELDS if getattr(self, n) is not None})
        return d

    @classmethod
    def from_dict(cls, d: object, where: str = "example") -> Example:
        """One parsed line. Raises FormatError for a missing/unknown field or a wrong type."""
        if not isinstance(d, dict):
            raise FormatError(f"{where}: expected a JSON object, got {_json_type(d)}")
        d = dict(d)
        pair = "prompt" in d or "response" in d
        if pair:  # the prompt-response form: no "text" of its own
            if "text" in d:
                raise FormatError(f"{where}: expected text or prompt/response, got both")
            if "label" in d:
                raise FormatError(f"{where}: expected label or prompt/response, got both")
            required = (set(FIELDS) - {"text"}) | {"prompt", "response"}
        else:
            required = set(FIELDS)
        missing = required - set(d)
        if missing:
            raise FormatError(f"{where}: missing {', '.join(sorted(missing))}")
        unknown = set(d) - set(FIELDS) - set(TASK_FIELDS)
        if unknown:
            raise FormatError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        types = {**FIELDS, **TASK_FIELDS}
        for name in sorted(set(d)):
            typ = types[name]
            # bool is an int in Python, but no field here is an int: isinstance suffices.
            if not isinstance(d[name], typ):
                raise FormatError(
                    f"{where}.{name}: expected {typ.__name__}, got {_json_type(d[name])}"
                )
        text = d["prompt"] + d["response"] if pair else d["text"]
        return cls(
            text, d["license"], d["source"], d["data_class"], d["consent"],
            d.get("label"), d.get("prompt"), d.get("response"),
        )  # fmt: skip


def _json_type(v: object) -> str:
    names = {dict: "object", list: "array", str: "str", bool: "bool", int: "int", float: "float"}
    return "null" if v is None else names.get(type(v), type(v).__name__)


def parse_line(line: bytes, where: str, *, limits: Limits = DEFAULT_LIMITS) -> Example:
    """One JSONL line (with or without its newline). Raises FormatError naming ``where``."""
    if len(line) > limits.dataset_line_max:
        raise FormatError(
            f"{where}: expected a line of at most {limits.dataset_line_max} bytes, got more"
        )
    if not line.strip():
        raise FormatError(f"{where}: expected a JSON object, got an empty line")
    return Example.from_dict(parse_json(line, where=where, limits=limits), where)


def read_dataset(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> tuple[tuple[Example, ...], str]:
    """All examples in file order and the SHA-256 (hex) of the file's bytes.

    Reads line by line, never more than ``limits.dataset_line_max + 1`` bytes at a
    time. Raises FormatError (``file:line: ...``) for a malformed line, UsageError if
    the file cannot be read.
    """
    path = Path(path)
    out: list[Example] = []
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            lineno = 0
            while line := f.readline(limits.dataset_line_max + 1):
                lineno += 1
                sha.update(line)
                out.append(parse_line(line, f"{path.name}:{lineno}", limits=limits))
    except OSError as e:
        raise UsageError(f"{path}: cannot read dataset: {e.strerror or e}") from e
    return tuple(out), sha.hexdigest()

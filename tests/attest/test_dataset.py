"""The dataset reader shared by trainer and verifier (spec/README.md, "Dataset file")."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from attest.dataset import Example, read_dataset
from attest.errors import FormatError, UsageError
from attest.limits import Limits

ROW = {"text": "hello", "license": "MIT", "source": "docs:a", "data_class": "d", "consent": False}
GOOD = json.dumps(ROW).encode()


def test_reads_examples_in_order_with_the_file_sha256(tmp_path: Path) -> None:
    other = {**ROW, "text": "é ✓ \U0001f600", "consent": True}
    data = GOOD + b"\n" + json.dumps(other, ensure_ascii=False).encode()  # no final newline
    (tmp_path / "d.jsonl").write_bytes(data)
    examples, sha = read_dataset(tmp_path / "d.jsonl")
    assert examples == (Example(**ROW), Example(**other))  # type: ignore[arg-type]
    assert sha == hashlib.sha256(data).hexdigest()
    assert [e.to_dict() for e in examples] == [ROW, other]


def test_empty_file_is_no_examples(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_bytes(b"")
    assert read_dataset(tmp_path / "d.jsonl") == ((), hashlib.sha256(b"").hexdigest())


# (id, file bytes, expected message); line 1 is always good where the error is on line 2
BAD = [
    (
        "blank-line",
        GOOD + b"\n\n" + GOOD + b"\n",
        "d.jsonl:2: expected a JSON object, got an empty line",
    ),
    ("trailing-blank", GOOD + b"\n\n", "d.jsonl:2: expected a JSON object, got an empty line"),
    (
        "whitespace-line",
        GOOD + b"\n \t\r\n",
        "d.jsonl:2: expected a JSON object, got an empty line",
    ),
    (
        "invalid-utf8",
        GOOD + b'\n{"text": "\xff"}\n',
        "d.jsonl:2: expected UTF-8 JSON, got invalid byte at 10",
    ),
    ("not-json", GOOD + b"\nnot json\n", "d.jsonl:2: expected JSON, got JSONDecodeError"),
    (
        "duplicate-key",
        GOOD[:-1] + b', "text": "x"}\n',
        "d.jsonl:1: duplicate JSON object key 'text'",
    ),
    ("nan", GOOD + b'\n{"text": NaN}\n', "d.jsonl:2: expected a finite JSON number, got NaN"),
    ("array", GOOD + b"\n[1]\n", "d.jsonl:2: expected a JSON object, got array"),
    ("null", GOOD + b"\nnull\n", "d.jsonl:2: expected a JSON object, got null"),
    (
        "missing",
        GOOD + b'\n{"text": "x"}\n',
        "d.jsonl:2: missing consent, data_class, license, source",
    ),
    (
        "camel-case-field",
        GOOD.replace(b'"data_class"', b'"dataClass"'),
        "d.jsonl:1: missing data_class",
    ),
    ("unknown", GOOD[:-1] + b', "z": 1, "a": 2}', "d.jsonl:1: unknown field(s) a, z"),
    ("text-not-str", GOOD.replace(b'"hello"', b"1"), "d.jsonl:1.text: expected str, got int"),
    ("text-bool", GOOD.replace(b'"hello"', b"true"), "d.jsonl:1.text: expected str, got bool"),
    ("consent-int", GOOD.replace(b"false", b"0"), "d.jsonl:1.consent: expected bool, got int"),
    ("license-null", GOOD.replace(b'"MIT"', b"null"), "d.jsonl:1.license: expected str, got null"),
    (
        "too-deep",
        GOOD[:-1] + b', "x": ' + b"[" * 80 + b"]" * 80 + b"}",
        "d.jsonl:1: JSON nested deeper than 64",
    ),
]


@pytest.mark.parametrize(("data", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_malformed_dataset_names_file_and_line(tmp_path: Path, data: bytes, message: str) -> None:
    (tmp_path / "d.jsonl").write_bytes(data)
    with pytest.raises(FormatError) as e:
        read_dataset(tmp_path / "d.jsonl")
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_line_over_the_bound_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    limits = Limits(dataset_line_max=len(GOOD) + 1)  # the line and its newline fit exactly
    (tmp_path / "d.jsonl").write_bytes(GOOD + b"\n" + GOOD[:-1] + b', "z": 1}\n')
    with pytest.raises(FormatError) as e:
        read_dataset(tmp_path / "d.jsonl", limits=limits)
    assert str(e.value) == f"d.jsonl:2: expected a line of at most {len(GOOD) + 1} bytes, got more"


def test_unreadable_dataset_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"missing\.jsonl: cannot read dataset: No such file"):
        read_dataset(tmp_path / "missing.jsonl")


def test_from_dict_does_not_mutate_and_constructor_checks_types() -> None:
    d = dict(ROW)
    assert Example.from_dict(d, "x") == Example(**ROW)  # type: ignore[arg-type]
    assert d == ROW
    with pytest.raises(FormatError, match=r"^example\.consent: expected bool, got str$"):
        Example("t", "MIT", "s", "d", "yes")  # type: ignore[arg-type]

"""Dataset forms (spec/README.md "Dataset file"): labelled and prompt-response lines, their
admission content and commitments (spec/format.md §6)."""

from __future__ import annotations

import json

import pytest

from attest.admission import inspect_example
from attest.commitment import commit
from attest.dataset import Example, parse_line
from attest.errors import FormatError
from attest.policy import Policy

META = {"license": "MIT", "source": "s", "data_class": "docs", "consent": False}
POLICY = Policy.from_toml(
    b"""
version = "0.1"
name = "forms"
[licenses]
allow = ["permissive"]
[licenses.classes]
"MIT" = "permissive"
[pii]
detect = ["email"]
action = "mask"
[profiles.all]
patterns = ["*"]
[[assign]]
profile = "all"
""",
    where="p.toml",
)


def line(**kw: object) -> bytes:
    return json.dumps({**META, **kw}).encode()


@pytest.mark.parametrize(
    ("doc", "form", "text"),
    [
        ({"text": "a"}, "text", "a"),
        ({"text": "a", "label": "x"}, "labelled", "a"),
        ({"prompt": "Q: ", "response": "A"}, "prompt-response", "Q: A"),
    ],
)
def test_forms_round_trip(doc: dict[str, object], form: str, text: str) -> None:
    ex = parse_line(line(**doc), "d:1")
    assert ex.form == form and ex.text == text
    assert ex.to_dict() == {**META, **doc}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"prompt": "q"}, r"d:1: missing response"),
        ({"prompt": "q", "response": "r", "text": "qr"}, r"expected text or prompt/response"),
        ({"prompt": "q", "response": "r", "label": "x"}, r"expected label or prompt/response"),
        ({"text": "a", "label": 3}, r"d:1.label: expected str, got int"),
        ({"text": "a", "labels": "x"}, r"unknown field\(s\) labels"),
        ({"response": "r"}, r"d:1: missing prompt"),
    ],
)
def test_bad_forms(doc: dict[str, object], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_line(line(**doc), "d:1")


def test_example_checks_prompt_response_text() -> None:
    with pytest.raises(FormatError, match=r"example.text: expected prompt \+ response"):
        Example("xy", "MIT", "s", "d", False, prompt="x", response="z")


def test_text_form_commitment_unchanged() -> None:
    """The text form commits to the JSON string, as in v0.1 (spec test vectors still hold)."""
    findings, t = inspect_example(POLICY, parse_line(line(text="Hello"), "d:1"), set())
    assert t.content == "Hello" and t.fields == {}
    assert commit(bytes(32), t.content) == commit(bytes(32), "Hello")


def test_labelled_content_binds_label() -> None:
    ex = parse_line(line(text="Hello", label="a"), "d:1")
    _, t = inspect_example(POLICY, ex, set())
    assert t.content == {"text": "Hello", "label": "a"} and t.fields == {"label": "a"}
    relabelled = inspect_example(POLICY, parse_line(line(text="Hello", label="b"), "d:1"), set())
    assert commit(bytes(32), t.content) != commit(bytes(32), relabelled[1].content)


def test_prompt_response_masks_each_part() -> None:
    ex = parse_line(line(prompt="mail a@b.example ", response="reply c@d.example"), "d:1")
    findings, t = inspect_example(POLICY, ex, set())
    assert findings.pii == ("email",)
    assert "a@b.example" not in t.text and "c@d.example" not in t.text
    assert t.text == t.content["prompt"] + t.content["response"]  # type: ignore[index]
    assert t.fields == {"prompt": t.content["prompt"]}  # type: ignore[index]
    assert t.content["prompt"].startswith("mail ")  # type: ignore[index]
    assert t.content["response"].startswith("reply ")  # type: ignore[index]


def test_duplicate_judged_on_joint_text() -> None:
    seen: set[str] = set()
    a = parse_line(line(prompt="ab", response="c"), "d:1")
    b = parse_line(line(prompt="a", response="bc"), "d:2")
    assert not inspect_example(POLICY, a, seen)[0].duplicate
    assert inspect_example(POLICY, b, seen)[0].duplicate

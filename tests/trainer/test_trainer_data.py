"""Dataset reading and admission: refused examples are recorded, counts match the policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trainer_fixtures import EXPECTED, POLICY, Run, rows

from attest.dataset import Example
from attest.dataset import read_dataset as attest_read_dataset
from attest.errors import FormatError
from attest.log import iter_log
from attest.policy import Policy
from attest.records import AdmissionRecord
from trainer.data import admit


def _policy() -> Policy:
    return Policy.from_toml(POLICY.format(action="flag", loss_drop=0.0).encode())


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "d.jsonl:2: expected JSON, got JSONDecodeError"),
        ("[1, 2]", "d.jsonl:2: expected a JSON object, got array"),
        ('{"text": "x"}', "d.jsonl:2: missing consent, data_class, license, source"),
        (
            '{"text": 1, "license": "MIT", "source": "s", "data_class": "d", "consent": true}',
            "d.jsonl:2.text: expected str, got int",
        ),
        (
            '{"text": "x", "license": "MIT", "source": "s", "data_class": "d", "consent": "yes"}',
            "d.jsonl:2.consent: expected bool, got str",
        ),
        (
            '{"text": "x", "license": "MIT", "source": "s", "data_class": "d", "consent": true, '
            '"z": 1}',
            "d.jsonl:2: unknown field(s) z",
        ),
        (
            # the trainer's old reader let the last duplicate win; the shared reader refuses
            '{"text": "x", "text": "y", "license": "MIT", "source": "s", "data_class": "d", '
            '"consent": true}',
            "d.jsonl:2: duplicate JSON object key 'text'",
        ),
        ("", "d.jsonl:2: expected a JSON object, got an empty line"),
    ],
)
def test_bad_dataset_line_names_the_line(tmp_path: Path, line: str, message: str) -> None:
    good = json.dumps(rows()[0])
    (tmp_path / "d.jsonl").write_text(good + "\n" + line + "\n")
    with pytest.raises(FormatError) as e:
        attest_read_dataset(tmp_path / "d.jsonl")
    assert str(e.value).startswith(message)


def test_trainer_reads_the_dataset_with_the_shared_reader() -> None:
    # one reader for trainer and verifier (attest.dataset): no parsing of its own here
    import trainer.data
    import trainer.loop

    assert trainer.loop.read_dataset is attest_read_dataset
    assert not hasattr(trainer.data, "parse_line")


def test_admission_counts_and_reasons() -> None:
    adm = admit(_policy(), [read_one(r) for r in rows()], bytes(32))
    assert adm.counts == EXPECTED
    reasons = {r.index: [o.rule for o in r.outcomes if o.outcome == "fail"] for r in adm.records}
    assert reasons[14] == ["license", "profile"]  # strong copyleft: denied, no assignment
    assert reasons[15] == ["pii"]
    assert reasons[16] == ["license", "profile"]  # unknown license: no class, no profile
    assert reasons[17] == ["length"]
    assert reasons[18] == ["duplicate"]
    assert {adm.profiles[i] for i in range(0, 14, 2)} == {"deep"}
    assert {adm.profiles[i] for i in range(1, 14, 2)} == {"surface"}
    assert [r.metadata.canary for r in adm.records[19:]] == [True, True]


def test_canary_secret_depends_on_the_run_secret() -> None:
    a = admit(_policy(), [], bytes(32)).canaries[0]
    b = admit(_policy(), [], bytes(31) + b"\x01").canaries[0]
    assert a.secret != b.secret and len(a.secret) == 4 and a.secret in a.text


def test_run_admission_log_matches_policy(tiny: Run) -> None:
    recs = [
        AdmissionRecord.from_record(r.value)
        for r in iter_log(tiny.out / "provenance" / "admissions.msgpack")
    ]
    assert [r.index for r in recs] == list(range(EXPECTED["total"]))
    assert sum(r.admitted for r in recs) == EXPECTED["admitted"]
    assert tiny.result.counts == EXPECTED


def read_one(r: dict[str, object]) -> Example:
    return Example.from_dict(r)


def test_admission_shows_progress_only_in_a_command_that_shows_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import trainer.data as data
    from attest.progress import Progress, enabled

    class _Eager(Progress):  # every update a line, no delay: the wiring, not the timing
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, **{**kw, "every_s": 0.0, "delay_s": 0.0})  # type: ignore[arg-type]

    monkeypatch.setattr(data, "Progress", _Eager)
    policy = _policy()
    examples = [read_one(r) for r in rows()]
    admit(policy, examples, b"k" * 32)
    assert capsys.readouterr().err == ""  # a library call: silent
    with enabled():
        admit(policy, examples, b"k" * 32)
    err = capsys.readouterr().err
    n = len(examples)
    assert f"admitting: {n}/{n} examples (100%)" in err, err

"""The verify/report commands: exit codes 0/1/2, JSON on stdout, no traceback on bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import need
from vector_helpers import KEY, UNTRUSTED_KEY, VECTORS, cli_args

from verifier.cli import main


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_pass_exit_0(basic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["verify", *cli_args(basic)], capsys)
    assert code == 0
    assert "GT-STATE-FINAL" in out  # the table on stdout: `| less` and `> file` work
    assert err.strip().splitlines() == [err.strip()]  # stderr: the one-line verdict only
    assert err.startswith("OK: PASS")


def test_verify_fail_exit_1_names_code_and_message(capsys: pytest.CaptureFixture[str]) -> None:
    v = VECTORS / "invalid" / "route-violation"
    code, _, err = _run(["verify", *cli_args(v)], capsys)
    assert code == 1
    assert (
        "GT-ROUTE-VIOLATION: step 5: tensor 'h.0.attn.w' changed but no example in the batch may "
        "touch it" in err
    )
    assert err.strip().splitlines()[-1].startswith("FAIL:")


def test_verify_json_on_stdout(basic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["verify", *cli_args(basic), "--format", "json", "--quiet"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["verdict"] == "PASS"
    assert {"verified", "attested", "scope", "findings", "target"} <= set(doc)
    assert doc["verified"]["steps"] == 6
    assert all(f["status"] in ("pass", "skip") for f in doc["findings"])


def test_json_of_a_failing_run(capsys: pytest.CaptureFixture[str]) -> None:
    v = VECTORS / "invalid" / "sig-untrusted"
    code, out, _ = _run(["verify", *cli_args(v), "--format", "json"], capsys)
    assert code == 1
    doc = json.loads(out)
    assert doc["verdict"] == "FAIL"
    assert [f["code"] for f in doc["findings"] if f["status"] == "fail"] == ["GT-SIG-UNTRUSTED"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["verify", "/nonexistent/run", "--key", str(KEY)], "expected a run or release folder"),
        (
            ["verify", str(VECTORS / "valid" / "basic" / "run"), "--key", "/nonexistent.pub"],
            "key file not found",
        ),
        (
            [
                "verify",
                str(VECTORS / "valid" / "basic" / "run"),
                "--key",
                str(VECTORS / "valid" / "basic" / "dataset.jsonl"),
            ],
            "expected a PEM public key",
        ),
        (
            [
                "verify",
                str(VECTORS / "valid" / "basic" / "run"),
                "--key",
                str(KEY),
                "--data",
                "x.jsonl",
            ],
            "go together",
        ),
        (["verify", str(VECTORS / "valid" / "basic" / "run")], "--key"),
        (
            [
                "verify",
                str(VECTORS / "valid" / "basic" / "run"),
                "--key",
                str(KEY),
                "--threshold",
                "x",
            ],
            "invalid int",
        ),
    ],
    ids=[
        "no-path",
        "no-key",
        "bad-key",
        "data-without-openings",
        "key-flag-missing",
        "bad-threshold",
    ],
)
def test_could_not_run_exit_2(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(args)
    except SystemExit as e:  # argparse errors exit through the parser
        code = int(e.code or 0)
    _, err = capsys.readouterr()
    assert code == 2
    assert needle in err
    assert "Traceback" not in err


def test_wrong_key_is_a_fail_not_an_error(basic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["verify", str(basic / "run"), "--key", str(UNTRUSTED_KEY)], capsys)
    assert code == 1
    assert "GT-SIG-UNTRUSTED" in err


@pytest.mark.parametrize(
    "damage", ["truncate-steps", "garbage-bundle", "empty-run", "steps-is-dir"]
)
def test_damaged_evidence_fails_without_traceback(damage: str, tmp_path: Path, basic: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(basic / "run", run)
    prov = run / "provenance"
    if damage == "truncate-steps":
        data = (prov / "steps.msgpack").read_bytes()
        (prov / "steps.msgpack").write_bytes(data[: len(data) // 2])
    elif damage == "garbage-bundle":
        (prov / "bundle.intoto.jsonl").write_bytes(b"\x00\xff" * 100)
    elif damage == "empty-run":
        shutil.rmtree(run)
        run.mkdir()
    else:
        (prov / "steps.msgpack").unlink()
        (prov / "steps.msgpack").mkdir()
    p = subprocess.run(
        [sys.executable, "-m", "verifier.cli", "verify", str(run), "--key", str(KEY)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert "FAIL:" in p.stderr


def test_govtune_verify_entry_point(basic: Path) -> None:
    from verifier.cli import verify_main

    assert verify_main([str(basic / "run"), "--key", str(KEY), "--quiet"]) == 0


def test_report_writes_file_and_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need("verifier.report")
    ok = tmp_path / "ok.json"
    assert (
        main(
            [
                "report",
                *cli_args(VECTORS / "valid" / "basic"),
                "--format",
                "json",
                "--output",
                str(ok),
            ]
        )
        == 0
    )
    assert ok.is_file() and ok.stat().st_size > 0
    bad = tmp_path / "bad.md"
    v = VECTORS / "invalid" / "batch-refused"
    assert main(["report", *cli_args(v), "--format", "md", "--output", str(bad)]) == 1
    assert "GT-BATCH-REFUSED" in bad.read_text()


# --- issue 14: output that composes, through the real command line ----------------------


def _govtune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "verifier.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("output", ["-", "/dev/stdout"])
def test_report_to_stdout_composes_and_keeps_dev_stdout(basic: Path, output: str) -> None:
    need("verifier.report")
    p = _govtune("report", *cli_args(basic), "--format", "json", "--output", output)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["verdict"]["value"] == "PASS"
    assert "Traceback" not in p.stderr and "pipe:[" not in p.stderr, p.stderr
    assert Path("/dev/stdout").is_symlink()  # never replaced by a regular file


def test_json_mode_stdout_is_json_only_and_stderr_the_verdict_only(basic: Path) -> None:
    p = _govtune("verify", *cli_args(basic), "--format", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["verdict"] == "PASS"  # nothing but JSON on stdout
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("OK: PASS"), p.stderr


def test_text_mode_table_on_stdout_verdict_on_stderr(basic: Path) -> None:
    p = _govtune("verify", *cli_args(basic))
    assert p.returncode == 0, p.stderr
    assert "GT-STATE-FINAL" in p.stdout and "OK: PASS" not in p.stdout
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("OK: PASS"), p.stderr


def test_failing_verdict_line_names_the_first_failure_in_full() -> None:
    p = _govtune("verify", *cli_args(VECTORS / "invalid" / "route-violation"))
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1, p.stderr
    assert "FAIL:" in p.stderr and "GT-ROUTE-VIOLATION: step 5: tensor 'h.0.attn.w'" in p.stderr


def test_version() -> None:
    p = _govtune("--version")
    assert p.returncode == 0 and p.stdout.startswith("govtune 0."), p.stdout


@pytest.mark.parametrize(
    "args",
    [["verify"], ["verify", "x", "--key"], ["nosuchcommand"], ["verify", "x", "--bogus", "1"]],
)
def test_parse_error_is_one_line_with_a_pointer_to_help(args: list[str]) -> None:
    p = _govtune(*args)
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.count("\n") == 1, p.stderr
    assert "error:" in p.stderr and "--help`)" in p.stderr


def test_wrong_key_names_the_supplied_keyid_and_the_signers(basic: Path) -> None:
    from attest.keys import load_public_key

    given = load_public_key(UNTRUSTED_KEY).keyid[:16]
    signer = load_public_key(KEY).keyid[:16]
    p = _govtune("verify", str(basic / "run"), "--key", str(UNTRUSTED_KEY))
    assert p.returncode == 1
    assert "GT-SIG-UNTRUSTED" in p.stderr
    assert f"given keyids {given}" in p.stderr and f"got keyids {signer}" in p.stderr, p.stderr


def test_parent_of_a_run_says_did_you_mean(tmp_path: Path, basic: Path) -> None:
    shutil.copytree(basic / "run", tmp_path / "run")
    p = _govtune("verify", str(tmp_path), "--key", str(KEY))
    assert p.returncode == 2
    assert f"did you mean {tmp_path / 'run'}?" in p.stderr, p.stderr


def test_interrupted_run_says_so(tmp_path: Path, basic: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(basic / "run", run)
    (run / "provenance" / "bundle.intoto.jsonl").unlink()  # logs there, never signed
    p = _govtune("verify", str(run), "--key", str(KEY))
    assert p.returncode == 1
    assert "GT-BUNDLE-MISSING" in p.stderr
    assert "interrupted before it was signed" in p.stderr and "--resume" in p.stderr


def test_show_lists_every_example_from_verified_public_evidence(basic: Path) -> None:
    p = _govtune("show", str(basic / "run"), "--key", str(KEY), "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    t = doc["totals"]
    assert t["examples"] == len(doc["examples"]) == 14
    assert sum(t["refusedByFirstFailingRule"].values()) == t["refused"] == 6
    assert sum(t["rulesFailed"].values()) == 7  # one example fails two rules
    assert all(not r["text"] and not r["text_sha256"] for r in doc["examples"])  # commitments only
    assert p.stderr.startswith("OK: PASS")


def test_show_with_openings_shows_text_digests(basic: Path) -> None:
    p = _govtune("show", str(basic / "run"), "--key", str(KEY), "--data",
                 str(basic / "dataset.jsonl"), "--openings", str(basic / "run" / "private"),
                 "--format", "json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    first = json.loads(p.stdout)["examples"][0]
    assert len(first["text_sha256"]) == 64 and first["text"].startswith("The merge function")


def test_show_of_an_unverified_run_shows_nothing(basic: Path) -> None:
    p = _govtune("show", str(basic / "run"), "--key", str(UNTRUSTED_KEY))
    assert p.returncode == 1
    assert p.stdout == ""
    assert "did not verify; nothing shown" in p.stderr and "GT-SIG-UNTRUSTED" in p.stderr


# -- bad input on every subcommand: one line, exit 2, no traceback (issue 14) ------------------

BASIC = VECTORS / "valid" / "basic"
_BAD_INPUTS = {  # name: (argv with {t} for a scratch folder, what the line must say)
    "verify-no-run": (["verify", "{t}/nothing", "--key", str(KEY)], "found nothing"),
    "verify-file-as-run": (["verify", str(BASIC / "dataset.jsonl"), "--key", str(KEY)],
                           "expected a run or release folder, found a file"),
    "verify-key-folder": (["verify", str(BASIC / "run"), "--key", "{t}"],
                          "expected a key file, found a folder"),
    "verify-key-toml": (["verify", str(BASIC / "run"), "--key", "{t}/bad.toml"],
                        "expected a PEM public key"),
    "verify-require-missing": (["verify", str(BASIC / "run"), "--key", str(KEY), "--require",
                                "{t}/nothing.toml"], "expected a requirements file"),
    "verify-require-folder": (["verify", str(BASIC / "run"), "--key", str(KEY), "--require",
                               "{t}"], "expected a requirements file"),
    "verify-require-bad-toml": (["verify", str(BASIC / "run"), "--key", str(KEY), "--require",
                                 "{t}/bad.toml"], "expected TOML"),
    "verify-require-bad-key": (["verify", str(BASIC / "run"), "--key", str(KEY), "--require",
                                "{t}/badkey.toml"], "unknown key 'bogus'"),
    "show-key-folder": (["show", str(BASIC / "run"), "--key", "{t}"], "found a folder"),
    "report-output-folder": (["report", str(BASIC / "run"), "--key", str(KEY), "--output", "{t}"],
                             "found a folder"),
    "report-output-no-parent": (["report", str(BASIC / "run"), "--key", str(KEY), "--output",
                                 "{t}/no/r.html"], "does not exist"),
    "sign-key-not-pem": (["sign", "{t}/nothing", "--key", "{t}/bad.toml"], "PKCS#8 PEM"),
    "sign-key-folder": (["sign", str(BASIC / "run"), "--key", "{t}"], "found a folder"),
    "release-no-run": (["release", "{t}/nothing", "--key", "{t}/bad.toml", "--out", "{t}/rel"],
                       "{t}/bad.toml"),
    "keygen-no-folder": (["keygen", "{t}/no/k"], "expected an existing folder"),
    "demo-out-is-a-file": (["demo", "--out", "{t}/bad.toml"], "found a file"),
    "train-no-config": (["train", "{t}/nothing.toml", "--out", "{t}/o", "--key", "k"],
                        "cannot read config"),
    "admit-config-folder": (["admit", "{t}"], "cannot read config: Is a directory"),
    "admit-bad-toml": (["admit", "{t}/bad.toml"], "expected UTF-8 TOML"),
    "admit-bad-key": (["admit", "{t}/badkey.toml"], "unknown key(s) bogus"),
}  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [  # the trainer's commands import torch first: seconds each, so marked slow
        pytest.param(c, marks=pytest.mark.slow) if c.split("-")[0] in {"train", "admit", "demo"}
        else c
        for c in sorted(_BAD_INPUTS)
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(case: str, tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('dataset = "x\n')  # not TOML (nor PEM)
    (tmp_path / "badkey.toml").write_text('init = "random"\nbogus = 1\n')
    argv, needle = _BAD_INPUTS[case]
    argv = [a.replace("{t}", str(tmp_path)) for a in argv]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    p = subprocess.run([sys.executable, "-m", "verifier.cli", *argv], capture_output=True,
                       text=True, timeout=120, env=env)  # fmt: skip
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and re.match(r"govtune( \w+)?: error: ", p.stderr), p.stderr
    assert needle.replace("{t}", str(tmp_path)) in p.stderr, p.stderr
    assert p.stdout == ""

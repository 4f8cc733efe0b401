"""attest.progress: periodic lines in logs, nothing before the first update, quiet is quiet."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from attest.progress import BIG_BYTES, Progress, enabled, for_bytes


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_count_eta_and_a_closing_line() -> None:
    out = io.StringIO()
    with Progress("training", 4, unit="steps", stream=out, every_s=0.0) as p:
        p.update(1, loss=0.5)
        p.update(2, loss=0.25)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("training: 1/4 steps (25%), 0m00s elapsed, ETA ")
    assert lines[0].endswith("loss 0.500")
    assert lines[-1].startswith("training: 2/4 steps (50%)")  # the closing line
    assert len(lines) == 3


def test_nothing_before_the_first_update_and_nothing_after_an_error() -> None:
    out = io.StringIO()
    try:
        with Progress("training", 4, stream=out, every_s=0.0):
            raise ValueError("config error")  # an input error before any step
    except ValueError:
        pass
    assert out.getvalue() == ""


def test_log_lines_are_periodic_not_per_update() -> None:
    out = io.StringIO()
    with Progress("verifying", 1000, unit="layers", stream=out, every_s=3600.0) as p:
        for k in range(1000):
            p.update(k)
    assert out.getvalue().count("\n") == 1  # only the closing line


def test_quiet_prints_nothing_and_a_tty_draws_a_bar() -> None:
    out = io.StringIO()
    with Progress("x", 3, quiet=True, stream=out, every_s=0.0) as p:
        p.update(3)
    assert out.getvalue() == ""
    tty = _Tty()
    with Progress("training", 3, stream=tty) as p:
        p.update(3, loss=0.125)
    assert "training" in tty.getvalue() and "3/3" in tty.getvalue()


def test_byte_progress_is_for_big_files_in_a_command_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert for_bytes("hashing a", BIG_BYTES).quiet  # a library call: no progress
    with enabled():
        assert for_bytes("hashing a", BIG_BYTES - 1).quiet  # small: silent
        with for_bytes("hashing a", 3 * BIG_BYTES) as bar:
            assert not bar.quiet
            with for_bytes("hashing b", BIG_BYTES) as other:  # parallel files: one shown
                assert other.quiet
            time.sleep(1.05)  # past the one-second delay
            bar.advance(BIG_BYTES)
    err = capsys.readouterr().err
    mib = BIG_BYTES >> 20
    assert err.startswith(f"hashing a: {mib}/{3 * mib} MiB (33%)"), err
    assert err.count("\n") == 1 and "hashing b" not in err  # the closing line only


def test_nothing_for_an_operation_shorter_than_its_delay() -> None:
    out = io.StringIO()
    with Progress("admitting", 10, stream=out, every_s=0.0, delay_s=60.0) as p:
        p.update(10)
    assert out.getvalue() == ""


def test_hashing_reports_every_byte_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import attest.digest as digest
    import attest.tensors as tensors
    from attest.digest import sha256_file
    from attest.tensors import hash_safetensors

    seen: list[tuple[str, int, int]] = []

    class _Spy(Progress):
        def __exit__(self, *exc: object) -> None:
            seen.append((self.label, self.total or 0, self.done))

    def spy(label: str, size: int) -> Progress:
        return _Spy(label, size, quiet=True)

    monkeypatch.setattr(digest, "for_bytes", spy)
    monkeypatch.setattr(tensors, "for_bytes", spy)
    header = b'{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}'
    data = len(header).to_bytes(8, "little") + header + bytes(24)
    (tmp_path / "m.safetensors").write_bytes(data)
    hash_safetensors(tmp_path / "m.safetensors")
    sha256_file(tmp_path / "m.safetensors")
    assert seen == [("hashing m.safetensors", len(data), len(data))] * 2


def test_a_bar_inside_a_bar_pauses_the_outer_one() -> None:
    tty = _Tty()
    with Progress("verifying", 3, stream=tty) as outer:
        outer.update(1)
        assert outer._bar is not None
        with Progress("replaying", 2, stream=tty) as inner:
            inner.update(1)
            assert outer._bar is None and inner._bar is not None  # one bar on the terminal
        outer.update(2)  # resumes
        assert outer._bar is not None
    assert "replaying" in tty.getvalue()


def test_a_units_records_show_with_their_own_eta_until_the_next_unit() -> None:
    out = io.StringIO()
    with Progress("verifying", 10, unit="layers", stream=out, every_s=0.0) as p:
        p.update(2, layer="admissions")
        p.sub("records", 4096, 100_000)
        p.update(3, layer="chain")
    lines = out.getvalue().splitlines()
    assert lines[1].endswith("layer admissions, records 4,096/100,000 (4%, ETA 0m00s)")
    assert "ETA" not in lines[1].split("layer")[0]  # the layers' ETA gives way to the records'
    assert "records" not in lines[-1] and lines[-1].startswith("verifying: 3/10 layers")
    tty = _Tty()
    with Progress("verifying", 10, unit="layers", stream=tty) as p:
        p.update(2, layer="admissions")
        p.sub("records", 5, 10)
    assert "records 5/10" in tty.getvalue()

"""attest.progress: periodic lines in logs, nothing before the first update, quiet is quiet."""

from __future__ import annotations

import io

from attest.progress import Progress


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

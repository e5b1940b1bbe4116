"""``ser_dist.progress``: the mode ``auto`` picks, the log lines' throttle and their "(done)" line, ``write``
above a drawn bar; and the decoding progress of ``ser-dist prepare`` in each mode, on stderr only."""

from __future__ import annotations

import io
import types

import pytest
from conftest import SPEAKER_PATTERN

import ser_dist.progress as progress_module
from ser_dist.progress import configure, configured, progress, resolved_mode, write


class Terminal(io.StringIO):
    """A standard error that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_settings():
    saved = dict(progress_module._settings)
    yield
    progress_module._settings.update(saved)


@pytest.fixture
def clock(monkeypatch):
    """A fake clock for ``ser_dist.progress``: ``clock.now`` seconds, moved by the test."""
    fake = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(progress_module, "time", types.SimpleNamespace(monotonic=lambda: fake.now, strftime=lambda _: "12:00:00"))
    return fake


def test_auto_is_a_bar_on_a_terminal_and_log_lines_elsewhere(monkeypatch):
    configure("auto")
    monkeypatch.setattr("sys.stderr", Terminal())
    assert resolved_mode() == "bar"
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert resolved_mode() == "log"
    monkeypatch.setattr("sys.stderr", object())  # a replaced stream without isatty
    assert resolved_mode() == "log"
    configure("auto", enabled=False)  # another rank of a run
    assert resolved_mode() == "off"
    with configured("off"):
        assert resolved_mode() == "off"
    with configured("bar"):
        assert resolved_mode() == "bar"
    assert resolved_mode() == "off"  # configured gives the settings before it back
    with pytest.raises(ValueError, match="one of auto, bar, log, off"):
        configure("bars")


def test_a_bar_on_a_terminal_draws_on_stderr_only(monkeypatch, capsys):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with configured("auto"), progress(total=3, desc="decode", unit="clip") as bar:
        assert bar.bar is not None
        for _ in range(3):
            bar.update(1, skipped=1)
        bar.bar.refresh()  # drawn at most every 0.5 s otherwise
    drawn = terminal.getvalue()
    assert "decode" in drawn and "3/3" in drawn and "skipped=1" in drawn and "\r" in drawn
    assert capsys.readouterr().out == ""


def test_log_lines_come_every_progress_seconds_and_end_with_done(clock, capsys):
    with configured("log", seconds=30), progress(total=10, desc="decode", unit="clip") as bar:
        for _ in range(4):
            clock.now += 10
            bar.update(1, skipped=0)
        # 40 s after the start: one line, at 30 s (3 clips)
        lines = capsys.readouterr().err.splitlines()
        assert lines == ["[12:00:00] decode: 3/10 clips (30%), skipped 0; 0:30 elapsed, 0.1 clips/s, ~1:10 left"]
        clock.now += 5
        bar.update(6, skipped=2)  # 25 s after the last line: none
        assert capsys.readouterr().err == ""
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["[12:00:00] decode: 10/10 clips (100%), skipped 2; 0:45 elapsed, 0.222 clips/s (done)"]


def test_a_quick_step_prints_nothing_and_seconds_zero_prints_every_update(clock, capsys):
    with configured("log", seconds=30), progress(total=5, desc="quick", unit="clip") as bar:
        clock.now += 1
        bar.update(5)
    assert capsys.readouterr().err == ""  # under progress_seconds and no line printed: no "(done)" either
    with configured("log", seconds=0), progress(total=2, desc="every", unit="fold") as bar:
        bar.update(1)
        bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ", 1)[1].split(";")[0] for line in lines] == ["1/2 folds (50%)", "2/2 folds (100%)"]  # the last is the end
    with configured("off"), progress(total=2, desc="nothing") as bar:
        bar.update(2)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_a_step_of_unknown_length_and_a_long_step_that_printed_no_line(clock, capsys):
    with configured("log", seconds=10), progress(desc="predict", unit="file") as bar:
        clock.now += 11
        bar.update(0)  # a line: 0 files so far
        bar.update(3)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[12:00:00] predict: 0 files; 0:11 elapsed")
    assert lines[1].startswith("[12:00:00] predict: 3 files; ") and lines[1].endswith("(done)") and "left" not in lines[1]


def test_write_prints_on_stdout_above_a_drawn_bar(monkeypatch, capsys):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    write("no bar: a plain line")
    with configured("bar"), progress(total=4, desc="epoch 1/2", unit="batch") as bar:
        bar.update(1)
        bar.bar.refresh()
        before = len(terminal.getvalue())
        write("epoch 1: train loss 1.2")
        redrawn = terminal.getvalue()[before:]
    assert capsys.readouterr().out == "no bar: a plain line\nepoch 1: train loss 1.2\n"
    assert "epoch 1/2" in redrawn  # the bar was cleared for the line, then drawn again below it


# --- ser-dist prepare: the decoding progress ------------------------------------------------------------


def prepare(demo_corpus, tmp_path, capsys, *settings):
    from ser_dist.cli import main

    args = [
        f"data.root={demo_corpus}",
        f"data.speaker_pattern={SPEAKER_PATTERN}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.max_seconds=1",
    ]
    main(["prepare", "recipes/bilstm_mfcc_ce.py", *args, *settings])
    return capsys.readouterr()


def test_prepare_decodes_with_log_lines_on_stderr(demo_corpus, tmp_path, capsys):
    before = dict(progress_module._settings)
    captured = prepare(demo_corpus, tmp_path, capsys, "train.progress=log", "train.progress_seconds=0")
    lines = [line for line in captured.err.splitlines() if "] decode: " in line]
    assert len(lines) == 72 and lines[-1].split("] decode: ")[1].startswith("72/72 clips (100%), skipped 0;")
    assert "\r" not in captured.err and "decode:" not in captured.out
    assert "decoded 72 clips into" in captured.out and "72 clips used of 72 found" in captured.out  # stdout: the report
    assert progress_module._settings == before  # train.progress is configured for the command only
    again = prepare(demo_corpus, tmp_path, capsys, "train.progress=log", "train.progress_seconds=0")
    assert "audio cache hit: " in again.out and "decode:" not in again.err  # nothing decoded


def test_prepare_decodes_silently_with_progress_off_and_with_a_bar_when_asked(demo_corpus, tmp_path, capsys):
    # quoted: a bare train.progress=off reads as YAML's false (reported to the config's owner)
    captured = prepare(demo_corpus, tmp_path / "off", capsys, 'train.progress="off"', "train.progress_seconds=0")
    assert "decode" not in captured.err and "decoded 72 clips into" in captured.out
    captured = prepare(demo_corpus, tmp_path / "bar", capsys, "train.progress=bar")
    assert "decode:" in captured.err and "/72 [" in captured.err and "\r" in captured.err  # tqdm's bar
    assert "decode:" not in captured.out

"""Progress of the long steps (decoding, each training epoch, validation and test, ``ser-dist predict``,
``ser-dist cv`` / ``grid``), on standard error, from the main process only.

``train.progress`` (``configure``) picks how: ``bar`` draws ``tqdm`` bars; ``log`` prints one line every
``train.progress_seconds`` seconds and one when a step that printed ends, with no carriage returns (SLURM
logs, CI); ``auto`` (the default) is ``bar`` when standard error is a terminal, else ``log``; ``off`` shows
nothing. A line of the run log printed while a bar is drawn goes through ``write``, above the bar.

    with progress(total=len(loader), desc="epoch 3/50", unit="batch") as bar:
        for batch in loader:
            ...
            bar.update(1, loss=running_loss, lr=lr)
"""

from __future__ import annotations

import contextlib
import math
import sys
import time

MODES = ("auto", "bar", "log", "off")

_settings = {"mode": "auto", "seconds": 30.0, "enabled": True}


def configure(mode: str = "auto", seconds: float = 30.0, enabled: bool = True) -> None:
    """How this process shows progress from now on; ``enabled=False`` (the other ranks of a run) shows none."""
    if mode not in MODES:
        raise ValueError(f"progress mode {mode!r}: one of {', '.join(MODES)}")
    _settings.update(mode=mode, seconds=float(seconds), enabled=bool(enabled))


@contextlib.contextmanager
def configured(mode: str = "auto", seconds: float = 30.0, enabled: bool = True):
    """``configure`` for the ``with`` block; the settings before it come back after it."""
    saved = dict(_settings)
    configure(mode, seconds, enabled)
    try:
        yield
    finally:
        _settings.update(saved)


def resolved_mode() -> str:
    """``bar``, ``log`` or ``off``: what ``progress`` shows now."""
    if not _settings["enabled"] or _settings["mode"] == "off":
        return "off"
    if _settings["mode"] == "auto":
        return "bar" if _isatty(sys.stderr) else "log"
    return _settings["mode"]


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def write(line: str) -> None:
    """Print a line on standard output; a drawn bar is cleared first and redrawn below it."""
    from tqdm import tqdm

    if getattr(tqdm, "_instances", None):
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()
    else:
        print(line, flush=True)


class Progress:
    """One step's progress: a tqdm bar, log lines, or nothing (``mode``)."""

    def __init__(self, total: int | None, desc: str, unit: str, mode: str, seconds: float, leave: bool = False):
        self.total, self.desc, self.unit, self.mode, self.seconds = total, desc, unit, mode, seconds
        self.n = 0
        self.postfix: dict = {}
        self.started = self.last_line = time.monotonic()
        self.lines = 0
        self.last_n: int | None = None  # self.n at the last log line
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=leave, mininterval=0.5)

    def update(self, n: int = 1, **postfix) -> None:
        self.n += n
        if postfix:
            self.postfix.update(postfix)
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix({k: _short(v) for k, v in self.postfix.items()}, refresh=False)
            self.bar.update(n)
        elif self.mode == "log" and time.monotonic() - self.last_line >= self.seconds:
            self._line()

    def set_postfix(self, **postfix) -> None:
        self.update(0, **postfix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.mode == "log" and (self.lines or time.monotonic() - self.started >= self.seconds) and self.last_n != self.n:
            self._line(done=True)
        self.mode = "off"

    def _line(self, done: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        units = _plural(self.unit)
        parts = [f"{self.n}/{self.total} {units}" if self.total else f"{self.n} {units}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts += [f"{key} {_short(value)}" for key, value in self.postfix.items()]
        rate = self.n / elapsed if elapsed > 0 else 0.0
        timing = f"{_clock(elapsed)} elapsed, {rate:.3g} {units}/s"
        if self.total and not done and rate > 0 and self.n < self.total:
            timing += f", ~{_clock((self.total - self.n) / rate)} left"
        print(
            f"[{time.strftime('%H:%M:%S')}] {self.desc}: {', '.join(parts)}; {timing}{' (done)' if done else ''}",
            file=sys.stderr,
            flush=True,
        )
        self.lines += 1
        self.last_line = now
        self.last_n = self.n

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int | None = None, desc: str = "", unit: str = "it", leave: bool = False) -> Progress:
    """A ``Progress`` in this process's mode (``configure``)."""
    return Progress(total, desc, unit, resolved_mode(), _settings["seconds"], leave=leave)


def _short(value) -> str:
    """A postfix value, short: 4 significant digits for a float (scientific for a small lr)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.2e}" if value != 0 and abs(value) < 1e-2 else f"{value:.4g}"
    return str(value)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "sh", "ch", "x")) else "s")

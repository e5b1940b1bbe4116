"""User-facing errors: each message is one line naming the file or key and the fix."""

from __future__ import annotations

import sys


def first_line(err: BaseException, limit: int | None = 200, default: str | None = None) -> str:
    """The first line of ``err``'s message, cut to ``limit`` characters (None: whole), for a one-line error; an empty
    message gives ``default`` (None: the exception's type name)."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else (type(err).__name__ if default is None else default)
    return text if limit is None else text[:limit]


class UserError(Exception):
    """An error in the user's input (config, data, model path). Shown as one line, never a traceback."""


class ConfigError(UserError, ValueError):
    pass


class TrainingError(UserError):
    """A run that cannot go on (non-finite steps, out of memory, ranks that disagree, ...)."""


def install_excepthook() -> None:
    """Print ``UserError`` (and its subclasses, wherever they are defined) as ``ser-dist: error: ...`` and exit 2."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        if isinstance(value, UserError):
            # The real stderr: torch.distributed wraps this hook and points sys.stderr at a buffer it
            # prints only after the hook returns, which os._exit below never lets happen.
            stderr = sys.__stderr__ or sys.stderr
            print(f"ser-dist: error: {value}", file=stderr)
            stderr.flush()
            # Exit code 2 is what argparse uses for bad input; os._exit avoids hanging on process-group teardown.
            import os

            os._exit(2)
        previous(kind, value, tb)

    sys.excepthook = hook

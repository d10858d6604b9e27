"""SIGTERM and SIGHUP stop a command the way Ctrl-C does.

``install()`` (called once by the CLI) makes SIGTERM and SIGHUP raise :class:`Terminated` in
the main thread. It is a KeyboardInterrupt, so every place that already cleans up after
Ctrl-C does the same for them: temporary files are removed (cosine_host.files.atomic_path), a live
stream is closed and its report written, training writes the best checkpoint so far. The CLI
then prints one line and exits with ``exit_code``: 128 + the signal number (143 for SIGTERM,
129 for SIGHUP), as a shell reports a process killed by that signal; Ctrl-C exits with 130.
"""
from __future__ import annotations

import signal

CTRL_C_EXIT_CODE = 130          # 128 + SIGINT


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM or SIGHUP once ``install()`` ran."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum
        self.name = signal.Signals(signum).name


def _raise(signum, frame):
    raise Terminated(signum)


def install() -> None:
    """Make SIGTERM and SIGHUP (where the platform has it) raise Terminated. Main thread only."""
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, _raise)


def describe(interrupt: KeyboardInterrupt) -> tuple[str, int]:
    """(one line: what stopped the command, and what was kept; exit code) for a
    KeyboardInterrupt or Terminated. A ``note`` attribute set by the code it interrupted (e.g.
    "wrote the best checkpoint so far to 'model.pt' ...") is added after a semicolon."""
    if isinstance(interrupt, Terminated):
        what, code = f"terminated by {interrupt.name}", interrupt.exit_code
    else:
        what, code = "interrupted (Ctrl-C)", CTRL_C_EXIT_CODE
    note = getattr(interrupt, "note", None)
    return (f"{what}; {note}" if note else what), code

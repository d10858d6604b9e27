"""Single keys from the terminal while a live stream runs (b: bypass, q: quit), without echo
and without waiting for Enter; nothing when standard input is not a terminal."""
from __future__ import annotations

import os
import sys
import time

class Keys:
    """Single-key input from a terminal in cbreak mode (restored on exit, always).

    ``read(timeout_s)`` waits up to timeout_s seconds and returns the keys typed (a str,
    possibly empty). When disabled (or standard input is not a terminal) it only sleeps.
    """

    def __init__(self, enabled: bool):
        self.enabled = bool(enabled)
        self._fd = None
        self._old = None
        self._msvcrt = None

    def __enter__(self):
        if not self.enabled:
            return self
        try:
            if not sys.stdin.isatty():
                self.enabled = False
                return self
        except (AttributeError, ValueError):
            self.enabled = False
            return self
        try:
            import termios
            import tty
        except ImportError:
            try:
                import msvcrt
                self._msvcrt = msvcrt
            except ImportError:
                self.enabled = False
            return self
        self._fd = sys.stdin.fileno()
        self._old = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            import termios
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._old)
            self._old = None
        return False

    def read(self, timeout_s: float) -> str:
        if self._fd is not None:
            import select
            ready, _, _ = select.select([self._fd], [], [], timeout_s)
            if ready:
                return os.read(self._fd, 64).decode(errors="ignore")
            return ""
        if self._msvcrt is not None:
            end = time.monotonic() + timeout_s
            keys = ""
            while True:
                while self._msvcrt.kbhit():
                    keys += self._msvcrt.getwch()
                if keys or time.monotonic() >= end:
                    return keys
                time.sleep(min(0.02, max(0.0, end - time.monotonic())))
        time.sleep(timeout_s)
        return ""

"""What `live` shows while it runs: a panel on a terminal (rich's live display), plain lines
otherwise.

:func:`status_display` chooses: on a terminal a :class:`Panel` redrawn in place, every line
cut to the terminal's width and the whole cut to its height, so it never wraps or scrolls;
elsewhere (a pipe, a log file) one status line per update, as before. Both take a
:class:`Status` every ``monitor.refresh_s`` seconds.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

BAR_CELLS = 24          # cells of the compute and level bars (fewer on a narrow terminal)
METER_FLOOR_DBFS = -60.0


@dataclass
class Status:
    """One update: ``line`` (the plain status line), ``values`` (cosine_host.live.monitor.status_values)
    and ``notes``: optional ``play`` / ``record`` / ``osc`` texts and ``control`` (the last
    control's log entry, cosine_host.live.control)."""
    line: str
    values: dict
    notes: dict = field(default_factory=dict)


def status_display(stream=None, panel: bool = True):
    """A :class:`Panel` when ``stream`` (default stderr) is a terminal and ``panel``, else
    :class:`Lines`. Both are callables(status: Status, final=False) with ``message(line)`` for
    a line printed above (a refused control) and are context managers."""
    stream = stream or sys.stderr
    if panel and stream.isatty():
        return Panel(stream)
    return Lines(stream)


class Lines:
    """Plain status lines: rewritten in place on a terminal, one per update otherwise."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, status, final: bool = False) -> None:
        line = status.line if isinstance(status, Status) else str(status)
        self.stream.write(("\r\x1b[2K" + line + ("\n" if final else "")) if self.tty
                          else line + "\n")
        self.stream.flush()

    def message(self, line: str) -> None:
        self.stream.write(("\r\x1b[2K" if self.tty else "") + line + "\n")
        self.stream.flush()


def _bar(fraction: float, cells: int) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    full = int(round(fraction * cells))
    return "█" * full + "·" * (cells - full)


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _db(v) -> str:
    return "-inf" if v is None or not math.isfinite(v) else f"{v:.1f}"


def panel_lines(status: Status, width: int) -> list:
    """The panel's rows as rich Text, each at most ``width`` cells (cut with an ellipsis)."""
    from rich.text import Text
    v, notes = status.values, status.notes
    cells = max(4, min(BAR_CELLS, width - 40))
    budget = v["budget_ms"]
    rows = []
    head = Text(f"cosine-host live  {v['elapsed_s']:.1f} s  cb {v['callbacks']}", style="bold")
    if v["bypass"]:
        head.append("  BYPASS", style="bold yellow")
    rows.append(head)
    load = (v["p99_ms"] or 0.0) / budget if budget else 0.0
    style = "green" if load < 0.5 else "yellow" if load < 1.0 else "red"
    t = Text("compute ")
    t.append(_bar(load, cells), style=style)
    t.append(f" p99 {100 * load:.0f}% of {_ms(budget)} ms")
    rows.append(t)
    rows.append(Text(f"  p50 {_ms(v['p50_ms'])}  p99 {_ms(v['p99_ms'])}  max {_ms(v['max_ms'])} "
                     f"ms (engine time per block)"))
    xr = Text(f"xruns {v['xrun_events']}", style="red" if v["xrun_events"] else "")
    if v["xruns"]:
        xr.append(" (" + ", ".join(f"{k} {n}" for k, n in v["xruns"].items()) + ")")
    xr.append(f"  clip {v['clipped_samples']}  NaN {v['nan_events']}")
    rows.append(xr)
    rows.append(Text(f"latency {v['total_ms']:.1f} ms = device {v['device_input_ms']:.1f}+"
                     f"{v['device_output_ms']:.1f} + engine {v['engine_ms']:.1f} "
                     f"({v['engine_samples']} smp = {v['algorithmic_samples']} alg + "
                     f"{v['buffering_samples']} buf)"))
    for name, key in (("in ", "peak_in_dbfs"), ("out", "peak_out_dbfs")):
        db = v[key]
        frac = 0.0 if not math.isfinite(db) else (db - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS
        t = Text(f"{name}     ")
        t.append(_bar(frac, cells), style="red" if db >= 0 else "cyan")
        t.append(f" {_db(db)} dBFS")
        rows.append(t)
    for key in ("play", "record", "osc"):
        if notes.get(key):
            rows.append(Text(f"{key:<7} {notes[key]}"))
    c = notes.get("control")
    if c:
        t = Text(f"last    {c['address']} {c.get('value')!r}: {c['result']}")
        if c.get("applied_s") is not None:
            t.append(f" at {c['applied_s']:.2f} s")
        if c.get("reason"):
            t.append(f" ({c['reason']})", style="red")
        rows.append(t)
    for t in rows:
        t.no_wrap = True
        t.truncate(width, overflow="ellipsis")
    return rows


class Panel:
    """rich's live display on ``stream``, redrawn in place on each call; the last frame stays
    on screen when the stream stops. Use as a context manager (restores the cursor)."""

    def __init__(self, stream):
        from rich.console import Console
        self.console = Console(file=stream, highlight=False)
        self._live = None

    def __enter__(self):
        from rich.live import Live
        from rich.text import Text
        self._live = Live(Text(""), console=self.console, auto_refresh=False,
                          vertical_overflow="crop", redirect_stdout=False,
                          redirect_stderr=False)
        self._live.start()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.stop()
            self._live = None
        return False

    def __call__(self, status, final: bool = False) -> None:
        from rich.console import Group
        if self._live is None or not isinstance(status, Status):
            return
        width, height = self.console.size
        # one row kept free: a frame as tall as the terminal would scroll it by one line
        rows = panel_lines(status, width)[:max(1, height - 1)]
        self._live.update(Group(*rows), refresh=True)

    def message(self, line: str) -> None:
        """One line printed above the panel (which stays where it is)."""
        self.console.print(line, markup=False, highlight=False, no_wrap=True, overflow="fold")

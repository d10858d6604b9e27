"""Tables and progress for people, by rich.

One progress protocol serves render, batch, evaluate, train, bench and the demo: a callable
``progress(done, total, note="")`` (``done`` and ``total`` in the caller's unit: samples, files,
steps, rows), or None when nobody watches. ``progress_display`` makes one: a rich bar on a
terminal, nothing (None) on a pipe or a log file, so redirected output holds only results.
"""
from __future__ import annotations

import contextlib
import io
import sys

import click


def table_text(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A text table of ``rows`` at its natural width; ``columns``: (key, heading, format spec) per
    column. A missing or None value shows as "-". The first column is left-aligned, the rest
    right-aligned; headings are underlined with dashes."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    table = Table(box=box.Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True),
                  show_edge=False, pad_edge=False, header_style="bold")
    for i, (_, heading, _) in enumerate(columns):
        table.add_column(heading, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*[_cell(row.get(key), spec) for key, _, spec in columns])
    width = Console(width=100_000).measure(table).maximum
    console = Console(file=io.StringIO(), width=width, no_color=True, highlight=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in console.file.getvalue().rstrip("\n").splitlines())


def _cell(value, spec: str) -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def echo_table(result: dict) -> None:
    """Print ``result["table"]`` = {"columns": [[key, heading, format], ...], "rows": [...]}
    on standard output, at the table's natural width (a cell is never cut)."""
    t = result["table"]
    echo_rows(t["rows"], [tuple(c) for c in t["columns"]])


def echo_rows(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    click.echo(table_text(rows, columns))


@contextlib.contextmanager
def progress_display(label: str, stream=None):
    """Yield a ``progress(done, total, note="")`` callable drawing a rich bar (percent, count,
    elapsed, remaining, note) on ``stream`` (default stderr) while it is a terminal, else None.
    Lines printed meanwhile (click.echo) appear above the bar."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)
    console = Console(file=stream)
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[note]}"))
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=None, note="")

        def progress(done, total, note: str = "") -> None:
            bar.update(task, completed=done, total=total, note=note)
        yield progress


def status_printer(stream=None):
    """A callable(status, final=False) that rewrites one line on a terminal, else prints lines."""
    from cosine_host.live.panel import status_display
    return status_display(stream, panel=False)

"""The training command's outputs for people: progress, the loss log and its plot.

:class:`LiveLog` writes the CSV loss log (``LOG_COLUMNS``) line by line as training goes;
:func:`plot_log` draws the loss against the step as a PNG (needs matplotlib, the optional extra
"plots"); :func:`step_reporter` adapts a progress bar to cosine_host.models.training's per-step
rows.
"""
from __future__ import annotations

import csv
import inspect
import io

from cosine_host.plotting import figure, save_png

LOG_COLUMNS = ("step", "loss", "snr_db", "rate_bits", "lr", "lr_freq", "freq_shift_bins",
               "seconds")


def step_reporter(progress, total: int):
    """Adapt ``progress(done, total)`` to cosine_host.models.training's on_step(row); a callable that also
    takes a ``note`` keyword gets the loss as text."""
    if progress is None:
        return None
    with_note = "note" in inspect.signature(progress).parameters

    def on_step(row: dict) -> None:
        if with_note:
            progress(row["step"], total,
                     note=f"loss {row['loss']:.4g} ({row['snr_db']:.2f} dB)")
        else:
            progress(row["step"], total)
    return on_step


class LiveLog:
    """The loss log written as training goes: the header when opened, then one CSV line per
    step, each written whole and flushed, so the file only ever ends after a complete line
    (``tail -f`` it while training; an interrupted run keeps every finished step).

    The file is opened at ``path`` directly (the output checks ran before training). It gets
    the permissions any new file gets (umask), or those of the file it replaces.
    """

    def __init__(self, path):
        self.path = path
        self._file = open(path, "w", newline="", encoding="utf-8")
        self._line = io.StringIO()
        self._writer = csv.DictWriter(self._line, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        self._writer.writeheader()
        self._flush()

    def write(self, row: dict) -> None:
        self._writer.writerow(row)
        self._flush()

    def _flush(self) -> None:
        self._file.write(self._line.getvalue())
        self._file.flush()
        self._line.seek(0)
        self._line.truncate()

    def close(self) -> None:
        self._file.close()


def plot_log(path, rows: list[dict], title: str) -> None:
    """A PNG of the training loss (log scale) against the step. Needs matplotlib.

    Drawn and written by cosine_host.plotting.
    """
    fig = figure(7, 4)
    ax = fig.add_subplot()
    ax.semilogy([r["step"] for r in rows], [r["loss"] for r in rows], linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (error power / signal power)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    save_png(fig, path)

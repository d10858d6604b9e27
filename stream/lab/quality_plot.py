"""PNG of quality against bitrate for `run.py evaluate --plot`: one panel per metric, one curve
per sweep (or config) and per codec, and per input when there are several. matplotlib is
optional (cosine_host.plotting)."""
from __future__ import annotations

from cosine_host.errors import UserError
from cosine_host.lab.metrics import NAMES
from cosine_host.plotting import figure, save_png

DEFAULT = ("pesq", "visqol", "snr_db")


def check_names(text: str | None) -> tuple[str, ...]:
    if text is None:
        return DEFAULT
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in NAMES]
    if unknown or not names:
        raise UserError(f"--plot-metrics {text!r}: unknown metric "
                        f"{unknown[0] if unknown else ''!r}; allowed: {', '.join(NAMES)}")
    return names


def plot_quality(result: dict, names, path) -> list[str]:
    """Draw ``result`` of cosine_host.lab.evaluate.evaluate: ``names`` against kbps (log axis).

    A panel with no value at any bitrate is left out (its name is returned); with nothing to
    draw at all, UserError, and nothing is written."""
    at_rate = [r for r in result["rows"] if r["kbps"] is not None]
    if not at_rate:
        raise UserError("--plot: no row has a bitrate for the kbps axis (no quantizer or codec "
                        "in the settings and no --codecs); add one, or leave --plot out")
    drawn = [n for n in names if any(r.get(n) is not None for r in at_rate)]
    if not drawn:
        raise UserError(f"--plot: no row has a value of {', '.join(names)} at a bitrate (PESQ and "
                        f"STOI apply to speech only); choose --plot-metrics among the columns "
                        f"the table shows")
    left_out = [n for n in names if n not in drawn]
    names = drawn
    fig = figure(width_in=5.0 * len(names), height_in=4.2)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    several = len({r["input"] for r in result["rows"]}) > 1
    curves: dict[tuple, list] = {}
    for row in result["rows"]:
        group = result["groups"].get(row["label"], row["label"])
        curves.setdefault((group, row["kind"], row["input"]), []).append(row)
    for ax, name in zip(axes, names):
        for (group, kind, source), rows in curves.items():
            points = sorted((r["kbps"], r[name]) for r in rows
                            if r["kbps"] is not None and r[name] is not None)
            if not points:
                continue
            xs, ys = zip(*points)
            label = group + (f" ({source})" if several else "")
            ax.plot(xs, ys, "o-" if kind == "engine" else "s--", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("kbps")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    save_png(fig, path)
    return left_out

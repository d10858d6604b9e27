"""PNG figures for every ``--plot``: matplotlib's object-oriented API on an Agg canvas (no pyplot,
no global backend change, no display needed), written atomically.

matplotlib is optional (the ``plots`` extra) and imported only here, only when a plot is asked
for; ``check_matplotlib`` lets a command say it is missing before its work starts."""
from __future__ import annotations

from cosine_host.errors import UserError
from cosine_host.files import atomic_path

MATPLOTLIB_MISSING = ("--plot needs matplotlib, which is not installed: pip install matplotlib "
                      "(or pip install '.[plots]'), or leave --plot out")


def check_matplotlib() -> None:
    """UserError naming the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401  (only whether it imports)
    except ImportError:
        raise UserError(MATPLOTLIB_MISSING) from None


def figure(width_in: float = 8.0, height_in: float = 4.5):
    """A matplotlib Figure on an Agg canvas, ``width_in`` x ``height_in`` inches at 100 dpi."""
    check_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path) -> None:
    """Write ``fig`` as a PNG at ``path``, atomically; UserError when it cannot be written."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    except OSError as e:
        raise UserError(f"cannot write the plot {str(path)!r}: {e.strerror or e}; choose a "
                        f"path in an existing, writable folder") from None

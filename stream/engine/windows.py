"""Analysis/synthesis window pairs that reconstruct perfectly under overlap-add.

A pair reconstructs at hop H when the product of the two windows overlap-adds to one:
``sum_k wa[n - kH] * ws[n - kH] == 1`` for every n.

Symmetric pairs (``synthesis_size`` = N, the default): the synthesis window is the analysis
window divided by the overlapped energy ``sum_k wa[n - kH]**2``, for any hop H dividing N at
which that energy does not vanish. For periodic sqrt-Hann at H = N/2 the energy is already 1
and the synthesis window equals the analysis window.

Low-delay pairs (``synthesis_size`` = S < N; Mauler and Martin, EUSIPCO 2007; Wang et al. 2022,
arXiv 2204.09911): the synthesis window is nonzero only on the last S samples of the frame, so an
output sample is final S - H samples after it arrived instead of N - H (cosine_host.engine.latency).
The product of the windows is a periodic Hann window of length S on those samples, scaled by 2H / S
so that it overlap-adds to one at hop H (S a multiple of H, S >= 2H). The analysis window is long
and asymmetric: the named shape rises over the first N - S/2 samples (the rising half of that shape
at length 2N - S) and falls over the last S/2 (the falling half at length S); the synthesis window
is the product divided by it. For S = N this is the symmetric sqrt-Hann pair.

Windows for the MDCT (model init "mdct", hop N/2): ``sine``, sin(pi (n + 1/2) / N), and
``kbd``, the Kaiser-Bessel-derived window with its ``alpha`` (``frame.kbd_alpha``; Kaiser beta
= pi alpha; 4 by default, as AAC's long blocks). Both are symmetric about (N - 1)/2 and satisfy
the Princen-Bradley condition w[n]^2 + w[n + N/2]^2 = 1, which is what makes the MDCT's
time-domain aliasing cancel in the overlap-add; their overlapped energy at hop N/2 is 1 (to
rounding), so the synthesis window equals the analysis window. The periodic sqrt-Hann window
satisfies Princen-Bradley but is symmetric about N/2, not (N - 1)/2: the MDCT's aliasing does
not cancel with it. Both also serve the other inits like any symmetric window.
"""
from __future__ import annotations

import numpy as np

WINDOWS = ("sqrt_hann", "hann", "rectangular", "sine", "kbd")
MDCT_WINDOWS = ("sine", "kbd")
"""The windows whose pair cancels the MDCT's time-domain aliasing at hop N/2."""
KBD_ALPHA = 4.0
"""The kbd window's alpha by default (``frame.kbd_alpha``)."""
_MIN_OVERLAP_ENERGY = 1e-3


def _kbd(size: int, alpha: float) -> np.ndarray:
    """The Kaiser-Bessel-derived window of even length ``size`` (scipy), float64."""
    from scipy.signal.windows import kaiser_bessel_derived
    if size % 2:
        raise ValueError(f"window 'kbd' needs an even length, got {size}; use an even "
                         f"frame.size (and synthesis_size) or window: sine")
    return kaiser_bessel_derived(size, np.pi * alpha)


def _shape(name: str, n: np.ndarray, size: float, alpha: float = KBD_ALPHA) -> np.ndarray:
    """The named window of length ``size`` at (possibly fractional; integer for "kbd")
    positions n: periodic for the Hann family, symmetric about (size - 1)/2 for sine and kbd."""
    if name == "sine":
        # from the nearer end: exactly symmetric, as the MDCT's aliasing cancellation wants
        return np.sin(np.pi * np.minimum(n + 0.5, size - n - 0.5) / size)
    if name == "kbd":
        length = int(round(size))
        index = np.rint(n).astype(np.int64)
        if length != size or not np.array_equal(index, n):
            raise ValueError("window 'kbd' is defined at whole samples only")
        return _kbd(length, alpha)[index]
    if name == "sqrt_hann":
        return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * n / size))
    if name == "hann":
        return 0.5 - 0.5 * np.cos(2 * np.pi * n / size)
    if name == "rectangular":
        return np.ones(n.shape)
    raise ValueError(f"unknown window {name!r}; allowed: {' | '.join(WINDOWS)}")


def analysis_window(name: str, size: int, synthesis_size: int | None = None,
                    alpha: float = KBD_ALPHA) -> np.ndarray:
    """Analysis window, float64 of shape (size,); asymmetric (long rise, fall over the
    last ``synthesis_size / 2`` samples) when ``synthesis_size`` < size. ``alpha``: the kbd
    window's (ignored by the others)."""
    s = size if synthesis_size is None else synthesis_size
    n = np.arange(size, dtype=np.float64)
    if s == size:
        return _shape(name, n, size, alpha)
    peak = size - s / 2                     # where the rise ends and the fall begins
    rise = _shape(name, np.minimum(n, peak - 1) if name == "kbd" else n, 2 * peak, alpha)
    # the second half of a window of length S (kbd: its positions clipped into range where
    # np.where discards them anyway)
    fall = _shape(name, np.maximum(n - (size - s), s // 2) if name == "kbd" else n - (size - s),
                  s, alpha)
    return np.where(n < peak, rise, fall)


def overlap_energy(window: np.ndarray, hop: int) -> np.ndarray:
    """``sum_k window[n - k*hop]**2`` for n in one period of length ``hop``."""
    return (window.reshape(-1, hop) ** 2).sum(axis=0)


def synthesis_problem(size: int, hop: int, synthesis_size: int) -> str | None:
    """Why a synthesis window of ``synthesis_size`` samples cannot work at this frame size and
    hop (text naming what would), or None when it can. S = N is today's symmetric pair; a
    shorter S must be a multiple of H between 2H and N (its Hann product overlap-adds to one at
    H only with at least two frames overlapping)."""
    s = synthesis_size
    if s == size:
        return None
    if 2 * hop <= s < size and s % hop == 0:
        return None
    options = list(range(2 * hop, size, hop))
    if not options:
        return (f"frame.synthesis_size = {s}: with frame.size {size} and frame.hop {hop} only "
                f"{size} (the whole frame) works; a shorter synthesis window needs frame.hop "
                f"<= {size // 4} (e.g. frame.hop {size // 4} with synthesis_size {size // 2})")
    shown = options[:3] + ([options[-1]] if len(options) > 3 else [])
    return (f"frame.synthesis_size = {s}: must be a multiple of frame.hop ({hop}) from "
            f"{2 * hop} to {size}, e.g. {', '.join(map(str, shown))} or {size} (the whole "
            f"frame, null)")


def reconstructs(name: str, size: int, hop: int, synthesis_size: int | None = None,
                 alpha: float = KBD_ALPHA) -> bool:
    """True when the window pair can reconstruct at this hop (the overlapped energy never
    vanishes for a symmetric pair; a low-delay pair reconstructs whenever
    ``synthesis_problem`` finds none)."""
    s = size if synthesis_size is None else synthesis_size
    if s != size:
        return synthesis_problem(size, hop, s) is None
    energy = overlap_energy(analysis_window(name, size, alpha=alpha), hop)
    return bool(energy.min() > _MIN_OVERLAP_ENERGY * energy.max())


def window_pair(name: str, size: int, hop: int, synthesis_size: int | None = None,
                alpha: float = KBD_ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """(analysis, synthesis) windows, float64 of shape (size,), with perfect reconstruction.

    ``synthesis_size`` (S, samples; None = size): the synthesis window is zero on the first
    size - S samples (the module doc has the construction). ``alpha``: the kbd window's.
    """
    s = size if synthesis_size is None else synthesis_size
    if s != size:
        problem = synthesis_problem(size, hop, s)
        if problem:
            raise ValueError(problem)
        wa = analysis_window(name, size, s, alpha)
        product = np.zeros(size)
        product[size - s:] = (2 * hop / s) * _shape("hann", np.arange(s, dtype=np.float64), s)
        ws = np.zeros(size)
        # wa > 0 on the last S samples: its rise ends at N - S/2, its fall at the frame's end
        ws[size - s:] = product[size - s:] / wa[size - s:]
        return wa, ws
    wa = analysis_window(name, size, alpha=alpha)
    energy = overlap_energy(wa, hop)
    if not energy.min() > _MIN_OVERLAP_ENERGY * energy.max():
        raise ValueError(f"window {name!r} cannot reconstruct at hop {hop} with size {size}")
    ws = wa / np.tile(energy, size // hop)
    return wa, ws

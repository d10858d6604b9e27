"""Analysis/synthesis window pairs that reconstruct perfectly under overlap-add.

The synthesis window is the analysis window divided by the overlapped energy
``sum_k wa[n - kH]**2``, so ``sum_k wa[n - kH] * ws[n - kH] == 1`` for every n and any hop H
dividing N at which that energy does not vanish. For periodic sqrt-Hann at H = N/2 the energy is
already 1 and the synthesis window equals the analysis window.
"""
from __future__ import annotations

import numpy as np

WINDOWS = ("sqrt_hann", "hann", "rectangular")
_MIN_OVERLAP_ENERGY = 1e-3


def analysis_window(name: str, size: int) -> np.ndarray:
    """Periodic analysis window, float64 of shape (size,)."""
    n = np.arange(size)
    if name == "sqrt_hann":
        return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * n / size))
    if name == "hann":
        return 0.5 - 0.5 * np.cos(2 * np.pi * n / size)
    if name == "rectangular":
        return np.ones(size)
    raise ValueError(f"unknown window {name!r}; allowed: {' | '.join(WINDOWS)}")


def overlap_energy(window: np.ndarray, hop: int) -> np.ndarray:
    """``sum_k window[n - k*hop]**2`` for n in one period of length ``hop``."""
    return (window.reshape(-1, hop) ** 2).sum(axis=0)


def reconstructs(name: str, size: int, hop: int) -> bool:
    """True when the window pair can reconstruct at this hop (the overlapped energy never vanishes)."""
    energy = overlap_energy(analysis_window(name, size), hop)
    return bool(energy.min() > _MIN_OVERLAP_ENERGY * energy.max())


def window_pair(name: str, size: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """(analysis, synthesis) windows, float64 of shape (size,), with perfect reconstruction."""
    wa = analysis_window(name, size)
    energy = overlap_energy(wa, hop)
    if not energy.min() > _MIN_OVERLAP_ENERGY * energy.max():
        raise ValueError(f"window {name!r} cannot reconstruct at hop {hop} with size {size}")
    ws = wa / np.tile(energy, size // hop)
    return wa, ws

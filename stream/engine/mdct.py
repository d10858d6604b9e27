"""The MDCT fast path: the model's init "mdct" through pocketfft's DCT-IV.

At its init "mdct" the learned pair is the orthonormal MDCT (cosine_host.models.cosine; M = N/2,
n0 = 1/2 + M/2, LearnedCosine.mdct_pair says when). Its (M, N) encoder matrix factors as
``C4 @ F``: F folds a windowed frame of N = 2M samples, cut into quarters (a, b, c, d) of M/2,
into M samples ``(-c_r - d, a - b_r)`` (``_r``: reversed), and C4 is the orthonormal DCT-IV,
which is symmetric and its own inverse. The decoder is the transpose, ``F^T @ C4``: a DCT-IV,
then the unfold ``(v2, -v2_r, -v1_r, -v1)`` of its halves (v1, v2). :class:`MDCT` computes both
with pocketfft in O(N log N) per frame instead of O(N M) and with no BLAS, each frame on its own
(the fold is elementwise and pocketfft transforms each row alone: the same bits however many
frames a call holds). Needs M even; the engine stays on matrix products otherwise.
:func:`matrices_match` confirms numerically that the model's matrices are that pair before a
kernel switches.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from cosine_host.engine.dct import ScipyDCT
from cosine_host.engine.windows import MDCT_WINDOWS


def mdct_problem(n: int, hop: int, m: int, window: str, synthesis_size, decoder: str):
    """Why ``model.init: mdct`` cannot reconstruct with these settings (one line naming what
    works), or None. The MDCT cancels its time-domain aliasing only at M = N/2 coefficients,
    hop N/2, a Princen-Bradley window symmetric about the frame's centre (sine or kbd), the
    whole frame for synthesis and the tied decoder."""
    if n % 2:
        return (f"model.init = mdct needs an even frame.size (got {n}); use e.g. frame.size "
                f"{n + 1}, frame.hop {(n + 1) // 2}, model.coefficients {(n + 1) // 2}")
    half = n // 2
    works = (f"model.init mdct reconstructs with model.coefficients {half}, frame.hop {half}, "
             f"frame.window {' or '.join(MDCT_WINDOWS)}, frame.synthesis_size null, "
             f"model.decoder tied (preset mdct)")
    if m != half:
        return f"model.coefficients = {m}: {works}"
    if hop != half:
        return f"frame.hop = {hop}: {works}"
    if window not in MDCT_WINDOWS:
        return f"frame.window = {window!r}: {works}"
    if synthesis_size not in (None, n):
        return f"frame.synthesis_size = {synthesis_size}: {works}"
    if decoder != "tied":
        return f"model.decoder = {decoder!r}: {works}"
    return None


@functools.lru_cache(maxsize=4)
def mdct_matrices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The (M, N) float64 encoder and decoder matrices (M = N/2) the fast path stands for, in
    the model's convention (X = W1 @ x, y = X @ W2), computed through the fold and the DCT-IV of
    the identity (cached; read-only). They are equal: the decoder is the encoder's transpose."""
    eye = np.eye(n, dtype=np.float64)
    m = n // 2
    coeffs = np.empty((n, m))
    MDCT(workers=1).forward(eye, coeffs)
    w1 = np.ascontiguousarray(coeffs.T)
    w1.flags.writeable = False
    return w1, w1


def matrices_match(enc: np.ndarray, dec: np.ndarray, dtype) -> bool:
    """The model's (M, N) matrices equal the MDCT pair within a few units of ``dtype``'s
    precision (a guard: if the model's conventions ever change, the engine stays on matrices)."""
    m, n = enc.shape
    if n != 2 * m or m % 2:
        return False
    w1, w2 = mdct_matrices(n)
    tol = 64 * float(np.finfo(dtype).eps) / math.sqrt(n)
    return bool(np.abs(enc - w1).max() <= tol and np.abs(dec - w2).max() <= tol)


class MDCT:
    """Orthonormal MDCT (N = 2M -> M) and its transpose along the last axis, into given
    buffers. ``workers``: pocketfft's threads for large batches (cosine_host.engine.dct.ScipyDCT;
    a row's result does not depend on them)."""

    name = "scipy-mdct"

    def __init__(self, workers: int | None = None):
        self.dct = ScipyDCT(workers)

    def forward(self, frames: np.ndarray, out: np.ndarray,
                threads: int | None = None) -> np.ndarray:
        """(..., N) windowed frames -> (..., M) coefficients in ``out`` (not ``frames``)."""
        n = frames.shape[-1]
        h = n // 4
        a, b, c, d = (frames[..., i * h:(i + 1) * h] for i in range(4))
        lo, hi = out[..., :h], out[..., h:]
        np.add(c[..., ::-1], d, out=lo)
        np.negative(lo, out=lo)
        np.subtract(a, b[..., ::-1], out=hi)
        return self.dct.dct4(out, out, threads)

    def inverse(self, coeffs: np.ndarray, out: np.ndarray,
                threads: int | None = None) -> np.ndarray:
        """(..., M) coefficients -> (..., N) frames in ``out`` (not windowed). ``coeffs`` is
        clobbered (it holds the DCT-IV afterwards)."""
        m = coeffs.shape[-1]
        h = m // 2
        v = self.dct.dct4(coeffs, coeffs, threads)
        v1, v2 = v[..., :h], v[..., h:]
        np.copyto(out[..., :h], v2)
        np.negative(v2[..., ::-1], out=out[..., h:2 * h])
        np.negative(v1[..., ::-1], out=out[..., 2 * h:3 * h])
        np.negative(v1, out=out[..., 3 * h:])
        return out

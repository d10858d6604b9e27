"""Matrix products over overlapping frames without building the frames, with the overlap-add
done inside the products.

With hop H dividing the frame size N (R = N / H overlaps), frame f of a signal is hops f .. f+R-1
laid end to end, so the encoder's product splits along its inner dimension::

    X = frames @ E  =  sum_j  S[j : j + F] @ E[j*H : (j+1)*H, :]          (S: the signal as
                                                                              (hops, H) rows)

and every term reads a contiguous block of the signal in place. The decoder's product splits
along its columns, and each column block lands on its own run of output hops::

    out[j : j + F] += X @ D[:, j*H : (j+1)*H]                              (overlap-add)

BLAS's ``gemm`` computes ``C = alpha A B + beta C``: with ``beta = 1`` the overlap-add is part
of the product (no decoded-frames buffer, no separate add pass), and with ``beta = 0`` on the
fresh hops it is a plain write. The arithmetic is the two products of the framed form
(2 F N M multiply-adds); what disappears are the memory passes around them: framing the
signal into an (F, N) buffer and reading the decoded frames back for the overlap-add.

numpy's ``matmul`` has no ``beta``; scipy's BLAS wrappers (``scipy.linalg.blas.?gemm``) do.
They are Fortran-ordered, so the C-ordered row blocks are passed transposed (``C^T = B^T A^T``,
each transpose a zero-copy Fortran-contiguous view).
"""
from __future__ import annotations

import numpy as np


class HopProducts:
    """Encoder and decoder products of one transform, split into hop blocks.

    Args:
        enc_t: (N, M) encoder matrix, analysis window folded in (``frames @ enc_t`` = coefficients).
        dec: (M, N) decoder matrix, synthesis window folded in (``coeffs @ dec`` = frames).
        hop: H, dividing N.
    Raises ImportError when scipy is missing, and RuntimeError when its BLAS does not write into
    the given buffers (checked once here, so that a silent copy can never drop a result).
    """

    def __init__(self, enc_t: np.ndarray, dec: np.ndarray, hop: int):
        from scipy.linalg import blas
        n, m = enc_t.shape
        self.hop, self.r = hop, n // hop
        self._gemm = blas.dgemm if enc_t.dtype == np.float64 else blas.sgemm
        # Fortran views of C-contiguous (H, M) row blocks of enc_t and (M, H) column blocks of
        # dec; both made contiguous once
        self._enc = [np.ascontiguousarray(enc_t[j * hop:(j + 1) * hop]).T for j in range(self.r)]
        self._dec = [np.ascontiguousarray(dec[:, j * hop:(j + 1) * hop]).T for j in range(self.r)]
        self._check_in_place(enc_t.dtype)

    def _product(self, a_t, b_t, c_t, beta: float) -> None:
        """c_t = a_t @ b_t + beta * c_t on Fortran-ordered views (transposes of C arrays)."""
        self._gemm(1.0, a_t, b_t, beta, c_t, overwrite_c=1)

    def encode(self, hops_in: np.ndarray, coeffs: np.ndarray) -> None:
        """coeffs (F, M) = the encoder on F frames of ``hops_in`` ((F + R - 1, H), C-contiguous):
        frame f is rows f .. f+R-1."""
        f = coeffs.shape[0]
        for j in range(self.r):
            self._product(self._enc[j], hops_in[j:j + f].T, coeffs.T, 1.0 if j else 0.0)

    def decode_add(self, coeffs: np.ndarray, hops_out: np.ndarray) -> None:
        """Overlap-add of the F decoded frames into ``hops_out`` ((F + R - 1, H), C-contiguous):
        frame f adds its part j to row f + j. Rows R-1 .. are overwritten by the last parts
        first (they hold nothing yet); rows 0 .. R-2 keep what they held (the pending tail of
        earlier frames) and everything is added on top."""
        f, r = coeffs.shape[0], self.r
        self._product(self._dec[r - 1], coeffs.T, hops_out[r - 1:r - 1 + f].T, 0.0)
        for j in range(r - 1):
            self._product(self._dec[j], coeffs.T, hops_out[j:j + f].T, 1.0)

    def _check_in_place(self, dtype) -> None:
        hop, r = self.hop, self.r
        rng = np.random.default_rng(0)
        m = self._enc[0].shape[0]
        frames = 3
        signal = rng.standard_normal((frames + r - 1) * hop).astype(dtype)
        hops = signal.reshape(-1, hop)
        coeffs = np.full((frames, m), np.nan, dtype)
        self.encode(hops, coeffs)
        framed = np.lib.stride_tricks.sliding_window_view(signal, r * hop)[::hop][:frames]
        enc_t = np.concatenate([e.T for e in self._enc])
        dec = np.concatenate([d.T for d in self._dec], axis=1)
        out = np.zeros_like(hops)
        self.decode_add(coeffs, out)
        expect = np.zeros_like(hops)
        decoded = (framed @ enc_t) @ dec
        for f in range(frames):
            expect.reshape(-1)[f * hop:f * hop + r * hop] += decoded[f]
        tol = 1e-3 if dtype == np.float32 else 1e-10
        scale = 1.0 + np.abs(expect).max()
        if not (np.abs(coeffs - framed @ enc_t).max() <= tol * scale
                and np.abs(out - expect).max() <= tol * scale):
            raise RuntimeError("scipy's BLAS did not write into the given buffers")

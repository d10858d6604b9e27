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

numpy's ``matmul`` has no ``beta``; stream.blas provides a ``gemm`` that has.
"""
from __future__ import annotations

import numpy as np

from stream.blas import gemm_for


class HopProducts:
    """Encoder and decoder products of one transform, split into hop blocks.

    Args:
        enc_t: (N, M) encoder matrix, analysis window folded in (``frames @ enc_t`` = coefficients).
        dec: (M, N) decoder matrix, synthesis window folded in (``coeffs @ dec`` = frames).
        hop: H, dividing N.
        backends: where ``gemm`` comes from, in order of preference (stream.blas).
    Raises ImportError when no BLAS with accumulation is available (stream.blas checks the one
    it hands out).
    """

    def __init__(self, enc_t: np.ndarray, dec: np.ndarray, hop: int,
                 backends=("numpy", "scipy")):
        n, m = enc_t.shape
        self.hop, self.r = hop, n // hop
        self.gemm = gemm_for(enc_t.dtype, backends)
        # (H, M) row blocks of enc_t and (M, H) column blocks of dec, each contiguous
        self._enc = [np.ascontiguousarray(enc_t[j * hop:(j + 1) * hop]) for j in range(self.r)]
        self._dec = [np.ascontiguousarray(dec[:, j * hop:(j + 1) * hop]) for j in range(self.r)]

    def encode(self, hops_in: np.ndarray, coeffs: np.ndarray) -> None:
        """coeffs (F, M) = the encoder on F frames of ``hops_in`` ((F + R - 1, H), C-contiguous):
        frame f is rows f .. f+R-1."""
        f = coeffs.shape[0]
        for j in range(self.r):
            self.gemm(hops_in[j:j + f], self._enc[j], coeffs, 1.0 if j else 0.0)

    def decode_add(self, coeffs: np.ndarray, hops_out: np.ndarray) -> None:
        """Overlap-add of the F decoded frames into ``hops_out`` ((F + R - 1, H), C-contiguous):
        frame f adds its part j to row f + j. Rows R-1 .. are overwritten by the last parts
        first (they hold nothing yet); rows 0 .. R-2 keep what they held (the pending tail of
        earlier frames) and everything is added on top."""
        f, r = coeffs.shape[0], self.r
        self.gemm(coeffs, self._dec[r - 1], hops_out[r - 1:r - 1 + f], 0.0)
        for j in range(r - 1):
            self.gemm(coeffs, self._dec[j], hops_out[j:j + f], 1.0)

"""The encoder's product computed exactly, so that what processors see depends on the signal and
the parameters only.

A BLAS rounds the last bits of a product differently depending on how many rows one call holds
(OpenBLAS and MKL switch kernels by row count), on the CPU's kernel and on the library; a
quantizer decision can flip on such a bit (x / step = 19.5000019 in one partition, 19.4999924
in another). Every product here is exact instead, so the order in which a BLAS adds its terms
cannot matter:

- each frame row is scaled by a power of two ``2**-e`` (e from its peak) and each column of the
  encoder matrix likewise, so their values lie in [-1, 1] with no rounding;
- scaled by ``2**b`` they are cut into integer slices (``rint``, then the remainder scaled by
  ``2**b`` again, ...): ``x = 2**(e - b) * (x1 + 2**-b x2 + ...)``;
- a product of two slices is a sum of N products of integers below ``2**b``; with
  ``N * 2**(2b) <= 2**53`` every partial sum is an integer that float64 holds exactly, whatever
  the order, the blocking or the FMA use of the BLAS (or GPU) doing it;
- the slice products are combined elementwise in one fixed order and rounded once to the
  model's dtype.

float32 models use one slice of each: every frame is rounded to b bits of its own peak and the
matrix to b bits of each column's peak (b = 22 at N = 512), a fixed, deterministic rounding of
the size of float32's own (identity through the exact product 129.7 dB on noise, float32 BLAS
products 128-129 dB), and one float64 product per call. float64 models use three slices of
each (3b >= 53 bits: frames and matrix kept to the last bit). The same
arithmetic runs in numpy (CPU kernel) and torch (any device), with bit-identical results.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def slice_bits(n: int) -> int:
    """b: the widest integer slices whose products, summed over N terms, stay exact in float64."""
    return (53 - math.ceil(math.log2(max(n, 2)))) // 2


def slice_counts(dtype) -> tuple[int, int]:
    """(frame slices, matrix slices) for a model dtype (module docstring)."""
    return (3, 3) if np.dtype(dtype) == np.float64 else (1, 1)


def _slices_np(scaled: np.ndarray, count: int, bits: int, out: np.ndarray) -> None:
    """Integer slices of ``scaled`` (values in [-2**b, 2**b]) into ``out[0 .. count-1]``; the
    remainder after the last slice is dropped. ``scaled`` is clobbered."""
    step = float(2 ** bits)
    for i in range(count):
        np.rint(scaled, out=out[i])
        if i + 1 < count:
            np.subtract(scaled, out[i], out=scaled)
            np.multiply(scaled, step, out=scaled)


# exponents are kept where 2**(b - e) and 2**(e - b) are normal numbers: peaks below 2**-960
# (far below any audio) are scaled as if they were 2**-960, with no effect but lost precision
_MIN_EXPONENT = -960


def _exponents(peaks: np.ndarray) -> np.ndarray:
    """e (int64) with peak < 2**e, at least _MIN_EXPONENT (0 for a zero peak)."""
    return np.maximum(np.frexp(peaks)[1], _MIN_EXPONENT).astype(np.int64)


def _pow2(e: np.ndarray) -> np.ndarray:
    """2.0**e for integer e, exactly."""
    return np.ldexp(1.0, e)


def _pow2_torch(e: torch.Tensor) -> torch.Tensor:
    """2.0**e (float64) for integer e in -1022..1023, exactly: built from the exponent bits, so no
    pow or exp2 implementation can round it."""
    return ((e.to(torch.int64) + 1023) << 52).view(torch.float64)


def split_matrix(enc_t: np.ndarray, bits: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The (N, M) encoder matrix as ``count`` integer slices side by side, (N, count * M)
    float64, and the per-column scale (M,) that turns integer products back into values."""
    e = np.asarray(enc_t, dtype=np.float64)
    exp = _exponents(np.abs(e).max(axis=0))
    scaled = e * _pow2(bits - exp)[None, :]
    n, m = e.shape
    parts = np.empty((count, n, m), np.float64)
    _slices_np(scaled, count, bits, parts)
    matrix = np.ascontiguousarray(parts.transpose(1, 0, 2).reshape(n, count * m))
    return matrix, _pow2(exp - bits)


class ExactEncoder:
    """``frames @ enc_t``, exact to the model's dtype, into preallocated float64 buffers (numpy).

    Args:
        enc_t: (N, M) encoder matrix with the analysis window folded in.
        dtype: the model's numpy dtype (float32 or float64).
    """

    def __init__(self, enc_t: np.ndarray, dtype):
        n, m = enc_t.shape
        self.n, self.m = n, m
        self.bits = slice_bits(n)
        self.frame_slices, self.matrix_slices = slice_counts(dtype)
        self.matrix, self.col_scale = split_matrix(enc_t, self.bits, self.matrix_slices)
        # (i + j) for every slice pair, largest first: the small terms are added first
        pairs = [(i, j) for i in range(self.frame_slices) for j in range(self.matrix_slices)]
        self.pairs = sorted(pairs, key=lambda p: -(p[0] + p[1]))
        self.pair_scale = [float(2.0 ** (-self.bits * (i + j))) for i, j in self.pairs]
        self._rows = 0
        self._alloc(8)

    def _alloc(self, rows: int) -> None:
        self._rows = rows
        self.scaled = np.empty((rows, self.n), np.float64)
        self.slices = np.empty((self.frame_slices, rows, self.n), np.float64)
        self.products = np.empty((self.frame_slices * rows, self.matrix_slices * self.m),
                                 np.float64)
        self.acc = np.empty((rows, self.m), np.float64)
        self.term = np.empty((rows, self.m), np.float64)
        self.peaks = np.empty(rows, np.float64)

    def __call__(self, frames: np.ndarray, out: np.ndarray) -> None:
        """frames (..., N) (any strides, float32 or float64) -> out (..., M) in its dtype."""
        rows = out.size // self.m
        if rows > self._rows:
            self._alloc(2 * rows)
        x = self.scaled[:rows]
        np.copyto(x.reshape(frames.shape), frames)
        np.abs(x, out=self.slices[0, :rows])
        np.max(self.slices[0, :rows], axis=1, out=self.peaks[:rows])
        exp = _exponents(self.peaks[:rows])
        np.multiply(x, _pow2(self.bits - exp)[:, None], out=x)
        slices = self.slices[:, :rows]
        _slices_np(x, self.frame_slices, self.bits, slices)
        products = self.products[:self.frame_slices * rows]
        np.matmul(slices.reshape(-1, self.n), self.matrix, out=products)
        p = products.reshape(self.frame_slices, rows, self.matrix_slices, self.m)
        acc, term = self.acc[:rows], self.term[:rows]
        (i0, j0) = self.pairs[0]
        np.multiply(p[i0, :, j0], self.pair_scale[0], out=acc)
        for (i, j), scale in zip(self.pairs[1:], self.pair_scale[1:]):
            np.multiply(p[i, :, j], scale, out=term)
            acc += term
        acc *= _pow2(exp - self.bits)[:, None]
        acc *= self.col_scale
        np.copyto(out.reshape(rows, self.m), acc, casting="same_kind")


class TorchExactEncoder:
    """The same exact product in torch on any device (bit-identical to :class:`ExactEncoder`).

    Args:
        enc_t: (N, M) encoder matrix with the analysis window folded in (numpy or torch).
        dtype: the model's torch dtype; device: where the products run.
    """

    def __init__(self, enc_t, dtype: torch.dtype, device: torch.device):
        enc = enc_t.detach().cpu().numpy() if isinstance(enc_t, torch.Tensor) else enc_t
        n, m = enc.shape
        self.n, self.m, self.dtype = n, m, dtype
        self.bits = slice_bits(n)
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        self.frame_slices, self.matrix_slices = slice_counts(np_dtype)
        matrix, col_scale = split_matrix(enc, self.bits, self.matrix_slices)
        self.matrix = torch.from_numpy(matrix).to(device)
        self.col_scale = torch.from_numpy(col_scale).to(device)
        pairs = [(i, j) for i in range(self.frame_slices) for j in range(self.matrix_slices)]
        self.pairs = sorted(pairs, key=lambda p: -(p[0] + p[1]))
        self.pair_scale = [float(2.0 ** (-self.bits * (i + j))) for i, j in self.pairs]

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (..., N) -> coefficients (..., M) in the model's dtype."""
        shape = frames.shape[:-1]
        x = frames.reshape(-1, self.n).to(torch.float64)
        exp = torch.frexp(x.abs().amax(dim=1)).exponent.to(torch.int64).clamp_(min=_MIN_EXPONENT)
        scaled = x * _pow2_torch(self.bits - exp)[:, None]
        slices, step = [], float(2 ** self.bits)
        for i in range(self.frame_slices):
            s = torch.round(scaled)          # half to even, like numpy's rint
            slices.append(s)
            if i + 1 < self.frame_slices:
                scaled = (scaled - s) * step
        rows = x.shape[0]
        p = (torch.cat(slices) @ self.matrix).view(self.frame_slices, rows, self.matrix_slices,
                                                   self.m)
        (i0, j0) = self.pairs[0]
        acc = p[i0, :, j0] * self.pair_scale[0]
        for (i, j), scale in zip(self.pairs[1:], self.pair_scale[1:]):
            acc = acc + p[i, :, j] * scale
        acc = acc * _pow2_torch(exp - self.bits)[:, None]
        acc = acc * self.col_scale
        return acc.to(self.dtype).reshape(*shape, self.m)

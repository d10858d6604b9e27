"""FFT fast path of the engine: the learned cosine pair at its DCT init is the orthonormal
DCT-III (encoder) / DCT-II (decoder), which an FFT computes in O(N log N) per frame instead of
the O(N * M) of a matrix product.

When is it valid? The model's matrices are (models.cosine)::

    W1[m, n] = a2 * cos(w[m] n) / sqrt(N)  (n >= 1),  W1[m, 0] = a1 / sqrt(N)
    W2[m, n] = a4 * cos(v[m] n) / sqrt(N)  (n >= 1),  W2[m, 0] = a3 / sqrt(N)   (used as y = X @ W2)

with a1 = a3 = 1, a2 = a4 = sqrt(2) at init. They are rows of the N-point orthonormal
DCT-III / DCT-II exactly when the frequencies lie on the N-point DCT grid w[m] = (2m+1) pi / (2N):

- init "dct" with M == N (grid denominator M == N): the full pair;
- init "lowpass", any M <= N (grid denominator N): the first M rows, so the encoder is
  ``dct3(x)[:M]`` and the decoder ``dct2(zero-pad(X, N))`` (an exact projection);
- init "dct" with M < N puts the grid at (2m+1) pi / (2M) with n running to N - 1: no N-point
  DCT, no fast path;

and the decoder is "tied" (the encoder's frequencies), "free" still at its init (its own
frequencies equal the encoder's) or "pinv" (the pseudo-inverse of orthonormal rows is their
transpose: the DCT-II rows, up to float rounding). Every parameter must still be exactly at its
init value (``LearnedCosine.at_init()``); one optimiser step or a loaded checkpoint ends it.
:func:`dct_pair_ok` checks all of that, and :func:`matrices_match` confirms it numerically
against the model's own matrices before the engine switches.

Windows are not part of the DCT: the engine multiplies the frames by the analysis window before
the DCT-III and the decoded frames by the synthesis window after the DCT-II; processors see the
same coefficients either way.

Implementations:

- CPU: scipy's pocketfft (``scipy.fft``) on numpy arrays, zero-copy, into preallocated buffers.
  The low-level ``pypocketfft.dct`` is used when present (it skips about 6 us of argument
  handling per call, which matters at small block sizes); otherwise ``scipy.fft.dct``.
  scipy is a dependency; should it be missing anyway, the engine stays on matrix products.
- Any torch device: :func:`torch_dct2` / :func:`torch_dct3`, one complex FFT of length N per
  frame (Makhoul's reordering). On CPU they are slower than both pocketfft and the matrix
  products; on CUDA the engine defaults to matrix products (cuBLAS) until a GPU measurement
  (benchmarks/gpu.py) says otherwise.
"""
from __future__ import annotations

import functools
import math
import os

import numpy as np
import torch

# --- eligibility ------------------------------------------------------------------------------


def dct_pair_ok(model) -> tuple[bool, str]:
    """Whether the model's encoder/decoder are exactly (rows of) the N-point orthonormal
    DCT-III / DCT-II pair; (ok, reason in words)."""
    n, m = model.n, model.m
    enc = model.encoder
    if enc.grid_k != n:
        return False, (f"init {model.init!r} with M = {m} < N = {n} puts the frequencies on a "
                       f"{enc.grid_k}-point grid, not the N-point DCT grid")
    dec = model.decoder
    if dec.mode == "free" and dec.basis.grid_k != n:
        return False, "the free decoder's grid is not the N-point DCT grid"
    # frequencies first, so that the reason says which parameters moved
    offsets = [enc.freq_offset_bins] + ([dec.basis.freq_offset_bins] if dec.mode == "free" else [])
    if any(bool(o.detach().ne(0).any()) for o in offsets):
        return False, "the frequencies were trained (parameters not at init)"
    if not model.at_init():
        return False, "the gains were trained (parameters not at init)"
    return True, f"DCT init, M = {m}, N = {n}, decoder {dec.mode}, parameters at init"


@functools.lru_cache(maxsize=4)
def dct_matrices(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The (M, N) float64 encoder and decoder matrices the DCT pair stands for, in the model's
    convention (X = W1 @ x, y = X @ W2), computed through the FFT of the identity (cached;
    read-only)."""
    import scipy.fft as sfft
    eye = np.eye(n, dtype=np.float64)
    # column j of W1 is dct3(e_j)[:M]; row i of W2 is dct2(e_i)
    w1 = np.ascontiguousarray(sfft.dct(eye, type=3, norm="ortho", axis=-1)[:, :m].T)
    w2 = np.ascontiguousarray(sfft.dct(eye, type=2, norm="ortho", axis=-1)[:m])
    w1.flags.writeable = w2.flags.writeable = False
    return w1, w2


def matrices_match(enc: torch.Tensor, dec: torch.Tensor) -> bool:
    """The model's (M, N) matrices equal the DCT pair within a few units of their dtype's
    precision (a guard: if the model's conventions ever change, the engine stays on matmuls)."""
    m, n = enc.shape
    w1, w2 = dct_matrices(n, m)
    tol = 64 * float(torch.finfo(enc.dtype).eps) / math.sqrt(n)
    e = enc.detach().to("cpu", torch.float64).numpy()
    d = dec.detach().to("cpu", torch.float64).numpy()
    return bool(np.abs(e - w1).max() <= tol and np.abs(d - w2).max() <= tol)


# --- CPU: pocketfft on numpy arrays -----------------------------------------------------------


def cpu_workers() -> int:
    """Threads for large batches: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class ScipyDCT:
    """Orthonormal DCT-III / DCT-II along the last axis of numpy arrays, into given buffers.

    ``workers`` threads are used only for batches of at least ``parallel_rows`` rows (a thread
    hand-off costs more than a small batch); the result does not depend on the thread count.
    Raises ImportError when scipy is missing.
    """

    name = "scipy"
    parallel_rows = 64

    def __init__(self, workers: int | None = None):
        import scipy.fft as sfft
        self._sfft = sfft
        self.workers = cpu_workers() if workers is None else int(workers)
        self._raw = None
        try:
            from scipy.fft._pocketfft import pypocketfft as raw
            probe = np.arange(8, dtype=np.float32).reshape(1, 8)
            got = raw.dct(probe, 3, (1,), 1, np.empty_like(probe), 1)
            if np.allclose(got, sfft.dct(probe, type=3, norm="ortho"), atol=1e-5):
                self._raw = raw
        except Exception:          # private module moved or changed: use the public API
            self._raw = None

    def _threads(self, x: np.ndarray) -> int:
        rows = x.size // max(1, x.shape[-1])
        return self.workers if rows >= self.parallel_rows else 1

    def dct3(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Orthonormal DCT-III of ``x`` into ``out`` (same shape; may be ``x`` itself)."""
        if self._raw is not None:
            return self._raw.dct(x, 3, (x.ndim - 1,), 1, out, self._threads(x))
        out[...] = self._sfft.dct(x, type=3, norm="ortho", axis=-1, workers=self._threads(x))
        return out

    def dct2(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Orthonormal DCT-II of ``x`` into ``out`` (same shape; may be ``x`` itself)."""
        if self._raw is not None:
            return self._raw.dct(x, 2, (x.ndim - 1,), 1, out, self._threads(x))
        out[...] = self._sfft.dct(x, type=2, norm="ortho", axis=-1, workers=self._threads(x))
        return out


# --- any torch device: FFT-based DCT ----------------------------------------------------------


_TWIDDLES: dict = {}


def _twiddles(n: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scale * exp(-i pi k / (2N)), scale, exp(+i pi k / (2N))) for k = 0..N-1, the
    orthonormal DCT-II's scale being sqrt(1/N) at k = 0 and sqrt(2/N) elsewhere (cached)."""
    key = (n, str(device), dtype)
    cached = _TWIDDLES.get(key)
    if cached is None:
        k = torch.arange(n, dtype=torch.float64)
        scale = torch.full((n,), math.sqrt(2.0 / n), dtype=torch.float64)
        scale[0] = math.sqrt(1.0 / n)
        phase = torch.polar(torch.ones(n, dtype=torch.float64), math.pi * k / (2 * n))
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        cached = tuple(t.to(device=device, dtype=d) for t, d in
                       ((scale * phase.conj(), cdtype), (scale, dtype), (phase, cdtype)))
        _TWIDDLES[key] = cached
    return cached


def torch_dct2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-II along the last dimension (``scipy.fft.dct(x, 2, norm="ortho")``),
    through one complex FFT of length N of the even samples followed by the reversed odd ones."""
    tw, _, _ = _twiddles(x.shape[-1], x.device, x.dtype)
    v = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    return (torch.fft.fft(v, dim=-1) * tw).real


def torch_dct3(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-III along the last dimension (the inverse of :func:`torch_dct2`).

    With c = X / scale, the FFT of the reordered frame is V[k] = (c[k] - i c[N - k]) *
    exp(i pi k / (2N)) (c[N] = 0), and the frame is its inverse FFT, reordered back."""
    n = x.shape[-1]
    _, scale, phase = _twiddles(n, x.device, x.dtype)
    c = x / scale
    mirrored = torch.nn.functional.pad(c[..., 1:].flip(-1), (1, 0))
    v = torch.fft.ifft(torch.complex(c, -mirrored) * phase, dim=-1).real
    out = torch.empty_like(x)
    half = (n + 1) // 2
    out[..., ::2] = v[..., :half]
    out[..., 1::2] = v[..., half:].flip(-1)
    return out


class TorchDCT:
    """The torch.fft DCT pair with the same interface as :class:`ScipyDCT`, for torch tensors."""

    name = "torch"

    def dct3(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        y = torch_dct3(x)
        return y if out is None else out.copy_(y)

    def dct2(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        y = torch_dct2(x)
        return y if out is None else out.copy_(y)

"""The FFT transform the CPU kernel can run instead of matrix products: the DCT pair.

At its DCT init the learned pair is the orthonormal DCT-III (encoder) / DCT-II (decoder), or their
first M rows (cosine_host.models.transform.LearnedCosine.dct_pair says when); :class:`ScipyDCT`
computes them with pocketfft in O(N log N) per frame instead of O(N M), each frame on its own (the
same bits for any batch). Windows are then applied by the kernel. :func:`matrices_match` confirms
numerically that the model's matrices are that pair before a kernel switches.
"""
from __future__ import annotations

import functools
import math
import os

import numpy as np

# --- the DCT pair through pocketfft ------------------------------------------------------------

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


def matrices_match(enc: np.ndarray, dec: np.ndarray, dtype) -> bool:
    """The model's (M, N) matrices equal the DCT pair within a few units of ``dtype``'s (the
    model's) precision (a guard: if the model's conventions ever change, the engine stays on
    matrices)."""
    m, n = enc.shape
    w1, w2 = dct_matrices(n, m)
    tol = 64 * float(np.finfo(dtype).eps) / math.sqrt(n)
    return bool(np.abs(enc - w1).max() <= tol and np.abs(dec - w2).max() <= tol)


def cpu_workers() -> int:
    """Threads for large batches: the CPUs this process may run on, at most OMP_NUM_THREADS
    when that is set (the thread budget `render --jobs N` gives each worker, or the user's)."""
    try:
        cpus = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cpus = max(1, os.cpu_count() or 1)
    budget = os.environ.get("OMP_NUM_THREADS", "")
    return min(cpus, int(budget)) if budget.isdigit() and int(budget) > 0 else cpus


class ScipyDCT:
    """Orthonormal DCT-III / DCT-II (and DCT-IV) along the last axis of numpy arrays, into given buffers.

    ``workers`` threads are used only for batches of at least ``parallel_rows`` rows (a thread
    hand-off costs more than a small batch); each row's result does not depend on the thread
    count or on the other rows. The low-level ``pypocketfft.dct`` is used when present (it
    skips about 6 us of argument handling per call, which matters at small block sizes).
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

    def dct3(self, x: np.ndarray, out: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Orthonormal DCT-III of ``x`` into ``out`` (same shape; may be ``x`` itself); ``threads``
        overrides the thread count (a caller that runs its own threads passes 1)."""
        return self._dct(3, x, out, threads)

    def dct2(self, x: np.ndarray, out: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Orthonormal DCT-II of ``x`` into ``out``, as :meth:`dct3`."""
        return self._dct(2, x, out, threads)

    def dct4(self, x: np.ndarray, out: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Orthonormal DCT-IV of ``x`` into ``out`` (its own inverse), as :meth:`dct3`: the
        core of the MDCT fast path (cosine_host.engine.mdct)."""
        return self._dct(4, x, out, threads)

    def _dct(self, kind: int, x: np.ndarray, out: np.ndarray, threads: int | None) -> np.ndarray:
        threads = self._threads(x) if threads is None else threads
        if self._raw is not None:
            return self._raw.dct(x, kind, (x.ndim - 1,), 1, out, threads)
        out[...] = self._sfft.dct(x, type=kind, norm="ortho", axis=-1, workers=threads)
        return out

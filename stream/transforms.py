"""The transforms a kernel can run on CPU: matrix products (framed or split along the hop, with
the BLAS binding they need) and the FFT DCT pair.

**Matrix products.** The windows are folded into the model's matrices (``enc_t`` (N, M):
``frames @ enc_t`` = coefficients; ``dec`` (M, N): ``coeffs @ dec`` = windowed frames). For
large batches the products are split along the hop (:class:`HopProducts`): with H dividing N
(R = N / H), frame f of a signal is hops f .. f+R-1 laid end to end, so::

    X = frames @ E  =  sum_j  S[j : j + F] @ E[j*H : (j+1)*H, :]        (S: the signal as (hops, H))
    out[j : j + F] += X @ D[:, j*H : (j+1)*H]                           (the overlap-add)

Every term reads the signal in place, and BLAS ``gemm`` with ``beta = 1`` does the overlap-add
inside the decoder's product: no framing copy, no decoded-frames buffer, no add pass. numpy's
``matmul`` has no ``beta``; :func:`gemm_for` binds one:

- ``numpy``: the OpenBLAS that numpy's own wheels bundle (``scipy_cblas_?gemm64_``), through
  ctypes: the very library and thread pool ``np.matmul`` uses (two OpenBLAS pools spinning on
  the same cores stall each other, see benchmarks/README.md);
- ``scipy``: ``scipy.linalg.blas.?gemm``, a second OpenBLAS with its own threads (2-4 % slower
  for these shapes), the fallback.

Each backend is checked on a small accumulated product before use.

**The DCT pair.** At its DCT init the learned pair is the orthonormal DCT-III (encoder) /
DCT-II (decoder), or their first M rows (models.transform.LearnedCosine.dct_pair says when);
:class:`ScipyDCT` computes them with pocketfft in O(N log N) per frame instead of O(N M).
Windows are then applied by the kernel. :func:`matrices_match` confirms numerically that the
model's matrices are that pair before a kernel switches.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import math
import os

import numpy as np

# --- BLAS gemm with accumulation ---------------------------------------------------------------

_ROW_MAJOR, _NO_TRANS = 101, 111


class _NumpyCblas:
    name = "numpy"

    def __init__(self, fn, dtype):
        self._fn = fn
        self._item = np.dtype(dtype).itemsize
        scalar = ctypes.c_double if dtype == np.float64 else ctypes.c_float
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, scalar, ptr, i64,
                       ptr, i64, scalar, ptr, i64]
        fn.restype = None

    def __call__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, beta: float) -> None:
        m, k = a.shape
        it = self._item
        self._fn(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, m, b.shape[1], k, 1.0, a.ctypes.data,
                 a.strides[0] // it, b.ctypes.data, b.strides[0] // it, beta, c.ctypes.data,
                 c.strides[0] // it)


class _ScipyGemm:
    name = "scipy"

    def __init__(self, dtype):
        from scipy.linalg import blas
        self._fn = blas.dgemm if dtype == np.float64 else blas.sgemm

    def __call__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, beta: float) -> None:
        # C^T = B^T A^T: the transposes of C-contiguous arrays are Fortran-contiguous views
        self._fn(1.0, b.T, a.T, beta, c.T, overwrite_c=1)


def _numpy_openblas_gemm(dtype):
    """numpy's bundled OpenBLAS gemm for ``dtype``, or None where this numpy has none."""
    here = os.path.dirname(os.path.abspath(np.__file__))
    pattern = "*scipy_openblas64_*"
    paths = (glob.glob(os.path.join(here, os.pardir, "numpy.libs", pattern))
             + glob.glob(os.path.join(here, ".dylibs", pattern)))
    symbol = f"scipy_cblas_{'d' if dtype == np.float64 else 's'}gemm64_"
    for path in sorted(paths):
        try:
            fn = getattr(ctypes.CDLL(path), symbol)
        except (OSError, AttributeError):
            continue
        return _NumpyCblas(fn, dtype)
    return None


def gemm_works(gemm, dtype) -> bool:
    """A small accumulated product into rows of a larger buffer: does ``gemm`` compute it and
    write exactly there (a backend that copied ``c`` would leave it unchanged)?"""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 7)).astype(dtype)
    b = rng.standard_normal((7, 4)).astype(dtype)
    store = rng.standard_normal((9, 4)).astype(dtype)
    before = store.copy()
    c = store[2:7]
    expect = a.astype(np.float64) @ b + c
    try:
        gemm(a, b, c, 1.0)
    except Exception:          # an argument the backend refuses: not usable
        return False
    tol = 1e-4 if dtype == np.float32 else 1e-12
    return bool(np.abs(c - expect).max() <= tol * np.abs(expect).max()
                and np.array_equal(store[:2], before[:2]) and np.array_equal(store[7:], before[7:]))


GEMM_BACKENDS = ("numpy", "scipy")
_GEMMS: dict = {}


def available_gemm(name: str, dtype):
    """The ``name`` backend's gemm for ``dtype`` when it is present and passes
    :func:`gemm_works`, else None (cached)."""
    dtype = np.dtype(dtype).type
    key = (name, dtype)
    if key not in _GEMMS:
        gemm = None
        try:
            gemm = _numpy_openblas_gemm(dtype) if name == "numpy" else _ScipyGemm(dtype)
        except ImportError:
            pass
        _GEMMS[key] = gemm if gemm is not None and gemm_works(gemm, dtype) else None
    return _GEMMS[key]


def gemm_for(dtype, backends=GEMM_BACKENDS):
    """A callable ``gemm(a, b, c, beta)``: ``c = a @ b + beta * c`` for C-contiguous 2-D arrays
    of ``dtype`` (float32 or float64), written into ``c``; ``.name`` says which backend.
    Raises ImportError when none of ``backends`` is available and works."""
    for name in backends:
        gemm = available_gemm(name, dtype)
        if gemm is not None:
            return gemm
    raise ImportError(f"no BLAS gemm with accumulation for {np.dtype(dtype).name}: install "
                      f"scipy (pip install scipy)")


class HopProducts:
    """Encoder and decoder products of one transform, split into hop blocks (module docstring).

    Args:
        enc_t: (N, M) encoder matrix, analysis window folded in.
        dec: (M, N) decoder matrix, synthesis window folded in.
        hop: H, dividing N.
        backends: where ``gemm`` comes from, in order of preference.
    Raises ImportError when no BLAS with accumulation is available.
    """

    def __init__(self, enc_t: np.ndarray, dec: np.ndarray, hop: int, backends=GEMM_BACKENDS):
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
    """Threads for large batches: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class ScipyDCT:
    """Orthonormal DCT-III / DCT-II along the last axis of numpy arrays, into given buffers.

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
        threads = self._threads(x) if threads is None else threads
        if self._raw is not None:
            return self._raw.dct(x, 3, (x.ndim - 1,), 1, out, threads)
        out[...] = self._sfft.dct(x, type=3, norm="ortho", axis=-1, workers=threads)
        return out

    def dct2(self, x: np.ndarray, out: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Orthonormal DCT-II of ``x`` into ``out`` (same shape; may be ``x`` itself); ``threads``
        overrides the thread count (a caller that runs its own threads passes 1)."""
        threads = self._threads(x) if threads is None else threads
        if self._raw is not None:
            return self._raw.dct(x, 2, (x.ndim - 1,), 1, out, threads)
        out[...] = self._sfft.dct(x, type=2, norm="ortho", axis=-1, workers=threads)
        return out

"""``C = A @ B + beta * C`` into a given buffer: BLAS ``gemm`` on C-ordered numpy arrays.

numpy's ``matmul`` has no ``beta`` (no accumulation into the output), which the engine's hop-split
products need (stream.hopgemm). Two ways to the same BLAS routine, tried in this order:

- ``numpy``: the OpenBLAS that numpy's own wheels bundle (``scipy-openblas64``), called through
  ctypes: the very library, and thread pool, that ``np.matmul`` uses, so the engine's products
  never wake a second pool (two OpenBLAS pools spinning on the same cores stall each other,
  see benchmarks/README.md). Only that wheel's exact symbol names are accepted (64-bit
  integers, ``scipy_cblas_?gemm64_``), and every backend is checked on a small product before
  use;
- ``scipy``: ``scipy.linalg.blas.?gemm`` (Fortran-ordered, so C arrays go in transposed), whose
  OpenBLAS is a second copy with its own threads; measured 2-4 % slower here than numpy's for
  the engine's shapes.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

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


def _works(gemm, dtype) -> bool:
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


_CACHE: dict = {}


def gemm_for(dtype, backends=("numpy", "scipy")):
    """A callable ``gemm(a, b, c, beta)``: ``c = a @ b + beta * c`` for C-contiguous 2-D arrays
    of ``dtype`` (float32 or float64), written into ``c``; ``.name`` says which backend.
    Raises ImportError when none of ``backends`` is available and works."""
    dtype = np.dtype(dtype).type
    for name in backends:
        key = (name, dtype)
        if key not in _CACHE:
            gemm = None
            try:
                gemm = _numpy_openblas_gemm(dtype) if name == "numpy" else _ScipyGemm(dtype)
            except ImportError:
                pass
            if gemm is not None and not _works(gemm, dtype):
                gemm = None
            _CACHE[key] = gemm
        if _CACHE[key] is not None:
            return _CACHE[key]
    raise ImportError(f"no BLAS gemm with accumulation for {np.dtype(dtype).name}: install "
                      f"scipy (pip install scipy)")

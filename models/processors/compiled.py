"""Compiled (numba) per-call kernels of the built-in processors' CPU route.

The engine calls the processors once per block on one or two frames (1024 values at M = 512,
2 channels). There numpy costs 2-5 us per operation whatever the size, and a quantizer or
top-k needs about ten; each kernel here is one call that computes the same bits as the
processor's torch route (tests/test_processors.py holds both to that, NaN, ties and silent
frames included). The processors import this module (and numba) on first use; the engine calls
``warm_up`` for its dtype when it is built, so that no compilation (or load from numba's on-disk
cache) ever happens in an audio callback.

Arrays are the ``(frames, channels, M)`` coefficients, any strides; a kernel writes into an
``out`` that may be its input (the engine's in-place route allocates nothing). The kernels
keep the GIL: they take microseconds, and an audio callback that let go of it would wait for
another thread's switch interval (5 ms by default) to get it back.
"""
from __future__ import annotations

import numba
import numpy as np

FLOAT16_NORMAL = 2.0 ** -14        # smallest normal float16
FLOAT16_MAX = 65504.0
# per float dtype: its bits' integer type, the mantissa bits float16 lacks, +inf's bits
BITS = {np.dtype(np.float32): (np.int32, 2 ** 13 - 1, 0x7F800000),
        np.dtype(np.float64): (np.int64, 2 ** 42 - 1, 0x7FF0000000000000)}
# per float dtype: the mask that clears the sign bit of its bits' integer
MAGNITUDE = {np.dtype(np.float32): np.int32(2 ** 31 - 1), np.dtype(np.float64): np.int64(2 ** 63 - 1)}


def _jit(function):
    """numba's nopython compilation, cached on disk where numba finds a writable place (next to
    this file or the user's cache folder); without one, compiled once per process."""
    try:
        return numba.njit(cache=True)(function)
    except RuntimeError:            # "cannot cache function ...: no locator available"
        return numba.njit(function)


@_jit
def row_peak(x, f, c):
    """The largest |x[f, c, j]| over j, NaN when any of them is NaN (as torch's amax)."""
    p = abs(x[f, c, 0])
    for j in range(1, x.shape[2]):
        v = abs(x[f, c, j])
        if v > p or v != v:
            p = v
    return p


@_jit
def quantize(x, levels, peak, peak_bits, low, out, counts, bins_of):
    """Quantize each (frame, channel) row of ``x`` with its float16 scale into ``out`` (may be
    ``x``: each value is read before its place is written); count each symbol's bin.

    ``levels`` in x's dtype; ``peak``/``peak_bits`` (rows,) scratch, the same memory seen
    as floats and as their bits' integers; ``low`` the mantissa bits float16 lacks;
    ``counts`` the flat int64 histogram; ``bins_of`` (M,) int64: the bin of symbol 0 at
    each index (its band row's offset + levels). Returns False, having written nothing,
    when a row's peak is neither 0 nor a normal float16 (NaN, inf, tiny, huge): the
    caller takes the torch route."""
    frames, channels, m = x.shape
    one, zero = levels / levels, levels - levels      # in x's dtype
    for f in range(frames):
        for c in range(channels):
            p = row_peak(x, f, c)
            if not (p == 0 or FLOAT16_NORMAL <= p <= FLOAT16_MAX):
                return False
            peak[f * channels + c] = p
    # the smallest float16 >= peak: the mantissa rounded up to float16's 10 bits
    for r in range(frames * channels):
        peak_bits[r] = (peak_bits[r] + low) & ~low
    for f in range(frames):
        for c in range(channels):
            scale = peak[f * channels + c]
            inv = (one / scale) * levels if scale > 0 else zero    # torch: 1/s * levels
            step = scale / levels
            for j in range(m):
                q = np.rint(x[f, c, j] * inv)
                out[f, c, j] = q * step
                counts[np.int64(q) + bins_of[j]] += 1
    return True


@_jit
def learned_quantize(x, inv_step, step, levels, out, counts, bins_of, fine, width):
    """Quantize each coefficient with its own step: ``rint(x * inv_step)`` clipped to
    +-``levels``, times ``step`` (both (M,), in x's dtype), into ``out`` (may be ``x``); count
    each symbol's bin. ``bins_of`` (M,) int64: the bin of symbol 0 at each index; symbols above
    ``fine`` share bins ``width`` wide (width 1: every symbol its own). A NaN counts as
    -levels, as torch's integer conversion and clamp make it."""
    frames, channels, m = x.shape
    for f in range(frames):
        for c in range(channels):
            for j in range(m):
                s = np.rint(x[f, c, j] * inv_step[j])
                if s < -levels:
                    s = -levels
                elif s > levels:
                    s = levels
                out[f, c, j] = s * step[j]
                if s != s:
                    q = -np.int64(levels)
                else:
                    q = np.int64(s)
                if width > 1:
                    a = abs(q)
                    if a > fine:
                        a = fine + (a - fine + width - 1) // width
                    q = a if q >= 0 else -a
                counts[q + bins_of[j]] += 1


@_jit
def threshold(x, factor, out):
    """Keep each row's |x| >= its peak |x| times ``factor``, zero the rest, into ``out`` (may be
    ``x``); returns the count kept. ``factor`` in x's dtype. A row holding a NaN has a NaN
    peak and keeps nothing, as the torch route's amax and >= make it."""
    frames, channels, m = x.shape
    kept = 0
    for f in range(frames):
        for c in range(channels):
            floor = row_peak(x, f, c) * factor
            for j in range(m):
                if abs(x[f, c, j]) >= floor:
                    out[f, c, j] = x[f, c, j]
                    kept += 1
                else:
                    out[f, c, j] = 0
    return kept


@_jit
def kth_smallest(values, n):
    """The n-th smallest (0-based) of ``values``, which it reorders (quickselect, median of
    three pivots)."""
    lo, hi = 0, values.size - 1
    while lo < hi:
        mid = (lo + hi) // 2
        a, b, c = values[lo], values[mid], values[hi]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = lo, hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if n <= j:
            hi = j
        elif n >= i:
            lo = i
        else:
            return values[n]
    return values[n]


@_jit
def topk(x, x_bits, k, magnitude_mask, inf_bits, order, scratch, out):
    """Keep the k largest |x| of each (frame, channel) row (ties: the lowest index; NaN above
    inf), zero the rest, into ``out`` (may be ``x``: a row is read whole before it is
    written). ``x_bits`` x's memory as its bits' integers; ``magnitude_mask`` clears the sign
    bit; ``order`` (rows, M) and ``scratch`` (M,) of that integer type."""
    frames, channels, m = x.shape
    for f in range(frames):
        for c in range(channels):
            r = f * channels + c
            for j in range(m):
                order[r, j] = min(x_bits[f, c, j] & magnitude_mask, inf_bits + 1)
                scratch[j] = order[r, j]
            kth = kth_smallest(scratch, m - k)
            need = k
            for j in range(m):
                if order[r, j] > kth:
                    need -= 1
            for j in range(m):
                b = order[r, j]
                if b > kth:
                    out[f, c, j] = x[f, c, j]
                elif b == kth and need > 0:
                    need -= 1
                    out[f, c, j] = x[f, c, j]
                else:
                    out[f, c, j] = 0


_warm: set = set()


def warm_up(dtype) -> None:
    """Compile (or load from numba's cache) every kernel for float ``dtype`` (float32 or
    float64), once per process."""
    dtype = np.dtype(dtype)
    if dtype in _warm:
        return
    as_int, low, inf_bits = BITS[dtype]
    # contiguous coefficients, and a strided view (the first M of N on the DCT path): numba
    # compiles each array layout on its own
    for x in (np.ones((1, 1, 4), dtype), np.ones((1, 1, 8), dtype)[..., :4]):
        peak = np.zeros(1, dtype)
        quantize(x, dtype.type(3), peak, peak.view(as_int), as_int(low), x,
                 np.zeros(16, np.int64), np.full(4, 3, np.int64))
        topk(x, x.view(as_int), 2, MAGNITUDE[dtype], as_int(inf_bits),
             np.empty((1, 4), as_int), np.empty(4, as_int), x)
        steps = np.ones(4, dtype)
        learned_quantize(x, steps, steps, dtype.type(3), x, np.zeros(16, np.int64),
                         np.full(4, 3, np.int64), 3, 1)
        threshold(x, dtype.type(0.5), x)
    _warm.add(dtype)

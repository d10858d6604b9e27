"""The engine's NaN/Inf check of a block, cheap enough for every call of an audio callback."""
from __future__ import annotations

import math

import numpy as np


def all_finite(block: np.ndarray, scratch: np.ndarray | None = None) -> bool:
    """No NaN or Inf in ``block`` (False may also mean a sum of squares that overflowed: callers
    look closer). One reduction: NaN and Inf reach any sum; the dot product of a contiguous
    block with itself is BLAS's, faster than numpy's pairwise sum or max and min
    (benchmarks/README.md). ``scratch``: a 0-d array of ``block``'s dtype for the result, so
    that the check allocates nothing."""
    with np.errstate(invalid="ignore", over="ignore"):
        if block.flags.c_contiguous:
            flat = block.reshape(-1)
            if scratch is not None:
                return math.isfinite(np.dot(flat, flat, out=scratch))
            return math.isfinite(np.dot(flat, flat))
        return math.isfinite(block.sum())

"""What both kernels (numpy on CPU, torch on any device) share: the check of a processor
chain's result and the overlap-add of decoded frames into the output hops."""
from __future__ import annotations

import numpy as np
import torch


def check_processed(result, like: torch.Tensor):
    """A processor chain's result must keep the coefficients' shape, dtype and device."""
    if not isinstance(result, torch.Tensor) or result.shape != like.shape \
            or result.device != like.device or result.dtype != like.dtype:
        got = (f"{tuple(result.shape)} {result.dtype} on {result.device}"
               if isinstance(result, torch.Tensor) else type(result).__name__)
        raise RuntimeError(f"the processors returned {got} for {tuple(like.shape)} {like.dtype} "
                           f"on {like.device}; a processor must keep shape, dtype and device")
    return result


def overlap_add(parts, hops, window=None) -> None:
    """hops (C, F + R - 1, H) += the decoded frames ``parts`` (F, C, R, H): part j of frame f
    lands on row f + j. Rows R-1 .. hold nothing yet and are overwritten by the last parts;
    rows 0 .. R-2 (the pending tail of earlier frames) are added to. ``window`` (R, H), the
    synthesis window, is applied on the way (``parts`` is then clobbered). numpy arrays or
    torch tensors alike."""
    r, count = parts.shape[2], parts.shape[0]
    is_np = isinstance(parts, np.ndarray)
    last = parts[:, :, r - 1].transpose(1, 0, 2) if is_np else parts[:, :, r - 1].transpose(0, 1)
    target = hops[:, r - 1:]
    if window is None:
        np.copyto(target, last) if is_np else target.copy_(last)
    elif is_np:
        np.multiply(last, window[r - 1], out=target)
    else:
        torch.mul(last, window[r - 1], out=target)
    for j in range(r - 1):
        part = parts[:, :, j]
        if window is not None:
            part *= window[j]
        rows = hops[:, j:j + count]
        if is_np:
            np.add(rows, part.transpose(1, 0, 2), out=rows)
        else:
            rows.add_(part.transpose(0, 1))

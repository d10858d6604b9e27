"""The engine's sample queues: FIFOs of (channels, samples) with a fixed capacity and no
allocation per call."""
from __future__ import annotations

import numpy as np
import torch


def initial_capacity(frame_size: int, blocksize: int) -> int:
    """Samples a queue holds before it must grow: two frames and two blocks (at least 4096)."""
    return 2 * (frame_size + max(blocksize, 4096)) + frame_size


class Queue:
    """A FIFO of (channels, samples) in a numpy array or a torch tensor.

    Linear storage: the reader is at ``start``, the writer at ``end``; ``pending`` samples past
    ``end`` belong to the queue too (the output queue keeps its unfinished overlap-add there).
    An optional second reader, ``lag`` samples behind the writer at most (the dry signal for
    bypass, read from the input history), keeps its samples alive: storage before the older
    reader is free. The live part is moved to the front only when a write would run past the
    end, so each sample moves at most once on average; storage grows (doubling) only when one
    call brings more than it can hold.
    """

    def __init__(self, buf, pending: int = 0, second_reader: bool = False):
        self.buf = buf
        self.pending = pending
        self.second_reader = second_reader
        self.start = self.end = self.second = 0

    def __len__(self) -> int:
        return self.end - self.start

    def reset(self, prefill: int, second_prefill: int = 0) -> None:
        """Zeros queued: ``prefill`` for the reader, ``second_prefill`` for the second reader
        (either may be the larger: a low-delay window pair's dry path is shorter than its
        frame overlap); the pending part is zero too."""
        queued = max(prefill, second_prefill)
        self.buf[:, :queued + self.pending] = 0
        self.start, self.end = queued - prefill, queued
        self.second = queued - second_prefill

    def ready_frames(self, frame_size: int, hop: int) -> int:
        """How many whole frames, one every ``hop`` samples from ``start``, are queued."""
        available = self.end - self.start
        return (available - frame_size) // hop + 1 if available >= frame_size else 0

    def reserve(self, n: int) -> None:
        """Make room for ``n`` more samples after ``end + pending``."""
        cap = self.buf.shape[1]
        if self.end + self.pending + n <= cap:
            return
        keep = min(self.start, self.second) if self.second_reader else self.start
        live = self.end - keep + self.pending
        if live + n > cap:
            self.buf = self._grown(2 * (live + n), keep, live)
        else:
            # per channel, front to back in pieces of at most ``keep`` samples, so that no
            # piece's memory overlaps its source's: numpy would copy a source it cannot prove
            # apart to a new array first, and torch refuses to copy an overlapping one
            for row in self.buf:
                for s in range(0, live, keep):    # keep > 0 here: else it would grow
                    piece = min(keep, live - s)
                    row[s:s + piece] = row[keep + s:keep + s + piece]
        self.start -= keep
        self.end -= keep
        self.second -= keep

    def _grown(self, capacity: int, keep: int, live: int):
        old = self.buf
        if isinstance(old, np.ndarray):
            new = np.zeros((old.shape[0], capacity), old.dtype)
        else:
            new = torch.zeros(old.shape[0], capacity, dtype=old.dtype, device=old.device)
        new[:, :live] = old[:, keep:keep + live]
        return new

    def write(self, block) -> None:
        """Append a (samples, channels) block (numpy into numpy, torch into torch)."""
        b = block.shape[0]
        self.reserve(b)
        target = self.buf[:, self.end:self.end + b]
        if isinstance(target, np.ndarray):
            np.copyto(target, block.T)
        else:
            target.copy_(block.T)
        self.end += b

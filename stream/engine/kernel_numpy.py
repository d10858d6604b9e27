"""The engine's per-call work on CPU, in numpy, into preallocated buffers.

Routes a call's frames take (each one earns its place by a number in benchmarks/README.md):

- no processors, matrix products: the frames are copied out of the input queue and run through
  two float32 BLAS products (a hop-split variant that read the queue in place and overlap-added
  inside the decoder's gemm measured no saving and was removed: benchmarks/README.md "routes");
- no processors, DCT pair: windowing, pocketfft DCT-III and DCT-II in place, windowed
  overlap-add of the synthesis part, ``DCT_BATCH_FRAMES`` frames at a time (a batch stays in
  cache from window to overlap-add), and for calls of two batches or more one contiguous range
  of frames per CPU in worker threads (whole signals);
- MDCT pair (model init "mdct" at its init): windowing, the fold and pocketfft's DCT-IV
  (cosine_host.engine.mdct), the processors if any, DCT-IV and unfold, windowed overlap-add;
  each frame computed alone, with or without processors;
- processors: the coefficients the processors see come from the exact encoder
  (cosine_host.engine.exact) on the matrix path, or from pocketfft's DCT-III on the DCT path (each
  row computed alone: the same bits for any batch), so they depend on the signal and the parameters
  only; then the processors, the decoder's product in float64 (or DCT-II, each frame alone again)
  and the overlap-add.

Only the synthesis part of a decoded frame, its last S samples (S = synthesis_size, N for symmetric
window pairs: cosine_host.engine.windows), reaches the overlap-add: the decoder's product computes
just those S columns, the DCT path decodes all N and adds the last S.

torch is touched only to hand the coefficients to the processors (``torch.from_numpy``: no copy).
"""
from __future__ import annotations

import numpy as np
import torch

from cosine_host.engine.exact import ExactEncoder
from cosine_host.engine.frames import check_processed, overlap_add
from cosine_host.engine.queues import Queue, initial_capacity
from cosine_host.engine.dct import ScipyDCT, cpu_workers
from cosine_host.engine.mdct import MDCT


class NumpyKernel:
    """Queues, framing, transform and overlap-add on CPU.

    Args:
        channels, n, m, hop: C, N, M, H.
        dtype: the model's torch dtype (float32 or float64): every buffer uses it.
        blocksize: the engine's B (0 = varying), sizes the first buffers.
        processors: the engine's processor chain (cosine_host.models.processors.registry.Chain).
        synthesis_size: S, the samples of each decoded frame overlap-added (its last S; a
            multiple of H; None = N).
    """

    name = "numpy"
    # DCT path without processors: frames per batch (all channels), 0 = all at once; batches
    # saved 10-15 % of a 10 s render (benchmarks/routes.py (b))
    DCT_BATCH_FRAMES = 256

    def __init__(self, channels: int, n: int, m: int, hop: int, dtype: torch.dtype,
                 blocksize: int, processors, synthesis_size: int | None = None):
        self.c, self.n, self.m, self.hop = channels, n, m, hop
        self.s = n if synthesis_size is None else synthesis_size
        self.r = self.s // hop           # output hops each frame's synthesis part spans
        self.np_dtype = np.float64 if dtype == torch.float64 else np.float32
        self.processors = processors
        cap = initial_capacity(n, blocksize)
        # one input history serves the frames (reader) and the dry signal (second reader)
        self.inq = Queue(np.zeros((channels, cap), self.np_dtype), second_reader=True)
        self.outq = Queue(np.zeros((channels, cap), self.np_dtype), pending=self.s - hop)
        self._alloc(max(1, -(-max(blocksize, 1) // hop)) + 1)
        self.kind = "matmul"
        self.dct = None
        self.mdct = None
        self.dct_workers = cpu_workers()
        self._pool = None
        self._scratch = []

    def _alloc(self, count: int) -> None:
        self._frames_cap = count
        shape = (count, self.c, self.n)
        self.fbuf = np.zeros(shape, self.np_dtype)      # windowed frames (DCT: and decoded)
        self.cbuf = np.zeros((count, self.c, self.m), self.np_dtype)
        self.dbuf = np.zeros((count, self.c, self.s), self.np_dtype)   # decoded synthesis parts
        # the processors' coefficients and their decoded synthesis parts in float64 (matrix path)
        self.cbuf64 = np.zeros((count * self.c, self.m))
        self.dbuf64 = np.zeros((count * self.c, self.s))

    def set_transform(self, kind: str, enc_t: np.ndarray, dec: np.ndarray, wa: np.ndarray,
                      ws: np.ndarray) -> None:
        """``kind`` "matmul", "dct" or "mdct"; enc_t (N, M) and dec (M, N) with the windows folded in
        (only dec's last S columns are kept: the synthesis window is zero before them);
        wa, ws (N,) the windows (applied on their own on the DCT path)."""
        self.kind = kind
        tail = self.n - self.s
        self.enc_t = np.ascontiguousarray(enc_t, self.np_dtype)
        self.dec = np.ascontiguousarray(dec[:, tail:], self.np_dtype)
        self.wa = wa.astype(self.np_dtype)
        self.ws_parts = ws[tail:].astype(self.np_dtype).reshape(self.r, self.hop)
        if kind == "dct" and self.dct is None:
            self.dct = ScipyDCT()
        if kind == "mdct" and self.mdct is None:
            self.mdct = MDCT()
        self.exact = ExactEncoder(self.enc_t, self.np_dtype) if kind == "matmul" else None
        self.dec64 = np.ascontiguousarray(self.dec, np.float64) if kind == "matmul" else None

    def reset(self, frame_prefill: int, out_prefill: int, dry_prefill: int) -> None:
        self.inq.reset(frame_prefill, dry_prefill)
        self.outq.reset(out_prefill)

    def process(self, block: np.ndarray, out: np.ndarray, bypass: bool) -> int:
        """One (B, C) float32 block in, ``out`` (B, C) written; returns the frames computed."""
        b = block.shape[0]
        q = self.inq
        q.write(block)
        count = q.ready_frames(self.n, self.hop)
        if count:
            self._frames(count)
            q.start += count * self.hop
        src = q if bypass else self.outq
        pos = q.second if bypass else self.outq.start
        np.copyto(out, src.buf[:, pos:pos + b].T)
        self.outq.start += b
        q.second += b
        return count

    def _frames(self, count: int) -> None:
        c, n, hop = self.c, self.n, self.hop
        if count > self._frames_cap:
            self._alloc(2 * count)
        q, o = self.inq, self.outq
        o.reserve(count * hop)
        span = (count + self.r - 1) * hop
        # every ready frame as a (count, C, N) view of the input queue: frame f of channel ch
        # starts at q.start + f * hop
        it = q.buf.itemsize
        view = np.ndarray((count, c, n), self.np_dtype, buffer=q.buf, offset=q.start * it,
                          strides=(hop * it, q.buf.shape[1] * it, it))
        hops = o.buf[:, o.end:o.end + span].reshape(c, count + self.r - 1, hop)
        if self.kind == "dct" and not self.processors and self.DCT_BATCH_FRAMES:
            self._dct_batches(view, hops)
            o.end += count * hop
            return
        if self.kind == "dct":
            decoded = self._dct_frames(view)
            window = self.ws_parts
        elif self.kind == "mdct":
            decoded = self._mdct_frames(view)
            window = self.ws_parts
        else:
            decoded = self.dbuf[:count]
            self._matrix_frames(view, decoded)
            window = None              # folded into the decoder
        overlap_add(decoded.reshape(count, c, self.r, hop), hops, window)
        o.end += count * hop

    def _matrix_frames(self, view: np.ndarray, decoded: np.ndarray) -> None:
        count, rows = view.shape[0], view.shape[0] * self.c
        coeffs = self.cbuf[:count]
        c2, d2 = coeffs.reshape(rows, self.m), decoded.reshape(rows, self.s)
        if self.processors:
            # exact coefficients in, and a float64 decoder: one rounding to the model's dtype
            # per decoded sample, so outputs agree to its last bit or so however the signal was
            # cut (a float32 product's rounding depends on the rows per call)
            self.exact(view, coeffs)
            c64, d64 = self.cbuf64[:rows], self.dbuf64[:rows]
            np.copyto(c64, self._processors(coeffs).reshape(rows, self.m))
            np.matmul(c64, self.dec64, out=d64)
            np.copyto(d2, d64, casting="same_kind")
            return
        frames = self.fbuf[:count]
        np.copyto(frames, view)
        np.matmul(frames.reshape(rows, self.n), self.enc_t, out=c2)
        np.matmul(c2, self.dec, out=d2)

    def _dct_frames(self, view: np.ndarray) -> np.ndarray:
        """The frames' decoded synthesis parts (F, C, S), a view of the frame buffer."""
        frames = self.fbuf[:view.shape[0]]
        np.multiply(view, self.wa, out=frames)
        self.dct.dct3(frames, frames)
        if self.processors:
            coeffs = frames[..., :self.m]
            result = self._processors(coeffs)
            if result is not coeffs:
                np.copyto(coeffs, result)
        if self.m < self.n:
            frames[..., self.m:].fill(0)
        self.dct.dct2(frames, frames)
        return frames[..., self.n - self.s:]

    def _mdct_frames(self, view: np.ndarray) -> np.ndarray:
        """The frames' decoded synthesis parts (F, C, S) through the MDCT fast path, a view of
        the frame buffer."""
        count = view.shape[0]
        frames, coeffs = self.fbuf[:count], self.cbuf[:count]
        np.multiply(view, self.wa, out=frames)
        self.mdct.forward(frames, coeffs)
        if self.processors:
            result = self._processors(coeffs)
            if result is not coeffs:
                np.copyto(coeffs, result)
        self.mdct.inverse(coeffs, frames)
        return frames[..., self.n - self.s:]

    def _dct_batches(self, view: np.ndarray, hops: np.ndarray) -> None:
        """The DCT path without processors for many frames: window, DCT-III, DCT-II in place
        and the windowed overlap-add, ``DCT_BATCH_FRAMES`` frames at a time while they are in
        cache, each worker thread (pocketfft and numpy release the GIL) on its own contiguous
        range of frames. A range's first R - 1 hop rows are shared with the range before it:
        the later range overlap-adds its first batch into a scratch buffer, added after the
        join."""
        count, c, r = view.shape[0], self.c, self.r
        step = max(r, self.DCT_BATCH_FRAMES // c)
        workers = min(self.dct_workers, count // step)
        if workers <= 1:           # pocketfft chooses its threads by the rows of each batch
            self._dct_range(view, hops, 0, count, step, self._dct_scratch(0), False, None)
            return
        bounds = [count * k // workers for k in range(workers + 1)]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(self.dct_workers - 1, thread_name_prefix="dct")
        # the first range runs here: this thread is already awake
        jobs = [self._pool.submit(self._dct_range, view, hops, bounds[k], bounds[k + 1], step,
                                  self._dct_scratch(k), True, 1) for k in range(1, workers)]
        self._dct_range(view, hops, bounds[0], bounds[1], step, self._dct_scratch(0), False, 1)
        for job in jobs:
            job.result()
        for k in range(1, workers):
            s = bounds[k]
            np.add(hops[:, s:s + r - 1], self._scratch[k][1][:, :r - 1],
                   out=hops[:, s:s + r - 1])

    def _dct_scratch(self, k: int):
        """Worker ``k``'s (frames, overlap-add rows) buffers for one batch."""
        step = max(self.r, self.DCT_BATCH_FRAMES // self.c)
        while len(self._scratch) <= k:
            self._scratch.append((np.empty((step, self.c, self.n), self.np_dtype),
                                  np.empty((self.c, step + self.r - 1, self.hop), self.np_dtype)))
        return self._scratch[k]

    def _dct_range(self, view, hops, start, stop, step, scratch, shared_head, threads) -> None:
        frames_buf, head = scratch
        c, r, hop = self.c, self.r, self.hop
        for s in range(start, stop, step):
            e = min(stop, s + step)
            frames = frames_buf[:e - s]
            np.multiply(view[s:e], self.wa, out=frames)
            self.dct.dct3(frames, frames, threads=threads)
            if self.m < self.n:
                frames[..., self.m:].fill(0)       # fill: a Python 0 would allocate an array
            self.dct.dct2(frames, frames, threads=threads)
            parts = frames[..., self.n - self.s:].reshape(e - s, c, r, hop)
            if shared_head and s == start:
                rows = head[:, :e - s + r - 1]
                rows[:, :r - 1] = 0
                overlap_add(parts, rows, self.ws_parts)
                hops[:, s + r - 1:e + r - 1] = rows[:, r - 1:]
            else:
                overlap_add(parts, hops[:, s:e + r - 1], self.ws_parts)

    def _processors(self, coeffs: np.ndarray) -> np.ndarray:
        """The processor chain on (F, C, M) ``coeffs``: on numpy arrays when every processor
        has a numpy route (the built-ins), else on a tensor sharing ``coeffs``' memory."""
        result = self.processors.numpy_forward(coeffs)
        if result is None:
            tensor = torch.from_numpy(coeffs)
            with torch.inference_mode():
                result = check_processed(self.processors(tensor), tensor).numpy()
        return result

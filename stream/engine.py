"""The streaming block engine: framing, encoder -> processors -> decoder, overlap-add.

One engine serves live streams (blocks from a sound device callback), file rendering and
latency tests. Its latency is the minimum a frame-based host can reach (stream.latency) and
stays constant for its whole life, bypass included.

Data path per call, all channels as one batch::

    block (frames, C) float32 --> input queue (C, .) --> every ready frame at once, as a strided
    view (C, F, N) --> @ (analysis window * W1)^T --> coefficients (F, C, M) --> processors -->
    @ (W2 * synthesis window) --> overlap-add of F hops --> output queue --> block (frames, C)

The windows are folded into the matrices, so one call costs two matrix products over all of its
frames plus the overlap-add.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from models import LearnedCosine, load_checkpoint
from models.checkpoint import CheckpointError
from models import processors as processor_registry
from stream import latency as lat
from stream.errors import UserError
from stream.windows import window_pair


class EngineInputError(UserError, ValueError):
    """A block handed to the engine has the wrong dtype, rank, channel count or size."""


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; "cuda" without one is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("model.device = cuda but no CUDA device is available; use "
                        "--set model.device=cpu (or auto)")
    return torch.device(name)


def build_model(cfg) -> LearnedCosine:
    """The config's model, with its checkpoint loaded when one is given."""
    model = LearnedCosine(cfg.frame.size, cfg.model.coefficients, init=cfg.model.init,
                          decoder=cfg.model.decoder, dtype=cfg.model.dtype)
    if cfg.model.checkpoint:
        try:
            load_checkpoint(model, cfg.model.checkpoint)
        except CheckpointError as e:
            raise UserError(str(e)) from None
    return model


class _Queue:
    """A FIFO of (channels, samples) on one device with a fixed capacity, no per-call allocation.

    Linear storage with a read position; the live part is moved to the front only when a
    write would run past the end, so each sample is moved at most once on average.
    """

    def __init__(self, channels: int, capacity: int, dtype, device, pin: bool = False):
        self.buf = torch.zeros(channels, capacity, dtype=dtype, device=device)
        if pin:
            self.buf = self.buf.pin_memory()
        self.start = 0
        self.end = 0

    def __len__(self) -> int:
        return self.end - self.start

    def reset(self, prefill: int = 0) -> None:
        self.buf[:, :prefill].zero_()
        self.start, self.end = 0, prefill

    def reserve(self, n: int) -> torch.Tensor:
        """A writable (C, n) view at the tail; call ``commit(n)`` after filling it."""
        if self.end + n > self.buf.shape[1]:
            live = len(self)
            if live + n > self.buf.shape[1]:
                grown = torch.zeros(self.buf.shape[0], 2 * (live + n), dtype=self.buf.dtype,
                                    device=self.buf.device)
                if self.buf.is_pinned():
                    grown = grown.pin_memory()
                grown[:, :live] = self.buf[:, self.start:self.end]
                self.buf = grown
            elif live:
                # start >= live here, so source and destination do not overlap.
                self.buf[:, :live] = self.buf[:, self.start:self.end]
            self.start, self.end = 0, live
        return self.buf[:, self.end:self.end + n]

    def commit(self, n: int) -> None:
        self.end += n

    def head(self, n: int) -> torch.Tensor:
        """The oldest n samples as a (C, n) view."""
        return self.buf[:, self.start:self.start + n]

    def drop(self, n: int) -> None:
        self.start += n


class Engine:
    """Streaming encoder/processor/decoder engine with constant, minimal latency.

    Args:
        model: the learned cosine transform (moved to ``device``).
        hop: H in samples; must divide the model's frame size N.
        window: window name (stream.windows.WINDOWS).
        blocksize: frames per call B; 0 = any size per call (latency N - 1).
        channels: channel count C of every block.
        processors: ordered coefficient processors (models.processors.Chain).
        samplerate: Hz, for processor statistics (bitrate) and ms conversions.
        device: torch device for the tensors; CUDA uses pinned host buffers.

    Latency: ``latency_samples = algorithmic_latency_samples + buffering_latency_samples``
    = (N - H) + (H - gcd(B, H)); an impulse at input sample t comes out at t + latency_samples.
    """

    def __init__(self, model: LearnedCosine, hop: int, window: str = "sqrt_hann",
                 blocksize: int = 0, channels: int = 1, processors=None,
                 samplerate: int = 48000, device: str | torch.device = "cpu"):
        n = model.n
        if hop <= 0 or n % hop:
            raise ValueError(f"hop {hop} must divide the frame size {n}")
        if blocksize < 0 or channels < 1:
            raise ValueError("blocksize must be >= 0 and channels >= 1")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.dtype = model.encoder.rest.dtype
        self.frame_size, self.hop, self.blocksize, self.channels = n, hop, blocksize, channels
        self.samplerate = samplerate
        self.processors = processors if processors is not None else processor_registry.build_chain([])
        self.processors.to(self.device)
        self.processors.prepare(samplerate, hop, model.m)
        wa, ws = window_pair(window, n, hop)
        self._window_analysis = torch.as_tensor(wa, dtype=torch.float64, device=self.device)
        self._window_synthesis = torch.as_tensor(ws, dtype=torch.float64, device=self.device)
        self._folded_from = None
        self._enc_t = self._dec = None

        self.algorithmic_latency_samples = lat.algorithmic_latency_samples(n, hop)
        self.buffering_latency_samples = lat.buffering_latency_samples(hop, blocksize)
        self.latency_samples = self.algorithmic_latency_samples + self.buffering_latency_samples

        cuda = self.device.type == "cuda"
        capacity = 2 * (n + max(blocksize, 4096))
        self._in = _Queue(channels, capacity, self.dtype, self.device)
        self._out = _Queue(channels, capacity, torch.float32, "cpu", pin=cuda)
        self._dry = _Queue(channels, capacity, torch.float32, "cpu")
        # (R - 1) hops of overlap-add still waiting for later frames, R = N / H.
        self._tail = torch.zeros(channels, n // hop - 1, hop, dtype=self.dtype, device=self.device)
        self._ola = torch.empty(channels, 0, hop, dtype=self.dtype, device=self.device)
        self._staging = torch.zeros(max(blocksize, 1), channels, dtype=torch.float32).pin_memory() \
            if cuda else None
        self.bypass = False
        self.reset()

    @classmethod
    def from_config(cls, cfg, blocksize: int | None = None, channels: int | None = None,
                    samplerate: int | None = None, device: str | None = None) -> "Engine":
        """Build from a stream.config.Config; arguments left None come from cfg.audio / cfg.model."""
        model = build_model(cfg)
        chain = processor_registry.build_chain(cfg.processors)
        return cls(model, cfg.frame.hop, cfg.frame.window,
                   blocksize=cfg.audio.blocksize if blocksize is None else blocksize,
                   channels=cfg.audio.channels if channels is None else channels,
                   processors=chain,
                   samplerate=cfg.audio.samplerate if samplerate is None else samplerate,
                   device=resolve_device(device or cfg.model.device))

    # --- state ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget all signal history (as if freshly built); statistics restart at zero."""
        with torch.inference_mode():
            self._in.reset(self.algorithmic_latency_samples)
            self._out.reset(self.buffering_latency_samples)
            self._dry.reset(self.latency_samples)
            self._tail.zero_()
        self.samples_in = 0
        self.nan_events = 0
        self.nan_samples = 0
        self.calls = 0
        self.frames_processed = 0
        self.processors.reset()

    def stats(self) -> dict:
        """JSON-ready statistics since the last reset."""
        return {"calls": self.calls, "samples_in": self.samples_in,
                "frames_processed": self.frames_processed, "nan_events": self.nan_events,
                "nan_samples": self.nan_samples, "processors": self.processors.stats()}

    def latency_report(self) -> dict:
        """Latency in samples and ms, split into its algorithmic and buffering parts."""
        ms = 1000.0 / self.samplerate
        return {"engine_samples": self.latency_samples,
                "algorithmic_samples": self.algorithmic_latency_samples,
                "buffering_samples": self.buffering_latency_samples,
                "engine_ms": self.latency_samples * ms, "blocksize": self.blocksize,
                "samplerate": self.samplerate}

    # --- processing ----------------------------------------------------------------------------

    def _folded_matrices(self):
        """(analysis window * W1)^T of shape (N, M) and W2 * synthesis window of shape (M, N),
        recomputed only when the model's cached matrices changed."""
        enc, dec = self.model.encoder.matrix(), self.model.decoder.matrix()
        if self._folded_from is None or self._folded_from[0] is not enc \
                or self._folded_from[1] is not dec:
            wa = self._window_analysis.to(enc.dtype)
            ws = self._window_synthesis.to(dec.dtype)
            self._enc_t = (enc * wa).T.contiguous()
            self._dec = (dec * ws).contiguous()
            self._folded_from = (enc, dec)
        return self._enc_t, self._dec

    def _check(self, block) -> np.ndarray:
        if not isinstance(block, np.ndarray):
            raise EngineInputError(f"block must be a numpy array, got {type(block).__name__}")
        if block.dtype != np.float32:
            raise EngineInputError(f"block dtype is {block.dtype}; the engine takes float32 "
                                   f"(convert with block.astype(np.float32))")
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise EngineInputError(f"block shape is {block.shape}; expected (frames, "
                                   f"{self.channels}) for this {self.channels}-channel engine")
        if block.shape[0] and not lat.boundary_ok(self.frame_size, self.hop, self.blocksize,
                                                  self.samples_in + block.shape[0]):
            raise EngineInputError(
                f"a block of {block.shape[0]} frames breaks this engine's schedule for blocksize "
                f"{self.blocksize}; give blocks of {self.blocksize} frames or build the engine "
                f"with blocksize=0 for varying sizes")
        if not math.isfinite(float(block.sum())):
            bad = ~np.isfinite(block)
            self.nan_events += 1
            self.nan_samples += int(bad.sum())
            block = np.where(bad, np.float32(0), block)
        return block

    def process(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Process one block.

        Args:
            block: float32 array (frames, channels); frames may be 0 or vary when blocksize=0.
                NaN and Inf samples are replaced by 0 and counted (``nan_events``).
            out: optional float32 array of the same shape to write into (no allocation).
        Returns:
            ``out`` (or a new array): the output block, ``latency_samples`` behind the input.
        """
        block = self._check(block)
        frames = block.shape[0]
        if out is None:
            out = np.empty_like(block)
        if frames == 0:
            return out
        with torch.inference_mode():
            host_in = torch.from_numpy(block).T
            self._dry.reserve(frames).copy_(host_in)
            self._dry.commit(frames)
            if self._staging is not None:
                staged = self._staging[:frames] if frames <= self._staging.shape[0] \
                    else torch.empty(frames, self.channels).pin_memory()
                staged.copy_(torch.from_numpy(block))
                host_in = staged.T
            self._in.reserve(frames).copy_(host_in, non_blocking=True)
            self._in.commit(frames)
            self.samples_in += frames
            self._run_frames()
            dst = torch.from_numpy(out).T
            if self.device.type == "cuda":
                torch.cuda.current_stream(self.device).synchronize()
            src = self._dry if self.bypass else self._out
            dst.copy_(src.head(frames))
            self._out.drop(frames)
            self._dry.drop(frames)
        self.calls += 1
        return out

    def _run_frames(self) -> None:
        n, hop = self.frame_size, self.hop
        available = len(self._in)
        if available < n:
            return
        count = (available - n) // hop + 1
        queued = self._in.buf
        frames = queued.as_strided((self.channels, count, n),
                                   (queued.stride(0), hop, 1),
                                   queued.storage_offset() + self._in.start)
        enc_t, dec = self._folded_matrices()
        coeffs = (frames @ enc_t).transpose(0, 1)              # (F, C, M)
        if self.processors:
            coeffs = self.processors(coeffs)
        decoded = (coeffs.transpose(0, 1) @ dec).view(self.channels, count, n // hop, hop)
        self._in.drop(count * hop)
        self._overlap_add(decoded, count)
        self.frames_processed += count * self.channels

    def _overlap_add(self, decoded: torch.Tensor, count: int) -> None:
        """Sum F decoded frames (C, F, R, H) into hops; F hops become final, R - 1 stay pending."""
        overlap = self._tail.shape[1]
        span = count + overlap
        if self._ola.shape[1] < span:
            self._ola = torch.empty(self.channels, 2 * span, self.hop, dtype=self.dtype,
                                    device=self.device)
        hops = self._ola[:, :span]
        hops[:, :overlap] = self._tail
        hops[:, overlap:].zero_()
        for r in range(overlap + 1):
            # part r of frame f lands on hop f + r
            hops[:, r:r + count] += decoded[:, :, r]
        self._tail.copy_(hops[:, count:])
        final = hops[:, :count].reshape(self.channels, count * self.hop)
        self._out.reserve(final.shape[1]).copy_(final, non_blocking=True)
        self._out.commit(final.shape[1])

    # --- whole signals -------------------------------------------------------------------------

    def render(self, signal: np.ndarray, chunk_frames: int = 1 << 16) -> np.ndarray:
        """Process a whole (frames, channels) float32 signal; the output is aligned with the
        input (latency removed) and has its length. Uses large chunks: memory is bounded by
        ``chunk_frames``, not by the signal's length. The engine is reset before and after."""
        out = np.empty_like(signal)
        pos = 0
        for piece in self.render_chunks(iter_chunks(signal, chunk_frames), signal.shape[0]):
            out[pos:pos + piece.shape[0]] = piece
            pos += piece.shape[0]
        return out

    def render_chunks(self, chunks, total_frames: int):
        """Aligned rendering of a stream of (frames, channels) float32 chunks.

        Yields output chunks that together have exactly ``total_frames`` frames, output[i]
        aligned with input[i]. Needs an engine with blocksize 0.
        """
        if self.blocksize != 0:
            raise ValueError("render needs an engine built with blocksize=0")
        self.reset()
        skip = self.latency_samples
        emitted = 0
        for piece in chunks:
            done = self.process(piece)
            if skip:
                cut = min(skip, done.shape[0])
                done, skip = done[cut:], skip - cut
            if done.shape[0]:
                emitted += done.shape[0]
                yield done
        flush = np.zeros((min(4096, self.latency_samples) or 1, self.channels), np.float32)
        while emitted < total_frames:
            done = self.process(flush)
            if skip:
                cut = min(skip, done.shape[0])
                done, skip = done[cut:], skip - cut
            done = done[:total_frames - emitted]
            emitted += done.shape[0]
            if done.shape[0]:
                yield done
        self.reset()


def iter_chunks(signal: np.ndarray, chunk_frames: int):
    """Consecutive (chunk_frames, C) views of a signal (the last one shorter)."""
    for start in range(0, signal.shape[0], chunk_frames):
        yield signal[start:start + chunk_frames]

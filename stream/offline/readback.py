"""The SNR of the file that was written: read it back and compare it with the engine's input.

``file_snr`` decodes the written file (WAV, FLAC, AIFF, OGG Vorbis/Opus, MP3: whatever soundfile
reads) chunk by chunk and compares it with a fresh stream of the reference (the engine's input:
the input file's samples, resampled when ``--samplerate`` asked for it, non-finite samples as
0). Memory is bounded by the chunk size.

Lossy codecs may shift the signal (encoder delay). For lossy outputs the shift is found by
cross-correlation of the first ``ALIGN_FRAMES`` frames within +-``MAX_LAG`` frames and applied
before comparing; lossless outputs are compared sample for sample (their alignment is exact).
"""
from __future__ import annotations

import collections

import numpy as np
import soundfile as sf

CHUNK_FRAMES = 1 << 16      # frames read per step
ALIGN_FRAMES = 1 << 15      # frames of each signal used to find a codec's delay
MAX_LAG = 4096              # largest codec delay searched, in frames (either direction)
LOSSY_SUBTYPES = ("VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III")


class FrameQueue:
    """Frames of chunks taken in any amounts: ``take(n)`` (fewer at the end). The chunks come
    from an iterator (pulled as needed) or are handed in with ``push`` (render keeps the input
    chunks it fed the engine until the output frames aligned with them are out)."""

    def __init__(self, chunks=()):
        self._chunks = iter(chunks)
        self._held: collections.deque[np.ndarray] = collections.deque()
        self._offset = 0

    def push(self, chunk: np.ndarray) -> None:
        """Queue ``chunk`` (frames, channels) after what is held."""
        self._held.append(chunk)

    def take(self, frames: int) -> np.ndarray | None:
        """Up to ``frames`` frames (frames, channels), or None when the stream has ended."""
        parts = []
        while frames:
            if not self._held:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                if chunk.shape[0]:
                    self._held.append(chunk)
                continue
            head = self._held[0]
            part = head[self._offset:self._offset + frames]
            parts.append(part)
            frames -= part.shape[0]
            self._offset += part.shape[0]
            if self._offset == head.shape[0]:
                self._held.popleft()
                self._offset = 0
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def skip(self, frames: int) -> None:
        while frames > 0:
            part = self.take(min(frames, CHUNK_FRAMES))
            if part is None:
                return
            frames -= part.shape[0]


def read_chunks(path: str, chunk_frames: int = CHUNK_FRAMES):
    """float32 (frames, channels) chunks of a file, until it ends or stops decoding."""
    with sf.SoundFile(path) as f:
        yield from decoded_chunks(f, chunk_frames)


SALVAGE_FRAMES = 1024
"""Frames per read once a read failed: a decoder that stops part way (a truncated FLAC) fails
the whole read, so the frames before the failure are read again this many at a time."""


def decoded_chunks(source: sf.SoundFile, chunk_frames: int, errors: list | None = None):
    """float32 (frames, channels) chunks of the open ``source`` from its position to its end,
    at most ``chunk_frames`` each, as far as its decoder goes: when a read fails, the frames
    from where it began are read again ``SALVAGE_FRAMES`` at a time, up to the next failure.
    The first failure (a soundfile.SoundFileError) is appended to ``errors``."""
    step, position = chunk_frames, source.tell()
    while position < source.frames:
        try:
            chunk = source.read(min(step, source.frames - position), dtype="float32",
                                always_2d=True)
        except sf.SoundFileError as e:
            if errors is not None and not errors:
                errors.append(e)
            if step <= SALVAGE_FRAMES:
                return
            step = SALVAGE_FRAMES
            try:
                source.seek(position)
            except (sf.SoundFileError, RuntimeError):
                return
            continue
        if chunk.shape[0] == 0:
            return
        position += chunk.shape[0]
        yield chunk


def find_lag(reference: np.ndarray, decoded: np.ndarray, max_lag: int = MAX_LAG) -> int:
    """The shift d (frames) maximising the correlation of decoded[i + d] with reference[i],
    |d| <= max_lag; both (frames, channels), channels summed. Of the shifts whose correlation
    is within 5 % of the best, the one nearest 0 (periodic signals). 0 for silent signals."""
    a = reference.astype(np.float64).sum(axis=1)
    b = decoded.astype(np.float64).sum(axis=1)
    if not a.any() or not b.any():
        return 0
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)
    lags = np.arange(-max_lag, max_lag + 1)
    values = corr[lags % n]
    # periodic material correlates almost as well one period away: of the lags within 5 % of
    # the best, the smallest shift wins
    near = lags[values >= values.max() - 0.05 * abs(values.max())]
    return int(near[np.argmin(np.abs(near))])


def file_snr(reference, path: str, lossy: bool) -> dict:
    """Compare the file at ``path`` with the reference signal.

    Args:
        reference: callable returning a new iterator of float32 (frames, channels) chunks of
            the reference (called twice for lossy files: once to align, once to compare).
        path: the written file.
        lossy: search the codec delay (see module doc) instead of assuming exact alignment.
    Returns:
        ``{"file_snr_db": dB or None (silent reference, or identical), "file_identical": bool
        (every compared sample equal), "file_lag_frames": codec delay applied (frames),
        "file_compared_frames": frames compared (the shorter of the two after the shift)}``.
    """
    lag = 0
    if lossy:
        head_ref = FrameQueue(reference()).take(ALIGN_FRAMES)
        head_out = FrameQueue(read_chunks(path)).take(ALIGN_FRAMES + MAX_LAG)
        if head_ref is not None and head_out is not None:
            lag = find_lag(head_ref, head_out)
    ref, out = FrameQueue(reference()), FrameQueue(read_chunks(path))
    if lag > 0:
        out.skip(lag)
    elif lag < 0:
        ref.skip(-lag)
    signal = error = 0.0
    compared = 0
    while True:
        a = ref.take(CHUNK_FRAMES)
        if a is None:
            break
        b = out.take(a.shape[0])
        if b is None:
            break
        n = b.shape[0]
        a64 = a[:n].astype(np.float64)
        signal += float(np.square(a64).sum())
        error += float(np.square(b.astype(np.float64) - a64).sum())
        compared += n
        if n < a.shape[0]:
            break
    return {"file_snr_db": (10.0 * np.log10(signal / error) if signal > 0 and error > 0
                            else None),
            "file_identical": error == 0.0,
            "file_lag_frames": lag, "file_compared_frames": compared}

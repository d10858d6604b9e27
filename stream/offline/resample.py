"""Streaming sample-rate conversion on the way into the engine (python-soxr, very high quality).

``resample_chunks`` turns a stream of float32 (frames, channels) chunks at one rate into a
stream at another through ``soxr.ResampleStream`` with soxr's "VHQ" recipe (its highest
quality), so memory stays bounded by the chunk size whatever the file's length. The result is
the same as soxr's one-shot ``soxr.resample`` of the whole signal.
"""
from __future__ import annotations

import numpy as np

from cosine_host.errors import UserError

QUALITY = "VHQ"                 # soxr's very-high-quality recipe
MIN_RATE, MAX_RATE = 1000, 768000   # Hz accepted by --samplerate


def check_rate(samplerate: int) -> int:
    """``samplerate`` (Hz) if within [MIN_RATE, MAX_RATE], else a UserError."""
    if not MIN_RATE <= int(samplerate) <= MAX_RATE:
        raise UserError(f"--samplerate {samplerate} is out of range; give a rate in Hz between "
                        f"{MIN_RATE} and {MAX_RATE}, e.g. 48000")
    return int(samplerate)


def expected_frames(frames: int, from_rate: int, to_rate: int) -> int:
    """Frames a resampled signal of ``frames`` input frames has: round(frames * to / from)."""
    return (frames * to_rate + from_rate // 2) // from_rate


def resample_chunks(chunks, from_rate: int, to_rate: int, channels: int):
    """Yield the chunks resampled from ``from_rate`` to ``to_rate`` Hz, float32 (n, channels).

    Chunks may have any length; yielded chunks may be empty-free but differ in length from the
    input's. The last yield flushes soxr's filter delay.
    """
    try:
        import soxr
    except ImportError:
        raise UserError("--samplerate needs python-soxr: pip install soxr") from None
    resampler = soxr.ResampleStream(from_rate, to_rate, channels, dtype="float32",
                                    quality=QUALITY)
    for chunk in chunks:
        out = resampler.resample_chunk(np.ascontiguousarray(chunk, dtype=np.float32),
                                       last=False)
        if out.shape[0]:
            yield out.reshape(-1, channels)
    tail = resampler.resample_chunk(np.zeros((0, channels), np.float32), last=True)
    if tail.shape[0]:
        yield tail.reshape(-1, channels)

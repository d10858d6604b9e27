"""`live --play FILE`: a sound file fed to the engine in place of the device input.

The file is read whole before the stream opens (any format libsndfile reads), resampled to the
stream's rate with the resampler of ``render --samplerate`` (soxr VHQ, stream/offline/resample.py)
when its rate differs, and its channels mapped to the stream's as :func:`map_channels` says. The
callback then copies blocks out of that preallocated array: no I/O, no allocation.
"""
from __future__ import annotations

import numpy as np

from cosine_host.errors import UserError


def map_channels(signal: np.ndarray, channels: int) -> np.ndarray:
    """(frames, c) -> (frames, channels): equal counts pass through, a mono file goes to every
    channel, otherwise channel k of the stream plays file channel k (cycling when the file has
    fewer, the extra ones dropped when it has more)."""
    c = signal.shape[1]
    if c == channels:
        return signal
    return np.ascontiguousarray(signal[:, [k % c for k in range(channels)]])


def load(path: str, samplerate: int, channels: int) -> tuple[np.ndarray, dict]:
    """The file as float32 (frames, channels) at ``samplerate`` Hz, and what was done to it
    (``nan_samples``: NaN/Inf samples replaced by 0, and ``warnings``, one line each).

    Raises:
        UserError: the file is missing, unreadable, empty or all NaN/Inf (one line, what to
            do).
    """
    from cosine_host.offline.audio_io import replace_nonfinite
    from cosine_host.offline.render import open_input
    from cosine_host.offline.resample import resample_chunks
    with open_input(path, path) as source:
        rate = source.samplerate
        data = source.read(dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise UserError(f"--play {path!r}: no audio could be read; repair or re-export it")
    data, nonfinite, warnings = replace_nonfinite(data, f"--play {path!r}", "play")
    info = {"path": path, "file_samplerate": int(rate), "file_channels": int(data.shape[1]),
            "file_frames": int(data.shape[0]), "resampled": None, "nan_samples": nonfinite,
            "warnings": warnings}
    if rate != samplerate:
        data = np.concatenate(list(resample_chunks([data], rate, samplerate, data.shape[1])))
        info["resampled"] = {"from_hz": int(rate), "to_hz": int(samplerate)}
    data = np.ascontiguousarray(map_channels(data, channels), np.float32)
    info["frames"] = int(data.shape[0])
    return data, info


class FileSource:
    """Blocks of a preloaded signal for the audio callback.

    Args:
        signal: float32 (frames, channels) at the stream's rate.
        loop: start again at the end; otherwise zeros follow the end.
        max_frames: the largest block the callback gets (sizes the scratch block).

    ``position`` counts the frames handed out (loops included); ``ended`` is True once the
    whole signal went out without ``loop``.
    """

    def __init__(self, signal: np.ndarray, loop: bool, max_frames: int):
        self.signal = signal
        self.loop = bool(loop)
        self.frames = signal.shape[0]
        self.block = np.zeros((max_frames, signal.shape[1]), np.float32)
        self.position = 0

    @property
    def ended(self) -> bool:
        return not self.loop and self.position >= self.frames

    def next_block(self, frames: int) -> np.ndarray:
        """Called in the callback: the next ``frames`` frames (a view of a preallocated block)."""
        block = self.block if frames == self.block.shape[0] else self.block[:frames]
        done = 0
        while done < frames:
            p = self.position % self.frames if self.loop else self.position
            n = min(frames - done, self.frames - p) if p < self.frames else 0
            if n <= 0:
                block[done:] = 0
                self.position += frames - done
                break
            block[done:done + n] = self.signal[p:p + n]
            done += n
            self.position += n
        return block

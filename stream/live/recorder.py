"""`live --record FILE`: what the engine hands to the output device, written from a thread.

The audio callback copies each output block into a preallocated ring (:meth:`Recorder.push`:
one or two slice copies, no lock, no allocation, no I/O) and advances a frame counter; a writer
thread takes whatever is new every ``poll_s`` seconds and appends it to a temporary file in the
destination's folder, renamed onto the destination when the stream has stopped
(cosine_host.files.atomic_path), so a reader never sees a half-written recording, and an error
leaves none behind.

One writer and one reader of each counter: the callback only writes ``written`` (after the
data), the thread only ``taken``; a Python int store is atomic, so no lock is needed. A ring
that the writer does not empty in time (the disk stalled for longer than ``ring_s``) loses the
oldest frames; they are counted in ``dropped_frames`` and the file keeps its length (zeros
where frames were lost), so ``record[k]`` stays the k-th frame of the stream after the first.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from cosine_host.errors import UserError

DEFAULT_RING_S = 4.0


def subtype_for(path: str) -> str | None:
    """float32 samples where the container holds them (WAV, AIFF, CAF, W64, RF64: the
    recording is then exactly what was played), else the container's default."""
    import soundfile as sf
    fmt = path.rsplit(".", 1)[-1].upper() if "." in path else ""
    if fmt in ("WAV", "AIFF", "AIF", "CAF", "W64", "RF64"):
        return "FLOAT"
    return sf.default_subtype(fmt) if fmt in sf.available_formats() else None


def check_path(path: str) -> None:
    """Fail before the stream opens when libsndfile cannot write this file name."""
    import soundfile as sf
    fmt = path.rsplit(".", 1)[-1].upper() if "." in path else ""
    if fmt not in sf.available_formats() or fmt in ("RAW",):
        raise UserError(f"--record {path!r}: unknown audio format {fmt or '(no extension)'!r}; "
                        f"give a .wav, .flac, .aiff or .ogg file name")


class Recorder:
    """A ring the callback writes output blocks into and a thread that writes them to a file.

    Args:
        path: the recording's file name (format from its extension).
        samplerate: Hz; channels: per frame; max_frames: largest block the callback gets.
        ring_s: ring length in seconds (default 4 s; at least 8 blocks).
        poll_s: how often the writer looks for new frames.

    Attributes, read after :meth:`close`: ``frames`` (written to the file),
    ``first_callback`` / ``first_frame`` (the callback whose output is ``record[0]``, and the
    stream frame of that sample; None if nothing came), ``dropped_frames``, ``error`` (str,
    when writing failed). ``limit_frames`` (set before the stream starts) caps the length.
    """

    def __init__(self, path: str, samplerate: int, channels: int, max_frames: int,
                 ring_s: float = DEFAULT_RING_S, poll_s: float = 0.02):
        check_path(path)
        self.path = path
        self.samplerate, self.channels = int(samplerate), int(channels)
        cap = max(int(ring_s * samplerate), 8 * int(max_frames))
        self.ring = np.zeros((cap, channels), np.float32)
        self.capacity = cap
        self.poll_s = float(poll_s)
        self.written = 0            # frames the callback has put in the ring (callback only)
        self.taken = 0              # frames the writer has consumed (writer only)
        self.first_callback = None
        self.first_frame = None
        self.limit_frames = None    # frames to record at most (None: until the stream stops)
        self.dropped_frames = 0
        self.frames = 0
        self.error = None
        self._stop = threading.Event()
        self._thread = None
        self._atomic = None
        self._tmp = None

    # --- audio callback ---------------------------------------------------------------------

    def push(self, block: np.ndarray, callback: int, frame: int) -> None:
        """Copy one output block (frames, channels) into the ring; ``callback`` is its index
        and ``frame`` the stream frame of its first sample."""
        n = block.shape[0]
        if self.first_callback is None:
            self.first_callback, self.first_frame = callback, frame
        if self.limit_frames is not None:
            n = min(n, self.limit_frames - self.written)
            if n <= 0:
                return
        w = self.written % self.capacity
        k = min(n, self.capacity - w)
        self.ring[w:w + k] = block[:k]
        if k < n:
            self.ring[:n - k] = block[k:n]
        self.written += n           # published after the data

    # --- writer thread ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the temporary file and start the writer thread."""
        import soundfile as sf
        from cosine_host.files import atomic_path
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        try:
            self._file = sf.SoundFile(str(self._tmp), "w", samplerate=self.samplerate,
                                      channels=self.channels, subtype=subtype_for(self.path))
        except (sf.SoundFileError, RuntimeError, ValueError) as e:
            self._atomic.__exit__(type(e), e, None)
            raise UserError(f"--record {self.path!r}: cannot write it ({e})") from None
        self._thread = threading.Thread(target=self._run, name="live-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        if self.error is not None:
            return
        written = self.written
        new = written - self.taken
        try:
            if new > self.capacity:     # overrun: the oldest frames were overwritten
                lost = new - self.capacity
                self.dropped_frames += lost
                self._file.write(np.zeros((lost, self.channels), np.float32))
                self.taken += lost
                self.frames += lost
                new = self.capacity
            while new > 0:
                t = self.taken % self.capacity
                k = min(new, self.capacity - t)
                self._file.write(self.ring[t:t + k])
                self.taken += k
                self.frames += k
                new -= k
        except Exception as e:          # disk full, ...: stop writing, say so in the report
            self.error = f"{type(e).__name__}: {e}"

    def close(self) -> None:
        """Stop the writer after it has written everything pushed so far, close the file and
        rename it onto ``path`` (removed instead when writing failed). Safe to call twice."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        with contextlib.suppress(Exception):
            self._file.close()
        if self.error is None:
            self._atomic.__exit__(None, None, None)
        else:
            err = RuntimeError(self.error)
            with contextlib.suppress(RuntimeError):
                self._atomic.__exit__(RuntimeError, err, None)

    def report(self) -> dict:
        return {"path": self.path, "frames": int(self.frames),
                "first_callback": self.first_callback, "first_frame": self.first_frame,
                "dropped_frames": int(self.dropped_frames), "error": self.error,
                "ring_frames": int(self.capacity)}

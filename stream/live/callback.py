"""The audio callback of a live stream and the play/record state it shares with the session.

:class:`AudioCallback` is what PortAudio's thread calls once per block (its ``handle`` method is the
stream's callback): it drains pending controls, picks the engine's input (device input, the
``--play`` file or :class:`PlayRecord`'s signal), runs ``engine.process(block, out=outdata)``, hands
the output to the recorder and stores times and levels in the preallocated
:class:`cosine_host.live.monitor.CallbackRecorder`. It allocates no arrays (the built-in processors
run in place, the engine's buffers are preallocated; two exceptions: a pedalboard stage's plugin
returns a new array per call, its API having no output argument, and the ``codec`` processor's
range coder works on arrays of its own; see tests/test_callback_allocations.py), prints nothing
and takes no locks; an exception stops the stream (``CallbackAbort``) and is kept in ``error`` for
the main thread (stream/live/lifecycle.py) to report.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


class AudioCallback:
    """The state one stream's callback reads, fixed before the stream starts.

    Args:
        engine: has ``process(block, out=outdata)``; block and outdata (frames, channels)
            float32.
        rec: the cosine_host.live.monitor.CallbackRecorder the callback writes times and levels
        into. controls: cosine_host.live.control.Controls, drained at the start of each block.
        source: cosine_host.live.playback.FileSource fed to the engine in place of the device input,
            or None.
        recorder: cosine_host.live.recorder.Recorder receiving each output block, or None.
        pr: a prepared :class:`PlayRecord` (LiveSession.play_record), or None.
        abort: the exception class that aborts the stream (sounddevice.CallbackAbort).
    """

    def __init__(self, engine, rec, controls, source, recorder, pr, abort):
        self.engine, self.rec, self.controls = engine, rec, controls
        self.source, self.recorder, self.pr = source, recorder, pr
        self.abort = abort
        self.error: BaseException | None = None     # what stopped the stream, if anything

    def release(self) -> None:
        """Drop the engine and the rest once the stream is closed (a call after it aborts).

        PortAudio's stream object keeps its callback in a reference cycle, freed only by a
        full garbage collection, and the next stream's ``gc.freeze()`` would keep it through
        that stream: without this, every earlier engine would stay in memory.
        """
        self.engine = self.rec = self.controls = self.source = self.recorder = self.pr = None

    def handle(self, indata, outdata, frames, t, status):
        """The audio callback (PortAudio's thread). Allocates no arrays, no I/O, no locks."""
        t0 = time.perf_counter_ns()
        try:
            rec = self.rec
            i = rec.count % rec.capacity
            rec.record_flags(i, status._flags)
            controls = self.controls
            if controls.pending:
                controls.drain(rec.count, rec.frames_total, t0)
            src = indata
            if self.source is not None:
                src = self.source.next_block(frames)
            pr = self.pr
            if pr is not None:
                src = pr.next_block(indata, frames)
            t1 = time.perf_counter_ns()
            if pr is not None and not pr.through_engine:
                outdata[:] = src
            else:
                ret = self.engine.process(src, out=outdata)
                if ret is not outdata:  # an engine that could not write in place
                    outdata[:] = ret
            t2 = time.perf_counter_ns()
            rec.zero_nonfinite(src, outdata, frames)        # never NaN/Inf to the device
            if self.recorder is not None:
                self.recorder.push(outdata, rec.count, rec.frames_total)
            rec.record_levels(i, src if self.source is not None else indata, outdata, frames)
            rec.record_times(i, frames, t0, t2 - t1, time.perf_counter_ns() - t0,
                             t.inputBufferAdcTime, t.outputBufferDacTime, t.currentTime)
        except Exception as e:  # never let an exception print from the audio thread
            self.error = e
            outdata.fill(0)
            raise self.abort from None


@dataclass
class PlayRecord:
    """State shared by :meth:`LiveSession.play_record` and the callback (preallocated)."""
    signal: np.ndarray
    through_engine: bool
    tail_samples: int | None
    settle_s: float
    armed: bool = False
    pos: int = 0

    def prepare(self, max_frames: int, engine_latency: int, blocksize: int, samplerate: int):
        ch = self.signal.shape[1]
        if self.tail_samples is None:
            # Worst device round trip we expect is a few blocks plus the hint; 0.1 s covers it.
            self.tail = engine_latency + 4 * (blocksize or 1024) + samplerate // 10
        else:
            self.tail = int(self.tail_samples)
        n = self.signal.shape[0]
        self.total = n + self.tail
        self.play = np.zeros((self.total, ch), np.float32)
        self.play[:n] = self.signal
        self.rec = np.zeros((self.total, ch), np.float32)
        self.block = np.zeros((max_frames, ch), np.float32)
        self.armed = False
        self.pos = 0

    def next_block(self, indata, frames: int) -> np.ndarray:
        """Called in the callback: the block to feed the engine; records ``indata``."""
        block = self.block if frames == self.block.shape[0] else self.block[:frames]
        p = self.pos
        if not self.armed or p >= self.total:
            block.fill(0)  # silence, never the input: a loopback must not feed back
            return block
        n = min(frames, self.total - p)
        block[:n] = self.play[p:p + n]
        if n < frames:
            block[n:] = 0
        self.rec[p:p + n] = indata[:n]
        self.pos = p + n
        return block

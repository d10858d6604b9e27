"""The life of one live stream: open, wire, wait, close, report.

:class:`StreamLife` is :class:`cosine_host.live.session.LiveSession`'s base class: ``_session``
builds the engine (warmed up outside the real-time thread), the callback (stream/live/callback.py)
and the extras, opens the PortAudio duplex stream, wires its JACK loopback, loops in the main thread
over status lines, keys and stop conditions (``_wait``), closes the stream even when PortAudio hangs
(:func:`_close_stream`) and builds and writes the JSON report. It uses the session's settings
(``cfg``, devices, ``samplerate``, ``blocksize``, ``channels``, paths) and its extras
(``_setup_extras``, ``_status``, ``_status_for``, ``_play_report``, ``_recent_len``, defined in
stream/live/session.py).

While the stream runs, the interpreter's GIL switch interval is shortened
(:func:`switch_interval_s`).
"""
from __future__ import annotations

import gc
import math
import sys
import time

import numpy as np

from cosine_host.live import jack
from cosine_host.live import monitor
from cosine_host.live.keyboard import Keys
from cosine_host.live.devices import check_settings, portaudio_message
from cosine_host.outputs import check_outputs
from cosine_host.errors import UserError
from cosine_host.interrupts import Terminated
from cosine_host.live.callback import AudioCallback, PlayRecord

# Largest block the callback is prepared for when the device chooses the size (blocksize 0).
MAX_VARIABLE_FRAMES = 16384

# While another thread holds the GIL (panel, OSC, recorder), the audio callback waits until it
# is handed over, up to the switch interval: 5 ms by default, more than a 32-sample block's
# whole budget (0.67 ms at 48 kHz). The bounds below are where xruns stopped on the JACK dummy
# (benchmarks/README.md, "Live: the GIL switch interval").
SWITCH_INTERVAL_FRACTION = 0.25     # of one block's duration
MIN_SWITCH_INTERVAL_S = 1e-4
MAX_SWITCH_INTERVAL_S = 2.5e-4


def switch_interval_s(blocksize: int, samplerate: int) -> float:
    """GIL switch interval for a stream: a quarter of a block's duration (blocksize 0: of 256
    frames), from 0.1 to 0.25 ms, never longer than the interpreter's default."""
    block_s = (blocksize or 256) / samplerate
    return min(sys.getswitchinterval(), MAX_SWITCH_INTERVAL_S,
               max(MIN_SWITCH_INTERVAL_S, SWITCH_INTERVAL_FRACTION * block_s))


class StreamLife:
    """Opening, running and closing one duplex stream for :class:`cosine_host.live.session.LiveSession`.

    A subclass provides the engine and the extras through the hooks declared below."""

    # --- what a session provides ----------------------------------------------------------------

    def _setup_extras(self, engine, max_frames: int, on_status) -> None:
        """Make the file source, recorder, controls and OSC server of one stream."""
        raise NotImplementedError

    def _recent_len(self) -> int:
        """Callbacks in about the last second (for the status line's p50/p99 and peaks)."""
        raise NotImplementedError

    def _status(self, started, eng_lat, device_latency_s):
        """The current cosine_host.live.panel.Status."""
        raise NotImplementedError

    def _status_for(self, recent, total, latency, elapsed_s):
        """A cosine_host.live.panel.Status from monitor snapshots ``recent`` and ``total``."""
        raise NotImplementedError

    def _play_report(self) -> dict | None:
        """The report's ``play`` entry (None without --play)."""
        raise NotImplementedError

    # --- the stream's life ----------------------------------------------------------------------

    def _session(self, duration_s, on_status, keys, pr: "PlayRecord | None") -> dict:
        from threadpoolctl import threadpool_limits
        # One block is a few small products: BLAS threads buy nothing there and, on a busy
        # machine, make the callback wait for a core (benchmarks/README.md, "Threads")
        with threadpool_limits(limits=1, user_api="blas"):
            return self._stream_session(duration_s, on_status, keys, pr)

    def _stream_session(self, duration_s, on_status, keys, pr: "PlayRecord | None") -> dict:
        sd = self._sd
        sr, bs, ch = self.samplerate, self.blocksize, self.channels
        check_settings(sd, self.input_device, self.output_device, ch, sr)
        # before the stream opens, not after an hour of running (a --report from the CLI was
        # checked already; a session made from Python is checked here)
        check_outputs([("--report", self.report_path)], overwrite=True)

        self.engine = engine = self._make_engine()
        max_frames = bs if bs else MAX_VARIABLE_FRAMES
        self._rec = rec = monitor.CallbackRecorder(max_frames=max_frames, channels=ch)
        if pr is not None:
            pr.prepare(max_frames, engine.latency_samples, bs, sr)
        self._setup_extras(engine, max_frames, on_status)
        self._audio_callback = callback = AudioCallback(
            engine, rec, self._controls, self._source, self._recorder, pr, sd.CallbackAbort)
        interval = (switch_interval_s(bs, sr) if self.switch_interval is None
                    else self.switch_interval)
        default_interval = sys.getswitchinterval()

        devices = {k: {"index": d["index"], "name": d["name"], "hostapi": d["hostapi"]}
                   for k, d in (("input", self.input_device), ("output", self.output_device))}
        # Objects alive now (torch, the engine, ...) need no cyclic-GC scans while streaming:
        # freezing them keeps the collections that the callback's small objects trigger short.
        # Collect first: garbage in cycles (an earlier session and its engine) would otherwise
        # be frozen with them and stay in memory for this whole stream.
        gc.collect()
        gc.freeze()
        stream = None
        device_latency_s = (0.0, 0.0)
        stopped_by, error, terminated = None, None, None
        started = time.monotonic()
        stopped = started
        self._toggles = 0
        loopback_ports = None
        try:
            ports_before = jack.client_ports(self._client_name()) if self.jack_loopback else None
            if self._recorder is not None:
                self._recorder.start()
            if self._osc is not None:
                self._osc.start()
                host, port = self._osc.address
                self._controls.on_message(f"osc: listening on {host}:{port} (UDP)")
            if interval:
                sys.setswitchinterval(interval)
            self._started_ns = time.perf_counter_ns()
            self._controls.started_ns = self._started_ns
            try:
                stream = sd.Stream(samplerate=sr, blocksize=bs, channels=ch, dtype="float32",
                                   device=(self.input_device["index"], self.output_device["index"]),
                                   latency=self.cfg.audio.latency, callback=callback.handle,
                                   prime_output_buffers_using_stream_callback=False)
                stream.start()
            except sd.PortAudioError as e:
                raise UserError(f"cannot open the audio stream on {_dev_text(self.input_device)}"
                                f" / {_dev_text(self.output_device)}: {portaudio_message(e)}; check the "
                                f"devices with `python run.py devices`") from None
            started = time.monotonic()
            device_latency_s = tuple(float(x) for x in stream.latency)
            self._device_latency_s = device_latency_s
            self._started = started
            if self.jack_loopback:
                loopback_ports = jack.wire_loopback(self._client_name(), ports_before, ch)
            eng_lat = monitor.engine_latency(engine, sr)
            with Keys(keys) as keyboard:
                stopped_by = self._wait(stream, keyboard, duration_s, on_status, started,
                                        eng_lat, device_latency_s, pr)
        except KeyboardInterrupt as e:
            stopped_by = "interrupt"
            if isinstance(e, Terminated):       # SIGTERM / SIGHUP: stop as for Ctrl-C, then
                stopped_by, terminated = e.name, e     # exit non-zero (cosine_host.interrupts)
        except UserError as e:
            stopped_by, error = "error", e
        finally:
            stopped = time.monotonic()
            closed = True
            if stream is not None:
                # A stream that died by itself (server gone) may hang PortAudio: wait less.
                closed = _close_stream(sd, stream, timeout_s=5.0 if stream.active else 2.0)
            sys.setswitchinterval(default_interval)
            callback.release()
            if self._osc is not None:
                self._osc.close()
            if self._recorder is not None:
                self._recorder.close()
            gc.unfreeze()

        snap = rec.snapshot()
        cbt = monitor.callback_time_latency_ms(snap["adc_s"], snap["dac_s"], snap["now_s"])
        latency = monitor.latency_summary(monitor.engine_latency(engine, sr), device_latency_s,
                                          sr, cbt)
        extra = {
            "stopped_by": stopped_by,
            "error": None if error is None else str(error),
            "bypass": bool(engine.bypass),
            "bypass_toggles": self._toggles + self._controls.bypass_toggles,
            "jack_loopback": loopback_ports,
            "latency_hint": self.cfg.audio.latency,
            "engine": _engine_stats(engine),
            "report_path": self.report_path,
            "stream_closed": closed,
            "gil_switch_interval_s": interval or default_interval,
            "controls": self._controls.report(),
            "osc": None if self._osc is None else {"host": self._osc.address[0],
                                                   "port": self._osc.address[1]},
            "play": self._play_report(),
            "record": None if self._recorder is None else dict(
                self._recorder.report(), engine_latency_samples=int(engine.latency_samples)),
        }
        if self._recorder is not None and self._recorder.error and error is None:
            error = UserError(f"--record {self.record_path!r}: writing failed "
                              f"({self._recorder.error}); no file was left")
        if pr is not None:
            extra["play_record"] = {"signal_frames": int(pr.signal.shape[0]),
                                    "tail_samples": int(pr.tail), "through_engine":
                                    bool(pr.through_engine), "recorded_frames": int(pr.pos)}
        warnings = []
        if snap["output_nonfinite_samples"]:
            from cosine_host.offline.render import nonfinite_output_note
            warnings.append(nonfinite_output_note(
                self.cfg, "live", snap["output_nonfinite_samples"], snap["nonfinite_input_peak"],
                fate="played as 0"))
        report = monitor.build_report(
            snap, config=self.cfg.to_dict(), devices=devices, samplerate=sr, blocksize=bs,
            channels=ch, latency=latency, duration_s=stopped - started,
            nan_events=int(getattr(engine, "nan_events", 0)), warnings=warnings, **extra)
        self.last_report = report
        if on_status is not None and snap["count"]:
            on_status(self._status_for(rec.snapshot(last=self._recent_len()), snap, latency,
                                       stopped - started), final=True)
        if self.report_path:
            try:
                monitor.write_report(self.report_path, report)
            except OSError as e:
                raise UserError(f"cannot write the report {self.report_path!r}: {e}") from None
        if error is not None:
            raise error
        if terminated is not None:
            terminated.note = "the stream was closed" + (
                f" and the report written to {self.report_path!r}" if self.report_path else "")
            raise terminated
        return report

    def _wait(self, stream, keyboard, duration_s, on_status, started, eng_lat, device_latency_s,
              pr) -> str:
        """Main-thread loop while the stream runs: status lines, keys, stop conditions.
        Returns what stopped it; raises UserError when the stream failed."""
        refresh = float(self.cfg.monitor.refresh_s)
        sr, bs = self.samplerate, self.blocksize
        deadline = started + duration_s if duration_s else None
        next_status = started + refresh
        # A device that stops calling back (server gone, device unplugged) while PortAudio
        # still calls the stream active: give up after stall_s seconds without a callback.
        stall_s = max(2.0, 50 * (bs or 1024) / sr)
        last_count, last_progress = -1, started
        if pr is not None:
            arm_at = started + pr.settle_s
            # Enough time for the signal to pass, with generous slack for a slow start.
            give_up = arm_at + pr.total / sr * 2 + 10.0
        while True:
            if self._audio_callback.error is not None:
                e = self._audio_callback.error
                raise UserError(f"the engine failed in the audio callback: "
                                f"{type(e).__name__}: {e}")
            if not stream.active:
                raise UserError("the audio stream stopped by itself (device unplugged or the "
                                "audio server stopped?); check `python run.py devices`")
            now = time.monotonic()
            count = self._rec.count
            if count != last_count:
                last_count, last_progress = count, now
            elif now - last_progress > stall_s:
                raise UserError(f"no audio callback for {now - last_progress:.1f} s: the device "
                                f"or the audio server stopped; check `python run.py devices`")
            if self._controls.quit.is_set():
                return "osc"
            self._controls.release()
            src = self._source
            if src is not None and not src.loop and \
                    src.position >= src.frames + self.engine.latency_samples:
                return "play end"
            if pr is not None:
                if not pr.armed and now >= arm_at:
                    pr.armed = True
                if pr.pos >= pr.total:
                    return "signal end"
                if now > give_up:
                    raise UserError(f"play_record: only {pr.pos} of {pr.total} frames went "
                                    f"through in {now - arm_at:.1f} s; the device is not running "
                                    f"in real time")
            if deadline is not None and now >= deadline:
                return "duration"
            if now >= next_status:
                next_status += refresh * max(1, math.floor((now - next_status) / refresh) + 1)
                if on_status is not None:
                    on_status(self._status(started, eng_lat, device_latency_s), final=False)
            wake = next_status if deadline is None else min(next_status, deadline)
            if pr is not None or src is not None or self._osc is not None:
                wake = min(wake, now + 0.02)
            for key in keyboard.read(max(0.0, wake - time.monotonic())):
                if key in ("q", "Q"):
                    return "key"
                if key in ("b", "B"):
                    self.engine.bypass = not self.engine.bypass
                    self._toggles += 1

    def _make_engine(self):
        import torch
        from cosine_host.engine.engine import Engine
        # One block is a few small matrix products: a second intra-op thread buys nothing and,
        # on a busy machine, makes the callback wait for a core (benchmarks/README.md, "Threads")
        torch.set_num_threads(1)
        engine = Engine.from_config(self.cfg, blocksize=self.blocksize, channels=self.channels,
                                    samplerate=self.samplerate)
        # Warm up (first calls allocate and may compile), outside the real-time thread.
        b = self.blocksize or 256
        x = np.zeros((b, self.channels), np.float32)
        y = np.zeros_like(x)
        for _ in range(max(4, math.ceil(2 * self.cfg.frame.size / b))):
            engine.process(x, out=y)
        engine.reset()
        engine.bypass = self.start_bypassed
        return engine

    def _client_name(self) -> str:
        return jack.client_name(self._sd)


# --- closing ---------------------------------------------------------------------------------

def _close_stream(sd, stream, timeout_s: float = 5.0) -> bool:
    """Stop and close ``stream``; False if PortAudio hung doing it.

    PortAudio's JACK host API waits up to 10 minutes in Pa_StopStream / Pa_CloseStream when the
    JACK server has gone away, and Pa_Terminate (sounddevice's exit handler) would do the same
    at interpreter exit. So stop/close run in a helper thread; if they do not return within
    ``timeout_s`` seconds, the stream is left to the operating system and sounddevice's exit
    handler is unregistered so that the program can still exit.
    """
    import atexit
    import threading

    def close():
        for op in (stream.stop, stream.close):
            try:
                op()
            except sd.PortAudioError:
                pass

    t = threading.Thread(target=close, name="close-audio-stream", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        handler = getattr(sd, "_exit_handler", None)
        if handler is not None:
            atexit.unregister(handler)
        return False
    return True


# --- small helpers -----------------------------------------------------------------------------

def _engine_stats(engine) -> dict | None:
    try:
        return engine.stats()
    except Exception as e:  # statistics must never cost the report
        return {"error": f"{type(e).__name__}: {e}"}


def _dev_text(d: dict) -> str:
    return f"device {d['index']} ({d['name']}, {d['hostapi']})"

"""Live audio: a duplex sound-device stream whose callback runs the engine.

:class:`LiveSession` opens one PortAudio duplex stream (python-sounddevice, imported lazily
here and in stream/devices.py only), runs :class:`stream.engine.Engine` in its callback, shows
a status line and writes a JSON report. :meth:`LiveSession.play_record` plays a given signal
through the same chain and records what the input hears: the building block of round-trip
latency measurements (with ``jack_loopback=True`` the session wires its own JACK output ports
to its input ports).

The callback allocates no arrays, prints nothing and takes no locks: it times
``engine.process(block, out=outdata)`` with ``time.perf_counter_ns`` and stores numbers in the
preallocated arrays of :class:`stream.monitor.CallbackRecorder`; statistics are computed in the
main thread by the pure functions of :mod:`stream.monitor`.

Around the engine, each in its own module: ``--play`` (stream/playback.py: a preloaded file in
place of the device input), ``--record`` (stream/recorder.py: a preallocated ring the callback
writes, a thread writing the file), controls (stream/control.py, drained by the callback at the
start of each block; sent over OSC by stream/osc.py) and the panel (stream/panel.py). While the
stream runs, the interpreter's GIL switch interval is shortened (:func:`switch_interval_s`).
"""
from __future__ import annotations

import gc
import os
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from stream import jack, monitor
from stream.keyboard import Keys
from stream.devices import check_settings, import_sounddevice, query_devices, resolve_device
from stream.errors import UserError
from stream.interrupts import Terminated

# Largest block the callback is prepared for when the device chooses the size (blocksize 0).
MAX_VARIABLE_FRAMES = 16384

# While another thread holds the GIL (panel, OSC, recorder), the audio callback waits until it
# is handed over, up to the switch interval: 5 ms by default, more than a 32-sample block's
# whole budget (0.67 ms at 48 kHz). Measured on the JACK dummy with panel, OSC, playing and
# recording (20 s streams, quiet 2-core machine): at B = 256, 1.33 ms (a quarter block) gave
# 1-2 xrun events and a 5-36 ms worst call, 0.5 ms 0-1 events, 0.25 and 0.1 ms none with a
# worst call of 2.3-3.8 ms; at B = 32, 0.1-0.17 ms gave 0-2 events (one run of 12), 0.5 ms 0-3.
SWITCH_INTERVAL_FRACTION = 0.25     # of one block's duration
MIN_SWITCH_INTERVAL_S = 1e-4
MAX_SWITCH_INTERVAL_S = 2.5e-4


def switch_interval_s(blocksize: int, samplerate: int) -> float:
    """GIL switch interval for a stream: a quarter of a block's duration (blocksize 0: of 256
    frames), from 0.1 to 0.25 ms, never longer than the interpreter's default."""
    block_s = (blocksize or 256) / samplerate
    return min(sys.getswitchinterval(), MAX_SWITCH_INTERVAL_S,
               max(MIN_SWITCH_INTERVAL_S, SWITCH_INTERVAL_FRACTION * block_s))


class LiveSession:
    """One live run of the engine on a duplex sound-device stream.

    Args:
        cfg: a :class:`stream.config.Config`; ``cfg.audio`` gives samplerate (Hz), blocksize
            (frames per callback; 0 lets the device choose and vary it), channels, devices and
            the PortAudio latency hint; ``cfg.monitor.refresh_s`` the status-line period.
        input_device, output_device: index, digit string or part of a device name; None uses
            ``cfg.audio.input_device`` / ``output_device`` and then the system default.
        report_path: where :meth:`run` writes its JSON report (atomically) when the stream
            stops, also after an error; None writes none.
        jack_loopback: on a JACK device, after the stream starts, connect this stream's own
            output port k to its input port k (and disconnect whatever else fed its inputs), so
            the input hears exactly what the output plays. Needs the JACK tools jack_lsp,
            jack_connect and jack_disconnect (Debian package jackd2).
        bypass: start with the engine in bypass (the dry signal at the same latency).
        play: a sound file fed to the engine in place of the device input (stream/playback.py);
            without ``loop`` the stream stops at its end plus the engine latency.
        loop: repeat ``play``.
        record: a sound file receiving exactly what the engine hands to the output device
            (stream/recorder.py); float32 samples in WAV/AIFF.
        osc_port: listen for OSC controls on this UDP port (0: any free port), on
            ``cfg.control.osc.host``; None: ``cfg.control.osc.port`` (None: no OSC).
        switch_interval: GIL switch interval (seconds) while streaming; None:
            :func:`switch_interval_s`; 0 leaves the interpreter's as it is.

    Raises:
        UserError: PortAudio missing, a device not found or ambiguous (candidates listed),
            jack_loopback on a device that is not JACK's.
    """

    def __init__(self, cfg, input_device=None, output_device=None, report_path=None,
                 jack_loopback: bool = False, bypass: bool = False, play: str | None = None,
                 loop: bool = False, record: str | None = None, osc_port: int | None = None,
                 switch_interval: float | None = None):
        self.cfg = cfg
        self.play_path, self.loop, self.record_path = play, bool(loop), record
        self.osc_port = osc_port if osc_port is not None else cfg.control.osc_port
        self.switch_interval = switch_interval
        self.start_bypassed = bool(bypass)
        audio = cfg.audio
        self.samplerate = int(audio.samplerate)
        self.blocksize = int(audio.blocksize)
        self.channels = int(audio.channels)
        self.report_path = report_path
        self.jack_loopback = bool(jack_loopback)
        self.last_report: dict | None = None
        self.engine = None
        # the user's files first: a missing one is the error to report, not the devices
        self._play_info = None
        if play is not None:
            from stream import playback
            self._play_signal, self._play_info = playback.load(play, self.samplerate,
                                                               self.channels)
        if record is not None:
            from stream import recorder
            recorder.check_path(record)

        self._sd = import_sounddevice()
        devices = query_devices()
        in_spec = input_device if input_device is not None else audio.input_device
        out_spec = output_device if output_device is not None else audio.output_device
        self.input_device = resolve_device(in_spec, "input", devices)
        self.output_device = resolve_device(out_spec, "output", devices)
        if self.jack_loopback:
            for d in (self.input_device, self.output_device):
                if "jack" not in d["hostapi"].lower():
                    raise UserError(f"jack_loopback needs JACK devices, but device {d['index']} "
                                    f"({d['name']}) uses {d['hostapi']}; start a JACK server "
                                    f"and choose its device (see `python run.py devices`)")
            jack.require_tools()

        self._rec: monitor.CallbackRecorder | None = None
        self._pr: _PlayRecord | None = None
        self._callback_error: BaseException | None = None
        self._toggles = 0
        self._source = None         # playback.FileSource while streaming with play
        self._recorder = None       # recorder.Recorder while streaming with record
        self._controls = None       # control.Controls while streaming

    # --- public API ---------------------------------------------------------------------------

    def run(self, duration_s: float | None = None, on_status=None, keys: bool = False) -> dict:
        """Run the engine live until ``duration_s`` seconds have passed, ``q`` is pressed
        (``keys=True``) or Ctrl-C; always close the stream and write the report.

        Args:
            duration_s: seconds of wall-clock time from stream start; None runs until q/Ctrl-C.
            on_status: callable(status: stream.panel.Status, final: bool = False), called
                every ``cfg.monitor.refresh_s`` seconds, and once with final=True when the
                stream stopped (stream.panel.status_display makes one); its ``message(line)``,
                if it has one, prints a refused control. None shows nothing.
            keys: read single keys from standard input (put in cbreak mode, always restored):
                ``q`` quits, ``b`` toggles the engine's bypass (same latency).
        Returns:
            The report dict (see docs/live.md), also written to ``report_path``.
        Raises:
            UserError: the device cannot do the sample rate or channel count (what it can is
                named), PortAudio failed at open or mid-stream, the engine failed in the
                callback. The report is written before it is raised.
        """
        return self._session(duration_s=duration_s, on_status=on_status, keys=keys, pr=None)

    def play_record(self, signal: np.ndarray, *, through_engine: bool = True,
                    tail_samples: int | None = None, settle_s: float = 0.3,
                    on_status=None) -> np.ndarray:
        """Play ``signal`` through the live chain and record what the input device hears.

        The session opens its stream (and, with ``jack_loopback``, wires its outputs to its
        inputs), waits ``settle_s`` seconds for the wiring and the device to settle, then, from
        the next callback on, feeds ``signal`` (followed by ``tail_samples`` zeros) to the
        engine *in place of* the device input, plays the engine's output, and records the
        device input. The device input is never fed to the engine during this call, so a
        loopback cannot feed back.

        Args:
            signal: float32-convertible, shape (frames,) (sent to every channel) or
                (frames, channels), at ``cfg.audio.samplerate``.
            through_engine: True plays ``engine.process(signal)``; False plays ``signal``
                itself (the engine is not run): the device's own round trip.
            tail_samples: zeros played after the signal so that its end comes back; default
                engine latency + device latency + 4 blocks + 0.1 s.
            settle_s: seconds between stream start (and wiring) and the first signal sample.
            on_status: as in :meth:`run` (status lines while it plays).
        Returns:
            recorded: float32 array (len(signal) + tail_samples, channels). ``recorded[k]`` is
            the input frame that arrived in the callback (and at the position within it) where
            ``signal[k]`` was handed to the engine. So an impulse at ``signal[k0]`` that comes
            back at ``recorded[k1]`` took ``k1 - k0`` samples: ``engine.latency_samples`` (if
            ``through_engine``) + the device round trip. With ``jack_loopback`` on a JACK
            server (default asynchronous mode), the device round trip equals
            ``round(sum(stream.latency) * samplerate)``, i.e.
            ``self.last_report["latency"]["device_samples"]``.

        After the call ``self.last_report`` holds the run's report (xruns during the
        recording are in ``last_report["xruns"]``; an xrun can shift what comes back) and
        ``self.engine`` the engine that ran; the report is written to ``report_path`` if set.

        Raises:
            UserError: as :meth:`run`, or the stream stopped before the signal was through.
        """
        sig = np.asarray(signal, dtype=np.float32)
        if sig.ndim == 1:
            sig = np.repeat(sig[:, None], self.channels, axis=1)
        if sig.ndim != 2 or sig.shape[1] != self.channels:
            raise UserError(f"play_record: signal must have shape (frames,) or (frames, "
                            f"{self.channels}), not {sig.shape}")
        pr = _PlayRecord(signal=sig, through_engine=through_engine, tail_samples=tail_samples,
                         settle_s=float(settle_s))
        self._session(duration_s=None, on_status=on_status, keys=False, pr=pr)
        return pr.rec

    def summary(self, report: dict) -> str:
        """A few lines for people from :meth:`run`'s report."""
        return monitor.summary(report)

    # --- the stream ---------------------------------------------------------------------------

    def _session(self, duration_s, on_status, keys, pr: "_PlayRecord | None") -> dict:
        from threadpoolctl import threadpool_limits
        # One block is a few small products: BLAS threads buy nothing there and, on a busy
        # machine, make the callback wait for a core (the exact encoder's float64 product at
        # B = 256 with quantize + top-k: p50 9.3 ms with numpy's default threads, 1.7 ms with
        # one, measured on the shared 2-core machine)
        with threadpool_limits(limits=1, user_api="blas"):
            return self._stream_session(duration_s, on_status, keys, pr)

    def _stream_session(self, duration_s, on_status, keys, pr: "_PlayRecord | None") -> dict:
        sd = self._sd
        sr, bs, ch = self.samplerate, self.blocksize, self.channels
        check_settings(sd, self.input_device, self.output_device, ch, sr)
        _check_report_path(self.report_path)

        self.engine = engine = self._make_engine()
        max_frames = bs if bs else MAX_VARIABLE_FRAMES
        self._rec = rec = monitor.CallbackRecorder(max_frames=max_frames, channels=ch)
        self._callback_error = None
        self._pr = pr
        if pr is not None:
            pr.prepare(max_frames, engine.latency_samples, bs, sr)
        self._setup_extras(engine, max_frames, on_status)
        interval = (switch_interval_s(bs, sr) if self.switch_interval is None
                    else self.switch_interval)
        default_interval = sys.getswitchinterval()

        devices = {k: {"index": d["index"], "name": d["name"], "hostapi": d["hostapi"]}
                   for k, d in (("input", self.input_device), ("output", self.output_device))}
        # Objects alive now (torch, the engine, ...) need no cyclic-GC scans while streaming:
        # freezing them keeps the collections that the callback's small objects trigger short.
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
                                   latency=self.cfg.audio.latency, callback=self._callback,
                                   prime_output_buffers_using_stream_callback=False)
                stream.start()
            except sd.PortAudioError as e:
                raise UserError(f"cannot open the audio stream on {_dev_text(self.input_device)}"
                                f" / {_dev_text(self.output_device)}: {_pa_text(e)}; check the "
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
                stopped_by, terminated = e.name, e     # exit non-zero (stream.interrupts)
        except UserError as e:
            stopped_by, error = "error", e
        finally:
            stopped = time.monotonic()
            closed = True
            if stream is not None:
                # A stream that died by itself (server gone) may hang PortAudio: wait less.
                closed = _close_stream(sd, stream, timeout_s=5.0 if stream.active else 2.0)
            sys.setswitchinterval(default_interval)
            self._pr = None
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
        report = monitor.build_report(
            snap, config=self.cfg.to_dict(), devices=devices, samplerate=sr, blocksize=bs,
            channels=ch, latency=latency, duration_s=stopped - started,
            nan_events=int(getattr(engine, "nan_events", 0)), **extra)
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
            if self._callback_error is not None:
                e = self._callback_error
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

    def _recent_len(self) -> int:
        """Callbacks in about the last second (for the status line's p50/p99 and peaks)."""
        return max(1, math.ceil(self.samplerate / (self.blocksize or 256)))

    def _status(self, started, eng_lat, device_latency_s):
        recent = self._rec.snapshot(last=self._recent_len())
        cbt = monitor.callback_time_latency_ms(recent["adc_s"], recent["dac_s"], recent["now_s"])
        latency = monitor.latency_summary(eng_lat, device_latency_s, self.samplerate, cbt)
        return self._status_for(recent, recent, latency, time.monotonic() - started)

    def _status_for(self, recent, total, latency, elapsed_s):
        """A stream.panel.Status: the status line, its values and the notes on the extras."""
        from stream.panel import Status
        kw = dict(blocksize=self.blocksize, samplerate=self.samplerate, latency=latency,
                  nan_events=int(getattr(self.engine, "nan_events", 0)),
                  bypass=bool(self.engine.bypass), elapsed_s=elapsed_s)
        notes = {}
        sr = self.samplerate
        if self._source is not None:
            src = self._source
            at = src.position % src.frames if src.loop else min(src.position, src.frames)
            notes["play"] = (f"{os.path.basename(self.play_path)} {at / sr:.1f} / "
                             f"{src.frames / sr:.1f} s" + (" (loop)" if src.loop else ""))
        if self._recorder is not None:
            r = self._recorder
            notes["record"] = (f"{os.path.basename(self.record_path)} {r.frames / sr:.1f} s"
                               + (f", {r.dropped_frames} frames lost" if r.dropped_frames else "")
                               + (f", FAILED: {r.error}" if r.error else ""))
        if self._osc is not None:
            notes["osc"] = (f"{self._osc.address[0]}:{self._osc.address[1]}, "
                            f"{len(self._controls.log)} messages")
            last = self._controls.last()
            if last is not None:
                last = dict(last)
                if last.get("applied_ns") is not None:
                    last["applied_s"] = self._controls.seconds(last["applied_ns"])
                notes["control"] = last
        return Status(monitor.status_line(recent, total, **kw),
                      monitor.status_values(recent, total, **kw), notes)

    def _osc_status(self) -> dict:
        """OSC /status: the monitor's current values (stream.monitor.status_values)."""
        eng_lat = monitor.engine_latency(self.engine, self.samplerate)
        return self._status(self._started, eng_lat, self._device_latency_s).values

    def _setup_extras(self, engine, max_frames: int, on_status) -> None:
        """The file source, the recorder, the controls and the OSC server of one stream."""
        from stream.control import Controls
        self._started = time.monotonic()
        self._device_latency_s = (0.0, 0.0)
        self._source = None
        if self.play_path is not None:
            from stream.playback import FileSource
            self._source = FileSource(self._play_signal, self.loop, max_frames)
        self._recorder = None
        if self.record_path is not None:
            from stream.recorder import Recorder
            self._recorder = Recorder(self.record_path, self.samplerate, self.channels,
                                      max_frames)
            if self._source is not None and not self.loop:
                # the file's end plus the engine latency, as the stream stops there
                self._recorder.limit_frames = self._source.frames + engine.latency_samples
        message = getattr(on_status, "message", None)
        self._controls = Controls(engine, self.cfg, time.perf_counter_ns(),
                                  on_status=self._osc_status,
                                  on_message=message or _stderr_line)
        self._osc = None
        if self.osc_port is not None:
            from stream.osc import OscServer
            self._osc = OscServer(self._controls, self.cfg.control.osc_host, self.osc_port)

    def _play_report(self) -> dict | None:
        if self._source is None:
            return None
        return dict(self._play_info, loop=self.loop,
                    frames_played=int(self._source.position))

    def _callback(self, indata, outdata, frames, t, status):
        """The audio callback (PortAudio's thread). Allocates no arrays, no I/O, no locks."""
        t0 = time.perf_counter_ns()
        try:
            rec = self._rec
            i = rec.count % rec.capacity
            rec.record_flags(i, status._flags)
            controls = self._controls
            if controls.pending:
                controls.drain(rec.count, rec.frames_total, t0)
            src = indata
            if self._source is not None:
                src = self._source.next_block(frames)
            pr = self._pr
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
            if self._recorder is not None:
                self._recorder.push(outdata, rec.count, rec.frames_total)
            rec.record_levels(i, src if self._source is not None else indata, outdata, frames)
            rec.record_times(i, frames, t0, t2 - t1, time.perf_counter_ns() - t0,
                             t.inputBufferAdcTime, t.outputBufferDacTime, t.currentTime)
        except Exception as e:  # never let an exception print from the audio thread
            self._callback_error = e
            outdata.fill(0)
            raise self._sd.CallbackAbort from None

    def _make_engine(self):
        import torch
        from stream.engine import Engine
        # One block is a few small matrix products: a second intra-op thread buys nothing and,
        # on a busy machine, makes the callback wait for a core (p99 80-100 ms instead of ~10 ms
        # at blocksize 256 with the CPU loaded).
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


# --- play/record state ---------------------------------------------------------------------------

@dataclass
class _PlayRecord:
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

def _check_report_path(path) -> None:
    """Fail before the stream opens, not after an hour of running, if the report cannot go
    where asked."""
    if not path:
        return
    if os.path.isdir(path):
        raise UserError(f"--report {path!r} is a folder; give a file name such as "
                        f"{os.path.join(path, 'live.json')!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"--report {path!r}: the folder {folder!r} does not exist; create it "
                        f"or choose another path")
    if not os.access(folder, os.W_OK):
        raise UserError(f"--report {path!r}: the folder {folder!r} is not writable")


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _engine_stats(engine) -> dict | None:
    try:
        return engine.stats()
    except Exception as e:  # statistics must never cost the report
        return {"error": f"{type(e).__name__}: {e}"}


def _dev_text(d: dict) -> str:
    return f"device {d['index']} ({d['name']}, {d['hostapi']})"


def _pa_text(e: Exception) -> str:
    args = getattr(e, "args", ())
    text = args[0] if args and isinstance(args[0], str) else str(e)
    return " ".join(text.split())

"""Live audio: a duplex sound-device stream whose callback runs the engine.

:class:`LiveSession` opens one PortAudio duplex stream (python-sounddevice, imported lazily here and
in stream/live/devices.py only), runs :class:`cosine_host.engine.engine.Engine` in its callback,
shows a status line and writes a JSON report. :meth:`LiveSession.play_record` plays a given signal
through the same chain and records what the input hears: the building block of round-trip latency
measurements (with ``jack_loopback=True`` the session wires its own JACK output ports to its input
ports).

Here: the session's settings and public API, and its extras' state and status (the panel's
notes, OSC /status). The stream's life (open, JACK wiring, the main-thread loop, close,
report) is its base class in stream/live/lifecycle.py; the audio callback, which allocates no
arrays, prints nothing and takes no locks, is stream/live/callback.py; statistics are
computed in the main thread by the pure functions of :mod:`cosine_host.live.monitor`.

Around the engine, each in its own module: ``--play`` (stream/live/playback.py: a preloaded file in
place of the device input), ``--record`` (stream/live/recorder.py: a preallocated ring the callback
writes, a thread writing the file), controls (stream/live/control.py, drained by the callback at the
start of each block; sent over OSC by stream/live/osc.py) and the panel (stream/live/panel.py).
While the stream runs, the interpreter's GIL switch interval is shortened
(:func:`cosine_host.live.lifecycle.switch_interval_s`).
"""
from __future__ import annotations

import os
import math
import sys
import time

import numpy as np

from cosine_host.live import jack
from cosine_host.live import monitor
from cosine_host.live.devices import import_sounddevice, query_devices, find_device
from cosine_host.errors import UserError
from cosine_host.live.callback import PlayRecord
from cosine_host.live.lifecycle import StreamLife


class LiveSession(StreamLife):
    """One live run of the engine on a duplex sound-device stream.

    Args:
        cfg: a :class:`cosine_host.config.schema.Config`; ``cfg.audio`` gives samplerate (Hz),
        blocksize
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
        play: a sound file fed to the engine in place of the device input (stream/live/playback.py);
            without ``loop`` the stream stops at its end plus the engine latency.
        loop: repeat ``play``.
        record: a sound file receiving exactly what the engine hands to the output device
            (stream/live/recorder.py); float32 samples in WAV/AIFF.
        osc_port: listen for OSC controls on this UDP port (0: any free port), on
            ``cfg.control.osc.host``; None: ``cfg.control.osc.port`` (None: no OSC).
        switch_interval: GIL switch interval (seconds) while streaming; None:
            :func:`cosine_host.live.lifecycle.switch_interval_s`; 0 leaves the interpreter's as it
            is.

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
            from cosine_host.live import playback
            self._play_signal, self._play_info = playback.load(play, self.samplerate,
                                                               self.channels)
            for warning in self._play_info["warnings"]:
                _stderr_line(f"warning: {warning}")
        if record is not None:
            from cosine_host.live import recorder
            recorder.check_path(record)

        self._sd = import_sounddevice()
        devices = query_devices()
        in_spec = input_device if input_device is not None else audio.input_device
        out_spec = output_device if output_device is not None else audio.output_device
        self.input_device = find_device(in_spec, "input", devices)
        self.output_device = find_device(out_spec, "output", devices)
        if self.jack_loopback:
            for d in (self.input_device, self.output_device):
                if "jack" not in d["hostapi"].lower():
                    raise UserError(f"jack_loopback needs JACK devices, but device {d['index']} "
                                    f"({d['name']}) uses {d['hostapi']}; start a JACK server "
                                    f"and choose its device (see `python run.py devices`)")
            jack.require_tools()

        self._rec: monitor.CallbackRecorder | None = None
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
            on_status: callable(status: cosine_host.live.panel.Status, final: bool = False), called
                every ``cfg.monitor.refresh_s`` seconds, and once with final=True when the stream
                stopped (cosine_host.live.panel.status_display makes one); its ``message(line)``, if
                it has one, prints a refused control. None shows nothing.
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
        pr = PlayRecord(signal=sig, through_engine=through_engine, tail_samples=tail_samples,
                         settle_s=float(settle_s))
        self._session(duration_s=None, on_status=on_status, keys=False, pr=pr)
        return pr.rec

    def summary(self, report: dict) -> str:
        """A few lines for people from :meth:`run`'s report."""
        return monitor.summary(report)

    # --- the extras: state, status, report ------------------------------------------------------

    def _recent_len(self) -> int:
        """Callbacks in about the last second (for the status line's p50/p99 and peaks)."""
        return max(1, math.ceil(self.samplerate / (self.blocksize or 256)))

    def _status(self, started, eng_lat, device_latency_s):
        recent = self._rec.snapshot(last=self._recent_len())
        cbt = monitor.callback_time_latency_ms(recent["adc_s"], recent["dac_s"], recent["now_s"])
        latency = monitor.latency_summary(eng_lat, device_latency_s, self.samplerate, cbt)
        return self._status_for(recent, recent, latency, time.monotonic() - started)

    def _status_for(self, recent, total, latency, elapsed_s):
        """A cosine_host.live.panel.Status: the status line, its values and the notes on the extras."""
        from cosine_host.live.panel import Status
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
        """OSC /status: the monitor's current values (cosine_host.live.monitor.status_values)."""
        eng_lat = monitor.engine_latency(self.engine, self.samplerate)
        return self._status(self._started, eng_lat, self._device_latency_s).values

    def _setup_extras(self, engine, max_frames: int, on_status) -> None:
        """The file source, the recorder, the controls and the OSC server of one stream."""
        from cosine_host.live.control import Controls
        self._started = time.monotonic()
        self._device_latency_s = (0.0, 0.0)
        self._source = None
        if self.play_path is not None:
            from cosine_host.live.playback import FileSource
            self._source = FileSource(self._play_signal, self.loop, max_frames)
        self._recorder = None
        if self.record_path is not None:
            from cosine_host.live.recorder import Recorder
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
            from cosine_host.live.osc import OscServer
            self._osc = OscServer(self._controls, self.cfg.control.osc_host, self.osc_port)

    def _play_report(self) -> dict | None:
        if self._source is None:
            return None
        return dict(self._play_info, loop=self.loop,
                    frames_played=int(self._source.position))


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


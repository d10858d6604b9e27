"""Live-stream monitoring: what the audio callback records, and the statistics made from it.

The audio callback only writes numbers into :class:`CallbackRecorder`'s preallocated arrays
(ring buffers, a histogram, counters). Everything else here is a pure function that runs in
the main thread: percentiles, levels, the status line and the JSON report.

Units: times recorded in the callback are integer nanoseconds (``time.perf_counter_ns``);
PortAudio's callback timestamps are seconds (float64); results are named ``*_ms``, ``*_s``,
``*_samples`` or ``*_dbfs``.
"""
from __future__ import annotations

import math
import os

import numpy as np

from cosine_host.engine.finite import all_finite

# PortAudio's callback status flags, bit i = 1 << i (paInputUnderflow ... paPrimingOutput).
XRUN_KINDS = ("input_underflow", "input_overflow", "output_underflow", "output_overflow",
              "priming_output")
XRUN_SHORT = ("in-under", "in-over", "out-under", "out-over", "priming")


class CallbackRecorder:
    """Preallocated storage that the audio callback writes into; read from the main thread.

    Per callback (ring buffers of ``capacity`` entries, index ``count % capacity``):
    ``frames`` (int32), ``proc_ns`` (engine.process time, int64 ns), ``callback_ns`` (our whole
    callback, ns), ``start_ns`` (perf_counter_ns at callback entry), ``adc_s`` / ``dac_s`` /
    ``now_s`` (PortAudio's inputBufferAdcTime / outputBufferDacTime / currentTime, seconds),
    ``peak_in`` / ``peak_out`` (max |sample| of the block, float32), ``flags`` (PortAudio status
    bits, uint8).

    For the whole run, independent of ``capacity``: ``proc_hist`` (histogram of engine.process
    time in ``hist_bin_ns`` bins; the last bin collects everything longer), ``proc_max_ns``,
    ``proc_sum_ns``, ``frames_total``, ``xruns`` (count per :data:`XRUN_KINDS`),
    ``clipped_samples`` (output samples with |x| > 1, which the device will clip),
    ``input_clipped_samples`` (input samples at or beyond full scale), ``peak_in_max`` /
    ``peak_out_max``, ``xrun_events`` (runs of consecutive flagged callbacks).

    Args:
        capacity: ring length in callbacks; 16384 holds about 11 s at 32-sample blocks and
            48 kHz, far more than the status line needs (about 1 s).
        max_frames: largest block the callback may get (frames); sizes the scratch buffers.
        channels: channels per frame.
        hist_bin_ns: histogram resolution (default 1 microsecond).
        hist_range_ns: histogram range (default 100 ms, longer times land in the last bin).
    """

    def __init__(self, capacity: int = 16384, max_frames: int = 8192, channels: int = 2,
                 hist_bin_ns: int = 1000, hist_range_ns: int = 100_000_000):
        self.capacity = int(capacity)
        self.max_frames = int(max_frames)
        self.channels = int(channels)
        self.hist_bin_ns = int(hist_bin_ns)
        n = self.capacity
        self.frames = np.zeros(n, np.int32)
        self.proc_ns = np.zeros(n, np.int64)
        self.callback_ns = np.zeros(n, np.int64)
        self.start_ns = np.zeros(n, np.int64)
        self.adc_s = np.zeros(n, np.float64)
        self.dac_s = np.zeros(n, np.float64)
        self.now_s = np.zeros(n, np.float64)
        self.peak_in = np.zeros(n, np.float32)
        self.peak_out = np.zeros(n, np.float32)
        self.flags = np.zeros(n, np.uint8)
        self.proc_hist = np.zeros(hist_range_ns // self.hist_bin_ns + 1, np.int64)
        self.xruns = np.zeros(len(XRUN_KINDS), np.int64)
        # Scratch for |x| and comparisons, so that level metering allocates nothing.
        self._abs = np.zeros((self.max_frames, self.channels), np.float32)
        self._mask = np.zeros((self.max_frames, self.channels), np.bool_)
        self._peak = np.zeros((), np.float32)       # the peak of one block
        self._one = np.ones((), np.float32)         # full scale, as an array: no conversion
        self._zero = np.zeros((), np.float32)
        self._dot = np.zeros((), np.float32)        # all_finite's result
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded (not thread-safe: call while no stream runs)."""
        self.count = 0
        self.frames_total = 0
        self.xrun_events = 0
        self._prev_flags = 0
        self.proc_max_ns = 0
        self.proc_sum_ns = 0
        self.clipped_samples = 0
        self.input_clipped_samples = 0
        self.peak_in_max = 0.0
        self.peak_out_max = 0.0
        self.output_nonfinite_samples = 0
        self.output_nonfinite_events = 0
        self.nonfinite_input_peak = 0.0
        self.proc_hist[:] = 0
        self.xruns[:] = 0

    # --- called from the audio callback: no array allocation, no I/O, no locks -------------------
    # (CPython still creates small int/float objects and array views; that is unavoidable in a
    # Python callback and costs well under a microsecond each.)

    def record_flags(self, i: int, flags: int) -> None:
        """Count the PortAudio status bits set in ``flags`` (int bit mask); keep them in slot i."""
        self.flags[i] = flags
        if flags:
            for bit in range(5):
                if flags & (1 << bit):
                    self.xruns[bit] += 1
            # PortAudio flags every callback cut from one troubled host buffer (with blocksize
            # 32 on a JACK period of 256, up to 8): a run of flagged callbacks is one event.
            if not self._prev_flags:
                self.xrun_events += 1
        self._prev_flags = flags

    def zero_nonfinite(self, indata: np.ndarray, outdata: np.ndarray, frames: int) -> None:
        """Set the NaN/Inf samples of the engine's output block to 0 before they reach the
        device or the recorder, counting them (``output_nonfinite_samples``, one
        ``output_nonfinite_events`` per block that held any) with the input's peak there
        (``nonfinite_input_peak``: the warning tells an overflow from a chain's fault)."""
        if frames > self.max_frames or all_finite(outdata, self._dot):
            return
        m = self._mask if frames == self.max_frames else self._mask[:frames]
        np.isfinite(outdata, out=m)
        bad = m.size - int(np.count_nonzero(m))
        if not bad:         # finite values whose sum of squares overflowed
            return
        np.logical_not(m, out=m)
        np.copyto(outdata, self._zero, where=m)
        self.output_nonfinite_samples += bad
        self.output_nonfinite_events += 1
        a = self._abs if frames == self.max_frames else self._abs[:frames]
        np.abs(indata, out=a)
        peak = float(a.max(out=self._peak))
        if peak > self.nonfinite_input_peak:
            self.nonfinite_input_peak = peak

    def record_levels(self, i: int, indata: np.ndarray, outdata: np.ndarray, frames: int) -> None:
        """Peaks and clipped-sample counts of one callback's blocks, into slot ``i``."""
        if frames > self.max_frames:  # cannot happen with the sizes LiveSession asks for
            return
        a = self._abs if frames == self.max_frames else self._abs[:frames]
        m = self._mask if frames == self.max_frames else self._mask[:frames]
        np.abs(indata, out=a)
        p = float(a.max(out=self._peak)) if frames else 0.0     # out: no array per call
        self.peak_in[i] = p
        if p > self.peak_in_max:
            self.peak_in_max = p
        if p >= 1.0:
            np.greater_equal(a, self._one, out=m)
            self.input_clipped_samples += int(np.count_nonzero(m))
        np.abs(outdata, out=a)
        p = float(a.max(out=self._peak)) if frames else 0.0
        self.peak_out[i] = p
        if p > self.peak_out_max:
            self.peak_out_max = p
        if p > 1.0:
            np.greater(a, self._one, out=m)
            self.clipped_samples += int(np.count_nonzero(m))

    def record_times(self, i: int, frames: int, start_ns: int, proc_ns: int, callback_ns: int,
                     adc_s: float, dac_s: float, now_s: float) -> None:
        """One callback's timings into slot ``i``; then publishes it by advancing ``count``."""
        self.frames[i] = frames
        self.start_ns[i] = start_ns
        self.proc_ns[i] = proc_ns
        self.callback_ns[i] = callback_ns
        self.adc_s[i] = adc_s
        self.dac_s[i] = dac_s
        self.now_s[i] = now_s
        b = proc_ns // self.hist_bin_ns
        last = self.proc_hist.shape[0] - 1
        self.proc_hist[b if b < last else last] += 1
        if proc_ns > self.proc_max_ns:
            self.proc_max_ns = proc_ns
        self.proc_sum_ns += proc_ns
        self.frames_total += frames
        # Written last: the reader only looks at slots below count.
        self.count += 1

    # --- main thread ------------------------------------------------------------------------

    def snapshot(self, last: int | None = None) -> dict:
        """Copies of the most recent ``last`` ring entries (all that the ring holds when None),
        oldest first, plus the run totals. Safe to call while the callback runs (an entry being
        written right now is left out)."""
        count = self.count
        held = min(count, self.capacity)
        n = held if last is None else max(0, min(int(last), held))
        idx = np.arange(count - n, count) % self.capacity
        snap = {name: getattr(self, name)[idx].copy()
                for name in ("frames", "proc_ns", "callback_ns", "start_ns", "adc_s", "dac_s",
                             "now_s", "peak_in", "peak_out", "flags")}
        snap.update(count=count, frames_total=self.frames_total, xrun_events=self.xrun_events,
                    proc_max_ns=self.proc_max_ns, proc_sum_ns=self.proc_sum_ns,
                    proc_hist=self.proc_hist.copy(),
                    hist_bin_ns=self.hist_bin_ns, xruns=self.xruns.copy(),
                    clipped_samples=self.clipped_samples,
                    input_clipped_samples=self.input_clipped_samples,
                    peak_in_max=self.peak_in_max, peak_out_max=self.peak_out_max,
                    output_nonfinite_samples=self.output_nonfinite_samples,
                    output_nonfinite_events=self.output_nonfinite_events,
                    nonfinite_input_peak=self.nonfinite_input_peak)
        return snap


# --- pure statistics ---------------------------------------------------------------------------

def dbfs(peak: float) -> float:
    """Peak level in dB relative to full scale (1.0); -inf for silence."""
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def dbfs_or_none(peak: float) -> float | None:
    """:func:`dbfs` rounded to 0.1 dB, None for silence (JSON has no -inf)."""
    return round(dbfs(peak), 1) if peak > 0 else None


def histogram_percentiles(hist: np.ndarray, bin_width: float, qs) -> list[float | None]:
    """Percentiles (0..100) of values binned in ``hist`` (bin k holds [k, k+1) * bin_width).

    Returns the upper edge of the bin where each percentile falls, so the result is never
    below the true value and at most one bin above it; None for an empty histogram.
    """
    total = int(hist.sum())
    if total == 0:
        return [None for _ in qs]
    cum = np.cumsum(hist)
    out = []
    for q in qs:
        rank = max(1, math.ceil(q / 100.0 * total))
        k = int(np.searchsorted(cum, rank))
        out.append((k + 1) * bin_width)
    return out


def xrun_counts(xruns: np.ndarray) -> dict:
    """{kind: count} for every kind in :data:`XRUN_KINDS`, plus ``total`` (callbacks that had
    any xrun flag except priming_output are counted per flag, so total is a sum of flags)."""
    d = {kind: int(xruns[i]) for i, kind in enumerate(XRUN_KINDS)}
    d["total"] = sum(v for k, v in d.items() if k != "priming_output")
    return d


def callback_time_latency_ms(adc_s: np.ndarray, dac_s: np.ndarray, now_s: np.ndarray):
    """Median (currentTime - inputBufferAdcTime) and (outputBufferDacTime - currentTime) in ms.

    These are what the host API says through the callback's timestamps; (None, None) where it
    gives none (all zero, as some host APIs do).
    """
    ok = (now_s != 0) & (adc_s != 0) & (dac_s != 0)
    if not ok.any():
        return None, None
    return (float(np.median(now_s[ok] - adc_s[ok])) * 1e3,
            float(np.median(dac_s[ok] - now_s[ok])) * 1e3)


def engine_latency(engine, samplerate: int) -> dict:
    """The engine's latency as plain numbers: samples (total, algorithmic, buffering) and ms."""
    return {
        "engine_samples": int(engine.latency_samples),
        "algorithmic_samples": int(engine.algorithmic_latency_samples),
        "buffering_samples": int(engine.buffering_latency_samples),
        "engine_ms": 1e3 * engine.latency_samples / samplerate,
    }


def latency_summary(engine_lat: dict, device_latency_s: tuple[float, float], samplerate: int,
                    callback_time_ms: tuple[float | None, float | None] = (None, None)) -> dict:
    """End-to-end latency: device input + device output (PortAudio's ``stream.latency``,
    seconds) + engine latency.

    ``device_samples`` is ``sum(stream.latency) * samplerate`` rounded: on a JACK loopback that
    is exactly the round trip that PortAudio adds (see docs/live.md for when it is not).
    """
    din, dout = (float(device_latency_s[0]), float(device_latency_s[1]))
    d = dict(engine_lat)
    d.update(
        device_input_ms=din * 1e3,
        device_output_ms=dout * 1e3,
        device_samples=int(round((din + dout) * samplerate)),
        total_samples=int(round((din + dout) * samplerate)) + engine_lat["engine_samples"],
        total_ms=(din + dout) * 1e3 + engine_lat["engine_ms"],
        callback_time_input_ms=callback_time_ms[0],
        callback_time_output_ms=callback_time_ms[1],
    )
    return d


def processing_stats(snap: dict) -> dict:
    """Engine processing time over the whole run, in ms: p50, p95, p99, max, mean.

    Percentiles come from the 1-microsecond histogram (upper bin edge); max and mean are exact.
    """
    count = snap["count"]
    bin_ms = snap["hist_bin_ns"] / 1e6
    p50, p95, p99 = histogram_percentiles(snap["proc_hist"], bin_ms, (50, 95, 99))
    if count == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    mx = snap["proc_max_ns"] / 1e6
    # A percentile's bin edge can pass the exact max; never report more than the max.
    return {"p50": min(p50, mx), "p95": min(p95, mx), "p99": min(p99, mx), "max": mx,
            "mean": snap["proc_sum_ns"] / count / 1e6}


def recent_processing_ms(snap: dict) -> tuple[float | None, float | None]:
    """(p50, p99) of engine processing time in ms over the entries of a (recent) snapshot."""
    if snap["proc_ns"].size == 0:
        return None, None
    p50, p99 = np.percentile(snap["proc_ns"], (50, 99))
    return float(p50) / 1e6, float(p99) / 1e6


def budget_ms(blocksize: int, samplerate: int, frames: np.ndarray | None = None) -> float | None:
    """Time one callback may take before the device runs dry: blocksize / samplerate, in ms.

    With blocksize 0 (the device chooses, sizes may vary) the median block of ``frames`` is used.
    """
    if blocksize:
        return 1e3 * blocksize / samplerate
    if frames is not None and frames.size:
        return 1e3 * float(np.median(frames)) / samplerate
    return None


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _pct(v: float | None, budget: float | None) -> str:
    return "-" if v is None or not budget else f"{100 * v / budget:.0f}%"


def status_line(recent: dict, total: dict, *, blocksize: int, samplerate: int, latency: dict,
                nan_events: int, bypass: bool, elapsed_s: float) -> str:
    """One status line for people.

    Args:
        recent: :meth:`CallbackRecorder.snapshot` of about the last second (for p50/p99 and
            the peak levels since the previous line).
        total: run totals (a snapshot; only its counters are used).
        latency: :func:`latency_summary`'s dict.
    """
    budget = budget_ms(blocksize, samplerate, recent["frames"])
    p50, p99 = recent_processing_ms(recent)
    mx = total["proc_max_ns"] / 1e6 if total["count"] else None
    x = total["xruns"]
    xr = f"xruns {int(total.get('xrun_events', 0))}"
    kinds = [f"{XRUN_SHORT[k]} {int(v)}" for k, v in enumerate(x) if v]
    if kinds:
        xr += " (" + ", ".join(kinds) + ")"
    pin = float(recent["peak_in"].max()) if recent["peak_in"].size else 0.0
    pout = float(recent["peak_out"].max()) if recent["peak_out"].size else 0.0
    cbt = ""
    if latency.get("callback_time_input_ms") is not None:
        cbt = (f" [cb time in {latency['callback_time_input_ms']:.1f} out "
               f"{latency['callback_time_output_ms']:.1f}]")
    return (f"{elapsed_s:6.1f}s cb {total['count']} | proc p50 {_fmt_ms(p50)} p99 {_fmt_ms(p99)} "
            f"max {_fmt_ms(mx)} ms of {_fmt_ms(budget)} ({_pct(p50, budget)}/{_pct(p99, budget)}/"
            f"{_pct(mx, budget)}) | {xr} | latency dev {latency['device_input_ms']:.1f}+"
            f"{latency['device_output_ms']:.1f}{cbt} + engine {latency['engine_samples']} smp "
            f"({latency['algorithmic_samples']}+{latency['buffering_samples']}) "
            f"{latency['engine_ms']:.1f} = {latency['total_ms']:.1f} ms | peak in "
            f"{dbfs(pin):.1f} out {dbfs(pout):.1f} dBFS | clip {total['clipped_samples']} | "
            f"NaN {nan_events}" + (" | BYPASS" if bypass else ""))


def status_values(recent: dict, total: dict, *, blocksize: int, samplerate: int, latency: dict,
                  nan_events: int, bypass: bool, elapsed_s: float) -> dict:
    """What the status line, the panel and OSC ``/status`` show, as plain numbers.

    Keys: ``elapsed_s``, ``callbacks``, ``budget_ms``, ``p50_ms`` / ``p99_ms`` (engine time
    over ``recent``, about the last second), ``max_ms`` (whole run), ``xrun_events``,
    ``xruns`` (flags by kind), ``engine_samples``, ``algorithmic_samples``,
    ``buffering_samples``, ``engine_ms``, ``device_input_ms``, ``device_output_ms``,
    ``total_ms``, ``peak_in_dbfs`` / ``peak_out_dbfs`` (over ``recent``; -inf for silence),
    ``clipped_samples``, ``nan_events``, ``bypass``. Arguments as for :func:`status_line`.
    """
    p50, p99 = recent_processing_ms(recent)
    pin = float(recent["peak_in"].max()) if recent["peak_in"].size else 0.0
    pout = float(recent["peak_out"].max()) if recent["peak_out"].size else 0.0
    return {
        "elapsed_s": float(elapsed_s), "callbacks": int(total["count"]),
        "budget_ms": budget_ms(blocksize, samplerate, recent["frames"]),
        "p50_ms": p50, "p99_ms": p99,
        "max_ms": total["proc_max_ns"] / 1e6 if total["count"] else None,
        "xrun_events": int(total.get("xrun_events", 0)),
        "xruns": {XRUN_SHORT[k]: int(v) for k, v in enumerate(total["xruns"]) if v},
        "engine_samples": int(latency["engine_samples"]),
        "algorithmic_samples": int(latency["algorithmic_samples"]),
        "buffering_samples": int(latency["buffering_samples"]),
        "engine_ms": float(latency["engine_ms"]),
        "device_input_ms": float(latency["device_input_ms"]),
        "device_output_ms": float(latency["device_output_ms"]),
        "total_ms": float(latency["total_ms"]),
        "peak_in_dbfs": dbfs(pin), "peak_out_dbfs": dbfs(pout),
        "clipped_samples": int(total["clipped_samples"]), "nan_events": int(nan_events),
        "bypass": bool(bypass),
    }


def build_report(snap: dict, *, config: dict, devices: dict, samplerate: int, blocksize: int,
                 channels: int, latency: dict, duration_s: float, nan_events: int,
                 **extra) -> dict:
    """The JSON-ready report of one live run (see docs/live.md for every field).

    Args:
        snap: :meth:`CallbackRecorder.snapshot` taken after the stream stopped.
        devices: {"input": {...}, "output": {...}} with index, name, hostapi.
        latency: :func:`latency_summary`'s dict.
        duration_s: wall-clock seconds from stream start to stop.
        extra: more top-level fields (stopped_by, error, engine stats, ...).
    """
    count = snap["count"]
    frames_total = int(snap["frames_total"])
    budget = budget_ms(blocksize, samplerate, snap["frames"])
    proc = processing_stats(snap)
    cb = snap["callback_ns"]
    report = {
        "config": config,
        "devices": devices,
        "samplerate": int(samplerate),
        "blocksize": int(blocksize),
        "channels": int(channels),
        "callbacks": int(count),
        "frames": frames_total,
        "duration_s": float(duration_s),
        "stream_time_s": frames_total / samplerate,
        "realtime_ratio": (frames_total / samplerate / duration_s) if duration_s > 0 else None,
        "xruns": xrun_counts(snap["xruns"]),
        "xrun_events": int(snap["xrun_events"]),
        "processing_ms": proc,
        "budget_ms": budget,
        "processing_pct_of_budget": {k: (None if v is None or not budget else 100 * v / budget)
                                     for k, v in proc.items() if k in ("p50", "p99", "max")},
        "callback_ms": {"p50": float(np.percentile(cb, 50)) / 1e6 if cb.size else None,
                        "p99": float(np.percentile(cb, 99)) / 1e6 if cb.size else None,
                        "max": float(cb.max()) / 1e6 if cb.size else None,
                        "window_callbacks": int(cb.size)},
        "latency": latency,
        "peaks_dbfs": {"input": dbfs_or_none(snap["peak_in_max"]),
                       "output": dbfs_or_none(snap["peak_out_max"])},
        "clipped_samples": int(snap["clipped_samples"]),
        "input_clipped_samples": int(snap["input_clipped_samples"]),
        "nan_events": int(nan_events),
        "output_nonfinite_samples": int(snap.get("output_nonfinite_samples", 0)),
        "output_nonfinite_events": int(snap.get("output_nonfinite_events", 0)),
    }
    report.update(extra)
    return report


SUMMARY_WIDTH = 80
"""Columns of the closing summary: a longer line continues on the next, indented."""


def summary(report: dict) -> str:
    """A few lines for people from :func:`build_report`'s dict, none wider than
    ``SUMMARY_WIDTH``: a longer line continues on the next, indented, between two of its
    values (a path longer than the width stays whole)."""
    import textwrap
    p = report["processing_ms"]
    lat = report["latency"]
    x = report["xruns"]
    kinds = [f"{k} {v}" for k, v in x.items() if k != "total" and v]
    nonfinite = report.get("output_nonfinite_samples", 0)
    lines = [
        [f"ran {report['duration_s']:.2f} s", f"(stopped by {report.get('stopped_by', '?')}):",
         f"{report['callbacks']} callbacks,", f"{report['frames']} frames"],
        ["stream:", f"{report['samplerate']} Hz,",
         f"blocksize {report['blocksize'] or 'device-chosen'},",
         f"budget {_fmt_ms(report['budget_ms'])} ms per callback"],
        ["processing ms:"] + [f"{k} {_fmt_ms(p[k])}" for k in ("p50", "p95", "p99", "max",
                                                                 "mean")],
        ["xruns:", f"{x['total']} flags in {report.get('xrun_events', 0)} events"]
        + _listed(kinds),
        ["latency:", f"{lat['total_ms']:.2f} ms ({lat['total_samples']} samples) =",
         f"device in {lat['device_input_ms']:.2f}", f"+ out {lat['device_output_ms']:.2f} ms",
         f"+ engine {lat['engine_ms']:.2f} ms ({lat['engine_samples']} samples:",
         f"algorithmic {lat['algorithmic_samples']}",
         f"+ buffering {lat['buffering_samples']})"],
        ["peaks dBFS:", f"in {_db_text(report['peaks_dbfs']['input'])},",
         f"out {_db_text(report['peaks_dbfs']['output'])};",
         f"clipped samples {report['clipped_samples']};",
         f"NaN events {report['nan_events']}" + (";" if nonfinite else "")]
        + ([f"NaN/Inf out {nonfinite}"] if nonfinite else []),
    ]
    if report.get("report_path"):
        lines.append(["report:", str(report["report_path"])])
    keep = "\N{NO-BREAK SPACE}"        # textwrap breaks at ASCII whitespace only
    return "\n".join(
        wrapped.replace(keep, " ")
        for items in lines
        for wrapped in textwrap.wrap(" ".join(item.replace(" ", keep) for item in items),
                                     SUMMARY_WIDTH, subsequent_indent="  ",
                                     break_long_words=False, break_on_hyphens=False))


def _listed(items: list[str]) -> list[str]:
    """``["a 1", "b 2"]`` -> ``["(a 1,", "b 2)"]``: a parenthesised list, one item each."""
    if not items:
        return []
    return [("(" if i == 0 else "") + item + (")" if i == len(items) - 1 else ",")
            for i, item in enumerate(items)]


def _db_text(v):
    return "-inf" if v is None else f"{v:.1f}"


# --- files -------------------------------------------------------------------------------------

def json_ready(o):
    """``o`` with numpy scalars/arrays made plain and non-finite floats made None (strict JSON)."""
    if isinstance(o, dict):
        return {str(k): json_ready(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_ready(v) for v in o]
    if isinstance(o, np.ndarray):
        return json_ready(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def write_report(path: str | os.PathLike, report: dict) -> None:
    """Write a report as strict JSON (non-finite floats become null), atomically: a temporary
    file in the same folder, then os.replace, so a reader never sees a half-written file."""
    from cosine_host.files import write_json_atomic
    write_json_atomic(path, json_ready(report))

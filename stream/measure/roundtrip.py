"""`latency roundtrip`: a log sweep through the live engine into a loopback, its delay found by
GCC-PHAT.

:func:`roundtrip` plays :func:`log_sweep` through cosine_host.live.session.LiveSession.play_record
(a cable, or JACK ports wired by the session) and finds the sweep in the recording with
:func:`estimate_delay` (:func:`gcc_phat` per channel); the measured round trip sits next to what
PortAudio reports for the device plus the engine latency. Samples are the unit; ms only in fields
named ``*_ms``.
"""
from __future__ import annotations

import math

import numpy as np

from cosine_host.errors import UserError
from cosine_host.measure.algorithmic import table

SWEEP_HZ = (100.0, 16000.0)      # log sweep range, capped at 0.45 * samplerate
SWEEP_AMPLITUDE = 0.25           # -12 dBFS: safe for a cable, audible through a speaker
SWEEP_FADE_S = 0.01              # raised-cosine fade in and out, so the sweep does not click
PHAT_FLOOR = 1e-2                # GCC-PHAT: cross-spectrum bins below this fraction of its peak
                                 # are attenuated instead of whitened (they hold no signal)
MIN_PEAK_TO_FLOOR_DB = 20.0      # a GCC-PHAT peak this far above its floor is the signal;
                                 # unrelated noise peaks at about 13 dB over 100k lags
SILENT_DB = -80.0                # recorded RMS this far below the played RMS: nothing came back


def log_sweep(samplerate: int, seconds: float = 0.25) -> np.ndarray:
    """Exponential sine sweep from 100 Hz to min(16 kHz, 0.45 * samplerate), float32 of shape
    (frames,), amplitude :data:`SWEEP_AMPLITUDE`, with raised-cosine fades."""
    f0, f1 = SWEEP_HZ[0], min(SWEEP_HZ[1], 0.45 * samplerate)
    frames = int(round(seconds * samplerate))
    t = np.arange(frames) / samplerate
    rate = math.log(f1 / f0)
    phase = 2 * math.pi * f0 * seconds / rate * (np.exp(t / seconds * rate) - 1)
    sweep = SWEEP_AMPLITUDE * np.sin(phase)
    fade = min(frames // 2, int(SWEEP_FADE_S * samplerate))
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    sweep[:fade] *= ramp
    sweep[frames - fade:] *= ramp[::-1]
    return sweep.astype(np.float32)


def gcc_phat(reference: np.ndarray, recording: np.ndarray, max_lag: int) -> np.ndarray:
    """Generalised cross-correlation with phase transform, for lags 0..max_lag (samples).

    ``r[lag]`` is large where ``recording[t + lag]`` holds ``reference[t]``. Whitening makes
    the peak one sample wide whatever the signal's spectrum; bins where the cross-spectrum is
    below :data:`PHAT_FLOOR` of its peak are attenuated instead, so bands the signal never
    excited (and the recording only holds noise in) do not blur it.

    Args:
        reference, recording: 1-d float arrays.
    Returns:
        float64 array of shape (max_lag + 1,).
    """
    nfft = 1 << (len(reference) + len(recording) - 1).bit_length()
    cross = np.fft.rfft(recording, nfft) * np.conj(np.fft.rfft(reference, nfft))
    magnitude = np.abs(cross)
    if magnitude.max() == 0:
        return np.zeros(max_lag + 1)
    weight = np.maximum(magnitude, PHAT_FLOOR * magnitude.max())
    return np.fft.irfft(cross / weight, nfft)[:max_lag + 1]


def estimate_delay(reference: np.ndarray, recording: np.ndarray, max_lag: int) -> dict:
    """Delay of ``reference`` in ``recording`` by GCC-PHAT, per recorded channel.

    Args:
        reference: (frames,) the signal that was played.
        recording: (frames, channels) what came back.
        max_lag: largest delay searched, in samples.
    Returns:
        {"delay_samples", "channel" (the channel with the clearest peak), "peak_to_floor_db"
        (its |peak| over the RMS of the correlation away from the peak), "channels":
        [{"delay_samples", "peak_to_floor_db"} per channel], "recorded_db" (recorded RMS
        relative to the reference's)}.
    Raises:
        UserError: the recording is silent, or nothing in it correlates with the reference
            clearly (:data:`MIN_PEAK_TO_FLOOR_DB`): no loopback.
    """
    ref_rms = float(np.sqrt(np.mean(np.square(reference, dtype=np.float64))))
    rec_rms = float(np.sqrt(np.mean(np.square(recording, dtype=np.float64))))
    recorded_db = 20 * math.log10(rec_rms / ref_rms) if rec_rms > 0 else -math.inf
    if recorded_db < SILENT_DB:
        raise UserError(f"nothing came back: the input recorded silence while the test signal "
                        f"played; connect the output to the input (a cable), or on JACK use "
                        f"--jack-loopback")
    guard = 16   # the whitened peak's main lobe is a few samples wide: keep it out of the floor
    channels = []
    for c in range(recording.shape[1]):
        r = np.abs(gcc_phat(reference, recording[:, c], max_lag))
        peak = int(r.argmax())
        height = float(r[peak])
        away = np.concatenate([r[:max(0, peak - guard)], r[peak + guard + 1:]])
        rms = float(np.sqrt(np.mean(np.square(away)))) if away.size else 0.0
        # finite for JSON: a silent channel is 0 dB, a perfect one at most 240 dB
        ratio = 20 * math.log10(height / max(rms, 1e-12 * height)) if height > 0 else 0.0
        channels.append({"delay_samples": peak, "peak_to_floor_db": ratio})
    best = max(range(len(channels)), key=lambda c: channels[c]["peak_to_floor_db"])
    ratio = channels[best]["peak_to_floor_db"]
    if not ratio >= MIN_PEAK_TO_FLOOR_DB:
        raise UserError(f"the recording does not contain the test signal (best GCC-PHAT peak "
                        f"{ratio:.1f} dB over its floor, {MIN_PEAK_TO_FLOOR_DB:.0f} dB needed; "
                        f"input level {recorded_db:.1f} dB re the signal): is the output really "
                        f"looped back to the input? On JACK use --jack-loopback")
    return {"delay_samples": channels[best]["delay_samples"], "channel": best,
            "peak_to_floor_db": ratio, "channels": channels, "recorded_db": recorded_db}


# --- roundtrip: through the live engine into a loopback ------------------------------------------

def _lower_median(values):
    """The median of an odd count; for an even count the lower middle value (a real measurement,
    so an exact round trip stays an integer)."""
    return sorted(values)[(len(values) - 1) // 2]


def roundtrip(cfg, input_device=None, output_device=None, repeats: int = 3, bypass: bool = False,
              jack_loopback: bool = False, on_status=None, sweep_s: float = 0.25,
              tail_s: float = 0.5) -> dict:
    """Play a log sweep through the live engine into a loopback ``repeats`` times and measure
    the round trip of each by GCC-PHAT.

    Each repeat opens a fresh stream (cosine_host.live.session.LiveSession.play_record): the engine
    gets the sweep instead of the device input, its output is played, and the input is recorded,
    sample aligned with what the engine was given. So the measured delay is engine latency + the
    device's round trip, which PortAudio reports as ``sum(stream.latency)``.

    Args:
        cfg: cosine_host.config.schema.Config (audio.* picks samplerate, blocksize, channels,
        devices). input_device, output_device: index or part of a name; None: cfg.audio's, then
        default. repeats: streams measured, >= 1. bypass: measure the engine's dry path (its latency
        is the same by design). jack_loopback: wire the stream's JACK output ports to its input
        ports. on_status: callable(line, final=False) for status lines while a stream runs. sweep_s:
        sweep length; tail_s: seconds recorded after it (longest round trip found).
    Returns:
        {"measured_samples": {"min", "median", "max"}, "measured_ms": {...}, "device_samples",
        "engine_samples", "expected_samples" (device + engine), "difference_samples" (median
        measured - expected), "difference_ms", "repeats": [...], "xruns" (total over repeats),
        "bypass", "jack_loopback", "samplerate", "blocksize", "devices", "table"}. The median
        of an even count is the lower middle value.
    Raises:
        UserError: devices or stream problems (from cosine_host.live.session), or no loopback: the
        input was
            silent or did not correlate with the sweep.
    """
    from cosine_host.live.session import LiveSession
    session = LiveSession(cfg, input_device=input_device, output_device=output_device,
                          jack_loopback=jack_loopback, bypass=bypass)
    sr = session.samplerate
    sweep = log_sweep(sr, sweep_s)
    tail = int(round(tail_s * sr))
    runs = []
    for k in range(repeats):
        recording = session.play_record(sweep, tail_samples=tail, on_status=on_status)
        report = session.last_report
        est = estimate_delay(sweep, recording, max_lag=tail)
        device = int(report["latency"]["device_samples"])
        engine = int(report["latency"]["engine_samples"])
        runs.append({"repeat": k + 1, "measured_samples": est["delay_samples"],
                     "device_samples": device, "engine_samples": engine,
                     "expected_samples": device + engine,
                     "difference_samples": est["delay_samples"] - device - engine,
                     "peak_to_floor_db": est["peak_to_floor_db"], "channel": est["channel"],
                     "channels": est["channels"], "recorded_db": est["recorded_db"],
                     "xruns": report["xruns"]["total"],
                     "device_latency_ms": [report["latency"]["device_input_ms"],
                                           report["latency"]["device_output_ms"]]})
    report = session.last_report
    measured = [r["measured_samples"] for r in runs]
    stats = {"min": min(measured), "median": _lower_median(measured), "max": max(measured)}
    device = _lower_median([r["device_samples"] for r in runs])
    engine = runs[0]["engine_samples"]
    expected = device + engine
    ms = 1e3 / sr
    result = {
        "measured_samples": stats,
        "measured_ms": {k: v * ms for k, v in stats.items()},
        "device_samples": device, "device_ms": device * ms,
        "engine_samples": engine, "engine_ms": engine * ms,
        "expected_samples": expected, "expected_ms": expected * ms,
        "difference_samples": stats["median"] - expected,
        "difference_ms": (stats["median"] - expected) * ms,
        "repeats": runs, "xruns": sum(r["xruns"] for r in runs),
        "bypass": bool(report["bypass"]), "jack_loopback": report.get("jack_loopback"),
        "samplerate": sr, "blocksize": session.blocksize, "channels": session.channels,
        "devices": report["devices"], "sweep_s": sweep_s,
    }
    rows = [{"what": f"repeat {r['repeat']} (channel {r['channel']})",
             "samples": r["measured_samples"], "ms": r["measured_samples"] * ms,
             "peak_db": r["peak_to_floor_db"], "xruns": r["xruns"]} for r in runs]
    rows += [{"what": what, "samples": v, "ms": v * ms} for what, v in (
        ("measured min", stats["min"]), ("measured median", stats["median"]),
        ("measured max", stats["max"]), ("device: round(sum(stream.latency) * rate)", device),
        ("engine" + (" (bypass)" if bypass else "") + f", blocksize "
         f"{session.blocksize or 'varying'}", engine),
        ("expected: device + engine", expected),
        ("difference: median - expected", result["difference_samples"]))]
    result["table"] = table([("what", "", ""), ("samples", "samples", "d"), ("ms", "ms", ".3f"),
                              ("peak_db", "GCC-PHAT peak/floor dB", ".1f"),
                              ("xruns", "xruns", "d")], rows)
    return result

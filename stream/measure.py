"""Latency tests: what `python run.py latency algorithmic|roundtrip|bench` measure.

- :func:`algorithmic`: impulses at several phases through the engine offline, block by block as
  a host would call it; the measured delay next to the engine's reported latency and the
  theoretical minimum (stream.latency), for each block size.
- :func:`roundtrip`: a log sweep played through the live engine into a loopback (a cable, or
  JACK ports wired by the session), recorded, and its delay found by GCC-PHAT; next to what
  PortAudio reports for the device plus the engine latency.
- :func:`bench`: the compute budget without a sound device: the time per ``engine.process``
  call per block size and torch device, against the real-time budget ``blocksize / samplerate``.

Every function returns a JSON-ready dict with a ``table`` ({"columns": [[key, heading,
format], ...], "rows": [...]}) that run.py prints. Samples are the unit; ms only in fields
named ``*_ms``.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from stream import latency as lat
from stream.engine import Engine
from stream.errors import UserError

VARYING_SEED = 0                 # block sizes for blocksize 0 come from this seeded generator
SWEEP_HZ = (100.0, 16000.0)      # log sweep range, capped at 0.45 * samplerate
SWEEP_AMPLITUDE = 0.25           # -12 dBFS: safe for a cable, audible through a speaker
SWEEP_FADE_S = 0.01              # raised-cosine fade in and out, so the sweep does not click
PHAT_FLOOR = 1e-2                # GCC-PHAT: cross-spectrum bins below this fraction of its peak
                                 # are attenuated instead of whitened (they hold no signal)
MIN_PEAK_TO_FLOOR_DB = 20.0      # a GCC-PHAT peak this far above its floor is the signal;
                                 # unrelated noise peaks at about 13 dB over 100k lags
SILENT_DB = -80.0                # recorded RMS this far below the played RMS: nothing came back
SAFE_BUDGET_FRACTION = 0.5       # bench: "safe" when p99 stays under half the budget


def parse_blocksizes(text: str) -> list[int]:
    """``"32,64,0"`` -> ``[32, 64, 0]`` (0 = varying block sizes); duplicates dropped, order kept.

    Raises:
        UserError: empty, not integers, or negative.
    """
    sizes: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise UserError(f"--blocksizes {text!r}: {part!r} is not a block size; give "
                            f"comma-separated integers >= 0 (0 = varying), e.g. 32,64,256")
        if int(part) not in sizes:
            sizes.append(int(part))
    if not sizes:
        raise UserError(f"--blocksizes {text!r}: no block size given; e.g. --blocksizes 32,64,256")
    return sizes


def _table(columns, rows) -> dict:
    return {"columns": [list(c) for c in columns], "rows": rows}


# --- algorithmic: impulses through the engine offline --------------------------------------------

def impulse_positions(frame_size: int, hop: int, blocksize: int) -> tuple[list[int], int, int]:
    """Where the test impulses go, how far after each one its response is searched, and the
    signal length (all in samples).

    Impulse k sits at ``k * slot + offset_k``: the offsets put impulses on the first, second,
    middle, last and a third sample of a block (of a hop when blocks vary); the slot, a whole
    number of blocks, is at least 3N + one block. So each response (at most 2N - 1 long,
    around the engine latency < N) is searched in the 2N samples after its impulse, which no
    neighbour's response reaches, and a delay of up to 2N would still be seen.
    """
    step = blocksize or hop
    slot = step * (math.ceil(3 * frame_size / step) + 1)
    offsets = (0, 1 % step, step // 2, step - 1, step // 3)
    return [k * slot + o for k, o in enumerate(offsets)], 2 * frame_size, len(offsets) * slot


def block_sizes(blocksize: int, hop: int, total: int) -> list[int]:
    """Call sizes that cover ``total`` samples: ``blocksize`` each, or for blocksize 0 sizes drawn
    from 0..2H by a seeded generator, with every fourth call an empty or a one-sample one (the
    sizes a host is least likely to test)."""
    if blocksize:
        return [blocksize] * (total // blocksize)
    rng = np.random.default_rng(VARYING_SEED)
    sizes, done = [], 0
    while done < total:
        k = len(sizes)
        b = (k // 4) % 2 if k % 4 == 3 else int(rng.integers(0, 2 * hop + 1))
        sizes.append(min(b, total - done))
        done += sizes[-1]
    return sizes


def run_blocks(engine: Engine, signal: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Feed ``signal`` (frames, C) float32 to ``engine.process`` in calls of ``sizes``; the
    concatenated output, same shape."""
    out = np.empty_like(signal)
    pos = 0
    for b in sizes:
        engine.process(signal[pos:pos + b], out=out[pos:pos + b])
        pos += b
    return out


def impulse_delays(output: np.ndarray, positions: list[int], window: int) -> list[int]:
    """Delay (samples) of each impulse's response: where |output| is largest in the ``window``
    samples from the impulse on, per impulse and channel (a flat list)."""
    delays = []
    for t in positions:
        response = np.abs(output[t:t + window])
        delays.extend(int(d) for d in response.argmax(axis=0))
    return delays


def _delay_fields(prefix: str, delays: list[int] | None) -> dict:
    """``{prefix}_samples`` (the delay when every impulse agrees, else None), ``{prefix}_range``
    ([min, max]) and ``{prefix}_text`` ("480" or "425..480") for one path's delays."""
    if delays is None:
        return {f"{prefix}_samples": None, f"{prefix}_range": None, f"{prefix}_text": None}
    lo, hi = min(delays), max(delays)
    return {f"{prefix}_samples": lo if lo == hi else None, f"{prefix}_range": [lo, hi],
            f"{prefix}_text": str(lo) if lo == hi else f"{lo}..{hi}"}


def algorithmic(cfg, blocksizes: list[int]) -> dict:
    """Measure the engine's delay offline, per block size, against its report and the minimum.

    For each block size B (0 = varying sizes) an engine gets five unit impulses at different
    phases (:func:`impulse_positions`) on every channel, in calls of B samples, through three
    paths:

    - *transform*: the config's model without its processors; an impulse passes it intact, so
      the largest output sample marks the delay exactly;
    - *bypass*: the engine's dry path (its latency is the same by design);
    - *processors*: the whole configured chain (only when processors are configured). Lossy
      processors (topk, heavy quantizing) smear an impulse, so this one is shown, not judged.

    A row passes when every impulse on every channel comes out exactly
    ``engine.latency_samples`` late in the transform and bypass paths, and that equals
    ``stream.latency.latency_samples(N, H, B, S)`` (S = frame.synthesis_size: S - gcd(B, H)).

    Returns:
        {"passed", "frame_size", "hop", "synthesis_size", "samplerate", "channels", "impulses",
        "processors", "rows", "table"}; each row: blocksize (0 = varying), blocks ("varying" or
        B), for each path P in (measured = transform, bypass, processors): P_samples (the delay
        when all impulses agree, else None), P_range ([min, max]), P_text; reported_samples,
        minimum_samples, algorithmic_samples and buffering_samples (the minimum's two parts),
        latency_ms (the minimum at cfg.audio.samplerate), passed, result ("ok" / "FAIL").
    """
    n, hop, sr = cfg.frame.size, cfg.frame.hop, cfg.audio.samplerate
    synthesis = cfg.frame.synthesis_samples
    bare = cfg.replace("processors=[]")
    rows = []
    for b in blocksizes:
        engine = Engine.from_config(bare, blocksize=b, samplerate=sr)
        positions, window, total = impulse_positions(n, hop, b)
        signal = np.zeros((total, engine.channels), np.float32)
        signal[positions] = 1.0
        sizes = block_sizes(b, hop, total)
        wet = impulse_delays(run_blocks(engine, signal, sizes), positions, window)
        engine.reset()
        engine.bypass = True
        dry = impulse_delays(run_blocks(engine, signal, sizes), positions, window)
        chain = None
        if cfg.processors:
            full = Engine.from_config(cfg, blocksize=b, samplerate=sr)
            chain = impulse_delays(run_blocks(full, signal, sizes), positions, window)
        # time-domain stages add their own delay to the frame host's minimum
        minimum = lat.latency_samples(n, hop, b, synthesis) + engine.effects_latency_samples
        reported = int(engine.latency_samples)
        passed = set(wet) == set(dry) == {reported} and reported == minimum
        rows.append({"blocksize": b, "blocks": str(b) if b else "varying",
                     **_delay_fields("measured", wet), **_delay_fields("bypass", dry),
                     **_delay_fields("processors", chain),
                     "reported_samples": reported, "minimum_samples": minimum,
                     "algorithmic_samples": lat.algorithmic_latency_samples(n, hop, synthesis),
                     "buffering_samples": lat.buffering_latency_samples(hop, b),
                     "stages_samples": engine.effects_latency_samples,
                     "latency_ms": 1e3 * minimum / sr, "passed": passed,
                     "result": "ok" if passed else "FAIL"})
    columns = [("blocks", "blocksize", ""), ("measured_text", "measured", ""),
               ("bypass_text", "bypass", "")]
    if cfg.processors:
        columns.append(("processors_text", "with processors", ""))
    columns += [("reported_samples", "reported", "d"), ("minimum_samples", "minimum", "d"),
                ("algorithmic_samples", "algorithmic", "d"),
                ("buffering_samples", "buffering", "d"),
                ("latency_ms", "ms", ".2f"), ("result", "result", "")]
    return {"passed": all(r["passed"] for r in rows), "frame_size": n, "hop": hop,
            "synthesis_size": synthesis,
            "samplerate": sr, "channels": cfg.audio.channels, "impulses": len(positions),
            "processors": [dict(p) for p in cfg.processors], "rows": rows,
            "table": _table(columns, rows)}


# --- GCC-PHAT delay estimation -------------------------------------------------------------------

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

    Each repeat opens a fresh stream (stream.live.LiveSession.play_record): the engine gets the
    sweep instead of the device input, its output is played, and the input is recorded, sample
    aligned with what the engine was given. So the measured delay is engine latency + the
    device's round trip, which PortAudio reports as ``sum(stream.latency)``.

    Args:
        cfg: stream.config.Config (audio.* picks samplerate, blocksize, channels, devices).
        input_device, output_device: index or part of a name; None: cfg.audio's, then default.
        repeats: streams measured, >= 1.
        bypass: measure the engine's dry path (its latency is the same by design).
        jack_loopback: wire the stream's JACK output ports to its input ports.
        on_status: callable(line, final=False) for status lines while a stream runs.
        sweep_s: sweep length; tail_s: seconds recorded after it (longest round trip found).
    Returns:
        {"measured_samples": {"min", "median", "max"}, "measured_ms": {...}, "device_samples",
        "engine_samples", "expected_samples" (device + engine), "difference_samples" (median
        measured - expected), "difference_ms", "repeats": [...], "xruns" (total over repeats),
        "bypass", "jack_loopback", "samplerate", "blocksize", "devices", "table"}. The median
        of an even count is the lower middle value.
    Raises:
        UserError: devices or stream problems (from stream.live), or no loopback: the input was
            silent or did not correlate with the sweep.
    """
    from stream.live import LiveSession
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
    result["table"] = _table([("what", "", ""), ("samples", "samples", "d"), ("ms", "ms", ".3f"),
                              ("peak_db", "GCC-PHAT peak/floor dB", ".1f"),
                              ("xruns", "xruns", "d")], rows)
    return result


# --- bench: time per engine.process call ---------------------------------------------------------

BENCH_DEVICES = ("cpu", "cuda")


def _device_problem(name: str) -> str | None:
    """Why torch device ``name`` (one of BENCH_DEVICES) cannot be benchmarked here, or None."""
    if name == "cuda" and not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


def bench(cfg, blocksizes: list[int], devices: list[str], seconds: float = 2.0,
          progress=None) -> dict:
    """Time ``engine.process`` per call for each block size and torch device.

    Each (device, B) runs ``ceil(seconds * samplerate / B)`` calls on noise after a warm-up of
    at least 2N samples (first calls allocate), timing each call with ``time.perf_counter_ns``
    (CUDA calls include their synchronisation: ``process`` returns host data).

    Args:
        blocksizes: fixed block sizes > 0.
        devices: torch device names ("cpu", "cuda"); one that is not available here gets one
            row saying so (status "unavailable", the reason in ``note``) instead of numbers.
        seconds: audio seconds processed per (device, B).
        progress: callable(done, total) over the (device, B) pairs measured, or None.
    Returns:
        {"devices": {name: {"available", "reason"}}, "smallest_safe_blocksize": {name: B or
        None}, "blocksizes", "rows": [...], "samplerate", "channels", "seconds", "torch",
        "threads", "table"}; each row: device, blocksize, status ("ok" / "unavailable"), calls,
        budget_ms (B / samplerate), p50_ms, p95_ms, p99_ms, max_ms, mean_ms, p50_pct_of_budget,
        p99_pct_of_budget, max_pct_of_budget, safe (p99 < half the budget), safe_text,
        latency_samples, latency_ms, note.
        ``smallest_safe_blocksize`` is the smallest B benchmarked whose p99 stays under half the
        budget (None if none does or the device is unavailable).
    Raises:
        UserError: a block size of 0 (a budget needs a fixed size), a device name that is not
            one of BENCH_DEVICES (a typo is an error, not a row), or no device at all.
    """
    unknown = [d for d in devices if d not in BENCH_DEVICES]
    if unknown or not devices:
        what = f"unknown device {unknown[0]!r}" if unknown else "no device given"
        raise UserError(f"--device: {what}; allowed: {', '.join(BENCH_DEVICES)} "
                        f"(comma-separated, e.g. --device cpu,cuda)")
    if any(b <= 0 for b in blocksizes):
        raise UserError("bench needs fixed block sizes > 0 (a budget is blocksize / samplerate); "
                        "drop 0 from --blocksizes")
    sr, channels = cfg.audio.samplerate, cfg.audio.channels
    rng = np.random.default_rng(0)
    problems = {name: _device_problem(name) for name in devices}
    rows, safe = [], {}
    total, done = len(blocksizes) * sum(p is None for p in problems.values()), 0
    for name, problem in problems.items():
        if problem is not None:
            rows.append({"device": name, "blocksize": None, "status": "unavailable",
                         "safe": None, "note": problem})
            safe[name] = None
            continue
        for b in blocksizes:
            rows.append(_bench_one(cfg, name, b, seconds, rng))
            done += 1
            if progress is not None:
                progress(done, total)
        fits = [r["blocksize"] for r in rows if r["device"] == name and r["safe"]]
        safe[name] = min(fits) if fits else None
    for r in rows:
        r["safe_text"] = "unavailable" if r["status"] == "unavailable" else \
            ("yes" if r["safe"] else "no")
        r.setdefault("note", "")
    columns = [("device", "device", ""), ("blocksize", "blocksize", "d"),
               ("budget_ms", "budget ms", ".3f"), ("p50_ms", "p50", ".3f"),
               ("p95_ms", "p95", ".3f"), ("p99_ms", "p99", ".3f"), ("max_ms", "max", ".3f"),
               ("mean_ms", "mean", ".3f"), ("p99_pct_of_budget", "p99 %budget", ".1f"),
               ("safe_text", "p99 < budget/2", ""), ("latency_ms", "latency ms", ".2f"),
               ("note", "", "")]
    status = {name: {"available": p is None, "reason": p} for name, p in problems.items()}
    return {"devices": status, "smallest_safe_blocksize": safe, "blocksizes": list(blocksizes),
            "rows": rows, "samplerate": sr, "channels": channels, "seconds": seconds,
            "frame_size": cfg.frame.size, "hop": cfg.frame.hop,
            "synthesis_size": cfg.frame.synthesis_samples, "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "safe_fraction_of_budget": SAFE_BUDGET_FRACTION, "table": _table(columns, rows)}


def _bench_one(cfg, device: str, blocksize: int, seconds: float, rng) -> dict:
    """One (device, blocksize) measurement: the per-call time distribution in ms."""
    sr, channels = cfg.audio.samplerate, cfg.audio.channels
    engine = Engine.from_config(cfg, blocksize=blocksize, samplerate=sr, device=device)
    calls = max(1, math.ceil(seconds * sr / blocksize))
    warmup = max(8, math.ceil(2 * cfg.frame.size / blocksize))
    # A ring of distinct noise blocks: real data without allocating per call.
    ring = (0.1 * rng.standard_normal((16, blocksize, channels))).astype(np.float32)
    out = np.empty((blocksize, channels), np.float32)
    for i in range(warmup):
        engine.process(ring[i % 16], out=out)
    times_ns = np.empty(calls, np.int64)
    for i in range(calls):
        block = ring[i % 16]
        t0 = time.perf_counter_ns()
        engine.process(block, out=out)
        times_ns[i] = time.perf_counter_ns() - t0
    ms = times_ns / 1e6
    p50, p95, p99 = (float(v) for v in np.percentile(ms, (50, 95, 99)))
    budget = 1e3 * blocksize / sr
    return {"device": device, "blocksize": blocksize, "status": "ok", "calls": calls,
            "budget_ms": budget, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "max_ms": float(ms.max()), "mean_ms": float(ms.mean()),
            "p50_pct_of_budget": 100 * p50 / budget, "p99_pct_of_budget": 100 * p99 / budget,
            "max_pct_of_budget": 100 * float(ms.max()) / budget,
            "safe": p99 < SAFE_BUDGET_FRACTION * budget,
            "latency_samples": int(engine.latency_samples),
            "latency_ms": 1e3 * engine.latency_samples / sr}

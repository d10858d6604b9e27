"""`latency bench`: the compute budget without a sound device.

:func:`bench` times each ``engine.process`` call per block size and torch device, against the
real-time budget ``blocksize / samplerate``, and names the smallest block size whose p99 stays
under :data:`SAFE_BUDGET_FRACTION` of it. Times in ms, in fields named ``*_ms``.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from cosine_host.engine.engine import Engine
from cosine_host.errors import UserError
from cosine_host.measure.algorithmic import table

SAFE_BUDGET_FRACTION = 0.5       # bench: "safe" when p99 stays under half the budget
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
    check_seconds(seconds, min(blocksizes, default=1), sr)
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
               ("safe_text", "p99 < budget/2", ""), ("latency_ms", "latency ms", ".2f")]
    if any(r["note"] for r in rows):        # only an unavailable device has a note
        columns.append(("note", "note", ""))
    status = {name: {"available": p is None, "reason": p} for name, p in problems.items()}
    return {"devices": status, "smallest_safe_blocksize": safe, "blocksizes": list(blocksizes),
            "rows": rows, "samplerate": sr, "channels": channels, "seconds": seconds,
            "frame_size": cfg.frame.size, "hop": cfg.frame.hop,
            "synthesis_size": cfg.frame.synthesis_samples, "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "safe_fraction_of_budget": SAFE_BUDGET_FRACTION, "table": table(columns, rows)}


TIMING_BYTES_PER_CALL = 8
"""Memory per timed call: one int64 time in ns."""


def check_seconds(seconds: float, blocksize: int, samplerate: int,
                  available: int | None = None) -> None:
    """Refuse ``seconds`` (audio seconds per (device, B)) that is not finite or whose timing
    array (``TIMING_BYTES_PER_CALL`` per call of the smallest ``blocksize``) would not fit in
    ``available`` bytes (None: cosine_host.config.memory.memory_available_bytes(); no check
    when unknown): a one-line UserError saying what to give instead."""
    from cosine_host.config.memory import memory_available_bytes
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"--seconds {seconds}: give a finite number of audio seconds > 0 "
                        f"(default 2)")
    calls = math.ceil(seconds * samplerate / blocksize)
    need = calls * TIMING_BYTES_PER_CALL
    if available is None:
        available = memory_available_bytes()
    if available is not None and need > available / 2:
        raise UserError(f"--seconds {seconds:g}: {calls} calls of block size {blocksize} at "
                        f"{samplerate} Hz need {need / 1e9:.1f} GB to hold their times but "
                        f"{available / 1e9:.1f} GB are available; give fewer seconds (a few "
                        f"seconds give stable percentiles; default 2)")


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

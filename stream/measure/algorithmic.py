"""Latency tests: what `python run.py latency algorithmic|roundtrip|bench` measure.

- :func:`algorithmic` (here): impulses at several phases through the engine offline, block by
  block as a host would call it; the measured delay next to the engine's reported latency and
  the theoretical minimum (cosine_host.engine.latency), for each block size.
- :func:`cosine_host.measure.roundtrip.roundtrip`: a log sweep played through the live engine into a
  loopback (a cable, or JACK ports wired by the session), recorded, and its delay found by
  GCC-PHAT; next to what PortAudio reports for the device plus the engine latency.
- :func:`cosine_host.measure.bench.bench`: the compute budget without a sound device: the time per
  ``engine.process`` call per block size and torch device, against the real-time budget
  ``blocksize / samplerate``.

Every function returns a JSON-ready dict with a ``table`` ({"columns": [[key, heading,
format], ...], "rows": [...]}, made by :func:`table`) that run.py prints; `algorithmic` and
`bench` read ``--blocksizes`` with :func:`parse_blocksizes`. Samples are the unit; ms only in fields
named ``*_ms``.
"""
from __future__ import annotations

import math

import numpy as np

from cosine_host.engine import latency as lat
from cosine_host.engine.engine import Engine
from cosine_host.errors import UserError

VARYING_SEED = 0                 # block sizes for blocksize 0 come from this seeded generator


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


def table(columns, rows) -> dict:
    """A result's ``table``: ``columns`` as (key, heading, format) triples, ``rows`` dicts."""
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

    A row passes when every impulse on every channel comes out exactly ``engine.latency_samples``
    late in the transform and bypass paths, and that equals
    ``cosine_host.engine.latency.latency_samples(N, H, B, S)`` (S = frame.synthesis_size: S - gcd(B,
    H)).

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
            "table": table(columns, rows)}

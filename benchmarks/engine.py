"""Engine benchmark (issue 3): time per ``engine.process`` call for block sizes 32..4096, and
whole-signal throughput next to the raw matrix products of the same frames.

    python benchmarks/engine.py [--repeats 30] [--seconds 10] [--channels 2]

Everything is measured side by side in one run: rounds in which every variant runs once, in
rotated order, medians over rounds (the machine may be shared and noisy; ratios of
interleaved measurements survive that better than absolute times).

Per call (default config: N = M = 512, H = 256, sqrt-Hann, 48 kHz, 2 channels):

- ``median`` / ``p99``: seconds per ``engine.process(block, out=out)`` over every call of every
  round; ``p99 % budget``: p99 as a share of the block's real-time budget B / samplerate.
- ``raw``: the two matrix products (numpy/BLAS, the CPU engine's own; windows folded in) of
  exactly the frames each call processes (C channels x the frames that became ready in that
  call), replayed call by call; ``engine/raw`` is the ratio of the means per call: what the
  engine costs on top of its matrix products (framing, overlap-add, queues, checks).
- Two parameter states: ``trained`` (parameters perturbed: the matrix-product path) and
  ``dct init`` (the FFT fast path, chosen automatically).

Whole signal (``--seconds`` of mono noise, ``engine.render``): real-time factor (audio seconds
per wall second) of the engine next to the raw matrix products of the same frames (numpy's,
scipy's and torch's BLAS, into preallocated buffers), for both parameter states.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
import stream  # noqa: E402
from stream.engine import Engine  # noqa: E402
from benchmarks.peers import raw_products  # noqa: E402
from benchmarks.timing import SETTLE_S, interleaved, machine_line  # noqa: E402
BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)


def perturb(model, scale=1e-3, seed=0):
    """'Trained' parameters: every parameter moved a little off its init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def engine_for(cfg, blocksize, channels, trained):
    engine = Engine.from_config(cfg, blocksize=blocksize, channels=channels, device="cpu")
    if trained:
        perturb(engine.model)
        engine.process(np.zeros((blocksize or 256, channels), np.float32))   # switch path now
        engine.reset()
    return engine


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def per_call(cfg, channels, repeats, out):
    sr = cfg.audio.samplerate
    rng = np.random.default_rng(0)
    rows = []
    for trained in (True, False):
        setups = {}
        for b in BLOCKSIZES:
            engine = engine_for(cfg, b, channels, trained)
            k = engine._kernel
            calls = max(8, 8192 // b)                 # at least 8 calls and 8192 samples a round
            signal = (0.1 * rng.standard_normal((calls * b, channels))).astype(np.float32)
            # the frame counts of each call of a round, for the raw replay
            counts = []
            for i in range(calls):
                before = engine.frames_processed
                engine.process(signal[i * b:(i + 1) * b])
                counts.append((engine.frames_processed - before) // channels)
            engine.reset()
            frames = {c: (0.1 * rng.standard_normal((c * channels, engine.frame_size))).astype(
                np.float32) for c in set(counts)}
            setups[b] = (engine, k, signal, calls, counts, frames, np.empty((b, channels), np.float32))
        times = {b: ([], []) for b in BLOCKSIZES}
        order = list(BLOCKSIZES)
        for r in range(repeats):
            order = order[1:] + order[:1]
            for b in order:
                time.sleep(SETTLE_S)
                engine, k, signal, calls, counts, frames, buf = setups[b]
                eng_t, raw_t = times[b]
                engine.reset()
                for i in range(calls):
                    block = signal[i * b:(i + 1) * b]
                    t = time.perf_counter()
                    engine.process(block, out=buf)
                    eng_t.append(time.perf_counter() - t)
                for c in counts:
                    t = time.perf_counter()
                    if c:
                        (frames[c] @ k.enc_t) @ k.dec
                    raw_t.append(time.perf_counter() - t)
        for b in BLOCKSIZES:
            eng_t, raw_t = times[b]
            engine = setups[b][0]
            budget = b / sr
            rows.append((("trained" if trained else "dct init"), engine.transform, b,
                         statistics.median(eng_t), percentile(eng_t, 99), budget,
                         statistics.fmean(eng_t), statistics.fmean(raw_t),
                         percentile(raw_t, 99)))
    print(f"\n## engine.process per call: N = M = {cfg.frame.size}, H = {cfg.frame.hop}, "
          f"{channels} channels, {sr} Hz, {repeats} rounds", file=out)
    print(f"{'params':9} {'path':10} {'B':>5} {'median us':>10} {'p99 us':>9} {'p99 % budget':>13} "
          f"{'mean us':>8} {'raw mean us':>12} {'raw p99 us':>11} {'engine/raw':>10}", file=out)
    for state, path, b, m, p99, budget, mean, raw_mean, raw_p99 in rows:
        print(f"{state:9} {path:10} {b:5d} {1e6 * m:10.1f} {1e6 * p99:9.1f} "
              f"{100 * p99 / budget:12.2f}% {1e6 * mean:8.1f} {1e6 * raw_mean:12.1f} "
              f"{1e6 * raw_p99:11.1f} {mean / raw_mean:10.2f}", file=out)
    return rows


def whole_signal(cfg, seconds, repeats, out):
    sr = cfg.audio.samplerate
    total = int(seconds * sr)
    x = (0.1 * np.random.default_rng(1).standard_normal((total, 1))).astype(np.float32)
    engines = {"trained": engine_for(cfg, 0, 1, True), "dct init": engine_for(cfg, 0, 1, False)}
    n, hop = cfg.frame.size, cfg.frame.hop
    e = engines["trained"]
    # frames the engine computes for the whole signal: prefill N - H, signal, latency flush
    count = (n - hop + total + e.latency_samples - n) // hop + 1
    frames = (0.1 * np.random.default_rng(2).standard_normal((count, n))).astype(np.float32)
    k = e._kernel
    fns = {
        "engine trained": lambda: engines["trained"].render(x),
        "engine dct init": lambda: engines["dct init"].render(x),
    }
    fns.update(raw_products(frames, k.enc_t, k.dec, np.empty((count, k.m), np.float32),
                            np.empty((count, n), np.float32)))
    for f in fns.values():
        f()
    names = list(fns)
    med = {k: statistics.median(v) for k, v in interleaved(fns, repeats).items()}
    raw = min(t for name, t in med.items() if name.startswith("raw"))
    print(f"\n## whole signal: {seconds:g} s mono at {sr} Hz = {count} frames of {n}, "
          f"engine.render (default chunks), {repeats} rounds", file=out)
    print(f"{'variant':18} {'path':10} {'median ms':>10} {'RTF':>8} {'/ raw matmul':>13}", file=out)
    for name in names:
        path = engines[name[7:]].transform if name.startswith("engine") else "-"
        print(f"{name:18} {path:10} {1e3 * med[name]:10.2f} {seconds / med[name]:8.0f} "
              f"{med[name] / raw:13.2f}", file=out)
    print(f"engine trained / raw matmul (fastest BLAS): "
          f"{med['engine trained'] / raw:.3f}  (target <= 1.10)", file=out)
    print(f"matmul path / fast path: {med['engine trained'] / med['engine dct init']:.2f}x "
          f"(target >= 2)", file=out)
    return med


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30, help="rounds (default 30)")
    ap.add_argument("--seconds", type=float, default=10.0, help="whole-signal length (default 10)")
    ap.add_argument("--channels", type=int, default=2, help="channels per call (default 2)")
    ap.add_argument("--skip-per-call", action="store_true")
    ap.add_argument("--skip-whole", action="store_true")
    args = ap.parse_args(argv)
    cfg = stream.load_config(overrides=["model.device=cpu"])
    print(machine_line("engine"))
    if not args.skip_per_call:
        per_call(cfg, args.channels, args.repeats, sys.stdout)
    if not args.skip_whole:
        whole_signal(cfg, args.seconds, max(5, args.repeats // 2), sys.stdout)
    print(f"# load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

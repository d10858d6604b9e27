"""Engine benchmark (issue 3): time per ``engine.process`` call for block sizes 32..4096, next
to the raw matrix products of the same frames. (Whole signals: benchmarks/peers.py.)

    python benchmarks/engine.py [--repeats 30] [--channels 2]

Everything is measured side by side in one run: rounds in which every variant runs once, in
rotated order, medians over rounds (the machine may be shared and noisy; ratios of
interleaved measurements survive that better than absolute times).

Per call (default config: N = M = 512, H = 256, sqrt-Hann, 48 kHz, 2 channels):

- ``median`` / ``p99``: seconds per ``engine.process(block, out=out)`` over every call of every
  round; ``p99 % budget``: p99 as a share of the block's real-time budget B / samplerate.
- ``raw``: the transform alone on exactly the frames each call processes (C channels x the
  frames that became ready in that call), replayed call by call into preallocated buffers:
  on the matrix path the two matrix products (numpy/BLAS, the CPU engine's own; windows folded
  in), on the DCT path pocketfft's DCT-III then DCT-II (cosine_host.engine.dct.ScipyDCT, the
  engine's own); ``engine/raw`` is the ratio of the means per call: what the engine costs on
  top of its transform (windows, framing, overlap-add, queues, checks).
- Two parameter states: ``trained`` (parameters perturbed: the matrix-product path) and
  ``dct init`` (the FFT fast path, chosen automatically).
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
import cosine_host  # noqa: E402
from cosine_host.engine.engine import Engine  # noqa: E402
from cosine_host.engine.dct import ScipyDCT  # noqa: E402
from benchmarks.timing import SETTLE_S, machine_line  # noqa: E402
from tests.helpers import perturb  # noqa: E402
BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)


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
            if engine.transform == "dct":
                dct = ScipyDCT()
                bufs = {c: np.empty_like(f) for c, f in frames.items()}

                def raw(c, frames=frames, bufs=bufs, dct=dct):
                    dct.dct2(dct.dct3(frames[c], bufs[c]), bufs[c])
            else:
                enc_t, dec = k.enc_t, k.dec
                bufs = {c: (np.empty((c * channels, enc_t.shape[1]), np.float32),
                            np.empty((c * channels, dec.shape[1]), np.float32)) for c in frames}

                def raw(c, frames=frames, bufs=bufs, enc_t=enc_t, dec=dec):
                    coeffs, decoded = bufs[c]
                    np.matmul(np.matmul(frames[c], enc_t, out=coeffs), dec, out=decoded)
            setups[b] = (engine, raw, signal, calls, counts, np.empty((b, channels), np.float32))
        times = {b: ([], []) for b in BLOCKSIZES}
        order = list(BLOCKSIZES)
        for r in range(repeats):
            order = order[1:] + order[:1]
            for b in order:
                time.sleep(SETTLE_S)
                engine, raw, signal, calls, counts, buf = setups[b]
                eng_t, raw_t = times[b]
                engine.reset()
                for i in range(calls):
                    block = signal[i * b:(i + 1) * b]
                    t = time.perf_counter()
                    engine.process(block, out=buf)
                    eng_t.append(time.perf_counter() - t)
                time.sleep(SETTLE_S)           # the replay starts as cold as the engine did
                for c in counts:
                    t = time.perf_counter()
                    if c:
                        raw(c)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30, help="rounds (default 30)")
    ap.add_argument("--channels", type=int, default=2, help="channels per call (default 2)")
    args = ap.parse_args(argv)
    cfg = cosine_host.load_config(overrides=["model.device=cpu"])
    print(machine_line("engine"))
    per_call(cfg, args.channels, args.repeats, sys.stdout)
    print(f"# load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

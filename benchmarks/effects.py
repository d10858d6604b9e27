"""Effect stages benchmark: what ``pre``/``post`` chains cost per engine call, against the budget.

    python benchmarks/effects.py [--repeats 15] [--calls 400]

Times whole ``engine.process(block, out=out)`` calls of the default config (N = 512, H = 256,
48 kHz, 2 channels) at B = 256 and B = 32, one engine per row:

- ``none``: no stages (the engine as it was without this feature);
- ``empty``: an engine given two empty EffectChains explicitly (must cost nothing: it takes
  the same path as ``none``);
- ``compressor + limiter``: pedalboard's Compressor before the encoder, Limiter after the
  overlap-add;
- ``gain -6 / +6``: a Gain on each side (the cheapest stage: what a stage costs by itself).

Rows run ``--calls`` calls once per round, in an order shuffled from round to round; p50 and
p99 are taken per round and the table shows their medians over the rounds. ``x none`` is the
p50 ratio to ``none`` at the same B, ``% budget`` p50 over the block's duration (B / 48 kHz).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)
from benchmarks.timing import machine_line  # noqa: E402
import cosine_host  # noqa: E402
from cosine_host.engine import effects  # noqa: E402
from cosine_host.engine.engine import Engine  # noqa: E402

SR, CHANNELS = 48000, 2
CHAINS = {
    "none": None,
    "empty": ([], []),
    "compressor + limiter": ([{"type": "pedalboard.Compressor", "threshold_db": -20, "ratio": 4}],
                             [{"type": "pedalboard.Limiter", "threshold_db": -3}]),
    "gain -6 / +6": ([{"type": "pedalboard.Gain", "gain_db": -6}],
                     [{"type": "pedalboard.Gain", "gain_db": 6}]),
}


def make_engine(blocksize: int, chains) -> Engine:
    cfg = cosine_host.load_config(overrides=[f"audio.blocksize={blocksize}",
                                        f"audio.channels={CHANNELS}", "model.device=cpu"])
    if chains is None:
        return Engine.from_config(cfg)
    pre, post = (effects.build_chain(specs, where) for specs, where in zip(chains, effects.SECTIONS))
    base = Engine.from_config(cfg)
    return Engine(base.model, cfg.frame.hop, cfg.frame.window, blocksize=blocksize,
                  channels=CHANNELS, samplerate=SR, pre=pre, post=post)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15, help="rounds (default 15)")
    ap.add_argument("--calls", type=int, default=400, help="calls per row per round (default 400)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(machine_line("effects"))
    rng = np.random.default_rng(0)
    rows = []
    for blocksize in (256, 32):
        engines = {name: make_engine(blocksize, chains) for name, chains in CHAINS.items()}
        blocks = [(0.3 * rng.standard_normal((blocksize, CHANNELS))).astype(np.float32)
                  for _ in range(64)]
        out = np.empty_like(blocks[0])
        p50 = {name: [] for name in engines}
        p99 = {name: [] for name in engines}
        names = list(engines)
        for _ in range(args.repeats):
            for i in rng.permutation(len(names)):
                engine = engines[names[i]]
                times = np.empty(args.calls)
                for k in range(args.calls):
                    block = blocks[k % len(blocks)]
                    t = time.perf_counter()
                    engine.process(block, out=out)
                    times[k] = time.perf_counter() - t
                p50[names[i]].append(np.percentile(times, 50))
                p99[names[i]].append(np.percentile(times, 99))
        budget_us = 1e6 * blocksize / SR
        base = np.median(p50["none"])
        for name in names:
            med50, med99 = np.median(p50[name]), np.median(p99[name])
            rows.append((blocksize, name, 1e6 * med50, 1e6 * med99, med50 / base,
                         100 * 1e6 * med50 / budget_us, budget_us,
                         engines[name].latency_samples))
    print(f"{'B':>4}  {'chain':<22} {'p50 us':>8} {'p99 us':>8} {'x none':>7} "
          f"{'% budget':>8} {'budget us':>9} {'latency':>7}")
    for b, name, a, c, ratio, pct, budget, latency in rows:
        print(f"{b:>4}  {name:<22} {a:8.1f} {c:8.1f} {ratio:7.2f} {pct:8.1f} {budget:9.0f} "
              f"{latency:7d}")


if __name__ == "__main__":
    main()

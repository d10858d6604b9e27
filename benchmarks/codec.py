"""The codec processor in the engine's call: what it adds to one block, side by side.

    .venv/bin/python benchmarks/codec.py [--calls 400] [--rounds 5] [--blocksize 256]

``engine.process(block, out=out)`` of the default transform (N = M = 512, H = 256, 48 kHz,
2 channels) at B = 256 (one frame per call) on the built-in music, for the chains identity
(no processors), ``quantize 8`` and ``codec`` at 24 and 64 kbps, one torch thread. Each round
runs every variant's calls in a shuffled order; p50 and p99 are taken per round and the table
shows their medians over the rounds, with ``x identity`` (p50 over the identity's p50) and the
block's budget (B / 48 kHz) for scale.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from cosine_host.config.schema import load_config
from cosine_host.engine.engine import Engine
from cosine_host.lab.material import synthesize_material

VARIANTS = {"identity": "[]", "quantize 8": "[{type: quantize, bits: 8}]",
            "codec 24 kbps": "[{type: codec, kbps: 24}]",
            "codec 64 kbps": "[{type: codec, kbps: 64}]"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blocksize", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_start = os.getloadavg()[0]
    b = args.blocksize
    signal = synthesize_material()[:, :2].astype(np.float32)
    engines = {name: Engine.from_config(load_config(None, [f"processors={chain}"]),
                                        blocksize=b, channels=2, samplerate=48000)
               for name, chain in VARIANTS.items()}
    out = np.empty((b, 2), np.float32)
    position = dict.fromkeys(engines, 0)
    results = {name: [] for name in engines}
    rng = np.random.default_rng(0)
    for _ in range(args.rounds):
        for name in rng.permutation(list(engines)):
            engine, times = engines[name], np.empty(args.calls)
            for i in range(args.calls):
                start = position[name] % (signal.shape[0] - b)
                block = signal[start:start + b]
                t0 = time.perf_counter()
                engine.process(block, out=out)
                times[i] = time.perf_counter() - t0
                position[name] += b
            results[name].append((np.percentile(times, 50), np.percentile(times, 99)))
    budget_ms = 1000.0 * b / 48000
    base = np.median([p50 for p50, _ in results["identity"]])
    print(f"B = {b} (budget {budget_ms:.2f} ms per call), 2 channels, N = M = 512, H = 256; "
          f"load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end "
          f"({os.cpu_count()} CPUs)")
    print(f"{'chain':<16}{'p50 ms':>10}{'p99 ms':>10}{'x identity':>12}{'p99 / budget':>14}")
    for name, rows in results.items():
        p50 = np.median([r[0] for r in rows])
        p99 = np.median([r[1] for r in rows])
        print(f"{name:<16}{1000 * p50:>10.3f}{1000 * p99:>10.3f}{p50 / base:>12.1f}"
              f"{1000 * p99 / budget_ms:>14.2f}")


if __name__ == "__main__":
    main()

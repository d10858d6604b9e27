"""Quality metrics benchmark: seconds of compute per minute of audio, per metric.

    python benchmarks/metrics.py [--seconds 10] [--rounds 3] [--metrics snr_db,pesq,...]

Each metric of stream/lab/metrics.py (the ones `run.py evaluate` computes) measures the synthesised
speech (stream/lab/speech.py, mono, 48 kHz, ``--seconds`` long) against the same speech quantized
to 4 bits through the engine (quantize-6bit preset with bits = 4), once per round, metrics in an
order shuffled from round to round (seeded), 200 ms pause before each. The table shows the
median over rounds, scaled to one minute of audio, and the real-time factor. ViSQOL sees at most
its first ``VISQOL_SECONDS`` seconds (see stream/lab/metrics.py): its per-minute figure is
scaled from what it measured, and a longer input costs it no more. Prints the load average at
start and end (above the CPU count, absolute times mean little). Never fails on a timing.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import random
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from cosine_host.lab import evaluate as lab
from cosine_host.lab import metrics  # noqa: E402
from cosine_host.config.schema import load_config  # noqa: E402
from cosine_host.lab.speech import synthesize_speech  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--metrics", default=None)
    args = parser.parse_args()
    names = metrics.check_names(args.metrics)
    metrics.check_available(names)
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    rate = 48000
    reference = synthesize_speech(rate, args.seconds)
    processed, _ = lab.render_setting(load_config("quantize-6bit", ["processors.0.bits=4"]),
                                      reference, rate)
    times = {n: [] for n in names}
    order = list(names)
    rng = random.Random(0)
    for _ in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            time.sleep(0.2)
            started = time.perf_counter()
            metrics.measure(reference, processed, rate, (name,), True)
            times[name].append(time.perf_counter() - started)
    print(f"{args.seconds:g} s of speech at 48 kHz, median of {args.rounds} rounds")
    print(f"{'metric':<15}{'s per min audio':>17}{'x real time':>13}")
    for name in names:
        measured = min(args.seconds, metrics.VISQOL_SECONDS) if name == "visqol" else args.seconds
        median = statistics.median(times[name])
        per_minute = median / measured * 60
        print(f"{name:<15}{per_minute:>17.2f}{measured / median:>13.1f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""Side-by-side timing shared by the benchmark scripts."""
from __future__ import annotations

import os
import platform
import time

import numpy as np
import torch

# a pause before each timed call, so that thread pools left spinning by the previous row are
# idle: otherwise a row pays for its predecessor's pool. OpenBLAS's threads (numpy and scipy
# each load their own) spin for 50-100 ms after a product; measured on 2 cores, a product
# after a 10 or 50 ms pause took 2x as long as after a 100 or 200 ms one.
SETTLE_S = 0.2


def interleaved(fns: dict, repeats: int, seed: int = 0) -> dict:
    """Seconds per call, as lists: every function once per round, ``repeats`` rounds, so that
    drift on a shared machine hits every row alike. The order is shuffled each round (seeded):
    a merely rotated order gives every row the same predecessor each round, and a row that
    leaves thread pools or caches in a bad state would always charge the same neighbour."""
    times = {k: [] for k in fns}
    names = list(fns)
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        for i in rng.permutation(len(names)):
            k = names[i]
            time.sleep(SETTLE_S)
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return times


def machine_line(name: str) -> str:
    """The header every benchmark prints: versions, threads, CPUs and the load it started under."""
    return (f"# {name} benchmark: torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"numpy {np.__version__}, {os.cpu_count()} CPUs, {platform.machine()}, "
            f"load average {os.getloadavg()[0]:.1f} at start")

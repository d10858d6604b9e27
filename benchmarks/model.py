"""Model benchmark (issue 2): building the learned cosine matrices, vectorised vs the seed
notebook's Python double loop, and one forward + backward pass.

    python benchmarks/model.py [--repeats 15] [--loop-sizes 32,64,128]

What it measures, side by side in one run (interleaved repeats, medians):

- ``vectorised build``: ``encoder.build()`` + ``decoder.build()`` of the 512x512 pair
  (cosine_host.models.cosine: exact phase in float64, one cosine over the whole matrix), cache
  bypassed.
- ``vectorised fwd+bwd``: one frame of 512 through ``LearnedCosine`` with autograd on (the
  matrices are rebuilt inside, as in training), MSE against the frame, ``backward()``.
- ``notebook loop``: the seed notebook's construction (``W1[m, n] = a2 * torch.cos(w1[m] * n)``
  in a Python double loop, W1 and W2) and its backward pass, at the sizes in ``--loop-sizes``
  (512 takes minutes). The loop does N * M scalar torch operations, so its time is scaled to
  N = M = 512 by (512 / N)^2 from the largest size measured; the growth between the two largest
  sizes is printed so the N^2 assumption can be checked (the backward pass through an autograd
  graph of N^2 nodes may grow faster).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from cosine_host.models import LearnedCosine  # noqa: E402
from benchmarks.timing import interleaved, machine_line  # noqa: E402

def med(ts):
    return statistics.median(ts)


# --- the seed notebook's construction ------------------------------------------------------------

def notebook_build(n: int, m: int, x: torch.Tensor):
    """The notebook's cells 8-18: parameters, W1 and W2_1 by double loops, forward pass."""
    a1 = torch.tensor(1.0, requires_grad=True)
    a2 = torch.tensor(np.sqrt(2), requires_grad=True)
    a3 = torch.tensor(1.0, requires_grad=True)
    a4 = torch.tensor(np.sqrt(2), requires_grad=True)
    w = np.zeros((m,), dtype=np.float32)
    for i in range(m):
        w[i] = (2 * i + 1) / (2 * m) * np.pi
    w1 = torch.from_numpy(w)
    w1.requires_grad_(True)
    W1 = torch.zeros(m, n)
    for i in range(m):
        W1[i, 0] = a1
        for j in range(1, n):
            W1[i, j] = a2 * torch.cos(w1[i] * j)
    W2 = torch.zeros(n, m)
    for i in range(m):
        W2[0, i] = a3
        for j in range(1, n):
            W2[j, i] = a4 * torch.cos(w1[i] * j)
    X = torch.matmul(W1, x) / np.sqrt(n)
    y = torch.matmul(W2, X) / np.sqrt(n)
    return ((x - y) ** 2).mean()


def time_notebook(n: int, repeats: int) -> tuple[float, float]:
    """(build + forward seconds, backward seconds), medians."""
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, n).astype(np.float32))
    builds, backs = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        err = notebook_build(n, n, x)
        t1 = time.perf_counter()
        err.backward()
        t2 = time.perf_counter()
        builds.append(t1 - t)
        backs.append(t2 - t1)
    return med(builds), med(backs)


# --- main ---------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15, help="rounds for the vectorised timings")
    ap.add_argument("--loop-sizes", default="32,64,128",
                    help="N (= M) values for the notebook loop, comma-separated")
    ap.add_argument("--n", type=int, default=512, help="N = M of the vectorised model")
    args = ap.parse_args(argv)
    n = args.n
    sizes = sorted(int(s) for s in args.loop_sizes.split(","))

    print(machine_line("model"))
    def vectorised(size):
        model = LearnedCosine(size, size)
        frame = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, size).astype(np.float32))

        def build():
            with torch.no_grad():
                model.encoder.build()
                model.decoder.build()

        def fwd_bwd():
            model.zero_grad(set_to_none=True)
            loss = ((model(frame) - frame) ** 2).mean()
            loss.backward()
        return build, fwd_bwd

    top = sizes[-1]
    build, fwd_bwd = vectorised(n)
    small_build, small_fb = vectorised(top)
    for f in (build, fwd_bwd, small_build, small_fb):
        f()
    t = interleaved({"build": build, "fwd_bwd": fwd_bwd, "small_build": small_build,
                     "small_fb": small_fb}, args.repeats)
    ours_build, ours_fb = med(t["build"]), med(t["fwd_bwd"])

    print(f"\nvectorised (median of {args.repeats}, interleaved):")
    for label, size, b, fb in (("", n, ours_build, ours_fb),
                               ("", top, med(t["small_build"]), med(t["small_fb"]))):
        print(f"  N = M = {size:4d}: build W1 + W2 {1e3 * b:9.3f} ms, forward + backward "
              f"{1e3 * fb:9.3f} ms (matrices rebuilt under autograd)")

    print("\nseed notebook double loop (W1 and W2, then one backward):")
    print(f"  {'N = M':>6} {'build+fwd s':>12} {'backward s':>11}")
    loop = {}
    for s in sizes:
        reps = 3 if s <= 64 else 1
        loop[s] = time_notebook(s, reps)
        print(f"  {s:>6} {loop[s][0]:12.3f} {loop[s][1]:11.3f}")
    if len(sizes) > 1:
        prev = sizes[-2]
        g_build = math.log(loop[top][0] / loop[prev][0]) / math.log(top / prev)
        g_back = math.log(loop[top][1] / loop[prev][1]) / math.log(top / prev)
        print(f"  growth from N = {prev} to {top}: build ~ N^{g_build:.2f}, backward ~ N^{g_back:.2f}"
              f" (the scaling below assumes N^2)")
    scale = (n / top) ** 2
    est_build, est_back = loop[top][0] * scale, loop[top][1] * scale
    print(f"  scaled to N = M = {n} by (N/{top})^2 = {scale:.0f}: build+fwd ~ {est_build:.1f} s, "
          f"backward ~ {est_back:.1f} s (an estimate from N = {top}, not measured at {n})")

    print("\nratios, notebook loop / vectorised (how many times faster the vectorised model is):")
    print(f"  {'':32} {'build':>10} {'build+fwd+bwd':>14}")
    print(f"  {f'N = M = {top}, both measured':32} {loop[top][0] / med(t['small_build']):10.0f} "
          f"{sum(loop[top]) / med(t['small_fb']):14.0f}")
    print(f"  {f'N = M = {n}, loop scaled by N^2':32} {est_build / ours_build:10.0f} "
          f"{(est_build + est_back) / ours_fb:14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

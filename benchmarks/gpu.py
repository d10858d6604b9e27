"""GPU check and benchmark: the engine's CUDA path against the CPU, render throughput and live
per-call latency on the GPU. One prepared script, meant to fit a short GPU lease.

    python benchmarks/gpu.py [--seconds 10] [--calls 2000] [--quick]

Without a CUDA device it says so, runs the CPU reference parts as a readiness check (the CPU
numpy kernel, and the torch kernel, i.e. the CUDA code path, run on the CPU against it) and
exits 0. With one:

1. Correctness: CUDA engine output (the torch kernel's matrix products, with and without
   processors, at the DCT init and with trained parameters) against the CPU engine (which runs
   pocketfft's DCT at the DCT init), within float32 tolerance; bypass; exactly one
   synchronisation per ``process`` call (counted with ``torch.cuda.set_sync_debug_mode("warn")``).
2. Render throughput: ``engine.render`` of ``--seconds`` of stereo at 48 kHz on the GPU as a
   real-time factor, next to the raw GPU matrix products of the same frames, and the CPU engine
   (DCT at the init, matrix products when trained).
3. Live latency: ``engine.process`` per call at blocksizes 64 and 256 (2 channels): median, p99,
   max, and p99 as a share of the block's real-time budget, GPU and CPU.

The torch kernel has one transform (cuBLAS matrix products): the engine chooses the DCT on CPU
only (``fast_path="auto"``), so there is no GPU DCT to compare.

Exit status: 0 when every check passed (or no GPU), 1 when a correctness check failed.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
import cosine_host  # noqa: E402
from cosine_host.models import LearnedCosine  # noqa: E402
from cosine_host.models.processors import registry as procs  # noqa: E402
from cosine_host.engine.engine import Engine  # noqa: E402
from tests.helpers import perturb  # noqa: E402

FAILED = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}")
    if not ok:
        FAILED.append(name)


def engine(cfg, *, device="cpu", blocksize=0, channels=2, trained=False, fast_path="auto",
           backend="auto", processors=None):
    model = LearnedCosine(cfg.frame.size, cfg.model.coefficients, init=cfg.model.init,
                          decoder=cfg.model.decoder, dtype=cfg.model.dtype)
    if trained:
        perturb(model)
    chain = procs.build_chain(processors or [])
    return Engine(model, cfg.frame.hop, cfg.frame.window, blocksize=blocksize, channels=channels,
                  processors=chain, samplerate=cfg.audio.samplerate, device=device,
                  fast_path=fast_path, backend=backend)


def stream_blocks(e, x, b):
    return np.concatenate([e.process(x[i:i + b]) for i in range(0, x.shape[0] - b + 1, b)])


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn, repeats, device):
    ts = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


# --- 1. correctness -------------------------------------------------------------------------------

def correctness(cfg, device, x):
    """Every variant on ``device`` against the CPU numpy engine with the same parameters."""
    chains = {"no processors": None,
              "band": [{"type": "band", "lo": 3, "hi": 200}],
              "band + topk": [{"type": "band", "lo": 0, "hi": 400}, {"type": "topk", "k": 64}]}
    backend = "torch"
    for trained in (False, True):
        for label, chain in chains.items():
            ref = engine(cfg, trained=trained, processors=chain)
            want = ref.render(x)
            for fast_path in ("auto",):
                e = engine(cfg, device=device, trained=trained, fast_path=fast_path,
                           backend=backend, processors=chain)
                got = e.render(x)
                err = float(np.abs(got - want).max())
                # top-k may pick a different coefficient on a float32 rounding tie: allow a
                # few samples off, never a systematic difference
                if "topk" in label:
                    ok = float(np.mean(np.abs(got - want) > 1e-5)) < 0.01
                else:
                    ok = err < 1e-5
                check(f"{device} {e.transform:9} vs cpu {ref.transform:9} "
                      f"{'trained' if trained else 'dct init':8} {label}", ok,
                      f"max |diff| = {err:.2e}")
    # live blocks with bypass switching, one synchronisation per call
    ref = engine(cfg, blocksize=256, trained=True)
    e = engine(cfg, device=device, blocksize=256, trained=True, backend=backend)
    outs = []
    for eng in (ref, e):
        ys = []
        for k in range(0, x.shape[0] - 255, 256):
            eng.bypass = 40 <= k // 256 < 80
            ys.append(eng.process(x[k:k + 256]))
        outs.append(np.concatenate(ys))
    check(f"{device} live blocks of 256 with bypass vs cpu", np.abs(outs[0] - outs[1]).max() < 1e-5,
          f"max |diff| = {np.abs(outs[0] - outs[1]).max():.2e}")
    if torch.device(device).type == "cuda":
        block, out = x[:256], np.empty((256, 2), np.float32)
        for _ in range(10):
            e.process(block, out)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(20):
                    e.process(block, out)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message).lower() for w in caught)
        # the explicit stream.synchronize() of each call is counted by the debug mode (torch
        # >= 2.1), so 20 means no hidden ones; 0 would mean this torch does not count it
        check("one synchronisation per process call", syncs in (0, 20),
              f"{syncs} synchronising operations in 20 calls (expected 20)")


# --- 2. render throughput -------------------------------------------------------------------------

def throughput(cfg, device, seconds, repeats):
    sr = cfg.audio.samplerate
    x = (0.1 * np.random.default_rng(1).standard_normal((int(seconds * sr), 2))).astype(np.float32)
    rows = []
    variants = [("cpu", "auto", False), ("cpu", "auto", True)]
    if torch.device(device).type == "cuda":
        variants += [(device, "auto", False), (device, "auto", True)]
    for dev, fast_path, trained in variants:
        e = engine(cfg, device=dev, trained=trained, fast_path=fast_path)
        e.render(x)
        t = median_time(lambda: e.render(x), repeats, dev)
        rows.append((dev, f"{e.backend}/{e.transform}", "trained" if trained else "dct init", t))
    n, hop = cfg.frame.size, cfg.frame.hop
    e = engine(cfg, device=device, trained=True, backend="torch")
    count = 2 * ((n - hop + x.shape[0] + e.latency_samples - n) // hop + 1)
    frames = torch.randn(count, n, device=device)
    enc, dec = e._kernel.enc_t, e._kernel.dec
    (frames @ enc) @ dec
    raw = median_time(lambda: (frames @ enc) @ dec, repeats, device)
    print(f"\n## render: {seconds:g} s stereo, {sr} Hz, N = M = {n}, H = {hop} "
          f"({count} frames), median of {repeats}")
    print(f"{'device':8} {'kernel/path':16} {'params':9} {'ms':>9} {'RTF':>8}")
    for dev, path, state, t in rows:
        print(f"{dev:8} {path:16} {state:9} {1e3 * t:9.2f} {seconds / t:8.0f}")
    print(f"{device:8} {'torch raw mm':16} {'-':9} {1e3 * raw:9.2f} {seconds / raw:8.0f}   "
          f"(the two matrix products of the same frames, on {device})")
    return rows


# --- 3. live latency ------------------------------------------------------------------------------

def latency(cfg, device, calls):
    sr = cfg.audio.samplerate
    rows = []
    for b in (64, 256):
        x = (0.1 * np.random.default_rng(2).standard_normal((b * 64, 2))).astype(np.float32)
        # the torch kernel on ``device`` (on a machine without CUDA: the CUDA code path on the
        # CPU), then the CPU engine (numpy kernel: DCT at the init, matrix products trained)
        for dev, trained, backend in ((device, False, "torch"), (device, True, "torch"),
                                      ("cpu", False, "auto"), ("cpu", True, "auto")):
            e = engine(cfg, device=dev, blocksize=b, trained=trained, backend=backend)
            out = np.empty((b, 2), np.float32)
            for i in range(64):
                e.process(x[i * b:(i + 1) * b], out)
            ts = []
            for i in range(calls):
                blk = x[(i % 64) * b:(i % 64 + 1) * b]
                t = time.perf_counter()
                e.process(blk, out)
                ts.append(time.perf_counter() - t)
            ts = np.asarray(ts)
            rows.append((b, dev, f"{e.backend}/{e.transform}", "trained" if trained else "dct init",
                         np.median(ts), np.percentile(ts, 99), ts.max(), b / sr))
    print(f"\n## live: engine.process per call, 2 channels, {calls} calls")
    print(f"{'B':>5} {'device':8} {'kernel/path':16} {'params':9} {'median us':>10} {'p99 us':>9} "
          f"{'max us':>9} {'p99 % budget':>13}")
    for b, dev, path, state, med, p99, mx, budget in rows:
        print(f"{b:5d} {dev:8} {path:16} {state:9} {1e6 * med:10.1f} {1e6 * p99:9.1f} "
              f"{1e6 * mx:9.1f} {100 * p99 / budget:12.2f}%")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="render length (default 10)")
    ap.add_argument("--calls", type=int, default=2000, help="process calls per latency row")
    ap.add_argument("--repeats", type=int, default=7, help="render repeats (median)")
    ap.add_argument("--quick", action="store_true", help="short run (readiness check)")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.calls, args.repeats = 2.0, 200, 3
    cfg = cosine_host.load_config(overrides=["model.device=cpu"])
    cuda = torch.cuda.is_available()
    print(f"# gpu benchmark: torch {torch.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}")
    if cuda:
        device = "cuda"
        props = torch.cuda.get_device_properties(0)
        print(f"# CUDA device: {props.name}, {props.total_memory / 2 ** 30:.0f} GiB, "
              f"CUDA {torch.version.cuda}")
    else:
        device = "cpu"
        print("# NO CUDA DEVICE AVAILABLE: the GPU checks and timings are skipped. Running the CPU "
              "reference parts as a readiness check (the CUDA code path, i.e. the torch kernel, "
              "runs on the CPU against the numpy kernel).")
    x = (0.1 * np.random.default_rng(0).standard_normal((48000 * 2, 2))).astype(np.float32)
    print(f"\n## correctness: {device} (torch kernel) against the CPU numpy kernel")
    correctness(cfg, device, x)
    throughput(cfg, device, args.seconds, args.repeats)
    latency(cfg, device, args.calls)
    if cuda:
        print(f"\n(the torch kernel runs matrix products only: fast_path='auto' picks the DCT on "
              f"CPU, never on {device})")
    else:
        print("\nno CUDA device: GPU timings not measured.")
    print(f"\n{'FAILED: ' + ', '.join(FAILED) if FAILED else 'all checks passed'}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())

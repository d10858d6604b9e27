"""Identity SNR of the mdct preset per engine route and model dtype (the table in README.md,
"The MDCT init").

    python benchmarks/mdct_identity.py [--seconds 1] [--window sine|kbd]

Stereo uniform noise in [-1, 1) at 48 kHz through the identity chain of configs/mdct.yaml
(N = 512, M = 256, hop 256), rendered whole (blocksize 0) on CPU. Routes: the DCT-IV fast path,
matrix products (fast path off) and the torch kernel (the CUDA code path, run on the CPU), each
without and with a processor (a pass-through recorder: with processors the matrix routes use
the exact encoder product). float32: the engine's float32 output against the float32 input.
float64: the kernel's float64 output against float64 input, before the engine's float32 output
would round it (the float32 output of a float64 model equals its input to float32's last bit).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import cosine_host  # noqa: E402
from cosine_host.engine.build import build_model  # noqa: E402
from cosine_host.engine.engine import Engine  # noqa: E402
from cosine_host.models.processors import registry  # noqa: E402
from helpers import recording_chain, snr_db  # noqa: E402

ROUTES = (("DCT-IV fast path", {}), ("matrix products", {"fast_path": "off"}),
          ("torch kernel (cpu)", {"backend": "torch"}))


def engine_for(dtype: str, window: str, processors: bool, **kwargs) -> Engine:
    cfg = cosine_host.load_config("mdct", overrides=("model.device=cpu", f"model.dtype={dtype}",
                                                     f"frame.window={window}"))
    chain = recording_chain(m=cfg.model.coefficients)[0] if processors \
        else registry.build_chain([])
    return Engine(build_model(cfg), cfg.frame.hop, cfg.frame.window, blocksize=0, channels=2,
                  processors=chain, kbd_alpha=cfg.frame.kbd_alpha, **kwargs)


def identity_db(engine: Engine, x64: np.ndarray) -> float:
    if engine.dtype.is_floating_point and engine.dtype.itemsize == 8:
        engine.reset()
        lag = engine.latency_samples
        padded = np.ascontiguousarray(np.concatenate([x64, np.zeros((lag, 2))]))
        out = np.empty_like(padded)
        engine._kernel.process(padded, out, False)
        return snr_db(x64, out[lag:])
    x = x64.astype(np.float32)
    return snr_db(x, engine.render(x))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--window", default="sine", choices=("sine", "kbd"))
    args = ap.parse_args(argv)
    x64 = np.random.default_rng(6).uniform(-1, 1, (int(args.seconds * 48000), 2))
    print(f"identity SNR, mdct preset (N = 512, M = 256, hop 256, {args.window} window), "
          f"{args.seconds:g} s stereo noise")
    print(f"{'route':40} {'transform':9} {'float32 dB':>11} {'float64 dB':>11}")
    for name, kwargs in ROUTES:
        for processors in (False, True):
            cells, used = [], None
            for dtype in ("float32", "float64"):
                engine = engine_for(dtype, args.window, processors, **kwargs)
                used = engine.transform
                cells.append(identity_db(engine, x64))
            label = name + (", with processors" if processors else "")
            print(f"{label:40} {used:9} {cells[0]:11.1f} {cells[1]:11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

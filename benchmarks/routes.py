"""Routes benchmark: one table that justifies each route the CPU kernel (cosine_host.engine.kernel_numpy)
keeps, every route next to the one it replaces, measured side by side in one run.

    python benchmarks/routes.py [--repeats 15] [--seconds 10] [--groups bc]

Default config (N = M = 512, H = 256, sqrt-Hann, 48 kHz). Every row runs once per round in a
shuffled order after a pause (benchmarks/timing.py); the table shows the best round and the
median per call, and ``alt / kept`` = the alternative's time over the kept route's (> 1: the
route earns its place). (A hop-split matrix route that read the input queue in place measured no
saving over framing and was removed; see benchmarks/README.md "routes".) Groups:

(b) DCT init, no processors: the DCT path (pocketfft; ``fast_path="auto"``) against the matrix
    path (``fast_path="off"``) for live blocks (B = 64 and 256, 2 channels, 16 calls a round,
    time per call) and a whole signal (``engine.render`` of ``--seconds`` of mono); then, on the
    DCT path, the whole signal in cache-sized batches spread over the CPUs
    (``DCT_BATCH_FRAMES``) against all frames at once (``DCT_BATCH_FRAMES = 0``).
(c) processors present (a 6-bit quantizer), matrix path (trained): the exact encoder
    (cosine_host.engine.exact, the route that makes the coefficients independent of partition, CPU
    and BLAS) against the plain float32 product it replaces (framing copy + ``np.matmul``, patched
    into the kernel for this row only), per call at B = 256 with 2 channels and for a render of
    ``--seconds`` of mono. Here ``alt / kept`` < 1: it is what the contract costs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from benchmarks.timing import interleaved, machine_line  # noqa: E402
from cosine_host.models.processors import registry as registry  # noqa: E402
from tests.helpers import make_engine  # noqa: E402

LIVE_BLOCKS = (64, 256)
QUANTIZE = {"type": "quantize", "bits": 6}


def signal(frames: int, channels: int, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((frames, channels))).astype(
        np.float32)


def streaming(engine, block_frames: int, calls: int, seed: int):
    """A callable running ``calls`` process calls of ``block_frames`` on ``engine`` (steady
    state: the engine is primed first), and the number of calls."""
    x = signal(block_frames * calls, engine.channels, seed)
    blocks = [x[i * block_frames:(i + 1) * block_frames] for i in range(calls)]
    out = np.empty((block_frames, engine.channels), np.float32)
    for block in blocks:
        engine.process(block, out)

    def run():
        for block in blocks:
            engine.process(block, out)
    return run, calls


def rendering(engine, frames: int, seed: int):
    x = signal(frames, engine.channels, seed)
    y = np.empty_like(x)
    engine.render(x, out=y)
    return (lambda: engine.render(x, out=y)), 1


def plain_encoder(kernel):
    """What the exact encoder replaces: the framing copy and one float32 BLAS product."""
    def encode(view, coeffs):
        frames = kernel.fbuf[:view.shape[0]]
        np.copyto(frames, view)
        np.matmul(frames.reshape(-1, kernel.n), kernel.enc_t,
                  out=coeffs.reshape(-1, kernel.m))
    return encode


def setups(seconds: float, sr: int, wanted: str = "bc"):
    """{group: [(case, kept label, alt label, (kept fn, calls), (alt fn, calls))]}."""
    total = int(seconds * sr)
    groups = {"b": [], "c": []}
    if "b" not in wanted:
        return setups_c(groups, seconds, total, wanted)
    for b in LIVE_BLOCKS:
        dct = streaming(make_engine(blocksize=b, channels=2), b, 16, seed=b)
        mat = streaming(make_engine(blocksize=b, channels=2, fast_path="off"), b, 16, seed=b)
        groups["b"].append((f"live B = {b}, 2 ch", "dct", "matmul", dct, mat))
    dct = rendering(make_engine(), total, seed=1)
    mat = rendering(make_engine(fast_path="off"), total, seed=1)
    groups["b"].append((f"render {seconds:g} s mono", "dct", "matmul", dct, mat))
    whole = make_engine()
    whole._kernel.DCT_BATCH_FRAMES = 0
    groups["b"].append((f"render {seconds:g} s mono", "dct batches", "dct all at once",
                        rendering(make_engine(), total, seed=1), rendering(whole, total, seed=1)))
    return setups_c(groups, seconds, total, wanted)


def setups_c(groups, seconds, total, wanted):
    if "c" not in wanted:
        return {g: rows for g, rows in groups.items() if rows}
    for case, blocksize, channels, run in (
            ("B = 256, 2 ch", 256, 2, lambda e: streaming(e, 256, 16, seed=5)),
            (f"render {seconds:g} s mono", 0, 1, lambda e: rendering(e, total, seed=1))):
        exact = make_engine(blocksize=blocksize, channels=channels, trained=True,
                            processors=registry.build_chain([QUANTIZE]))
        plain = make_engine(blocksize=blocksize, channels=channels, trained=True,
                            processors=registry.build_chain([QUANTIZE]))
        plain._kernel.exact = plain_encoder(plain._kernel)
        groups["c"].append((f"quantize, {case}", "exact", "plain f32", run(exact), run(plain)))
    return {g: rows for g, rows in groups.items() if rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15, help="rounds (default 15)")
    ap.add_argument("--seconds", type=float, default=10.0, help="render length (default 10)")
    ap.add_argument("--groups", default="bc", help="which groups to run (default bc)")
    args = ap.parse_args(argv)
    print(machine_line("routes") + f"; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '-')}")
    groups = setups(args.seconds, 48000, args.groups)
    fns, calls = {}, {}
    for g, rows in groups.items():
        for i, (case, kept_name, alt_name, kept, alt) in enumerate(rows):
            for tag, (fn, n) in (("kept", kept), ("alt", alt)):
                fns[(g, i, tag)] = fn
                calls[(g, i, tag)] = n
    times = interleaved(fns, args.repeats)
    per = {k: [t / calls[k] for t in v] for k, v in times.items()}
    titles = {"b": "(b) DCT init, no processors: DCT path vs matrix path; DCT batches",
              "c": "(c) processors (quantize 6 bits), matrix path: exact encoder vs plain "
                   "float32 product"}
    print(f"\n## routes: N = M = 512, H = 256, 48 kHz; {args.repeats} interleaved rounds; "
          f"us per call (render: per render)")
    print(f"{'case':26} {'kept':12} {'best us':>10} {'median us':>10} {'alternative':16} "
          f"{'best us':>10} {'median us':>10} {'alt/kept best':>14} {'median':>7}")
    for g, rows in groups.items():
        print(titles[g])
        for i, (case, kept_name, alt_name, _, _) in enumerate(rows):
            k, a = per[(g, i, "kept")], per[(g, i, "alt")]
            kb, km, ab, am = min(k), statistics.median(k), min(a), statistics.median(a)
            print(f"{case:26} {kept_name:12} {1e6 * kb:10.1f} {1e6 * km:10.1f} {alt_name:16} "
                  f"{1e6 * ab:10.1f} {1e6 * am:10.1f} {ab / kb:14.2f} {am / km:7.2f}")
    print(f"# load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

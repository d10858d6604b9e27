"""Coefficient processors benchmark: ``chain(coeffs)`` per call, before and after, side by side.

    python benchmarks/processors.py [--repeats 15] [--calls 200] [--before main]

The engine calls its processor chain once per block, inside ``torch.inference_mode()``, on a
``(frames, channels, M)`` CPU tensor that views a reused buffer, usually with 1 or 2 frames.
This script does the same: one torch thread, float32, 2 channels, M = 512, frames 1, 2 and 8,
for the chains identity (empty), quantize 8 bits, topk 128, quantize 8 + topk 128, band 0..256
and threshold -60 dB. Each input is copied into the reused buffer before the timed call (not
timed); inputs are Gaussian coefficients, a different frame every call.

"before" is the processor registry of the git revision ``--before`` (default da54bfe, the
built-ins' numpy route before it ran in place), with that revision's whole ``models/`` folder
loaded next to this tree's as a package of its own, so both run in the same process and the same
rounds. Every variant (version x chain x frames) runs ``--calls``
calls once per round, in an order shuffled from round to round (seeded); p50 and p99 are taken per
round over its calls and the table shows their medians over the rounds, so that ratios survive a
shared, noisy machine. No pause between variants: with one torch thread and no BLAS call there is no
thread pool left spinning. ``x identity``: p50 over the identity chain's p50 of the same version and
frames; ``after/before``: p50 ratio. The script also checks that both versions give identical
outputs and statistics on the benchmark's data.

A second table (skip it with ``--no-engine``) times whole ``engine.process(block, out=out)``
calls of the default config (N = M = 512, H = 256, 48 kHz) at B = 256 and 2 channels, one
frame per channel per call, with each chain of each version; ``identity`` is the engine without
processors (it then skips the chain). ``x identity`` there says what the chain costs on top of
the transform, framing and overlap-add of a real call.
"""
from __future__ import annotations

import argparse
import glob
import importlib
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import types

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)
from benchmarks.timing import machine_line  # noqa: E402
from cosine_host.models.processors import registry as after  # noqa: E402

M, CHANNELS, FRAMES = 512, 2, (1, 2, 8)
CHAINS = {
    "identity": [],
    "quantize 8": [{"type": "quantize", "bits": 8}],
    "topk 128": [{"type": "topk", "k": 128}],
    "quantize 8 + topk 128": [{"type": "quantize", "bits": 8}, {"type": "topk", "k": 128}],
    "band 0..256": [{"type": "band", "lo": 0, "hi": 256}],
    "threshold -60": [{"type": "threshold", "db": -60}],
}
INPUTS = 64        # distinct inputs cycled through the reused buffer


def load_before(revision: str) -> types.ModuleType:
    """The processor registry of ``revision`` as a module of its own: that revision's whole
    ``models/`` folder, extracted to a temporary folder as the package ``models_before`` (its
    imports of ``models`` or ``cosine_host.models`` pointed there), so that it runs with its own
    plugins, quantizers and compiled kernels next to this tree's."""
    archive = subprocess.run(["git", "archive", revision, "models"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    folder = tempfile.mkdtemp(prefix="processors-before-")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = os.path.join(folder, "models_before")
    os.rename(os.path.join(folder, "models"), package)
    for path in glob.glob(os.path.join(package, "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        text = re.sub(r"^(\s*(?:from|import) )(?:cosine_host\.models|models)\b", r"\1models_before",
                      text, flags=re.M)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    sys.path.insert(0, folder)
    layout = os.path.isdir(os.path.join(package, "processors"))   # models/processors/ rooms
    return importlib.import_module("models_before.processors" + (".registry" if layout else ""))


def make_chain(module, specs):
    chain = module.build_chain([module.check_spec(s, M) for s in specs])
    chain.prepare(48000, 256, M)
    return chain


def variant(chain, frames: int, calls: int, inputs: np.ndarray):
    """A function that runs ``calls`` engine-like calls and returns their times in seconds."""
    buffer = np.empty((max(FRAMES) + 1, CHANNELS, M), np.float32)
    view = buffer[1:frames + 1]          # a view into a reused buffer, as the engine's
    state = {"i": 0}

    def run() -> np.ndarray:
        times = np.empty(calls)
        with torch.inference_mode():
            for c in range(calls):
                view[...] = inputs[state["i"] % len(inputs), :frames]
                state["i"] += 1
                t = time.perf_counter()
                chain(torch.from_numpy(view))
                times[c] = time.perf_counter() - t
        return times
    return run


def engine_variant(chain, blocks: np.ndarray):
    """A function that runs one engine call per block (B = 256, 2 channels) with ``chain``."""
    from cosine_host.config.schema import load_config
    from cosine_host.engine.build import build_model
    from cosine_host.engine.engine import Engine
    cfg = load_config()
    engine = Engine(build_model(cfg), cfg.frame.hop, cfg.frame.window, blocksize=blocks.shape[1],
                    channels=CHANNELS, processors=chain, samplerate=cfg.audio.samplerate,
                    device="cpu")
    out = np.empty(blocks.shape[1:], np.float32)

    def run() -> np.ndarray:
        times = np.empty(len(blocks))
        for i, block in enumerate(blocks):
            t = time.perf_counter()
            engine.process(block, out=out)
            times[i] = time.perf_counter() - t
        return times
    return run


def measure(runs: dict, repeats: int, rng) -> dict:
    """(median p50, median p99) in us per variant: every variant once a round, shuffled order."""
    for run in runs.values():       # warm-up: first calls allocate, import, fill caches
        run()
    p50 = {k: [] for k in runs}
    p99 = {k: [] for k in runs}
    keys = list(runs)
    for _ in range(repeats):
        for i in rng.permutation(len(keys)):
            times = runs[keys[i]]()
            p50[keys[i]].append(np.percentile(times, 50))
            p99[keys[i]].append(np.percentile(times, 99))
    return {k: (1e6 * np.median(p50[k]), 1e6 * np.median(p99[k])) for k in keys}


def table(med: dict, key, title: str, first: str) -> None:
    """One row per chain (and frames, when ``key`` takes them): before/after p50/p99, ratios."""
    print(title)
    width = max(len(first), *map(len, key))
    header = (f"| {first:<{width}} | before p50 | before p99 | after p50 | after p99 "
              f"| after/before | before x identity | after x identity |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for row, (name, ident) in key.items():
        b50, b99 = med[("before",) + name]
        a50, a99 = med[("after",) + name]
        bi, ai = b50 / med[("before",) + ident][0], a50 / med[("after",) + ident][0]
        print(f"| {row:<{width}} | {b50:>10.1f} | {b99:>10.1f} | {a50:>9.1f} | {a99:>9.1f} "
              f"| {a50 / b50:>12.2f} | {bi:>17.1f} | {ai:>16.1f} |")


def check_identical(before, inputs: np.ndarray) -> str:
    """'yes', or which chain differs: outputs (bits, NaN-free data) and stats of both versions."""
    for name, specs in CHAINS.items():
        old, new = make_chain(before, specs), make_chain(after, specs)
        with torch.inference_mode():
            for frames in FRAMES:
                for x in inputs[:16]:
                    t = torch.from_numpy(np.ascontiguousarray(x[:frames]))
                    if not torch.equal(old(t).view(torch.int32), new(t).view(torch.int32)):
                        return f"no: {name} outputs differ"
        if old.stats() != new.stats():
            return f"no: {name} stats differ: {old.stats()} vs {new.stats()}"
    return "yes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--calls", type=int, default=200, help="calls per variant per round")
    parser.add_argument("--before", default="da54bfe",
                        help="git revision of the 'before' version (default: the numpy route "
                             "before it ran in place)")
    parser.add_argument("--no-engine", dest="engine", action="store_false",
                        help="skip the engine.process table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(machine_line("processors"))
    before = load_before(args.before)
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((INPUTS, max(FRAMES), CHANNELS, M)).astype(np.float32)
    print(f"# outputs and stats identical before/after: {check_identical(before, inputs)}")

    runs = {}
    for label, module in (("before", before), ("after", after)):
        for name, specs in CHAINS.items():
            for frames in FRAMES:
                runs[label, name, frames] = variant(make_chain(module, specs), frames,
                                                    args.calls, inputs)
    med = measure(runs, args.repeats, rng)
    rows = {f"{name}, {frames} frame{'s' if frames > 1 else ''}":
            ((name, frames), ("identity", frames)) for name in CHAINS for frames in FRAMES}
    table(med, rows,
          f"# chain(coeffs) per call, us: median over {args.repeats} rounds of each round's "
          f"p50/p99 over {args.calls} calls; float32, {CHANNELS} channels, M = {M}, "
          f"one torch thread", "chain, frames per call")

    if args.engine:
        try:
            blocks = (0.1 * rng.standard_normal((args.calls, 256, CHANNELS))).astype(np.float32)
            runs = {(label, name): engine_variant(make_chain(module, specs), blocks)
                    for label, module in (("before", before), ("after", after))
                    for name, specs in CHAINS.items()}
        except Exception as e:   # the engine is another module's business: report, go on
            print(f"# engine table skipped: {type(e).__name__}: {e}")
        else:
            med = measure(runs, args.repeats, rng)
            table(med, {name: ((name,), ("identity",)) for name in CHAINS},
                  f"# engine.process per call at B = 256, {CHANNELS} channels, us: median over "
                  f"{args.repeats} rounds of each round's p50/p99 over {args.calls} calls",
                  "chain in the engine")
    print(f"# load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()

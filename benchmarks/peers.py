"""Peers benchmark (issue 8): the engine's whole-signal path next to the raw matrix products of
the same frames and next to peer implementations, in one table of ratios.

    pip install -e '.[bench]'        # asteroid-filterbanks (optional: its row is skipped)
    python benchmarks/peers.py [--repeats 31] [--seconds 10] [--cli-minutes 10] [--skip-cli]

Reference case: 10 s of mono noise at 48 kHz, N = M = 512, H = 256 (about 1875 frames),
sqrt-Hann windows. Two parameter states: ``trained`` (every parameter perturbed by about 1e-3:
the engine runs matrix products) and ``dct init`` (exactly the DCT pair: the engine picks its
FFT fast path by itself). Every row of both states runs once per round, in a shuffled order,
after a pause that lets thread pools go idle (benchmarks/timing.py); the table gives the median
and the best of the rounds, and ratios are taken within the run.

Rows:

- ``engine.render``: the engine's whole-signal path (framing, transform, overlap-add, input
  checks, latency compensation) on the (T, 1) float32 array, into a preallocated output like
  the raw rows (``render(x, out=y)``); ``new output``: the same with a fresh output array per
  call (``render(x)``), whose page faults cost up to 10 % here when other rows (torch) have
  just returned their memory to the system.
- ``raw matmul numpy`` / ``scipy`` / ``torch``: ``(frames @ W1w^T) @ W2w`` on the engine's
  frames already framed (the windows folded into the matrices), into preallocated buffers, with
  numpy's, scipy's and torch's BLAS: the floor for a matrix-product engine is the fastest of
  them.
- ``raw DCT scipy``: ``scipy.fft.dct`` type III then II (ortho, all CPUs) on the same frames: the
  floor for the fast path.
- ``mdct init`` (the shipped preset configs/mdct.yaml: N = 512, M = 256, H = 256, sine window;
  the engine picks its DCT-IV fast path; ``fast path off``: the same engine on matrix
  products): ``raw MDCT scipy`` is the textbook MDCT and its
  transpose through pocketfft on the same frames: window, fold to M samples, ``scipy.fft.dct``
  type IV (ortho, all CPUs), type IV again, unfold, window (no overlap-add), the floor for that
  fast path.
- ``asteroid FreeFB``: ``asteroid_filterbanks.Encoder(FreeFB(M, N, H))`` then
  ``Decoder(FreeFB(M, N, H))`` (conv1d / conv_transpose1d) on the (1, 1, T) signal, same N, H, M.
- ``torch.stft/istft``: n_fft = N, hop = H, sqrt-Hann, one-sided (N/2 + 1 complex bins): the
  usual FFT filterbank, a different transform, as a yardstick.

Then the CLI: ``python run.py render in.wav out.wav`` of a ``--cli-minutes`` stereo 16-bit WAV
(default config, and a checkpoint with trained parameters), as a real-time factor: audio
seconds / wall seconds, both from the render report (file I/O included) and for the whole
process (interpreter start and imports included).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)
import cosine_host  # noqa: E402
from cosine_host.models import save_checkpoint  # noqa: E402
from cosine_host.engine.engine import Engine  # noqa: E402
from cosine_host.engine.windows import window_pair  # noqa: E402
from benchmarks.timing import interleaved, machine_line  # noqa: E402
from tests.helpers import perturb  # noqa: E402


def make_engine(cfg, trained: bool) -> Engine:
    engine = Engine.from_config(cfg, blocksize=0, channels=1, device="cpu")
    if trained:
        perturb(engine.model)
        engine.process(np.zeros((256, 1), np.float32))     # picks the path for these parameters
        engine.reset()
    return engine

def raw_products(frames, enc, dec, coeffs, decoded) -> dict:
    """The two products ``(frames @ enc) @ dec`` into preallocated buffers, in each BLAS at hand:
    numpy's, scipy's (the one the engine's matrix path calls) and torch's."""
    rows = {"raw matmul numpy": lambda: np.matmul(np.matmul(frames, enc, out=coeffs), dec,
                                                  out=decoded)}
    try:
        from scipy.linalg import blas

        def scipy_blas():
            blas.sgemm(1.0, enc.T, frames.T, 0.0, coeffs.T, overwrite_c=1)
            blas.sgemm(1.0, dec.T, coeffs.T, 0.0, decoded.T, overwrite_c=1)
        rows["raw matmul scipy"] = scipy_blas
    except ImportError:
        pass
    t = [torch.from_numpy(a) for a in (frames, enc, dec, coeffs, decoded)]
    rows["raw matmul torch"] = lambda: torch.matmul(torch.matmul(t[0], t[1], out=t[3]), t[2],
                                                    out=t[4])
    return rows


def raw_mdct(frames: np.ndarray, window: np.ndarray, workers: int):
    """The MDCT pair of (F, N) ``frames`` through pocketfft, written plainly: windowed frames
    folded to (F, N/2), DCT-IV, DCT-IV, unfolded and windowed back to (F, N)."""
    import scipy.fft as sfft
    h = frames.shape[1] // 4

    def run():
        x = frames * window
        a, b, c, d = x[:, :h], x[:, h:2 * h], x[:, 2 * h:3 * h], x[:, 3 * h:]
        u = np.concatenate([-c[:, ::-1] - d, a - b[:, ::-1]], axis=1)
        coeffs = sfft.dct(u, 4, norm="ortho", workers=workers, overwrite_x=True)
        v = sfft.dct(coeffs, 4, norm="ortho", workers=workers, overwrite_x=True)
        v1, v2 = v[:, :h], v[:, h:]
        return np.concatenate([v2, -v2[:, ::-1], -v1[:, ::-1], -v1], axis=1) * window
    return run


def mdct_rows(seconds: float):
    """The mdct preset's engine (DCT-IV fast path) and the raw pocketfft MDCT of its frames."""
    cfg = cosine_host.load_config("mdct", overrides=["model.device=cpu"])
    sr, n, hop, m = cfg.audio.samplerate, cfg.frame.size, cfg.frame.hop, cfg.model.coefficients
    total = int(seconds * sr)
    x = (0.1 * np.random.default_rng(1).standard_normal((total, 1))).astype(np.float32)
    e = make_engine(cfg, False)
    count = (n - hop + total + e.latency_samples - n) // hop + 1
    frames = (0.1 * np.random.default_rng(2).standard_normal((count, n))).astype(np.float32)
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    fns = {("mdct init", "engine.render"): lambda y=np.empty_like(x): e.render(x, out=y),
           ("mdct init", "raw MDCT scipy"): raw_mdct(frames, e._window_analysis.astype(np.float32),
                                                     workers)}
    labels = {("mdct init", "engine.render"): e.transform}
    # what the fast path saves: the same engine on its matrix products
    off = Engine(e.model, hop, cfg.frame.window, blocksize=0, channels=1, fast_path="off",
                 kbd_alpha=cfg.frame.kbd_alpha)
    fns[("mdct init", "  fast path off")] = lambda y=np.empty_like(x): off.render(x, out=y)
    labels[("mdct init", "  fast path off")] = off.transform
    k = e._kernel
    coeffs, decoded = np.empty((count, m), np.float32), np.empty((count, n), np.float32)
    for name, product in raw_products(frames, np.ascontiguousarray(k.enc_t, np.float32),
                                      np.ascontiguousarray(k.dec, np.float32), coeffs,
                                      decoded).items():
        fns[("mdct init", name)] = product
    return fns, labels


def peer_rows(cfg, seconds: float, repeats: int):
    sr, n, hop, m = cfg.audio.samplerate, cfg.frame.size, cfg.frame.hop, cfg.model.coefficients
    total = int(seconds * sr)
    x = (0.1 * np.random.default_rng(1).standard_normal((total, 1))).astype(np.float32)
    notes = []
    fns, labels = {}, {}
    engines = {}
    for state in ("trained", "dct init"):
        e = engines[state] = make_engine(cfg, state == "trained")
        k = e._kernel
        count = (n - hop + total + e.latency_samples - n) // hop + 1
        frames = (0.1 * np.random.default_rng(2).standard_normal((count, n))).astype(np.float32)
        enc, dec = k.enc_t, k.dec
        coeffs, decoded = np.empty((count, m), np.float32), np.empty((count, n), np.float32)
        fns[(state, "engine.render")] = lambda e=e, y=np.empty_like(x): e.render(x, out=y)
        labels[(state, "engine.render")] = e.transform
        if state == "trained":
            fns[(state, "  new output")] = lambda e=e: e.render(x)
            labels[(state, "  new output")] = e.transform
        for name, product in raw_products(frames, enc, dec, coeffs, decoded).items():
            fns[(state, name)] = product
        if state == "dct init":
            try:
                import scipy.fft as sfft
                workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
                    else os.cpu_count()
                fns[(state, "raw DCT scipy")] = lambda f=frames: sfft.dct(
                    sfft.dct(f, 3, norm="ortho", workers=workers), 2, norm="ortho",
                    workers=workers, overwrite_x=True)
            except ImportError:
                notes.append("scipy not installed: no raw DCT row (pip install scipy)")
    signal = torch.from_numpy(np.ascontiguousarray(x[:, 0]))
    try:
        from asteroid_filterbanks import Decoder, Encoder, FreeFB
        aenc = Encoder(FreeFB(n_filters=m, kernel_size=n, stride=hop, sample_rate=sr)).eval()
        adec = Decoder(FreeFB(n_filters=m, kernel_size=n, stride=hop, sample_rate=sr)).eval()
        wav = signal.view(1, 1, -1)

        def asteroid():
            with torch.inference_mode():
                return adec(aenc(wav), length=total)
        fns[("any", "asteroid FreeFB")] = asteroid
    except ImportError:
        notes.append("asteroid-filterbanks is not installed: no asteroid row "
                     "(pip install -e '.[bench]' or pip install asteroid-filterbanks)")
    wa, _ = window_pair(cfg.frame.window, n, hop)
    window = torch.from_numpy(wa.astype(np.float32))

    def stft_istft():
        with torch.inference_mode():
            spec = torch.stft(signal, n, hop, window=window, return_complex=True)
            return torch.istft(spec, n, hop, window=window, length=total)
    fns[("any", "torch.stft/istft")] = stft_istft
    more, more_labels = mdct_rows(seconds)
    fns.update(more)
    labels.update(more_labels)
    for f in fns.values():
        f()
    times = interleaved(fns, repeats)
    stats = {"median": {k: statistics.median(v) for k, v in times.items()},
             "best": {k: min(v) for k, v in times.items()}}
    return stats, labels, notes, total, count


def cli_render(cfg, minutes: float, workdir: str):
    """RTF of `python run.py render` on a stereo 16-bit WAV: from the report and wall clock."""
    import soundfile as sf
    sr = cfg.audio.samplerate
    frames = int(minutes * 60 * sr)
    src = os.path.join(workdir, "in.wav")
    rng = np.random.default_rng(3)
    with sf.SoundFile(src, "w", samplerate=sr, channels=2, subtype="PCM_16") as f:
        step = 1 << 20
        for start in range(0, frames, step):
            f.write((0.1 * rng.standard_normal((min(step, frames - start), 2))).astype(np.float32))
    trained = make_engine(cfg, True).model
    ckpt = os.path.join(workdir, "trained.pt")
    save_checkpoint(trained, ckpt)
    results = []
    for state, extra in (("dct init", []), ("trained", ["--set", f"model.checkpoint={ckpt}"])):
        out = os.path.join(workdir, f"out-{state.replace(' ', '-')}.wav")
        report = out + ".json"
        cmd = [sys.executable, os.path.join(ROOT, "run.py"), "render", src, out, "--overwrite",
               "--report", report, "--set", "model.device=cpu", *extra]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            results.append((state, None, None, (proc.stderr or proc.stdout).strip()[-300:]))
            continue
        try:
            with open(report) as fh:
                rtf = json.load(fh).get("realtime_factor")
        except (OSError, ValueError):
            rtf = None
        results.append((state, rtf, frames / sr / wall, None))
    return frames / sr, results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=31)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--cli-minutes", type=float, default=10.0)
    ap.add_argument("--skip-cli", action="store_true")
    args = ap.parse_args(argv)
    cfg = cosine_host.load_config(overrides=["model.device=cpu"])
    print(machine_line("peers"))
    stats, labels, notes, total, count = peer_rows(cfg, args.seconds, args.repeats)
    seconds = total / cfg.audio.samplerate
    med, best = stats["median"], stats["best"]
    print(f"\n## {seconds:g} s mono, {cfg.audio.samplerate} Hz, N = M = {cfg.frame.size}, "
          f"H = {cfg.frame.hop}: {count} frames; {args.repeats} interleaved rounds")
    print("median: of the rounds; best: the fastest round, the cost with nothing else running. "
          "On a shared machine\nsome rounds run up to 2x slow whatever the row, which moves "
          "medians by several %: read targets off\nthe best rounds (as Python's timeit advises) "
          "and the medians for consistency")
    print(f"{'params':9} {'row':18} {'path':10} {'median ms':>10} {'best ms':>8} {'RTF':>6} "
          f"{'/ raw matmul':>13} {'(best)':>7} {'/ engine':>9}")

    def raw(table, state):
        return min(t for (s, row), t in table.items() if s == state and row.startswith("raw matmul"))
    for state in ("trained", "dct init", "mdct init"):
        eng = med[(state, "engine.render")]
        for key in sorted((k for k in med if k[0] in (state, "any")), key=lambda k: k[0] == "any"):
            t, b = med[key], best[key]
            print(f"{state:9} {key[1]:18} {labels.get(key, '-'):10} {1e3 * t:10.2f} {1e3 * b:8.2f} "
                  f"{seconds / t:6.0f} {t / raw(med, state):13.2f} {b / raw(best, state):7.2f} "
                  f"{t / eng:9.2f}")
    for note in notes:
        print(f"note: {note}")
    print("\ntargets (median | best):")

    def both(fn, fmt="{:.3f}"):
        return f"{fmt.format(fn(med))} | {fmt.format(fn(best))}"
    engine = ("trained", "engine.render"), ("dct init", "engine.render")
    print(f"  trained: engine / raw matmul (fastest BLAS) = "
          f"{both(lambda t: t[engine[0]] / raw(t, 'trained'))}  (target <= 1.10)")
    if ("any", "asteroid FreeFB") in med:
        print(f"  trained: engine / asteroid FreeFB = "
              f"{both(lambda t: t[engine[0]] / t[('any', 'asteroid FreeFB')])}  (target <= 1.00)")
    print(f"  dct init: fast path is {both(lambda t: t[engine[0]] / t[engine[1]], '{:.2f}x')} "
          f"the matmul path (target >= 2)")
    if ("dct init", "raw DCT scipy") in med:
        print(f"  dct init: engine / raw DCT scipy = "
              f"{both(lambda t: t[engine[1]] / t[('dct init', 'raw DCT scipy')])}")
    mdct_engine = ("mdct init", "engine.render")
    print(f"  mdct init: engine / raw MDCT scipy = "
          f"{both(lambda t: t[mdct_engine] / t[('mdct init', 'raw MDCT scipy')])}  "
          f"(target <= 1.5)")
    print(f"  mdct init: fast path is "
          f"{both(lambda t: t[('mdct init', '  fast path off')] / t[mdct_engine], '{:.2f}x')} "
          f"the matmul path")
    print(f"  mdct init: engine / raw matmul (fastest BLAS) = "
          f"{both(lambda t: t[mdct_engine] / raw(t, 'mdct init'))}  (M = N/2: half the "
          f"coefficients of the dct init)")

    if args.skip_cli:
        print("\nCLI render: skipped (--skip-cli)")
    else:
        with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
            audio_s, results = cli_render(cfg, args.cli_minutes, tmp)
        print(f"\n## CLI: python run.py render of {audio_s / 60:g} min stereo 16-bit WAV "
              f"({cfg.audio.samplerate} Hz)")
        fallback = False
        for state, rtf, rtf_wall, err in results:
            if err is not None:
                fallback = True
                print(f"{state:9} run.py render failed: {err}")
            else:
                print(f"{state:9} RTF {rtf:7.1f} (render report: read, engine, write)   "
                      f"RTF {rtf_wall:7.1f} (whole process incl. start-up)")
        if fallback:
            x = (0.1 * np.random.default_rng(4).standard_normal(
                (int(args.cli_minutes * 60 * cfg.audio.samplerate), 2))).astype(np.float32)
            for state in ("dct init", "trained"):
                e = Engine.from_config(cfg, blocksize=0, channels=2, device="cpu")
                if state == "trained":
                    perturb(e.model)
                t = time.perf_counter()
                e.render(x)
                wall = time.perf_counter() - t
                print(f"{state:9} engine.render on the array instead (no file I/O): "
                      f"RTF {x.shape[0] / cfg.audio.samplerate / wall:7.1f}")
    print(f"# load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

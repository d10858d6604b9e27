"""Peak memory of `run.py render` against the length of the file: it must not grow.

Writes stereo 48 kHz PCM_16 test files of each duration into a temporary folder (deleted
afterwards; nothing is committed), renders each through the CLI in its own subprocess, and reads
that subprocess's peak resident set size from os.wait4 (per child, unlike RUSAGE_CHILDREN, which
is a running maximum over all children). Prints, per duration: the input's size, the peak RSS,
its ratio to the first (shortest) duration's, the real-time factor from the render report
(audio seconds per wall second of reading, processing and writing) and the subprocess's CPU time.

    python benchmarks/render_memory.py                       # 1, 10 and 60 minutes
    python benchmarks/render_memory.py --minutes 1,10 --set model.device=cpu

Exits non-zero when the longest file's peak exceeds --max-ratio (default 1.2) times the
shortest's. Needs free disk for an input and an output of the longest duration (60 min:
about 0.7 GB) and no sound card.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLERATE = 48000
CHANNELS = 2
BYTES_PER_SAMPLE = 2            # PCM_16: half the disk of FLOAT for the 60-minute file
WRITE_FRAMES = 1 << 20          # frames generated and written per step


def write_test_file(path: pathlib.Path, minutes: float, seed: int = 0) -> int:
    """A stereo PCM_16 WAV of ``minutes``: a 440/660 Hz tone pair plus noise, written in
    chunks so that generating it needs no more memory than one chunk. Returns its frames."""
    frames = int(minutes * 60 * SAMPLERATE)
    rng = np.random.default_rng(seed)
    with sf.SoundFile(path, "w", SAMPLERATE, CHANNELS, subtype="PCM_16", format="WAV") as sink:
        for start in range(0, frames, WRITE_FRAMES):
            n = min(WRITE_FRAMES, frames - start)
            t = (start + np.arange(n)) / SAMPLERATE
            tones = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], axis=1)
            sink.write((0.3 * tones + rng.normal(0, 0.05, (n, CHANNELS))).astype(np.float32))
    return frames


def render_in_subprocess(source: pathlib.Path, target: pathlib.Path, report: pathlib.Path,
                         overrides: list[str]) -> dict:
    """Run `run.py render` and return its report plus the child's peak RSS (MB) and CPU (s)."""
    command = [sys.executable, str(ROOT / "run.py"), "render", str(source), str(target),
               "--report", str(report)]
    for item in overrides:
        command += ["--set", item]
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            errors.seek(0)
            sys.exit(f"render failed ({child.returncode}): {errors.read().decode().strip()}")
    result = json.loads(report.read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024          # Linux reports KiB
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", default="1,10,60",
                        help="comma-separated minutes, shortest first (default 1,10,60)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY.PATH=VALUE", help="config override passed to render")
    parser.add_argument("--max-ratio", type=float, default=1.2,
                        help="fail when the longest peak RSS exceeds this times the shortest's")
    parser.add_argument("--tmp", default=None, help="folder for the temporary files")
    args = parser.parse_args()
    durations = [float(m) for m in args.minutes.split(",")]

    rows = []
    with tempfile.TemporaryDirectory(prefix="render-memory-", dir=args.tmp) as folder:
        folder = pathlib.Path(folder)
        needed = 2 * max(durations) * 60 * SAMPLERATE * CHANNELS * BYTES_PER_SAMPLE
        free = shutil.disk_usage(folder).free
        if free < 1.1 * needed:
            sys.exit(f"need {needed / 1e9:.1f} GB free in {folder}, have {free / 1e9:.1f} GB; "
                     f"use --tmp DIR or fewer --minutes")
        for minutes in durations:
            source, target = folder / "in.wav", folder / "out.wav"
            print(f"{minutes:g} min: writing...", file=sys.stderr, flush=True)
            write_test_file(source, minutes)
            size_mb = source.stat().st_size / 1e6
            print(f"{minutes:g} min: rendering...", file=sys.stderr, flush=True)
            result = render_in_subprocess(source, target, folder / "report.json", args.overrides)
            assert sf.info(target).frames == sf.info(source).frames
            source.unlink()
            target.unlink()
            rows.append((minutes, size_mb, result))

    base = rows[0][2]["peak_rss_mb"]
    print(f"{'minutes':>7}  {'input MB':>8}  {'peak RSS MB':>11}  {'ratio':>5}  "
          f"{'x real time':>11}  {'CPU s':>6}  device")
    for minutes, size_mb, r in rows:
        print(f"{minutes:7g}  {size_mb:8.0f}  {r['peak_rss_mb']:11.0f}  "
              f"{r['peak_rss_mb'] / base:5.2f}  {r['realtime_factor']:11.1f}  {r['cpu_s']:6.1f}  "
              f"{r['device']}")
    ratio = rows[-1][2]["peak_rss_mb"] / base
    verdict = "ok" if ratio <= args.max_ratio else "FAILED"
    print(f"{verdict}: longest/shortest peak RSS = {ratio:.2f} (limit {args.max_ratio})")
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())

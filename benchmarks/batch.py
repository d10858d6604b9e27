"""Batch rendering throughput: `run.py render --out-dir` with --jobs 1, 2, auto and --ray.

Writes two sets of stereo 48 kHz PCM_16 noise files into a temporary folder (deleted afterwards;
nothing is committed): many short files (default 200 of 5 s) and a few long ones (default 10 of
5 minutes), renders each set through the CLI in a subprocess per mode, as a user would (process
start, torch import, worker start-up and Ray start-up included), and prints per set and mode:
files/s, audio seconds per wall second, both as ratios to --jobs 1, and for --ray the start-up cost
(connecting, or starting the local instance, and building the actors, from the batch report's
``ray.startup_s``), and the machine's busy cores while each command ran (/proc/stat, kernel
included: --jobs 1 keeps more than one core busy, which bounds what --jobs 2 can gain). Outputs of
every mode are checked to be identical to --jobs 1's. The load average is printed at start and end:
ratios need the cores free of other work.

    python benchmarks/batch.py                                    # the full sizes
    python benchmarks/batch.py --short 20x5 --long 2x60           # a quick run (files x seconds)
    python benchmarks/batch.py --modes 1,2 --set model.device=cpu

The target: at least 1.7x audio seconds per second at --jobs 2 on 2 cores for the long files.
--ray is left out (with a note) when Ray is not installed (pip install 'cosine-host[cluster]').
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLERATE = 48000
CHANNELS = 2
WRITE_FRAMES = 1 << 20          # frames generated and written per step


def write_set(folder: pathlib.Path, files: int, seconds: float) -> float:
    """``files`` stereo PCM_16 noise WAVs of ``seconds`` each in ``folder``; returns the total
    audio seconds."""
    folder.mkdir(parents=True)
    frames = int(round(seconds * SAMPLERATE))
    rng = np.random.default_rng(0)
    for i in range(files):
        with sf.SoundFile(folder / f"f{i:04d}.wav", "w", SAMPLERATE, CHANNELS,
                          subtype="PCM_16") as out:
            left = frames
            while left:
                n = min(WRITE_FRAMES, left)
                out.write(np.clip(rng.normal(0, 0.2, (n, CHANNELS)), -0.99, 0.99)
                          .astype(np.float32))
                left -= n
    return files * frames / SAMPLERATE


def render(src: pathlib.Path, out: pathlib.Path, mode: str, overrides: list[str]) -> dict:
    """Render ``src`` into a fresh ``out`` with ``mode`` ("1", "2", "auto" or "ray"); returns
    {"wall_s", "startup_s" (ray only), "busy_cores", "report"}."""
    out.mkdir()
    report = out.parent / f"{out.name}.json"
    flags = ["--ray"] if mode == "ray" else ["--jobs", mode]
    sets = [a for o in overrides for a in ("--set", o)]
    ticks = cpu_ticks()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "render", str(src),
                           "--out-dir", str(out), "--report", str(report), *sets, *flags],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    busy = busy_cores(ticks, cpu_ticks())
    if done.returncode != 0:
        sys.exit(f"render {mode} failed:\n{done.stderr}")
    data = json.loads(report.read_text())
    return {"wall_s": wall, "startup_s": (data.get("ray") or {}).get("startup_s"),
            "busy_cores": busy, "report": data}


def cpu_ticks() -> tuple[int, int] | None:
    """(all, idle) clock ticks of the whole machine from /proc/stat (None where there is none)."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    return sum(values), values[3] + values[4]       # idle + iowait


def busy_cores(before, after) -> float | None:
    """Cores kept busy between two ``cpu_ticks`` (every process and the kernel: a render's
    page-cache and write-back work shows here, not in its own CPU time)."""
    if before is None or after is None or after[0] == before[0]:
        return None
    total, idle = after[0] - before[0], after[1] - before[1]
    return (os.cpu_count() or 1) * (total - idle) / total


def samples(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: sf.read(p, dtype="int16")[0].tobytes() for p in sorted(folder.iterdir())}


def parse_set(text: str) -> tuple[int, float]:
    files, seconds = text.lower().split("x")
    return int(files), float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", default="200x5", help="FILESxSECONDS of the short set "
                        "(default 200x5)")
    parser.add_argument("--long", default="10x300", help="FILESxSECONDS of the long set "
                        "(default 10x300)")
    parser.add_argument("--modes", default="1,2,auto,ray",
                        help="comma-separated: 1, 2, auto (--jobs) and ray (--ray, local)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override for every render")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if "1" not in modes:
        modes.insert(0, "1")
    if "ray" in modes and importlib.util.find_spec("ray") is None:
        print("note: Ray is not installed; --ray left out (pip install 'cosine-host[cluster]')")
        modes.remove("ray")
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="cosine-batch-bench-"))
    rows = []
    try:
        for name, spec in (("short", args.short), ("long", args.long)):
            files, seconds = parse_set(spec)
            if files < 1:
                continue
            src = tmp / name
            audio = write_set(src, files, seconds)
            base = None
            reference = None
            for mode in modes:
                out = tmp / f"{name}-{mode}"
                result = render(src, out, mode, args.overrides)
                got = samples(out)
                if reference is None:
                    reference = got
                elif got != reference:
                    sys.exit(f"{name} set: --{mode} outputs differ from --jobs 1's")
                shutil.rmtree(out)
                files_s, audio_s = files / result["wall_s"], audio / result["wall_s"]
                base = base or (files_s, audio_s)
                rows.append({"set": f"{name} {files}x{seconds:g}s", "mode":
                             "--ray" if mode == "ray" else f"--jobs {mode}",
                             "wall_s": result["wall_s"], "files_s": files_s,
                             "audio_s": audio_s, "ratio": audio_s / base[1],
                             "startup_s": result["startup_s"],
                             "busy_cores": result["busy_cores"],
                             "workers": result["report"].get("workers")})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    head = (f"{'set':<16} {'mode':<9} {'wall s':>8} {'files/s':>8} {'audio s/s':>10} "
            f"{'x jobs 1':>8} {'workers':>7} {'busy cores':>10} {'ray start s':>11}")
    print(head)
    print("-" * len(head))
    for r in rows:
        start = "-" if r["startup_s"] is None else f"{r['startup_s']:.1f}"
        cores = "-" if r["busy_cores"] is None else f"{r['busy_cores']:.2f}"
        workers = "-" if r["workers"] is None else str(r["workers"])
        print(f"{r['set']:<16} {r['mode']:<9} {r['wall_s']:8.1f} {r['files_s']:8.2f} "
              f"{r['audio_s']:10.1f} {r['ratio']:8.2f} {workers:>7} {cores:>10} {start:>11}")
    # the 1-minute average at the end counts this benchmark's own renders of the last minute
    print(f"load average at end: {os.getloadavg()[0]:.2f} (this benchmark's renders included)")


if __name__ == "__main__":
    main()

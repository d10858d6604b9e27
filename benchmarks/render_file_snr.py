"""Identity renders per file format: what the written file holds, read back.

Synthesises the demo material (stream/lab/demo.py: tones, a sweep to 21.6 kHz, noise bursts,
silence, a chord; 4 s stereo 48 kHz), stores it in each input format, renders each through the
CLI (`run.py render IN OUT --report R.json`, default config = the identity transform) into the
same format, and prints per format: the engine's SNR, the file SNR (the written file decoded
and compared with the input, as the report's file_snr_db), whether the file is bit-identical,
and for integer formats the largest sample error, the mean error in LSB (DC offset) and the
share of samples more than half an LSB away from the input ("% off").

    python benchmarks/render_file_snr.py
    python benchmarks/render_file_snr.py --set model.device=cpu

Writes into a temporary folder (deleted afterwards); needs no sound card.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cosine_host.lab.material import SAMPLERATE, synthesize_material  # noqa: E402

# (label, file name, subtype to store the input in, extra render options)
CASES = [
    ("WAV PCM_16", "wav", "PCM_16", []), ("AIFF PCM_16", "aiff", "PCM_16", []),
    ("FLAC PCM_16", "flac", "PCM_16", []), ("WAV PCM_24", "wav", "PCM_24", []),
    ("AIFF PCM_24", "aiff", "PCM_24", []), ("FLAC PCM_24", "flac", "PCM_24", []),
    ("WAV FLOAT", "wav", "FLOAT", []), ("AIFF FLOAT", "aiff", "FLOAT", []),
    ("WAV FLOAT -> PCM_16 (TPDF)", "wav", "FLOAT", ["--subtype", "PCM_16"]),
    ("OGG Vorbis", "ogg", "VORBIS", []), ("OGG Vorbis --quality 1", "ogg", "VORBIS",
                                          ["--quality", "1"]),
    ("Opus", "opus", "OPUS", []), ("MP3", "mp3", "MPEG_LAYER_III", []),
    ("MP3 --quality 1", "mp3", "MPEG_LAYER_III", ["--quality", "1"]),
]
BITS = {"PCM_16": 16, "PCM_24": 24}


def measure(folder: pathlib.Path, material: np.ndarray, label, ext, subtype, extra,
            overrides) -> dict:
    source = folder / f"in-{len(list(folder.iterdir()))}.{ext}"
    kwargs = {"format": "OGG", "subtype": "OPUS"} if ext == "opus" else {"subtype": subtype}
    if ext in ("ogg", "mp3", "opus"):
        source = folder / f"in-{len(list(folder.iterdir()))}.wav"     # lossy: code it once
        kwargs = {"subtype": "FLOAT"}
    sf.write(source, material, SAMPLERATE, **kwargs)
    target = folder / f"out-{len(list(folder.iterdir()))}.{ext}"
    report_path = folder / "r.json"
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "render", str(source),
                           str(target), "--report", str(report_path), "--overwrite", *extra,
                           *[a for o in overrides for a in ("--set", o)]],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{label}: {done.stderr.strip()}")
    r = json.loads(report_path.read_text())
    row = {"format": label, "subtype": r["subtype"], "snr_db": r["snr_db"],
           "file_snr_db": r["file_snr_db"], "identical": r["file_identical"],
           "dither": r["dither"], "max_err_lsb": None, "mean_err_lsb": None,
           "off_percent": None}
    bits = BITS.get(r["subtype"])
    if bits:
        x = sf.read(source, dtype="float64")[0]
        y = sf.read(target, dtype="float64")[0]
        e = (y - x) * 2 ** (bits - 1)
        row["max_err_lsb"], row["mean_err_lsb"] = float(np.abs(e).max()), float(e.mean())
        row["off_percent"] = 100.0 * float(np.mean(np.abs(e) > 0.5))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override passed to every render, e.g. model.device=cpu")
    args = parser.parse_args()
    material = synthesize_material()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            rows.append(measure(pathlib.Path(tmp), material, *case, args.overrides))
    print(f"{'format':28} {'subtype':15} {'engine SNR':>10} {'file SNR':>9} "
          f"{'max err LSB':>11} {'mean err LSB':>12} {'% off':>6}  dither")
    for r in rows:
        file_snr = "exact" if r["identical"] else f"{r['file_snr_db']:.1f}"
        max_err = "-" if r["max_err_lsb"] is None else f"{r['max_err_lsb']:.0f}"
        mean_err = "-" if r["mean_err_lsb"] is None else f"{r['mean_err_lsb']:+.4f}"
        off = "-" if r["off_percent"] is None else f"{r['off_percent']:.2f}"
        print(f"{r['format']:28} {r['subtype']:15} {r['snr_db']:10.1f} {file_snr:>9} "
              f"{max_err:>11} {mean_err:>12} {off:>6}  {r['dither']}")


if __name__ == "__main__":
    main()

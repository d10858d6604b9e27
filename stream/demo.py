"""`run.py demo`: synthesised test material rendered through the default config and the presets.

Needs no input file and no sound card. Writes into one folder:

    demo-material.wav         the test material (FLOAT WAV, 4 s, 48 kHz, stereo)
    demo-<preset>.wav         the material rendered through each preset (FLOAT WAV)
    demo-<preset>.json        render_file's report for it
    demo-summary.json         the table's rows

and returns a table of SNR, bitrate, kept coefficients, real-time factor and latency per preset.
Files that exist there already are refused before anything is rendered, unless ``overwrite``
(``--overwrite``): then these files, and only these, are replaced.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np
import soundfile as sf

from stream.config import CONFIG_DIR, ConfigError, load_config
from stream.errors import UserError
from stream.files import atomic_path, write_json_atomic
from stream.outputs import check_outputs, protected_paths
from stream.render import render_file

PRESETS = ("quantize-6bit", "lowpass", "sparse-topk", "sparse-threshold")
SAMPLERATE = 48000          # Hz, of the test material
SECONDS = 4.0               # length of the test material
FADE_S = 0.005              # raised-cosine fade at every segment edge (no clicks between parts)
MATERIAL_NAME = "demo-material.wav"

COLUMNS = [["preset", "preset", ""], ["snr_db", "SNR dB", ".1f"],
           ["bitrate_kbps", "kbps", ".1f"], ["kbps_entropy", "kbps/band", ".1f"],
           ["kept_percent", "kept %", ".1f"],
           ["realtime_factor", "x real time", ".0f"], ["latency_ms", "latency ms", ".2f"]]


def synthesize_material(samplerate: int = SAMPLERATE, seconds: float = SECONDS) -> np.ndarray:
    """Deterministic stereo test signal, float32 (frames, 2), peak below 0.6.

    Quarters of ``seconds`` (4 s by default): harmonic tones (left 220 Hz, right 330 Hz, eight
    harmonics at 1/k), an exponential sweep 20 Hz -> 0.45 * samplerate on both channels, four
    white-noise bursts of 1/40 of the length each (independent per channel), then silence for
    half a quarter and a C major chord (262, 330, 392 Hz) on both channels.
    """
    frames = int(round(seconds * samplerate))
    quarter = frames // 4
    out = np.zeros((frames, 2), np.float64)
    t = np.arange(quarter) / samplerate

    def harmonic(f0: float) -> np.ndarray:
        k = np.arange(1, 9)[:, None]
        return (np.sin(2 * np.pi * f0 * k * t) / k).sum(axis=0) * 0.25

    out[:quarter, 0] = harmonic(220.0)
    out[:quarter, 1] = harmonic(330.0)

    f_lo, f_hi, span = 20.0, 0.45 * samplerate, quarter / samplerate
    rate = np.log(f_hi / f_lo) / span
    sweep = 0.5 * np.sin(2 * np.pi * f_lo * (np.exp(rate * t) - 1.0) / rate)
    out[quarter:2 * quarter] = sweep[:, None]

    rng = np.random.default_rng(0)
    burst = frames // 40
    for i in range(4):
        start = 2 * quarter + i * quarter // 4
        out[start:start + burst] = np.clip(rng.normal(0.0, 0.15, (burst, 2)), -0.55, 0.55) \
            * _fade(burst, samplerate)[:, None]

    chord_start = 3 * quarter + quarter // 2
    tc = np.arange(frames - chord_start) / samplerate
    chord = sum(np.sin(2 * np.pi * f * tc) for f in (261.63, 329.63, 392.0)) * 0.18
    out[chord_start:] = (chord * _fade(len(tc), samplerate))[:, None]

    for part in (slice(0, quarter), slice(quarter, 2 * quarter)):
        out[part] *= _fade(part.stop - part.start, samplerate)[:, None]
    return out.astype(np.float32)


def _fade(frames: int, samplerate: int) -> np.ndarray:
    """1.0 with raised-cosine ramps of FADE_S seconds at both ends, shape (frames,)."""
    ramp = min(int(FADE_S * samplerate), frames // 2)
    gain = np.ones(frames)
    if ramp:
        rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        gain[:ramp] = rise
        gain[frames - ramp:] = rise[::-1]
    return gain


def _configs(config_path, overrides) -> list[tuple[str, object]]:
    """(preset name, Config) for the base config and every shipped preset, overrides applied."""
    base_name = pathlib.Path(config_path).stem if config_path else "default"
    if base_name in PRESETS:    # -c configs/lowpass.yaml: keep the two rows' files apart
        base_name += "-base"
    named = [(base_name, config_path)] + [(p, CONFIG_DIR / f"{p}.yaml") for p in PRESETS]
    configs = []
    for name, path in named:
        try:
            configs.append((name, load_config(path, overrides)))
        except ConfigError as e:
            raise UserError(f"preset {name}: {e}") from None
    return configs


def _kept_percent(processors: list[dict]) -> float | None:
    masks = [p["kept_fraction"] for p in processors if "kept_fraction" in p]
    return 100.0 * masks[-1] if masks else None


def planned_outputs(folder: pathlib.Path, names: list[str]) -> list[tuple[str, pathlib.Path]]:
    """(what, path) of every file the demo writes into ``folder`` for configs ``names``."""
    outputs = [("--out-dir material", folder / MATERIAL_NAME)]
    for name in names:
        outputs += [(f"--out-dir {name} render", folder / f"demo-{name}.wav"),
                    (f"--out-dir {name} report", folder / f"demo-{name}.json")]
    return outputs + [("--out-dir summary", folder / "demo-summary.json")]


def run_demo(out_dir: str, config_path: str | None = None, overrides=(), overwrite: bool = False,
             progress=None) -> dict:
    """Synthesise the test material and render it through the base config and PRESETS.

    Args:
        out_dir: folder for the files (created if missing, with its parents).
        config_path: the base config (first row, named after the file); None = default.yaml.
        overrides: ``"key.path=value"`` strings applied to the base and to every preset, e.g.
            ``("model.device=cpu",)``.
        overwrite: replace the demo's files where they exist; without it an existing one is
            refused before any work (stream.outputs.check_outputs). The config files and
            checkpoints in use are never replaced.
        progress: callable(done_frames, total_frames) over all renders together, or None.
    Returns:
        ``{"table": {"columns": COLUMNS, "rows": [...]}, "out_dir": str, "material": path,
        "reports": [render_file report per preset]}``. Row keys: preset, snr_db,
        bitrate_kbps (None without a quantizer), kbps_entropy (one entropy model per band;
        None without a quantizer), kept_percent (None without a mask),
        realtime_factor, latency_ms, output.
    Raises:
        UserError: a preset fails to load with the overrides (named), out_dir is a file, or
            an output exists (without ``overwrite``) or is a config or checkpoint in use.
    """
    configs = _configs(config_path, overrides)
    folder = pathlib.Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out-dir {out_dir!r} is a file; give a folder name")
    protected = [p for _, cfg in configs for p in protected_paths(cfg)]
    if folder.is_dir():
        check_outputs(planned_outputs(folder, [name for name, _ in configs]), protected,
                      overwrite)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out-dir {out_dir!r} cannot be created: {e.strerror or e}") from None

    material = synthesize_material()
    material_path = folder / MATERIAL_NAME
    with atomic_path(material_path) as tmp:
        sf.write(str(tmp), material, SAMPLERATE, subtype="FLOAT", format="WAV")

    frames = material.shape[0]
    grand_total = frames * len(configs)
    rows, reports = [], []
    for i, (name, cfg) in enumerate(configs):
        offset = i * frames
        step = None if progress is None else (
            lambda done, total, offset=offset: progress(offset + done, grand_total))
        target = folder / f"demo-{name}.wav"
        report = render_file(cfg, str(material_path), str(target), subtype="FLOAT",
                             overwrite=True, progress=step)
        report["preset"] = name
        write_json_atomic(folder / f"demo-{name}.json", report)
        reports.append(report)
        rows.append({"preset": name, "snr_db": report["snr_db"],
                     "bitrate_kbps": report["bitrate_kbps"],
                     "kbps_entropy": report["kbps_entropy"],
                     "kept_percent": _kept_percent(report["processors"]),
                     "realtime_factor": report["realtime_factor"],
                     "latency_ms": report["latency_ms"], "output": os.fspath(target)})
    write_json_atomic(folder / "demo-summary.json", {"material": os.fspath(material_path),
                                                     "rows": rows})
    return {"table": {"columns": COLUMNS, "rows": rows}, "out_dir": os.fspath(folder),
            "material": os.fspath(material_path), "reports": reports}

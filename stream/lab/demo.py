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

import soundfile as sf

from cosine_host.config.schema import CONFIG_DIR, ConfigError, load_config
from cosine_host.errors import UserError
from cosine_host.files import atomic_path, write_json_atomic
from cosine_host.lab.material import SAMPLERATE, synthesize_material
from cosine_host.outputs import check_outputs, protected_paths
from cosine_host.offline.render import render_file

PRESETS = ("quantize-6bit", "lowpass", "sparse-topk", "sparse-threshold")
MATERIAL_NAME = "demo-material.wav"

COLUMNS = [["preset", "preset", ""], ["snr_db", "SNR dB", ".1f"],
           ["bitrate_kbps", "kbps", ".1f"], ["kbps_entropy", "kbps/band", ".1f"],
           ["kept_percent", "kept %", ".1f"],
           ["realtime_factor", "x real time", ".0f"], ["latency_ms", "latency ms", ".2f"]]


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
            refused before any work (cosine_host.outputs.check_outputs). The config files and
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

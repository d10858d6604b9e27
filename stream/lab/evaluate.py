"""`run.py evaluate`: what each setting costs in bits and in quality, next to real codecs.

Every setting (a config, or one value of a sweep over a config key) is rendered through the engine
(the same Engine as `render`, latency compensated) for every input, and measured against the input
(cosine_host.lab.metrics). Per quantized setting three bitrates come from the last quantizer of the
chain (cosine_host.models.processors.registry.Quantize.rates): ``kbps_fixed`` (no entropy coding),
``kbps_pooled`` (one histogram for all symbols, the `render` report's ``bitrate_kbps``) and
``kbps_entropy`` (one model per band of coefficient indices). A chain with a ``codec``
processor writes real bytes: its rows carry ``kbps_bytes``, the bytes it produced x 8 per
second. ``kbps``, the rate a row is compared at, is ``kbps_bytes`` for codec-processor rows,
``kbps_entropy`` for other engine rows and the encoded file's bitrate for reference-codec rows
(cosine_host.lab.codecs, encoded near the engine rows' bitrates of the same input; their
``kbps_bytes`` is that file's bitrate too).

``at_kbps`` reads every curve (a sweep, a config, a codec; per input) at chosen bitrates: each
metric interpolated linearly in log kbps between the two rows that bracket the bitrate (None
outside a curve's range, never extrapolated), the rate-distortion table of docs/evaluate.md;
the codecs are then also encoded at those bitrates.

Without INPUT files the built-in material is used: ``demo speech`` (cosine_host.lab.speech, mono)
and ``demo music`` (cosine_host.lab.material.synthesize_material, stereo), 4 s at 48 kHz each.
"""
from __future__ import annotations

import csv
import io
import json
import os
import pathlib

import numpy as np
import soundfile as sf

from cosine_host.lab import codecs as codec_lib
from cosine_host.lab import metrics as metric_lib
from cosine_host.config.schema import ConfigError, load_config, resolve_config_path
from cosine_host.engine.engine import Engine
from cosine_host.errors import UserError
from cosine_host.files import atomic_path
from cosine_host.lab.speech import looks_like_speech
from cosine_host.offline.audio_io import replace_nonfinite

RATE_KEYS = ("kbps", "kbps_bytes", "kbps_fixed", "kbps_pooled", "kbps_entropy")
ROW_KEYS = ("label", "kind", "input", "config", *RATE_KEYS, *metric_lib.NAMES, "notes")
CONTENTS = ("auto", "speech", "audio")

COLUMNS = [["label", "setting", ""], ["input", "input", ""], ["kbps", "kbps", ".1f"],
           ["kbps_bytes", "bytes", ".1f"],
           ["kbps_fixed", "fixed", ".1f"], ["kbps_pooled", "pooled", ".1f"],
           ["kbps_entropy", "entropy", ".1f"], ["snr_db", "SNR dB", ".1f"],
           ["si_sdr_db", "SI-SDR", ".1f"], ["lsd_db", "LSD dB", ".2f"],
           ["mel_distance", "mel", ".3f"], ["stft_distance", "STFT", ".3f"],
           ["pesq", "PESQ", ".2f"], ["stoi", "STOI", ".3f"], ["visqol", "ViSQOL", ".2f"],
           ["loudness_lu", "dLU", ".2f"]]


# --- planning ---------------------------------------------------------------------------------

def split_values(text: str) -> list[str]:
    """``"2,3,[1, 2],{a: 1}"`` -> ``["2", "3", "[1, 2]", "{a: 1}"]``: commas inside brackets
    or braces stay."""
    values, depth, current = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += ch
    values.append(current.strip())
    return [v for v in values if v]


def parse_sweep(text: str) -> tuple[str, list[str]]:
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key or not split_values(values):
        raise UserError(f"--sweep {text!r}: expected key.path=v1,v2,..., e.g. --sweep "
                        f"processors.0.bits=2,4,6")
    return key, split_values(values)


def plan_settings(config_paths, sweeps, overrides=()) -> list[dict]:
    """One dict per setting: ``{"label", "group", "cfg"}``. Each sweep is its own curve over
    each config (no cartesian product between sweeps); without sweeps a config is one row."""
    config_paths = list(config_paths) or [None]
    parsed = [parse_sweep(s) for s in sweeps]
    settings = []
    for path in config_paths:
        name = "default" if path is None else pathlib.Path(resolve_config_path(path)).stem
        plans = ([(name, name, ())] if not parsed else
                 [(f"{name} {key}={value}", f"{name} {key}", (f"{key}={value}",))
                  for key, values in parsed for value in values])
        for label, group, extra in plans:
            try:
                cfg = load_config(path, [*overrides, *extra])
            except ConfigError as e:
                raise UserError(f"{label}: {e}") from None
            settings.append({"label": label, "group": group, "cfg": cfg})
    return settings


def load_inputs(paths, content: str = "auto") -> list[dict]:
    """``{"name", "path", "signal", "samplerate", "speech"}`` per input (files also
    ``"nan_samples"`` and ``"warnings"``: NaN/Inf samples become 0 with a warning, a file of
    nothing else is refused, as in render); the demo material when ``paths`` is empty."""
    if content not in CONTENTS:
        raise UserError(f"--content {content!r}: allowed: {' | '.join(CONTENTS)}")
    inputs = []
    if not paths:
        from cosine_host.lab.material import SAMPLERATE, synthesize_material
        from cosine_host.lab.speech import synthesize_speech
        inputs = [{"name": "demo speech", "path": None, "signal": synthesize_speech(),
                   "samplerate": SAMPLERATE, "speech": True},
                  {"name": "demo music", "path": None, "signal": synthesize_material(),
                   "samplerate": SAMPLERATE, "speech": False}]
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f"input file not found: {path!r}; check the path")
        try:
            signal, rate = sf.read(path, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as e:
            raise UserError(f"cannot read {path!r} as audio ({' '.join(str(e).split())}); give "
                            f"a WAV, FLAC, OGG or MP3 file") from None
        if signal.shape[0] == 0:
            raise UserError(f"input {path!r} has no audio (0 frames)")
        signal, nonfinite, warnings = replace_nonfinite(signal, f"input {path!r}", "measure")
        inputs.append({"name": os.path.basename(path), "path": path, "signal": signal,
                       "samplerate": rate, "speech": None, "nan_samples": nonfinite,
                       "warnings": warnings})
    for item in inputs:
        if content != "auto":
            item["speech"] = content == "speech"
        elif item["speech"] is None:
            item["speech"] = looks_like_speech(item["signal"], item["samplerate"])
    return inputs


# --- measuring --------------------------------------------------------------------------------

def render_setting(cfg, signal: np.ndarray, samplerate: int) -> tuple[np.ndarray, dict | None]:
    """(the engine's output aligned with ``signal``, the rates or None): the last codec's
    ``kbps_bytes`` (bytes written) and ``kbps_estimate`` when the chain has a codec, else
    the last quantizer's Quantize.rates()."""
    from cosine_host.models.processors.registry import Codec, Quantize
    engine = Engine.from_config(cfg, blocksize=0, channels=signal.shape[1],
                                samplerate=samplerate)
    total = signal.shape[0]
    out = np.empty_like(signal)
    chunk = 1 << 16
    pieces = engine.render_chunks((signal[i:i + chunk] for i in range(0, total, chunk)), total,
                                  out=out)
    done = 0
    rates = None
    try:
        for piece in pieces:
            done += piece.shape[0]
            if done >= total:       # statistics before render_chunks resets the engine
                break
        codecs = [p for p in engine.processors if isinstance(p, Codec)]
        quantizers = [p for p in engine.processors if isinstance(p, Quantize)]
        if codecs:
            stats = codecs[-1].stats()
            rates = {"kbps_bytes": stats["kbps_bytes"], "kbps_estimate": stats["kbps_estimate"]}
        else:
            rates = quantizers[-1].rates() if quantizers else None
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"rendering failed: {type(e).__name__}: {e}") from e
    finally:
        pieces.close()
    return out, rates


def _row(label, kind, item, config, rates, values, notes) -> dict:
    row = {"label": label, "kind": kind, "input": item["name"], "config": config}
    row.update({k: (None if rates is None else rates.get(k)) for k in RATE_KEYS})
    row.update({k: values.get(k) for k in metric_lib.NAMES})
    row["notes"] = notes
    return row


def plan_evaluation(inputs: list[str], config_paths=(), overrides=(), sweeps=(), *,
                    codecs: str | None = None, metrics: str | None = None,
                    plot_metrics: str | None = None, at_kbps: str | None = None,
                    content: str = "auto", outputs: dict | None = None,
                    overwrite: bool = False) -> dict:
    """Check every argument of `evaluate` before any work: names of metrics, codecs and plot
    panels, the bitrates, the settings (configs x sweeps), the output files ``outputs``
    ({flag: path or None}; refused when they exist without ``overwrite`` or would replace a
    config, a checkpoint in use or an input) and the packages the metrics and a plot need.

    Returns {"inputs": paths, "settings", "metrics", "codecs", "plot_metrics", "at_kbps",
    "content"} for ``run_evaluation``. Raises UserError.
    """
    from cosine_host.lab import quality_plot
    from cosine_host.outputs import check_outputs, protected_paths
    plan = {"inputs": list(inputs), "metrics": metric_lib.check_names(metrics),
            "codecs": codec_lib.check_names(codecs),
            "plot_metrics": quality_plot.check_names(plot_metrics),
            "at_kbps": parse_kbps(at_kbps), "content": content,
            "settings": plan_settings(config_paths, sweeps, overrides)}
    protected = [p for s in plan["settings"] for p in protected_paths(s["cfg"])]
    protected += protected_paths(None, [("input file", i) for i in inputs])
    outputs = dict(outputs or {})
    check_outputs(list(outputs.items()), protected, overwrite)
    metric_lib.check_available(plan["metrics"])
    plot = outputs.get("--plot")
    if plot:
        from cosine_host.plotting import check_matplotlib
        if not str(plot).lower().endswith(".png"):
            raise UserError(f"--plot {str(plot)!r}: the plot is a PNG image; give a file name "
                            f"ending in .png")
        panels = [n for n in plan["plot_metrics"] if n in plan["metrics"]]
        left_out = [n for n in plan["plot_metrics"] if n not in plan["metrics"]]
        if not panels or (plot_metrics is not None and left_out):
            them = "it" if len(left_out) == 1 else "them"
            raise UserError(f"--plot: {', '.join(left_out)} would be drawn but --metrics does "
                            f"not compute {them} ({', '.join(plan['metrics'])}); add {them} "
                            f"to --metrics, or choose --plot-metrics among those")
        plan["plot_metrics"] = tuple(panels)
        check_matplotlib()
    return plan


def run_evaluation(plan: dict, progress=None) -> dict:
    """``evaluate`` of a ``plan_evaluation`` plan: its inputs loaded (the built-in material when
    there are none), every setting and codec measured."""
    return evaluate(load_inputs(plan["inputs"], plan["content"]), plan["settings"],
                    plan["metrics"], plan["codecs"], progress=progress,
                    at_kbps=plan["at_kbps"])


def evaluate(inputs, settings, metric_names=metric_lib.NAMES, codec_names=(),
             progress=None, at_kbps=()) -> dict:
    """Measure every setting on every input, then each codec near the engine rows' bitrates
    (and at ``at_kbps``).

    Returns ``{"rows": [...], "inputs": [...], "metrics": {name: {package, version, mode}},
    "warnings": [one line each: NaN/Inf input samples replaced by 0], "table": {"columns",
    "rows"}, "groups": {label: curve name}, "at_kbps": curves_at(...) or None}``.
    """
    metric_lib.check_available(metric_names)
    total = len(inputs) * (len(settings) + len(codec_names))
    done = 0
    rows, groups = [], {}

    def step():
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    for item in inputs:
        signal, rate = item["signal"], item["samplerate"]
        targets = []
        for s in settings:
            processed, rates = render_setting(s["cfg"], signal, rate)
            values, notes = metric_lib.measure(signal, processed, rate, metric_names,
                                               item["speech"])
            if rates is None:
                notes.insert(0, "kbps: no quantizer in the chain, no bitrate")
            else:
                # a codec row is compared at the bytes it wrote, a quantizer's at its estimate
                kbps = (rates["kbps_bytes"] if rates.get("kbps_bytes") is not None
                        else rates["kbps_entropy"])
                rates = {**rates, "kbps": kbps}
                targets.append(kbps)
            rows.append(_row(s["label"], "engine", item, s["cfg"].to_dict(), rates, values,
                             notes))
            groups[s["label"]] = s["group"]
            step()
        for codec in codec_names:
            if not targets:
                rows.append(_row(codec, "codec", item, {"codec": codec}, None, {},
                                 [f"{codec}: no quantized engine row to match a bitrate"]))
                step()
                continue
            for decoded, kbps, level, note in codec_lib.at_bitrates(signal, rate, codec,
                                                                    [*targets, *at_kbps]):
                label = codec if kbps is None else f"{codec} {kbps:.0f} kbps"
                config = {"codec": codec, "compression_level": level,
                          "bitrate_mode": codec_lib.CODECS[codec][3]}
                if decoded is None:
                    rows.append(_row(label, "codec", item, config, None, {}, [note]))
                    continue
                values, notes = metric_lib.measure(signal, decoded, rate, metric_names,
                                                   item["speech"])
                if note:
                    notes.insert(0, note)
                rows.append(_row(label, "codec", item, config,
                                 {"kbps": kbps, "kbps_bytes": kbps}, values, notes))
                groups[label] = codec
            step()
    described = [{"name": i["name"], "path": i["path"], "samplerate": i["samplerate"],
                  "channels": int(i["signal"].shape[1]),
                  "seconds": i["signal"].shape[0] / i["samplerate"],
                  "content": "speech" if i["speech"] else "audio",
                  "nan_samples": i.get("nan_samples", 0)} for i in inputs]
    result = {"rows": rows, "inputs": described, "metrics": metric_lib.describe(metric_names),
              "warnings": [w for i in inputs for w in i.get("warnings", [])],
              "table": {"columns": [c for c in COLUMNS if c[0] not in metric_lib.NAMES
                                    or c[0] in metric_names], "rows": rows},
              "groups": groups}
    result["at_kbps"] = curves_at(result, at_kbps, metric_names) if at_kbps else None
    return result


def parse_kbps(text: str | None) -> tuple[float, ...]:
    """``"32,48,64"`` -> (32.0, 48.0, 64.0); None or empty: ()."""
    if not text:
        return ()
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        values = ()
    if not values or not all(np.isfinite(v) and v > 0 for v in values):
        raise UserError(f"--at-kbps {text!r}: expected bitrates in kbit/s > 0, e.g. 32,48,64")
    return values


def curves_at(result: dict, targets, metric_names) -> dict:
    """Every curve of ``result`` read at each target kbps: ``{"columns", "rows", "table"}`` (the
    table: the same rows to print, ``_curves_table``) with one row
    per curve (the group of its rows: a sweep, a config or a codec) and input, the column
    ``"{metric}@{kbps}"`` per metric and target: linear in log kbps between the nearest rows
    below and above the target (None outside the curve's range)."""
    curves: dict[tuple, list] = {}
    for row in result["rows"]:
        if row["kbps"] is not None:
            group = result["groups"].get(row["label"], row["label"])
            curves.setdefault((group, row["input"]), []).append(row)
    names = [n for n in metric_names if any(r.get(n) is not None for r in result["rows"])]
    rows, measured = [], []
    for (group, source), members in curves.items():
        out = {"curve": group, "input": source}
        for name in names:
            points = sorted((r["kbps"], r[name]) for r in members if r.get(name) is not None)
            for target in targets:
                out[f"{name}@{target:g}"] = _interpolate(points, target)
        rows.append(out)
        measured.append([n for n in names if any(r.get(n) is not None for r in members)])
    columns = [["curve", "curve", ""], ["input", "input", ""]] + [
        [f"{n}@{t:g}", f"{n} @{t:g}", ".2f"] for n in names for t in targets]
    return {"columns": columns, "rows": rows,
            "table": _curves_table(rows, measured, targets)}


def _curves_table(rows: list[dict], measured: list[list[str]], targets) -> dict:
    """``curves_at``'s rows for people: one line per curve, input and metric measured on it
    (``measured``, per row: PESQ is not on music), one column per target, so the width grows
    with the targets alone (not metrics x targets)."""
    specs = {key: spec for key, _, spec in COLUMNS}
    headings = {key: heading for key, heading, _ in COLUMNS}
    lines = []
    for row, names in zip(rows, measured):
        for name in names:
            line = {"curve": row["curve"], "input": row["input"],
                    "metric": headings.get(name, name)}
            for target in targets:
                value = row[f"{name}@{target:g}"]
                line[f"@{target:g}"] = None if value is None else format(value, specs.get(name,
                                                                                        ".2f"))
            lines.append(line)
    columns = [["curve", "curve", ""], ["input", "input", ""], ["metric", "metric", ""]] + [
        [f"@{t:g}", f"@{t:g} kbps", ""] for t in targets]
    return {"columns": columns, "rows": lines}


def _interpolate(points, target: float):
    """The value at ``target`` on the polyline of (kbps, value) ``points`` in log kbps; past the
    ends, the end's value when it is within codec_lib.KBPS_TOLERANCE of ``target`` (a codec
    encoded at the target lands within it, on either side), else None."""
    for (k0, v0), (k1, v1) in zip(points, points[1:]):
        if k0 <= target <= k1:
            if k1 == k0:
                return float(v0)
            t = (np.log(target) - np.log(k0)) / (np.log(k1) - np.log(k0))
            return float(v0 + t * (v1 - v0))
    for kbps, value in points[:1] + points[-1:]:
        if abs(kbps - target) <= codec_lib.KBPS_TOLERANCE * target:
            return float(value)
    return None


# --- writing ----------------------------------------------------------------------------------

def json_data(result: dict) -> dict:
    """What ``--json`` writes: rows, inputs, metrics, and with --at-kbps ``at_kbps``."""
    data = {"rows": result["rows"], "inputs": result["inputs"], "metrics": result["metrics"]}
    if result.get("at_kbps"):
        data["at_kbps"] = result["at_kbps"]["rows"]
    return data


def write_csv(path, result: dict) -> None:
    """One line per row, the columns of ROW_KEYS; config as JSON, notes joined by "; "."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(ROW_KEYS)
    for row in result["rows"]:
        line = []
        for key in ROW_KEYS:
            value = row.get(key)
            if key == "config":
                value = json.dumps(value, sort_keys=True)
            elif key == "notes":
                value = "; ".join(value)
            line.append("" if value is None else value)
        writer.writerow(line)
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write {str(path)!r}: {e.strerror or e}") from None

"""Strict configuration: YAML presets checked against a schema that lives in code.

`load_config(path=None, overrides=())` reads ``configs/default.yaml`` (or ``path``), applies
``"key.path=value"`` overrides (values parsed as YAML, so ``8`` is an int and ``null`` is None)
and returns a :class:`Config`. Any problem raises one :class:`ConfigError` whose message names the
key path, what was wrong and the allowed values.
"""
from __future__ import annotations

import copy
import math
import pathlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import yaml

from models import processors as processor_registry
from stream import windows
from stream.errors import UserError

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


class ConfigError(UserError, ValueError):
    """A configuration value is missing, unknown, of the wrong type or impossible."""


@dataclass(frozen=True)
class AudioConfig:
    samplerate: int = 48000
    blocksize: int = 256
    channels: int = 2
    input_device: int | str | None = None
    output_device: int | str | None = None
    latency: str | float = "low"


@dataclass(frozen=True)
class FrameConfig:
    size: int = 512
    hop: int = 256
    window: str = "sqrt_hann"


@dataclass(frozen=True)
class ModelConfig:
    coefficients: int = 512
    init: str = "dct"
    decoder: str = "tied"
    checkpoint: str | None = None
    device: str = "auto"
    dtype: str = "float32"


@dataclass(frozen=True)
class MonitorConfig:
    report: str | None = None
    refresh_s: float = 0.25


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    frame: FrameConfig = field(default_factory=FrameConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    processors: tuple = ()
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    source: str = "configs/default.yaml"

    def to_dict(self) -> dict:
        """Plain nested dict (JSON and YAML serialisable), without ``source``."""
        d = asdict(self)
        d.pop("source")
        d["processors"] = [dict(p) for p in self.processors]
        return d

    def replace(self, *overrides: str) -> "Config":
        """A new config with ``key.path=value`` overrides applied and validated."""
        return _from_dict(_apply_overrides(self.to_dict(), overrides), self.source)


# --- field checks -----------------------------------------------------------------------------

def _int(lo=None, hi=None) -> Callable[[str, Any], int]:
    def check(key, v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{key} = {v!r}: must be an integer{_range_text(lo, hi)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(f"{key} = {v!r}: out of range; allowed: an integer{_range_text(lo, hi)}")
        return v
    return check


def _range_text(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" in {lo}..{hi}"
    if lo is not None:
        return f" >= {lo}"
    return ""


def _positive_float(key, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{key} = {v!r}: must be a number of seconds > 0")
    return float(v)


def _choice(*allowed) -> Callable[[str, Any], str]:
    def check(key, v):
        if v not in allowed:
            raise ConfigError(f"{key} = {v!r}: not allowed; allowed: {' | '.join(allowed)}")
        return v
    return check


def _device(key, v):
    if v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
        return v
    raise ConfigError(f"{key} = {v!r}: must be null (default device), a device index >= 0 "
                      f"or part of a device name")


def _latency(key, v):
    if v in ("low", "high"):
        return v
    if isinstance(v, str):
        raise ConfigError(f"{key} = {v!r}: not allowed; allowed: low | high | seconds > 0")
    return _positive_float(key, v)


def _optional_path(key, v):
    if v is None or (isinstance(v, str) and v):
        return v
    raise ConfigError(f"{key} = {v!r}: must be null or a file path")


SCHEMA: dict[str, dict[str, Callable[[str, Any], Any]]] = {
    "audio": {
        "samplerate": _int(1),
        "blocksize": _int(0),
        "channels": _int(1, 256),
        "input_device": _device,
        "output_device": _device,
        "latency": _latency,
    },
    "frame": {
        "size": _int(2, 1 << 16),
        "hop": _int(1),
        "window": _choice(*windows.WINDOWS),
    },
    "model": {
        "coefficients": _int(1),
        "init": _choice("dct", "lowpass"),
        "decoder": _choice("tied", "free", "pinv"),
        "checkpoint": _optional_path,
        "device": _choice("auto", "cpu", "cuda"),
        "dtype": _choice("float32", "float64"),
    },
    "monitor": {
        "report": _optional_path,
        "refresh_s": _positive_float,
    },
}
SECTIONS = (*SCHEMA, "processors")


# --- loading ----------------------------------------------------------------------------------

def load_config(path: str | pathlib.Path | None = None, overrides=()) -> Config:
    """Load, override and validate a configuration.

    Args:
        path: YAML file; None reads ``configs/default.yaml``. A partial file is completed from
            the defaults (the defaults of the schema, not of default.yaml).
        overrides: ``"key.path=value"`` strings, applied in order, e.g. ``"frame.hop=128"``,
            ``"processors=[{type: quantize, bits: 6}]"`` or ``"processors.0.bits=4"``.
    Raises:
        ConfigError: one line naming the key path and the allowed values.
    """
    path = pathlib.Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} not found; give an existing YAML file "
                          f"(presets are in {CONFIG_DIR})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: "
                          f"{' '.join(str(e).split())}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r}: the top level must be a mapping of "
                          f"sections ({', '.join(SECTIONS)})")
    return _from_dict(_apply_overrides(data, overrides), str(path))


def _apply_overrides(data: dict, overrides) -> dict:
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. --set frame.hop=128")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None
        parts = key.split(".")
        node = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            here = ".".join(parts[:depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {item!r}: {here} is not an index of a list of "
                                      f"{len(node)} items")
                part = int(part)
            elif not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:depth])} is not a section")
            if last:
                node[part] = value
            else:
                if isinstance(node, dict) and node.get(part) is None:
                    node[part] = {}
                node = node[part]
    return data


def _from_dict(data: dict, source: str) -> Config:
    unknown = [k for k in data if k not in SECTIONS]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section; allowed: {', '.join(SECTIONS)}")
    sections = {}
    defaults = Config()
    for name, fields in SCHEMA.items():
        given = data.get(name) or {}
        if not isinstance(given, dict):
            raise ConfigError(f"{name} = {given!r}: must be a mapping with keys {', '.join(fields)}")
        for key in given:
            if key not in fields:
                raise ConfigError(f"{name}.{key}: unknown key; allowed: {', '.join(fields)}")
        values = asdict(getattr(defaults, name))
        for key, check in fields.items():
            if key in given:
                values[key] = check(f"{name}.{key}", given[key])
        sections[name] = type(getattr(defaults, name))(**values)

    frame, model = sections["frame"], sections["model"]
    n, h = frame.size, frame.hop
    if h > n or n % h:
        divisors = [d for d in (n // 2, n // 4, n // 8, n) if d >= 1 and n % d == 0]
        raise ConfigError(f"frame.hop = {h}: must divide frame.size ({n}); allowed: a divisor of "
                          f"{n}, e.g. {', '.join(map(str, divisors))}")
    if not windows.reconstructs(frame.window, n, h):
        raise ConfigError(f"frame.window = {frame.window!r} cannot reconstruct at hop {h} with "
                          f"size {n} (the overlapped windows vanish somewhere); use a smaller "
                          f"hop such as {n // 2}, or window: rectangular")
    if model.coefficients > n:
        raise ConfigError(f"model.coefficients = {model.coefficients}: must be <= frame.size "
                          f"({n}); allowed: 1..{n}")

    procs = data.get("processors")
    if procs is None:
        procs = []
    if not isinstance(procs, list):
        raise ConfigError(f"processors = {procs!r}: must be a list such as "
                          f"[{{type: quantize, bits: 8}}]")
    checked = []
    for i, spec in enumerate(procs):
        try:
            checked.append(processor_registry.check_spec(spec, n_coefficients=model.coefficients))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"processors[{i}].{e}") from None
    return Config(**sections, processors=tuple(checked), source=source)

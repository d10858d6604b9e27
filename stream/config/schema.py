"""Strict configuration: YAML presets checked against a schema that lives in code.

`load_config(path=None, overrides=())` reads ``default.yaml`` of the shipped presets (or
``path``: a YAML file, or the name of a shipped preset such as ``quantize-6bit``), applies
``"key.path=value"`` overrides (values parsed as YAML, so ``8`` is an int and ``null`` is None)
and returns a :class:`Config`. Any problem raises one :class:`ConfigError` whose message names the
key path, what was wrong and the allowed values. A key given twice in one mapping is an error.
A config that would need more memory than the machine has is refused (stream/config/memory.py).

Here: the sections' dataclasses, the schema tying each key to its check, YAML loading
(duplicate keys refused), presets, overrides and the checks across keys. The value checks
themselves and :class:`ConfigError` are in stream/config/checks.py.
"""
from __future__ import annotations

import copy
import os
import pathlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import yaml

from cosine_host.models.processors import registry as processor_registry
from cosine_host.config import checks as checks
from cosine_host.engine import effects
from cosine_host.engine import mdct, windows
from cosine_host.config.checks import ConfigError
from cosine_host.config.memory import check_memory


def _config_dir() -> pathlib.Path:
    """The shipped presets: ``cosine_host/configs`` in an installed package (pyproject.toml maps
    the source tree's ``configs/`` there), else ``configs/`` next to ``stream/`` in a checkout."""
    package = pathlib.Path(__file__).resolve().parent.parent
    installed = package / "configs"
    return installed if (installed / "default.yaml").is_file() else package.parent / "configs"


CONFIG_DIR = _config_dir()
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

MAX_FRAME_SIZE = 16384
"""frame.size above this is refused: 16384 samples are 341 ms at 48 kHz, so the engine's latency
(at least N - H) is far beyond any live use, and the model's N x M matrices need about 20 GB to
build (cosine_host.config.memory.memory_needed_bytes)."""


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
    synthesis_size: int | None = None
    kbd_alpha: float = windows.KBD_ALPHA

    @property
    def synthesis_samples(self) -> int:
        """S in samples: the synthesis window's nonzero span at the end of the frame
        (``synthesis_size``; null means the whole frame, ``size``)."""
        return self.size if self.synthesis_size is None else self.synthesis_size


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
class ControlConfig:
    """``control.osc``: {host, port} of `live`'s OSC server (port null: no server)."""
    osc: dict = field(default_factory=lambda: {"host": "127.0.0.1", "port": None})

    @property
    def osc_host(self) -> str:
        return self.osc["host"]

    @property
    def osc_port(self) -> int | None:
        return self.osc["port"]


def _osc(key, v):
    if not isinstance(v, dict) or set(v) - {"host", "port"}:
        raise ConfigError(f"{key} = {v!r}: must be a mapping with keys host, port")
    out = dict(ControlConfig().osc, **v)
    if not isinstance(out["host"], str) or not out["host"]:
        raise ConfigError(f"{key}.host = {out['host']!r}: must be an address such as 127.0.0.1")
    if out["port"] is not None:
        out["port"] = checks.integer(0, 65535)(f"{key}.port", out["port"])
    return out


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    frame: FrameConfig = field(default_factory=FrameConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    processors: tuple = ()
    pre: tuple = ()
    post: tuple = ()
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    source: str = "configs/default.yaml"

    def to_dict(self) -> dict:
        """Plain nested dict (JSON and YAML serialisable), without ``source``."""
        d = asdict(self)
        d.pop("source")
        d["processors"] = [dict(p) for p in self.processors]
        for where in STAGE_SECTIONS:
            d[where] = [dict(p) for p in getattr(self, where)]
        return d

    def replace(self, *overrides: str) -> "Config":
        """A new config with ``key.path=value`` overrides applied and validated."""
        return _from_dict(_apply_overrides(self.to_dict(), overrides), self.source)


# --- the schema: each key's check (stream/config/checks.py) -------------------------------------

SCHEMA: dict[str, dict[str, Callable[[str, Any], Any]]] = {
    "audio": {
        "samplerate": checks.integer(1),
        "blocksize": checks.integer(0),
        "channels": checks.integer(1, 256),
        "input_device": checks.device,
        "output_device": checks.device,
        "latency": checks.latency,
    },
    "frame": {
        "size": checks.integer(2, MAX_FRAME_SIZE),
        "hop": checks.integer(1),
        "window": checks.choice(*windows.WINDOWS),
        "synthesis_size": checks.optional_samples,
        "kbd_alpha": checks.kbd_alpha,
    },
    "model": {
        "coefficients": checks.integer(1),
        "init": checks.choice("dct", "lowpass", "mdct"),
        "decoder": checks.choice("tied", "free", "pinv"),
        "checkpoint": checks.optional_path,
        "device": checks.choice("auto", "cpu", "cuda"),
        "dtype": checks.choice("float32", "float64"),
    },
    "monitor": {
        "report": checks.optional_path,
        "refresh_s": checks.positive_seconds,
    },
    "control": {"osc": _osc},
}
STAGE_SECTIONS = effects.SECTIONS     # time-domain effect stages
SECTIONS = (*SCHEMA, "processors", *STAGE_SECTIONS)


# --- loading ----------------------------------------------------------------------------------

class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader (the same tags and types as ``yaml.safe_load``) that refuses a key given
    twice in one mapping, instead of keeping the last one silently."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)      # merge keys (<<) may repeat keys on purpose
            seen = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:           # an unhashable key: SafeLoader reports it below
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r} (first at line {first.line + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str):
    """``yaml.safe_load(text)``, except that a key repeated in a mapping raises yaml.YAMLError."""
    return yaml.load(text, Loader=StrictLoader)


def presets() -> list[dict]:
    """The shipped presets, default first: ``{"name", "path", "description"}`` each, the
    description being the first line of the file (a comment)."""
    found = []
    for path in sorted(CONFIG_DIR.glob("*.yaml"), key=lambda p: (p.stem != "default", p.stem)):
        with open(path, encoding="utf-8") as f:
            first = f.readline().strip()
        found.append({"name": path.stem, "path": str(path),
                      "description": first.lstrip("#").strip() if first.startswith("#") else ""})
    return found


def resolve_config_path(path: str | pathlib.Path | None) -> pathlib.Path:
    """The YAML file for ``-c``: None gives the shipped default.yaml; an existing file is
    itself; a name without a folder (``quantize-6bit`` or ``quantize-6bit.yaml``) that is no
    file here is the shipped preset of that name."""
    if path is None:
        return DEFAULT_CONFIG
    path = pathlib.Path(path)
    if not path.exists() and len(path.parts) == 1:
        preset = CONFIG_DIR / (path.name if path.suffix in (".yaml", ".yml")
                               else f"{path.name}.yaml")
        if preset.is_file():
            return preset
    return path


def load_config(path: str | pathlib.Path | None = None, overrides=()) -> Config:
    """Load, override and validate a configuration.

    Args:
        path: YAML file, or the name of a shipped preset (``resolve_config_path``); None reads
            the shipped ``default.yaml``. A partial file is completed from the defaults (the
            defaults of the schema, not of default.yaml). A relative ``model.checkpoint`` in the
            file is relative to the file's folder.
        overrides: ``"key.path=value"`` strings, applied in order, e.g. ``"frame.hop=128"``,
            ``"processors=[{type: quantize, bits: 6}]"`` or ``"processors.0.bits=4"``. A
            relative path given here is relative to the current folder.
    Raises:
        ConfigError: one line naming the key path and the allowed values.
    """
    path = resolve_config_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        names = ", ".join(p["name"] for p in presets())
        raise ConfigError(f"config file {str(path)!r} not found; give an existing YAML file or "
                          f"a preset name ({names}; `run.py presets` describes them)") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {str(path)!r} is a folder; give a YAML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {e}") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: "
                          f"{' '.join(str(e).split())}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r}: the top level must be a mapping of "
                          f"sections ({', '.join(SECTIONS)})")
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("checkpoint"), str) \
            and model["checkpoint"] and not os.path.isabs(model["checkpoint"]):
        data = copy.deepcopy(data)
        data["model"]["checkpoint"] = os.path.normpath(
            os.path.join(os.path.dirname(os.path.abspath(path)), model["checkpoint"]))
    return _from_dict(_apply_overrides(data, overrides), str(path))


def _apply_overrides(data: dict, overrides) -> dict:
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. --set frame.hop=128")
        try:
            value = parse_yaml(raw) if raw.strip() else None
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
    if model.init == "mdct":
        # before the generic checks: their advice (other hops, windows) does not hold here
        problem = mdct.mdct_problem(n, h, model.coefficients, frame.window,
                                      frame.synthesis_size, model.decoder)
        if problem:
            raise ConfigError(problem)
    if frame.window == "kbd" and n % 2:
        raise ConfigError(f"frame.window = 'kbd' needs an even frame.size (got {n}); use "
                          f"frame.size {n + 1} or another window")
    if frame.window == "kbd" and frame.synthesis_samples % 2:
        raise ConfigError(f"frame.synthesis_size = {frame.synthesis_samples}: the kbd window "
                          f"needs an even synthesis_size (its halves are whole samples); use an "
                          f"even multiple of frame.hop or another window")
    if h > n or n % h:
        raise ConfigError(f"frame.hop = {h}: must divide frame.size ({n}); allowed: "
                          f"{checks.hop_suggestion(n, frame.window)}")
    problem = windows.synthesis_problem(n, h, frame.synthesis_samples)
    if problem:
        raise ConfigError(problem)
    if not windows.reconstructs(frame.window, n, h, frame.synthesis_samples, frame.kbd_alpha):
        raise ConfigError(f"frame.window = {frame.window!r} cannot reconstruct at hop {h} with "
                          f"size {n} (the overlapped windows vanish somewhere); use a smaller "
                          f"hop such as {n // 2}, or window: rectangular")
    if model.coefficients > n:
        raise ConfigError(f"model.coefficients = {model.coefficients}: must be <= frame.size "
                          f"({n}); allowed: 1..{n}")
    audio = sections["audio"]
    check_memory(n, model.coefficients, blocksize=audio.blocksize, channels=audio.channels,
                 dtype=model.dtype)

    m = model.coefficients
    processors = checks.check_list(
        "processors", data.get("processors"), "[{type: quantize, bits: 8}]",
        lambda spec: processor_registry.check_spec(spec, n_coefficients=m),
        (ValueError, TypeError), ".")
    stages = {where: checks.check_list(where, data.get(where),
                                       "[{type: pedalboard.Gain, gain_db: -6}]",
                                       effects.check_spec, effects.EffectError)
              for where in STAGE_SECTIONS}
    return Config(**sections, processors=processors, **stages, source=source)



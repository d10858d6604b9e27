"""Strict configuration: YAML presets checked against a schema that lives in code.

`load_config(path=None, overrides=())` reads ``default.yaml`` of the shipped presets (or
``path``: a YAML file, or the name of a shipped preset such as ``quantize-6bit``), applies
``"key.path=value"`` overrides (values parsed as YAML, so ``8`` is an int and ``null`` is None)
and returns a :class:`Config`. Any problem raises one :class:`ConfigError` whose message names the
key path, what was wrong and the allowed values. A key given twice in one mapping is an error.
A config that would need more memory than the machine has is refused (``memory_needed_bytes``).
"""
from __future__ import annotations

import copy
import math
import os
import pathlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import yaml

from models import processors as processor_registry
from stream import effects
from stream import windows
from stream.errors import UserError

def _config_dir() -> pathlib.Path:
    """The shipped presets: ``stream/configs`` in an installed package (pyproject.toml maps the
    source tree's ``configs/`` there), else ``configs/`` next to ``stream/`` in a checkout."""
    here = pathlib.Path(__file__).resolve().parent
    installed = here / "configs"
    return installed if (installed / "default.yaml").is_file() else here.parent / "configs"


CONFIG_DIR = _config_dir()
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

MAX_FRAME_SIZE = 16384
"""frame.size above this is refused: 16384 samples are 341 ms at 48 kHz, so the engine's latency
(at least N - H) is far beyond any live use, and the model's N x M matrices need about 20 GB to
build (``memory_needed_bytes``)."""

BYTES_PER_MATRIX_ENTRY = 80
"""Peak memory per entry of the N x M matrices while the model and engine are built, measured
for N = M = 1024..4096 (float32 and float64, tied, free and pinv decoders: 70-80 bytes): the
encoder and decoder matrices, their float64 phase grids and the engine's folded copies."""

BASE_BYTES = 64 << 20
"""Memory the engine needs besides the matrices (queues, windows, FFT plans): 64 MiB covers it."""


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
    synthesis_size: int | None = None

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
        out["port"] = _int(0, 65535)(f"{key}.port", out["port"])
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


def _optional_samples(key, v):
    if v is None:
        return v
    return _int(1)(key, v)


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
        "size": _int(2, MAX_FRAME_SIZE),
        "hop": _int(1),
        "window": _choice(*windows.WINDOWS),
        "synthesis_size": _optional_samples,
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
    if h > n or n % h:
        raise ConfigError(f"frame.hop = {h}: must divide frame.size ({n}); allowed: "
                          f"{_hop_suggestion(n, frame.window)}")
    problem = windows.synthesis_problem(n, h, frame.synthesis_samples)
    if problem:
        raise ConfigError(problem)
    if not windows.reconstructs(frame.window, n, h, frame.synthesis_samples):
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
    processors = _check_list("processors", data.get("processors"), "[{type: quantize, bits: 8}]",
                             lambda spec: processor_registry.check_spec(spec, n_coefficients=m),
                             (ValueError, TypeError), ".")
    stages = {where: _check_list(where, data.get(where), "[{type: pedalboard.Gain, gain_db: -6}]",
                                 effects.check_spec, effects.EffectError)
              for where in STAGE_SECTIONS}
    return Config(**sections, processors=processors, **stages, source=source)


def _check_list(key: str, specs, example: str, check, errors, sep: str = "") -> tuple:
    """A list section (``processors``, ``pre``, ``post``): every entry checked by ``check``
    (pedalboard is imported only when a stage list is not empty); an error is one line
    prefixed with ``key[i]`` and ``sep``."""
    if specs is None:
        return ()
    if not isinstance(specs, list):
        raise ConfigError(f"{key} = {specs!r}: must be a list such as {example}")
    checked = []
    for i, spec in enumerate(specs):
        try:
            checked.append(check(spec))
        except errors as e:
            raise ConfigError(f"{key}[{i}]{sep}{e}") from None
    return tuple(checked)


def _hop_suggestion(n: int, window: str) -> str:
    """Text naming hops that divide ``n`` and reconstruct with ``window`` (largest first: the
    least compute), or what to change when none does (e.g. sqrt_hann at a prime N)."""
    divisors = [d for d in range(n // 2, 0, -1) if n % d == 0]
    good = []
    for d in divisors:
        if len(good) < 4 and windows.reconstructs(window, n, d):
            good.append(d)
    if good:
        return f"a divisor of {n} that the {window} window reconstructs at, e.g. " + \
            ", ".join(map(str, good))
    even = n + 1 if n % 2 else n
    return (f"a divisor of {n}, but frame.window {window} reconstructs at none of "
            f"{', '.join(map(str, divisors[:4]))}; use frame.size {even} with frame.hop "
            f"{even // 2}, or frame.window rectangular with frame.hop {n}")


BUFFERS_PER_CHANNEL = 8
"""Engine buffers of (block size + 2 N) samples per channel, counted generously: the input and
output queues, the frames and coefficients of one call and their copies."""


def memory_needed_bytes(frame_size: int, coefficients: int, blocksize: int = 0,
                        channels: int = 1, dtype: str = "float32") -> int:
    """Peak memory in bytes to build a model of N = ``frame_size`` and M = ``coefficients`` and
    run its engine on blocks of ``blocksize`` samples (0: varying) of ``channels`` channels:
    BYTES_PER_MATRIX_ENTRY * N * M (the matrices, float32 or float64 alike: the build's float64
    phase grids dominate) + BUFFERS_PER_CHANNEL buffers of (blocksize + 2 N) samples of
    ``dtype`` per channel + BASE_BYTES."""
    itemsize = 8 if dtype == "float64" else 4
    buffers = BUFFERS_PER_CHANNEL * (blocksize + 2 * frame_size) * channels * itemsize
    return BYTES_PER_MATRIX_ENTRY * frame_size * coefficients + buffers + BASE_BYTES


def memory_available_bytes() -> int | None:
    """Memory this process can still use, in bytes: the system's available memory
    (MemAvailable of /proc/meminfo, else the physical memory), lowered by an address-space
    limit (``ulimit -v``) less what the process maps already. None where neither is known."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    if not limits:
        try:
            limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(max(0, soft - _mapped_bytes()))
    except (ImportError, OSError, ValueError):
        pass
    return min(limits) if limits else None


def _mapped_bytes() -> int:
    """Virtual memory this process maps now (VmSize), 0 where unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def check_memory(frame_size: int, coefficients: int, blocksize: int = 0, channels: int = 1,
                 dtype: str = "float32", available: int | None = None) -> None:
    """Refuse a config that would not fit: ConfigError naming the need and the limit.

    Arguments as for ``memory_needed_bytes``; available: bytes, None asks
    ``memory_available_bytes()`` (no check when unknown).
    """
    need = memory_needed_bytes(frame_size, coefficients, blocksize, channels, dtype)
    if available is None:
        available = memory_available_bytes()
    if available is None or need <= available:
        return
    matrices = BYTES_PER_MATRIX_ENTRY * frame_size * coefficients
    if matrices >= need / 2:
        what = (f"frame.size = {frame_size} with model.coefficients = {coefficients} needs "
                f"about {need / 1e9:.1f} GB of memory to build the model "
                f"({BYTES_PER_MATRIX_ENTRY} bytes per entry of its N x M matrices)")
        fix = "use a smaller frame.size or model.coefficients"
    else:
        what = (f"audio.blocksize = {blocksize} with audio.channels = {channels} needs about "
                f"{need / 1e9:.1f} GB of memory for the engine's buffers")
        fix = "use a smaller audio.blocksize (a few hundred samples is usual)"
    raise ConfigError(f"{what} but {available / 1e9:.1f} GB are available; {fix}")

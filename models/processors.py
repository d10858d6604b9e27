"""Coefficient processors: what runs between the encoder and the decoder.

Every processor is a ``torch.nn.Module`` with a small surface (see docs/plugins.md):

    latency_samples: int                          extra latency it adds, in samples (0 for built-ins)
    prepare(samplerate, hop, n_coefficients)      once before processing; Hz, samples, M
    forward(coeffs) -> coeffs                     (frames, channels, M), same shape/dtype/device out
    reset()                                       clears statistics and state
    stats() -> dict                               plain floats/ints since the last reset

Built-ins are looked up by name in ``REGISTRY``; anything else is a user plugin named
``"package.module:ClassName"``. ``check_spec`` validates one config entry, ``build`` makes the
processor, ``build_chain`` makes the ordered ``Chain`` the engine runs.

``forward`` runs inside the real-time audio callback: built-ins avoid Python loops over frames
and GPU->CPU synchronisation, accumulate statistics in small tensors, and reduce them lazily
in ``stats()``.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
import types
import typing
from collections.abc import Mapping

import torch

__all__ = ["Processor", "Quantize", "Band", "TopK", "Threshold", "Plugin", "Chain",
           "REGISTRY", "check_spec", "build", "build_chain"]

PLUGIN_FORM = "package.module:ClassName"
_PLUGIN_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


# ----------------------------------------------------------------------------- value checks
# Each returns the value normalised or raises with the "key = value: what; allowed: ..." message
# that check_spec promises; property setters reuse them so runtime changes are checked the same way.

def _check_int(key: str, value, lo: int, hi: int, allowed: str | None = None) -> int:
    allowed = allowed or f"an integer in {lo}..{hi}"
    if isinstance(value, bool) or not isinstance(value, int):
        what = "a boolean, not an integer" if isinstance(value, bool) else "not an integer"
        raise TypeError(f"{key} = {value!r}: {what}; allowed: {allowed}")
    if not lo <= value <= hi:
        raise ValueError(f"{key} = {value!r}: out of range; allowed: {allowed}")
    return value


def _check_db(key: str, value) -> float:
    allowed = "a finite number <= 0 (dB relative to the frame peak)"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        what = "a boolean, not a number" if isinstance(value, bool) else "not a number"
        raise TypeError(f"{key} = {value!r}: {what}; allowed: {allowed}")
    if not (math.isfinite(value) and value <= 0):
        raise ValueError(f"{key} = {value!r}: out of range; allowed: {allowed}")
    return float(value)


class _Checked:
    """A processor parameter validated on every assignment (``q.bits = 30`` raises at once),
    so a setting changed between calls never reaches ``forward`` malformed."""

    def __init__(self, check):
        self.check = check          # check(key, value) -> normalised value

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        return self if obj is None else obj.__dict__[self.name]

    def __set__(self, obj, value):
        obj.__dict__[self.name] = self.check(self.name, value)


_ANY_INDEX = 2 ** 31 - 1    # run-time bound for indices; check_spec bounds them by M


def _plain(value):
    """A statistic as a JSON-serialisable Python value (0-d tensors and numpy scalars -> numbers)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if hasattr(value, "item") and not isinstance(value, (int, float, bool, str)):
        return value.item()
    return value


# ----------------------------------------------------------------------------- base class

class Processor(torch.nn.Module):
    """Base for coefficient processors. Subclasses implement ``forward``; the rest defaults.

    Built-in subclasses also declare ``KEYS``, their keyword arguments in order, each a
    ``_Checked`` attribute; ``check`` validates them for ``check_spec``.
    """

    latency_samples: int = 0
    KEYS: tuple[str, ...] = ()

    def __init__(self):
        super().__init__()
        self.samplerate = 0       # Hz; 0 until prepare()
        self.hop = 0              # samples between frames; 0 until prepare()
        self.n_coefficients = 0   # M; 0 until prepare()

    @classmethod
    def check(cls, params: dict, n_coefficients: int) -> dict:
        """``params`` (defaults already filled in) validated and normalised, in ``KEYS`` order.
        Subclasses whose bounds depend on M override it."""
        return {key: getattr(cls, key).check(key, params[key]) for key in cls.KEYS}

    def prepare(self, samplerate: int, hop: int, n_coefficients: int) -> None:
        """Record the stream's format; called once before processing and clears statistics."""
        self.samplerate, self.hop, self.n_coefficients = int(samplerate), int(hop), int(n_coefficients)
        self.reset()

    def reset(self) -> None:
        """Clear running statistics and state (none by default)."""

    def stats(self) -> dict:
        """Statistics since the last reset, as plain floats/ints (none by default)."""
        return {}


class _Mask(Processor):
    """A processor that keeps some coefficients unchanged and zeroes the rest.

    Subclasses implement ``keep(coeffs) -> (kept, n_kept)``; ``kept`` is the output and
    ``n_kept`` a Python int or a 0-d tensor (counted on the device, so no sync per call).
    Gradient flows to the kept coefficients only (``torch.where`` is a multiplication by a
    0/1 mask that also leaves inf/nan in zeroed places out).
    """

    def reset(self) -> None:
        self._kept = 0          # coefficients kept since reset: int or 0-d tensor on the device
        self._seen = 0          # coefficients seen since reset

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        out, n_kept = self.keep(coeffs)
        self._kept = self._kept + n_kept
        self._seen += coeffs.numel()
        return out

    def stats(self) -> dict:
        """``kept_fraction``: coefficients kept / coefficients seen since reset (0.0 if none seen)."""
        kept = float(_plain(self._kept))
        return {"kept_fraction": kept / self._seen if self._seen else 0.0}


# ----------------------------------------------------------------------------- built-ins

class Quantize(Processor):
    """Uniform mid-tread quantizer with a per-frame scale from the frame's peak.

    Per frame and channel the scale ``s`` is the peak |coeff| sent as float16 side information
    (16 bits per frame per channel), rounded *up* to a float16 value so the peak stays inside
    the range; peaks above 65504 saturate there. With ``L = max(1, 2**(bits-1) - 1)`` levels on
    each side (2**bits - 1 levels in all; bits=1 and bits=2 are both ternary), the step is
    ``s / L`` and each coefficient maps to ``round(x / step) * step``: zero stays zero and the
    error is at most half a step. An all-zero frame stays zero.

    Training: when gradients are enabled the output is the quantized value and the gradient is
    the identity (straight-through).

    Bitrate: the symbols go into a histogram on the coefficients' device (no sync per call),
    and ``stats()`` computes the empirical entropy of all symbols since reset. The histogram has
    a fixed size, at most 65 537 bins (512 KiB): exact for bits <= 16; above that, symbols with
    |q| <= 2**14 keep their own bins and larger ones share bins of W neighbours, each shared bin
    adding log2(W) bits per symbol, an upper bound on their entropy. Changing ``bits`` closes the
    histogram (one sync) and opens a new one, as a coder that restarts its model would.

    Args:
        bits: int in 1..24, default 8. May be changed between calls (``q.bits = 4``).
    """

    KEYS = ("bits",)
    SIDE_BITS = 16                 # per frame per channel: the float16 scale
    _EXACT_LEVELS = 2 ** 15        # up to this many levels per side, every symbol has its own bin
    _FINE_LEVELS = 2 ** 14         # beyond it: |q| <= this exact, larger shared, 2**14 bins per side

    bits = _Checked(lambda key, value: _check_int(key, value, 1, 24))

    def __init__(self, bits: int = 8):
        super().__init__()
        self.bits = bits
        self.reset()

    @staticmethod
    def levels(bits: int) -> int:
        """L, the number of nonzero levels on each side of zero for ``bits``."""
        return max(1, 2 ** (bits - 1) - 1)

    def reset(self) -> None:
        self._hist = None          # int64 histogram of symbol bins for self._hist_bits
        self._hist_bits = None
        self._closed_bits = 0.0    # entropy bits of histograms closed by a change of `bits`
        self._symbols = 0          # coefficients quantized since reset
        self._frames = 0           # frames since reset
        self._frame_channels = 0   # frames * channels since reset: one side-info scale each

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        bits = self.bits                   # read once: a change from another thread lands next call
        levels = self.levels(bits)
        x = coeffs.detach()
        peak = x.abs().amax(dim=-1, keepdim=True).clamp(max=65504.0)
        scale16 = peak.to(torch.float16)
        # round up to the next float16 (positive floats: next bit pattern) so |x| <= scale
        scale16 = torch.where(scale16.to(peak.dtype) < peak,
                              (scale16.view(torch.int16) + 1).view(torch.float16), scale16)
        scale = scale16.to(x.dtype)
        inv_step = torch.where(scale > 0, levels / scale, torch.zeros_like(scale))
        symbols = torch.round(x * inv_step).clamp_(-levels, levels)
        out = symbols * (scale / levels)
        self._count(symbols, bits, levels)
        if torch.is_grad_enabled() and coeffs.requires_grad:
            out = out + (coeffs - x)       # value stays exactly `out`, gradient is the identity
        return out

    def _bins(self, levels: int) -> tuple[int, int]:
        """(bins per side, W): histogram half-width and how many symbols share a coarse bin."""
        if levels <= self._EXACT_LEVELS:
            return levels, 1
        fine = self._FINE_LEVELS
        width = -(-(levels - fine) // fine)
        return fine + -(-(levels - fine) // width), width

    def _count(self, symbols: torch.Tensor, bits: int, levels: int) -> None:
        half, width = self._bins(levels)
        if self._hist_bits != bits or self._hist is None or self._hist.device != symbols.device:
            self._close_histogram()
            self._hist = torch.zeros(2 * half + 1, dtype=torch.int64, device=symbols.device)
            self._hist_bits = bits
        # a NaN coefficient becomes an arbitrary integer: clamp so the bin index stays in range
        q = symbols.reshape(-1).to(torch.int64).clamp_(-levels, levels)
        if width > 1:
            fine = self._FINE_LEVELS
            a = q.abs()
            q = torch.where(a > fine, fine + (a - fine + width - 1) // width, a) * q.sign()
        self._hist.index_add_(0, q + half, torch.ones_like(q))
        self._symbols += symbols.numel()
        self._frames += symbols.shape[0]
        self._frame_channels += symbols.shape[0] * symbols.shape[1]

    def _close_histogram(self) -> None:
        self._closed_bits += self._histogram_bits()
        self._hist = None

    def _histogram_bits(self) -> float:
        """Total bits to code the symbols in the open histogram at its empirical entropy."""
        if self._hist is None:
            return 0.0
        counts = self._hist.to(torch.float64)
        total = counts.sum()
        if total == 0:
            return 0.0
        nonzero = counts[counts > 0]
        bits = (nonzero * torch.log2(total / nonzero)).sum().item()
        half, width = self._bins(self.levels(self._hist_bits))
        if width > 1:   # shared bins: up to log2(W) more bits per symbol to say which member
            fine = self._FINE_LEVELS
            shared = counts[: half - fine].sum() + counts[half + fine + 1:].sum()
            bits += shared.item() * math.log2(width)
        return bits

    def stats(self) -> dict:
        """Since reset:

        - ``bitrate_kbps``: (entropy bits of the symbols + 16 side bits per frame per channel)
          per second of audio, in kbit/s; None before ``prepare``, 0.0 before any frame.
        - ``entropy_bits``: bits per coefficient (empirical entropy of the symbols).
        - ``bits``: the current setting. ``frames``: frames quantized.
        """
        symbol_bits = self._closed_bits + self._histogram_bits()
        total_bits = symbol_bits + self.SIDE_BITS * self._frame_channels
        if not (self.samplerate and self.hop):
            bitrate = None
        elif self._frames == 0:
            bitrate = 0.0
        else:
            seconds = self._frames * self.hop / self.samplerate
            bitrate = total_bits / seconds / 1000.0
        return {"bitrate_kbps": bitrate,
                "entropy_bits": symbol_bits / self._symbols if self._symbols else 0.0,
                "bits": self.bits, "frames": self._frames}


class Band(_Mask):
    """Keep coefficients ``lo <= m < hi``, zero the rest.

    Args:
        lo: first kept index, default 0.
        hi: one past the last kept index, default M (``check_spec`` fills it in; ``None`` here
            means "up to M"). Indices beyond the frame's M are simply absent.
    """

    KEYS = ("lo", "hi")
    lo = _Checked(lambda key, value: _check_int(key, value, 0, _ANY_INDEX))
    hi = _Checked(lambda key, value: None if value is None else _check_int(key, value, 1, _ANY_INDEX))

    def __init__(self, lo: int = 0, hi: int | None = None):
        super().__init__()
        self.lo, self.hi = lo, hi
        self.reset()

    @classmethod
    def check(cls, params: dict, n_coefficients: int) -> dict:
        m = n_coefficients
        hi = _check_int("hi", m if params["hi"] is None else params["hi"], 1, m)
        lo = _check_int("lo", params["lo"], 0, m - 1)
        if lo >= hi:
            raise ValueError(f"lo = {lo}: must be below hi ({hi}); allowed: an integer in 0..{hi - 1}")
        return {"lo": lo, "hi": hi}

    def keep(self, coeffs):
        m = coeffs.shape[-1]
        hi = m if self.hi is None else min(self.hi, m)
        lo = min(self.lo, hi)
        # pad puts zeros around the kept slice: one op, exact, gradient only to the slice
        out = torch.nn.functional.pad(coeffs[..., lo:hi], (lo, m - hi))
        return out, coeffs.shape[0] * coeffs.shape[1] * (hi - lo)


class TopK(_Mask):
    """Keep the k largest-magnitude coefficients of each frame and channel, zero the rest.

    Ties at the k-th magnitude are broken by ``torch.topk``; exactly k are kept.

    Args:
        k: int >= 1 (<= M, checked by ``check_spec``); capped at M at run time.
    """

    KEYS = ("k",)
    k = _Checked(lambda key, value: _check_int(key, value, 1, _ANY_INDEX))

    def __init__(self, k: int):
        super().__init__()
        self.k = k
        self.reset()

    @classmethod
    def check(cls, params: dict, n_coefficients: int) -> dict:
        return {"k": _check_int("k", params["k"], 1, n_coefficients,
                                f"an integer in 1..{n_coefficients} (model.coefficients)")}

    def keep(self, coeffs):
        k = min(self.k, coeffs.shape[-1])
        index = coeffs.detach().abs().topk(k, dim=-1, sorted=False).indices
        mask = torch.zeros(coeffs.shape, dtype=torch.bool, device=coeffs.device)
        mask.scatter_(-1, index, True)
        return torch.where(mask, coeffs, 0.0), coeffs.shape[0] * coeffs.shape[1] * k


class Threshold(_Mask):
    """Spectral gate: zero coefficients whose magnitude is below ``peak * 10**(db/20)``.

    ``peak`` is the frame's (per channel) largest |coeff|; coefficients at or above the
    threshold are kept unchanged. db = 0 keeps only the peak(s).

    Args:
        db: float <= 0, default -60.
    """

    KEYS = ("db",)
    db = _Checked(_check_db)

    def __init__(self, db: float = -60.0):
        super().__init__()
        self.db = db
        self.reset()

    def keep(self, coeffs):
        magnitude = coeffs.detach().abs()
        floor = magnitude.amax(dim=-1, keepdim=True) * 10.0 ** (self.db / 20.0)
        mask = magnitude >= floor
        return torch.where(mask, coeffs, 0.0), mask.sum()


REGISTRY: dict[str, type] = {"quantize": Quantize, "band": Band, "topk": TopK, "threshold": Threshold}


# ----------------------------------------------------------------------------- user plugins

class Plugin(Processor):
    """Gives a user's ``nn.Module`` the full processor surface.

    ``prepare``/``reset``/``stats``/``latency_samples`` are forwarded when the plugin has them
    and default otherwise. Reading or setting an attribute the wrapper lacks reaches the plugin
    (``proc.gain = 0.5`` changes the plugin's gain). ``forward`` checks that the plugin kept the
    shape, dtype and device, so a broken plugin fails with its name rather than in the decoder.
    """

    def __init__(self, module: torch.nn.Module, name: str):
        super().__init__()
        self.name = name
        self.inner = module

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("inner")   # absent while unpickling
            if inner is None:
                raise
            return getattr(inner, name)

    def __setattr__(self, name, value):
        inner = self.__dict__.get("_modules", {}).get("inner")
        if (inner is not None and name not in self.__dict__ and not hasattr(type(self), name)
                and hasattr(inner, name)):
            setattr(inner, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def latency_samples(self) -> int:
        return int(getattr(self.inner, "latency_samples", 0))

    def prepare(self, samplerate: int, hop: int, n_coefficients: int) -> None:
        # not Processor.prepare: its reset() would reach the plugin before its own prepare()
        self.samplerate, self.hop, self.n_coefficients = int(samplerate), int(hop), int(n_coefficients)
        if callable(getattr(self.inner, "prepare", None)):
            self.inner.prepare(samplerate, hop, n_coefficients)

    def reset(self) -> None:
        if callable(getattr(self.inner, "reset", None)):
            self.inner.reset()

    def stats(self) -> dict:
        if not callable(getattr(self.inner, "stats", None)):
            return {}
        return {str(k): _plain(v) for k, v in dict(self.inner.stats()).items()}

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        out = self.inner(coeffs)
        if not (isinstance(out, torch.Tensor) and out.shape == coeffs.shape
                and out.dtype == coeffs.dtype and out.device == coeffs.device):
            got = (f"{tuple(out.shape)} {out.dtype} on {out.device}" if isinstance(out, torch.Tensor)
                   else type(out).__name__)
            raise RuntimeError(f"processor {self.name!r} returned {got} for "
                               f"{tuple(coeffs.shape)} {coeffs.dtype} on {coeffs.device}; "
                               f"a processor must keep shape, dtype and device")
        return out


def _plugin_class(type_name: str) -> type:
    """Import ``package.module:ClassName`` and return the class, or raise ValueError/TypeError."""
    head = f"type = {type_name!r}"
    if not _PLUGIN_RE.match(type_name):
        raise ValueError(f"{head}: malformed plugin reference; allowed: {PLUGIN_FORM}")
    module_name, class_path = type_name.split(":")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ValueError(f"{head}: cannot import module {module_name!r} ({e}); allowed: a module "
                         f"importable from sys.path (pip install it or add its folder to "
                         f"PYTHONPATH)") from None
    except Exception as e:   # the plugin's own code failed while importing: say so, don't crash
        raise ValueError(f"{head}: importing module {module_name!r} failed: "
                         f"{type(e).__name__}: {e}") from None
    for part in class_path.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{head}: module {module_name!r} has no {class_path!r}; allowed: "
                             f"a torch.nn.Module subclass defined in {module_name!r}")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        what = "a class" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise TypeError(f"{head}: {class_path!r} is {what}, not a torch.nn.Module "
                        f"subclass; allowed: a class deriving from torch.nn.Module")
    return obj


def _check_plugin(type_name: str, params: dict) -> dict:
    cls = _plugin_class(type_name)
    for key in params:
        if not (isinstance(key, str) and key.isidentifier()):
            raise TypeError(f"{key!r}: not a keyword name; allowed: identifiers such as gain")
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):   # no introspectable signature: construction will tell
        return {"type": type_name, **params}
    accepted = [n for n, p in signature.parameters.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    for key in params:
        if key not in accepted and not takes_any:
            raise ValueError(f"{key}: unknown key for {type_name}; allowed: "
                             f"{', '.join(['type', *accepted])}")
    try:
        signature.bind(**params)
    except TypeError as e:
        raise TypeError(f"type = {type_name!r}: arguments do not fit {cls.__name__}{signature}: "
                        f"{e}") from None
    hints = _type_hints(cls)
    for key, value in params.items():
        parameter = signature.parameters.get(key)
        if parameter is None:
            continue
        expected = _expected_types(hints.get(key, parameter.annotation), parameter.default)
        if expected and not any(_fits(value, t) for t in expected):
            names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in expected)
            raise TypeError(f"{key} = {value!r}: must be {names} for {type_name}")
    return {"type": type_name, **params}


_CHECKED_TYPES = (bool, int, float, str, list, dict, tuple, type(None))
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "a mapping", tuple: "a list", type(None): "null"}


def _type_hints(cls) -> dict:
    """The constructor's resolved annotations; {} where they cannot be resolved."""
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:   # a forward reference or a name that does not resolve: no type check
        return {}


def _expected_types(annotation, default) -> tuple:
    """The plain types a keyword value may have: from a simple annotation (int, float, bool,
    str, list, dict, Optional/Union of these, list[...]), else from a number, string or
    boolean default; () means "not checked" (any other annotation, no default)."""
    if annotation is inspect.Parameter.empty or isinstance(annotation, str):
        if isinstance(default, (bool, int, float, str)):
            # an unannotated integer default (gain=1) may well take 0.5: any number then
            return (float,) if type(default) is int else (type(default),)
        return ()
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, getattr(types, "UnionType", typing.Union)):
        parts = [_expected_types(a, inspect.Parameter.empty) for a in typing.get_args(annotation)]
        return () if any(not p for p in parts) else tuple(t for p in parts for t in p)
    if origin is not None:
        annotation = origin
    if annotation is None:
        return (type(None),)
    return (annotation,) if annotation in _CHECKED_TYPES else ()


def _fits(value, expected: type) -> bool:
    """isinstance, except that booleans are not numbers and an integer is a float."""
    if expected is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if expected is float:
        return isinstance(value, (int, float))
    if expected is tuple:
        return isinstance(value, (list, tuple))
    return isinstance(value, expected)


# ----------------------------------------------------------------------------- module API

def check_spec(spec, n_coefficients: int) -> dict:
    """Validate one config entry, e.g. ``{"type": "quantize", "bits": 8}``.

    Returns a plain dict with defaults filled in (``{"type": "band", "lo": 0, "hi": M}``).
    Raises ValueError/TypeError whose message starts with the offending key:
    ``"bits = 30: out of range; allowed: an integer in 1..24"``. Plugins are imported here so a
    bad reference fails when the config is loaded, not when audio starts.

    Args:
        spec: the entry as loaded from YAML.
        n_coefficients: M, coefficients per frame (bounds ``band`` and ``topk``).
    """
    allowed_types = " | ".join([*REGISTRY, PLUGIN_FORM])
    if not isinstance(spec, Mapping):
        raise TypeError(f"type: missing, the entry {spec!r} is not a mapping; allowed: a mapping "
                        f"such as {{type: quantize, bits: 8}}")
    if "type" not in spec:
        raise ValueError(f"type: missing; allowed: {allowed_types}")
    type_name = spec["type"]
    params = {k: v for k, v in spec.items() if k != "type"}
    if not isinstance(type_name, str):
        raise TypeError(f"type = {type_name!r}: not a string; allowed: {allowed_types}")
    if ":" in type_name:
        return _check_plugin(type_name, params)
    cls = REGISTRY.get(type_name)
    if cls is None:
        raise ValueError(f"type = {type_name!r}: unknown processor; allowed: {allowed_types}")
    for key in params:
        if key not in cls.KEYS:
            raise ValueError(f"{key}: unknown key for {type_name}; allowed: "
                             f"{', '.join(['type', *cls.KEYS])}")
    # defaults come from the constructor's signature, so they are written down once
    for name, parameter in inspect.signature(cls).parameters.items():
        if name not in params:
            if parameter.default is parameter.empty:
                raise ValueError(f"{name}: missing for {type_name}; allowed: "
                                 f"{', '.join(['type', *cls.KEYS])}")
            params[name] = parameter.default
    return {"type": type_name, **cls.check(params, n_coefficients)}


def build(spec: dict) -> Processor:
    """Make the processor for a spec returned by ``check_spec``.

    Built-ins come from ``REGISTRY``; plugins are imported, constructed with the spec's keyword
    arguments and wrapped in ``Plugin`` so they have the full surface.
    """
    params = {k: v for k, v in spec.items() if k != "type"}
    type_name = spec["type"]
    if type_name in REGISTRY:
        return REGISTRY[type_name](**params)
    cls = _plugin_class(type_name)
    try:
        module = cls(**params)
    except Exception as e:   # the plugin's constructor: name it in one line
        raise ValueError(f"type = {type_name!r}: {cls.__name__}(**{params!r}) failed: "
                         f"{type(e).__name__}: {e}") from e
    return Plugin(module, type_name)


class Chain(torch.nn.Module):
    """Processors applied in order. Empty chain: identity, ``bool(chain)`` is False.

    ``prepare``/``reset`` reach every processor; ``stats()`` is a list of
    ``{"type": name, **processor.stats()}``; ``latency_samples`` is their sum.
    """

    def __init__(self, processors=(), types=None):
        super().__init__()
        self.processors = torch.nn.ModuleList(processors)
        self.types = list(types) if types is not None else [
            getattr(p, "name", type(p).__name__.lower()) for p in self.processors]

    @property
    def latency_samples(self) -> int:
        return sum(int(getattr(p, "latency_samples", 0)) for p in self.processors)

    def __len__(self) -> int:
        return len(self.processors)

    def __bool__(self) -> bool:
        return len(self.processors) > 0

    def __iter__(self):
        return iter(self.processors)

    def __getitem__(self, index: int) -> Processor:
        return self.processors[index]

    def prepare(self, samplerate: int, hop: int, n_coefficients: int) -> None:
        for p in self.processors:
            p.prepare(samplerate, hop, n_coefficients)

    def reset(self) -> None:
        for p in self.processors:
            p.reset()

    def stats(self) -> list[dict]:
        return [{"type": t, **p.stats()} for t, p in zip(self.types, self.processors)]

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        for p in self.processors:
            coeffs = p(coeffs)
        return coeffs


def build_chain(specs) -> Chain:
    """A ``Chain`` of ``build(spec)`` for each checked spec, in order."""
    specs = list(specs)
    return Chain([build(s) for s in specs], types=[s["type"] for s in specs])

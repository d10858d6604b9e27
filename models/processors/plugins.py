"""The processor contract and user plugins (``"package.module:ClassName"`` in a config).

A plugin is any ``torch.nn.Module`` subclass; only ``forward`` is required (docs/plugins.md has
the contract). This module imports and checks plugin references for ``check_spec`` and builds
them for ``build``, each failure reported as one line that starts with the offending key
(``"gain = 'loud': must be a number for mypkg.fx:Gain"``), as every processor error does:

    _plugin_class("mypkg.fx:Gain")       the class, or ValueError/TypeError
    check_plugin(type_name, params)      the spec with the keys bound and their types checked
    construct(type_name, params)         ``Plugin`` around ``ClassName(**params)``

``Processor`` is the base every processor derives from (the contract's defaults), next to the
parameter checks the built-ins use; ``Chain`` runs processors in order, the one call the engine
makes per block; ``Plugin`` gives the user's module the full processor surface (``prepare``,
``reset``, ``stats``, ``latency_samples``) and checks what its ``forward`` returns. The
built-ins and the config API (``check_spec``, ``build``, ``build_chain``) are in
models/processors/registry.py, which re-exports ``Processor``, ``Chain`` and ``Plugin``.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
import types
import typing

import numpy as np
import torch

__all__ = ["Processor", "Chain", "Plugin", "PLUGIN_FORM", "check_plugin", "construct", "plain"]

PLUGIN_FORM = "package.module:ClassName"
_PLUGIN_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def plain(value):
    """A statistic as a JSON-serialisable Python value (0-d tensors and numpy scalars -> numbers)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if hasattr(value, "item") and not isinstance(value, (int, float, bool, str)):
        return value.item()
    return value


# ----------------------------------------------------------------------------- the contract
# Parameter checks for built-ins (here next to the base class whose check() relies on them).
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


class Processor(torch.nn.Module):
    """Base for coefficient processors: the surface the engine relies on (docs/plugins.md).

    Subclasses implement ``forward(coeffs) -> coeffs`` on ``(frames, channels, M)`` tensors; the
    rest defaults. Built-in subclasses also declare ``KEYS``, their keyword arguments in order,
    each a checked attribute with a ``check(key, value)``; ``check`` validates them for
    ``check_spec``.
    """

    latency_samples: int = 0
    KEYS: tuple[str, ...] = ()
    # the built-ins' numpy route, ``_numpy(array) -> array``, which Chain calls directly; None
    # (a class attribute, so Plugin's attribute forwarding never reaches the user's module)
    _numpy = None

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
        """Record the stream's format (Hz, samples between frames, M) once before processing;
        clears statistics."""
        self.samplerate, self.hop, self.n_coefficients = int(samplerate), int(hop), int(n_coefficients)
        self.reset()

    def reset(self) -> None:
        """Clear running statistics and state (none by default)."""

    def stats(self) -> dict:
        """Statistics since the last reset, as plain floats/ints (none by default)."""
        return {}


class Plugin(Processor):
    """Gives a user's ``nn.Module`` the full processor surface.

    ``prepare``/``reset``/``stats``/``latency_samples`` are forwarded when the plugin has them
    and default otherwise. Reading or setting an attribute the wrapper lacks reaches the plugin
    (``proc.gain = 0.5`` changes the plugin's gain). ``forward`` checks that the plugin kept the
    shape, dtype and device, so a broken plugin fails with its name rather than in the decoder.

    Args:
        module: the user's module, already constructed.
        name: its config reference, ``"package.module:ClassName"`` (used in error messages).
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
        """The plugin's ``latency_samples`` (samples), 0 when it has none."""
        return int(getattr(self.inner, "latency_samples", 0))

    def prepare(self, samplerate: int, hop: int, n_coefficients: int) -> None:
        """Record the format (Hz, samples, M) and pass it on when the plugin has ``prepare``."""
        # no reset() here, unlike the built-ins: it would reach the plugin before its prepare()
        self.samplerate, self.hop, self.n_coefficients = int(samplerate), int(hop), int(n_coefficients)
        if callable(getattr(self.inner, "prepare", None)):
            self.inner.prepare(samplerate, hop, n_coefficients)

    def reset(self) -> None:
        if callable(getattr(self.inner, "reset", None)):
            self.inner.reset()

    def stats(self) -> dict:
        """The plugin's ``stats()`` with keys as strings and values as plain numbers; {} if none."""
        if not callable(getattr(self.inner, "stats", None)):
            return {}
        return {str(k): plain(v) for k, v in dict(self.inner.stats()).items()}

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


# ----------------------------------------------------------------------------- the chain

_NUMPY_DTYPES = (torch.float32, torch.float64)


def _numpy_route(coeffs: torch.Tensor) -> bool:
    """True when a built-in may compute on ``coeffs.numpy()``: a plain CPU float32/float64 tensor
    that does not require grad (no autograd graph to build; tensor subclasses and jit tracing,
    which would record numpy results as constants, keep torch)."""
    return (type(coeffs) is torch.Tensor and coeffs.is_cpu and not coeffs.requires_grad
            and coeffs.dtype in _NUMPY_DTYPES and not torch._C._get_tracing_state())


class Chain(torch.nn.Module):
    """Processors applied in order. Empty chain: identity, ``bool(chain)`` is False.

    ``prepare``/``reset`` reach every processor; ``stats()`` is a list of
    ``{"type": name, **processor.stats()}``; ``latency_samples`` is their sum.

    On the numpy route (CPU float32/float64 coeffs that do not require grad, see
    models/processors/registry.py) consecutive processors with a ``_numpy`` route (the built-ins)
    and no hooks hand each other the numpy array directly, skipping ``nn.Module.__call__`` and the
    tensor conversions between them; plugins always get a tensor.
    """

    def __init__(self, processors=(), types=None):
        super().__init__()
        self.processors = torch.nn.ModuleList(processors)
        # the list's own dict (live control replaces entries in it): read per call without
        # nn.Module's attribute lookup, which costs microseconds
        self._entries = self.processors._modules
        self.types = list(types) if types is not None else [
            getattr(p, "name", type(p).__name__.lower()) for p in self.processors]

    @property
    def latency_samples(self) -> int:
        return sum(int(getattr(p, "latency_samples", 0)) for p in self.processors)

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return len(self._entries) > 0

    def __iter__(self):
        return iter(self._entries.values())

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

    def numpy_forward(self, array: np.ndarray) -> np.ndarray | None:
        """``array`` (frames, channels, M), CPU float32/float64, through every processor on its
        numpy route, in place: ``array`` itself is returned, holding the result, and no array
        is allocated (the engine's audio callback relies on it). None, having run nothing,
        when a processor has no numpy route or has hooks (then ``forward`` on a tensor is the
        way)."""
        processors = self._entries.values()
        for p in processors:
            if getattr(type(p), "_numpy", None) is None or p._forward_hooks or p._forward_pre_hooks:
                return None
        for p in processors:
            p._numpy(array, out=array)
        return array

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        """``coeffs`` (frames, channels, M) through every processor in order; same shape out."""
        array = None           # the coefficients while built-ins pass them along as numpy
        for p in self._entries.values():
            if (getattr(type(p), "_numpy", None) is not None
                    and not (p._forward_hooks or p._forward_pre_hooks)):
                if array is None and _numpy_route(coeffs):
                    array = coeffs.numpy()
                if array is not None:
                    array = p._numpy(array)
                    continue
            if array is not None:
                coeffs, array = torch.from_numpy(array), None
            coeffs = p(coeffs)
        return coeffs if array is None else torch.from_numpy(array)


# ----------------------------------------------------------------------------- user plugins

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
                         f"{_one_line(e)}") from None
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


def _one_line(error: BaseException) -> str:
    """``"Type: message"`` on one line (a multi-line message is joined with " | ")."""
    text = " | ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# ----------------------------------------------------------------------------- value types
# YAML gives None, bool, int, float, str, list and dict: these are the types a keyword value is
# held against, from the constructor's annotation when it is a plain one, else from the type of
# a number, string or boolean default. Any other annotation (torch.Tensor, a user class) is the
# plugin's own business: its constructor reports it at build time, in one line too.

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
    if origin in (typing.Union, types.UnionType):
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


def _check_types(type_name: str, cls: type, signature: inspect.Signature, params: dict) -> None:
    """Raise TypeError ``"gain = 'loud': must be a number for mypkg.fx:Gain"`` for the first
    value that does not have a type its parameter allows."""
    hints = _type_hints(cls)
    for key, value in params.items():
        parameter = signature.parameters.get(key)
        if parameter is None:       # taken by **kwargs: nothing declared to check against
            continue
        expected = _expected_types(hints.get(key, parameter.annotation), parameter.default)
        if expected and not any(_fits(value, t) for t in expected):
            names = " or ".join(dict.fromkeys(_TYPE_NAMES.get(t, t.__name__) for t in expected))
            raise TypeError(f"{key} = {value!r}: must be {names} for {type_name}")


# ----------------------------------------------------------------------------- spec and build

def check_plugin(type_name: str, params: dict) -> dict:
    """The checked spec ``{"type": type_name, **params}`` for a plugin reference.

    Imports the class, refuses keys its constructor does not take, binds the keys against its
    signature and holds each value against a plain annotation (int, float, bool, str, list,
    dict, Optional/unions of these) or else the type of its default. Raises ValueError/TypeError
    with one line that starts with the offending key (or ``type = ...`` for the reference).
    """
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
    _check_types(type_name, cls, signature, params)
    return {"type": type_name, **params}


def construct(type_name: str, params: dict) -> Plugin:
    """``Plugin(ClassName(**params))``; whatever the constructor raises becomes one ValueError line
    ``"type = 'pkg.mod:Cls': Cls(gain=0.5) failed: ZeroDivisionError: ..."`` (cause chained)."""
    cls = _plugin_class(type_name)
    try:
        module = cls(**params)
    except Exception as e:   # the plugin's constructor: name it in one line
        arguments = ", ".join(f"{k}={v!r}" for k, v in params.items())
        raise ValueError(f"type = {type_name!r}: {cls.__name__}({arguments}) failed: "
                         f"{_one_line(e)}") from e
    return Plugin(module, type_name)


class _Builtin(Processor):
    """A built-in: ``_torch(tensor)`` for any device and autograd, ``_numpy(array, out=None)``
    for the CPU route; both return an array/tensor of the same shape and dtype with identical
    values: a new one, or ``out`` (which may be ``array`` itself) filled without allocating.
    ``COMPILED`` built-ins run cosine_host.models.processors.compiled kernels on the CPU route (the
    engine compiles
    them for its dtype before its first block; elsewhere the first call does)."""

    COMPILED = False

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        if _numpy_route(coeffs):
            return torch.from_numpy(self._numpy(coeffs.numpy()))
        return self._torch(coeffs)

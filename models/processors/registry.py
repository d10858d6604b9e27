"""Coefficient processors: what runs between the encoder and the decoder.

Every processor is a ``torch.nn.Module`` with a small surface (see docs/plugins.md):

    latency_samples: int                          extra latency it adds, in samples (0 for
    built-ins) prepare(samplerate, hop, n_coefficients)      once before processing; Hz, samples, M
    forward(coeffs) -> coeffs                     (frames, channels, M), same shape/dtype/device out
    reset()                                       clears statistics and state stats() -> dict
    plain floats/ints since the last reset

Built-ins are looked up by name in ``REGISTRY``; anything else is a user plugin named
``"package.module:ClassName"``. ``check_spec`` validates one config entry, ``build`` makes the
processor, ``build_chain`` makes the ordered ``Chain`` the engine runs.

``forward`` runs inside the real-time audio callback, usually on one or two frames: there each
torch operation costs a few microseconds of dispatch, far more than its arithmetic on 1024
values. So every built-in has two routes with bit-identical results: a numpy route on the
tensor's memory (``coeffs.numpy()``, no copy) for CPU float32/float64 tensors that do not
require grad (the engine's case), and the torch route for everything else (CUDA, training with
autograd, other dtypes). ``Chain`` (models/processors/plugins.py) passes the numpy array from one
built-in to the next. Both
routes avoid Python loops over frames and GPU->CPU synchronisation and keep statistics in small
preallocated counters reduced lazily in ``stats()``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping

import numpy as np
import torch

from cosine_host.models.processors.plugins import (PLUGIN_FORM, Chain, Plugin, Processor, _Builtin, _check_db,
                            _check_int, _Checked, check_plugin, construct, plain)
from cosine_host.models.processors.codec import Codec
from cosine_host.models.processors.learned_quantize import LearnedQuantize
from cosine_host.models.processors.quantize import Quantize

__all__ = ["Processor", "Quantize", "LearnedQuantize", "Codec", "Band", "TopK", "Threshold",
           "Plugin", "Chain", "REGISTRY", "check_spec", "build", "build_chain"]


_ANY_INDEX = 2 ** 31 - 1    # run-time bound for indices; check_spec bounds them by M


class _Mask(_Builtin):
    """A processor that keeps some coefficients unchanged and zeroes the rest.

    Subclasses implement ``keep(coeffs) -> (kept, n_kept)`` on tensors and ``keep_numpy(array,
    out) -> n_kept`` on arrays, writing the kept values and zeros into ``out`` (which may be
    ``array`` itself); ``n_kept`` is a Python int or a 0-d tensor (counted on the device, so no
    sync per call). Gradient flows to the kept coefficients only (``torch.where``
    is a multiplication by a 0/1 mask that also leaves inf/nan in zeroed places out).
    """

    def reset(self) -> None:
        # [kept, seen]: coefficients kept (int, or 0-d tensor on the device) and seen since
        # reset; a list, because nn.Module.__setattr__ costs microseconds per assignment
        self._tally = [0, 0]

    def _torch(self, coeffs: torch.Tensor) -> torch.Tensor:
        return self._counted(*self.keep(coeffs), coeffs.numel())

    def _numpy(self, coeffs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty(coeffs.shape, coeffs.dtype)
        return self._counted(out, self.keep_numpy(coeffs, out), coeffs.size)

    def _counted(self, out, n_kept, n_seen: int):
        tally = self._tally
        tally[0] = tally[0] + n_kept      # not +=: that would add into a tensor held elsewhere
        tally[1] += n_seen
        return out

    def stats(self) -> dict:
        """``kept_fraction``: coefficients kept / coefficients seen since reset (0.0 if none seen)."""
        kept, seen = self._tally
        return {"kept_fraction": float(plain(kept)) / seen if seen else 0.0}


# ----------------------------------------------------------------------------- built-ins

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

    def _span(self, m: int) -> tuple[int, int]:
        hi = m if self.hi is None else min(self.hi, m)
        return min(self.lo, hi), hi

    def keep(self, coeffs):
        m = coeffs.shape[-1]
        lo, hi = self._span(m)
        # pad puts zeros around the kept slice: one op, exact, gradient only to the slice
        out = torch.nn.functional.pad(coeffs[..., lo:hi], (lo, m - hi))
        return out, coeffs.shape[0] * coeffs.shape[1] * (hi - lo)

    def keep_numpy(self, coeffs, out):
        lo, hi = self._span(coeffs.shape[-1])
        if out is not coeffs:
            out[..., lo:hi] = coeffs[..., lo:hi]
        out[..., :lo].fill(0)          # fill: assigning a Python 0 would allocate an array
        out[..., hi:].fill(0)
        return coeffs.shape[0] * coeffs.shape[1] * (hi - lo)


# per float dtype: the integer type of its bits, whose order is the order of non-negative floats
_BITS_OF = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
            torch.float64: torch.int64}


def _magnitude_order(coeffs: torch.Tensor) -> torch.Tensor:
    """|coeffs| as int64 keys in the order of magnitude, every NaN one key above inf."""
    as_int = _BITS_OF[coeffs.dtype]
    inf = int(torch.tensor(math.inf, dtype=coeffs.dtype).view(as_int))
    return coeffs.detach().abs().view(as_int).to(torch.int64).clamp_(max=inf + 1)


class TopK(_Mask):
    """Keep the k largest-magnitude coefficients of each frame and channel, zero the rest.

    Exactly k are kept. Among equal magnitudes the lower index ranks first; NaN ranks above
    any number, inf included. The rule is the processor's own, not a selection algorithm's, so
    both routes (and any batch) keep the same set.

    Args:
        k: int >= 1 (<= M, checked by ``check_spec``); capped at M at run time.
    """

    KEYS = ("k",)
    COMPILED = True
    k = _Checked(lambda key, value: _check_int(key, value, 1, _ANY_INDEX))

    def __init__(self, k: int):
        super().__init__()
        self.k = k
        self._plans = {}         # (dtype, rows, M) -> the compiled call's types and scratch
        self.reset()

    @classmethod
    def check(cls, params: dict, n_coefficients: int) -> dict:
        return {"k": _check_int("k", params["k"], 1, n_coefficients,
                                f"an integer in 1..{n_coefficients} (model.coefficients)")}

    def keep(self, coeffs):
        m = coeffs.shape[-1]
        k = min(self.k, m)
        order = _magnitude_order(coeffs)
        kth = order.kthvalue(m - k + 1, dim=-1, keepdim=True).values
        above, tied = order > kth, order == kth
        need = k - above.sum(dim=-1, keepdim=True)
        mask = above | (tied & (tied.cumsum(dim=-1) <= need))
        return torch.where(mask, coeffs, 0.0), coeffs.shape[0] * coeffs.shape[1] * k

    def keep_numpy(self, coeffs, out):
        from cosine_host.models.processors import compiled  # numba: imported when first needed
        m = coeffs.shape[-1]
        k = min(self.k, m)
        rows = coeffs.shape[0] * coeffs.shape[1]
        x = coeffs
        if x.strides[-1] != x.itemsize:       # the bits' view needs contiguous rows
            x = np.ascontiguousarray(x)
        plan = self._plans.get((x.dtype, rows, m))
        if plan is None:
            if len(self._plans) >= 64:        # calls of many sizes (whole signals)
                self._plans.clear()
            as_int, _, inf_bits = compiled.BITS[x.dtype]
            plan = self._plans[x.dtype, rows, m] = (
                as_int, compiled.MAGNITUDE[x.dtype], as_int(inf_bits),
                np.empty((rows, m), as_int), np.empty(m, as_int))
        as_int, magnitude, inf_bits, order, scratch = plan
        compiled.topk(x, x.view(as_int), k, magnitude, inf_bits, order, scratch, out)
        return rows * k


class Threshold(_Mask):
    """Spectral gate: zero coefficients whose magnitude is below ``peak * 10**(db/20)``.

    ``peak`` is the frame's (per channel) largest |coeff|; coefficients at or above the
    threshold are kept unchanged. db = 0 keeps only the peak(s).

    Args:
        db: float <= 0, default -60.
    """

    KEYS = ("db",)
    COMPILED = True
    db = _Checked(_check_db)

    def __init__(self, db: float = -60.0):
        super().__init__()
        self.db = db
        self._factor = (None, None)
        self.reset()

    def keep(self, coeffs):
        magnitude = coeffs.detach().abs()
        floor = magnitude.amax(dim=-1, keepdim=True) * 10.0 ** (self.db / 20.0)
        mask = magnitude >= floor
        return torch.where(mask, coeffs, 0.0), mask.sum()

    def keep_numpy(self, coeffs, out):
        from cosine_host.models.processors import compiled  # numba: imported when first needed
        if not coeffs.size:
            return 0
        # the factor in the coefficients' dtype, as torch multiplies a tensor by a float;
        # kept while db stays (making a numpy scalar allocates an array)
        key = (self.db, coeffs.dtype)
        if self._factor[0] != key:
            self._factor = (key, coeffs.dtype.type(10.0 ** (self.db / 20.0)))
        return compiled.threshold(coeffs, self._factor[1], out)


REGISTRY: dict[str, type] = {"quantize": Quantize, "learned_quantize": LearnedQuantize,
                              "band": Band, "topk": TopK, "threshold": Threshold,
                              "codec": Codec}


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
        return check_plugin(type_name, params)
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
    return construct(type_name, params)


def build_chain(specs) -> Chain:
    """A ``Chain`` of ``build(spec)`` for each checked spec, in order."""
    specs = list(specs)
    return Chain([build(s) for s in specs], types=[s["type"] for s in specs])

"""The value checks of the configuration schema (stream/config/schema.py) and the error they raise.

Each check is ``check(key, value) -> value``: ``key`` is the key path for the message (such as
``audio.blocksize``); it returns the value (possibly converted, e.g. seconds to float) or
raises one :class:`ConfigError` naming the key, what was wrong and the allowed values.
:func:`integer` and :func:`choice` make checks; :func:`check_list` checks a list section
entry by entry; :func:`hop_suggestion` names the hops a frame size and window allow.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from cosine_host.engine import windows
from cosine_host.errors import UserError, number_as_text


class ConfigError(UserError, ValueError):
    """A configuration value is missing, unknown, of the wrong type or impossible."""


def integer(lo=None, hi=None) -> Callable[[str, Any], int]:
    """A check for an integer (not a bool) from ``lo`` to ``hi`` inclusive (None: no bound)."""
    def check(key, v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{key} = {v!r}: must be an integer{_range_text(lo, hi)}"
                              f"{number_as_text(v, whole=True)}")
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


def positive_seconds(key, v):
    """A finite number of seconds > 0, as float."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{key} = {v!r}: must be a number of seconds > 0"
                          f"{number_as_text(v)}")
    return float(v)


def choice(*allowed) -> Callable[[str, Any], str]:
    """A check for one of the strings ``allowed``."""
    def check(key, v):
        if v not in allowed:
            raise ConfigError(f"{key} = {v!r}: not allowed; allowed: {' | '.join(allowed)}")
        return v
    return check


def device(key, v):
    """A sound device: None (the default), an index >= 0 or part of a name."""
    if v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
        return v
    raise ConfigError(f"{key} = {v!r}: must be null (default device), a device index >= 0 "
                      f"or part of a device name")


def latency(key, v):
    """PortAudio's latency hint: "low", "high" or seconds > 0."""
    if v in ("low", "high"):
        return v
    if isinstance(v, str):
        raise ConfigError(f"{key} = {v!r}: not allowed; allowed: low | high | seconds > 0"
                          f"{number_as_text(v)}")
    return positive_seconds(key, v)


def optional_samples(key, v):
    """None or a number of samples >= 1."""
    if v is None:
        return v
    return integer(1)(key, v)


def kbd_alpha(key, v):
    """The kbd window's alpha (Kaiser beta = pi alpha): a finite number > 0, as float."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{key} = {v!r}: must be a number > 0 (4 by default, as AAC's long "
                          f"blocks; larger narrows the main lobe less){number_as_text(v)}")
    return float(v)


def optional_path(key, v):
    """None or a non-empty file path."""
    if v is None or (isinstance(v, str) and v):
        return v
    raise ConfigError(f"{key} = {v!r}: must be null or a file path")


def check_list(key: str, specs, example: str, check, errors, sep: str = "") -> tuple:
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
            raise ConfigError(f"{key}[{i}]{sep}{e}{_text_number_in(spec, str(e))}") from None
    return tuple(checked)


def _text_number_in(spec, message: str) -> str:
    """The number_as_text hint for the first value of the entry ``spec`` that ``message``
    quotes and that YAML read as text (entries are checked where the hint is not known)."""
    values = spec.values() if isinstance(spec, dict) else ()
    for value in values:
        hint = number_as_text(value)
        if hint and repr(value) in message and hint not in message:
            return hint
    return ""


def hop_suggestion(n: int, window: str) -> str:
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


"""Time-domain effect stages around the transform: ``pre`` runs on each block before framing,
``post`` on each block after the overlap-add.

A stage is one of pedalboard's effects (Spotify's C++/JUCE library; it releases the GIL while
it processes) or an external plugin it loads::

    pre:
      - {type: pedalboard.Gain, gain_db: -6}
      - {type: pedalboard.Compressor, threshold_db: -20, ratio: 4}
    post:
      - {type: vst3, path: /path/Plugin.vst3, parameters: {mix: 0.5}}

``check_spec`` validates one entry when the config loads (an unknown class, parameter, type or
value is one line naming what is allowed); ``build_chain`` makes the ``EffectChain`` the engine
runs. Stages keep their state from block to block (pedalboard's ``reset=False``) and forget it
on ``reset``.

Latency. A pedalboard plugin that delays its output (a resampler, a look-ahead, a VST3 that
reports latency) hands back fewer samples than it was given until its delay has passed; what it
returns then is aligned with the input. ``Stage.prepare`` measures that shortfall by feeding it
silence and reports it as ``latency_samples``; the stage prefills its output with as many zeros,
so every call returns exactly as many frames as it took, ``latency_samples`` late.

Partitions. After every reset a stage feeds its plugin PRIME_FRAMES of silence (see
``Stage._prime``): then pedalboard's built-ins give the same output however the blocks are cut,
and blocks shorter than the channel count are read the right way round.

pedalboard is an optional extra: ``pip install 'cosine-host[fx]'``.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np

from cosine_host.engine.queues import Queue

INSTALL_HINT = "pip install 'cosine-host[fx]' (or pip install pedalboard)"
SECTIONS = ("pre", "post")     # the config's stage lists: before framing, after overlap-add
EXTERNAL_TYPES = ("vst3", "au")
PRIME_FRAMES = 8192            # pedalboard's buffer size: the longest call a plugin sees
PROBE_BLOCK = 512              # samples per call while measuring a stage's latency
PROBE_LIMIT_S = 10.0           # a stage silent for longer than this is refused
# containers and bases are not stages; IIRFilter is abstract, Convolution needs a file to build
_NOT_STAGES = {"Plugin", "PluginContainer", "Pedalboard", "Chain", "Mix", "ExternalPlugin",
               "VST3Plugin", "AudioUnitPlugin", "IIRFilter", "Convolution"}


class EffectError(ValueError):
    """A ``pre``/``post`` entry that cannot be built; the message is one line saying what to do."""


def _pedalboard():
    try:
        import pedalboard
    except ImportError:
        raise EffectError(f": needs pedalboard, which is not installed; install it: "
                          f"{INSTALL_HINT}") from None
    return pedalboard


def builtin_names() -> list[str]:
    """pedalboard's effect classes that a config can name, as ``pedalboard.<Class>``."""
    pb = _pedalboard()
    names = []
    for name in dir(pb):
        cls = getattr(pb, name)
        if (isinstance(cls, type) and issubclass(cls, pb.Plugin) and not name.startswith("_")
                and name not in _NOT_STAGES):
            names.append(f"pedalboard.{name}")
    return sorted(names)


def parameter_names(cls) -> list[str]:
    """The settable parameters of a pedalboard effect class (its writable properties)."""
    return sorted(n for n in dir(cls) if not n.startswith("_")
                  and isinstance(getattr(cls, n, None), property) and getattr(cls, n).fset)


def _set_parameter(plugin, name: str, value, where: str) -> None:
    """Set one parameter, checked against the type of its current value."""
    current = getattr(plugin, name)
    enum = type(current)
    if hasattr(enum, "__members__"):                       # a pybind11 enum: given by name
        members = list(enum.__members__)
        if value not in members:
            raise EffectError(f"{where} = {value!r}: not allowed; allowed: {' | '.join(members)}")
        value = enum.__members__[value]
    elif isinstance(current, bool):
        if not isinstance(value, bool):
            raise EffectError(f"{where} = {value!r}: must be true or false")
    elif isinstance(current, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            from cosine_host.errors import number_as_text
            raise EffectError(f"{where} = {value!r}: must be a finite number"
                              f"{number_as_text(value)}")
    try:
        setattr(plugin, name, value)
    except (ValueError, TypeError, RuntimeError) as e:
        raise EffectError(f"{where} = {value!r}: {str(e).splitlines()[0]}") from None


def _build_builtin(spec: Mapping, where: str):
    pb = _pedalboard()
    kind = spec["type"]
    allowed = builtin_names()
    if kind not in allowed:
        raise EffectError(f"{where}type = {kind!r}: unknown effect; allowed: "
                          f"{', '.join(allowed)}, vst3, au")
    cls = getattr(pb, kind.removeprefix("pedalboard."))
    plugin = cls()
    params = parameter_names(cls)
    for name, value in spec.items():
        if name == "type":
            continue
        if name not in params:
            raise EffectError(f"{where}{name}: unknown parameter of {kind}; allowed: "
                              f"{', '.join(params) or 'none'}")
        _set_parameter(plugin, name, value, f"{where}{name}")
    return plugin


def _check_external(spec: Mapping, where: str) -> None:
    kind = spec["type"]
    unknown = set(spec) - {"type", "path", "parameters", "plugin_name"}
    if unknown:
        raise EffectError(f"{where}{sorted(unknown)[0]}: unknown key of a {kind} stage; allowed: "
                          f"path, parameters, plugin_name")
    path = spec.get("path")
    if not isinstance(path, str) or not path:
        raise EffectError(f"{where}path: a {kind} stage needs the path of its plugin, e.g. "
                          f"{{type: {kind}, path: /path/Plugin.{kind}}}")
    if not os.path.exists(path):
        raise EffectError(f"{where}path = {path!r}: no such plugin file; give the path of an "
                          f"installed .{kind} plugin")
    if kind == "au" and not _pedalboard_has("AudioUnitPlugin"):
        raise EffectError(f"{where}type = 'au': Audio Units load on macOS only; use vst3")
    params = spec.get("parameters", {})
    if not isinstance(params, Mapping):
        raise EffectError(f"{where}parameters = {params!r}: must be a mapping of parameter "
                          f"names to values")
    name = spec.get("plugin_name")
    if name is not None and not isinstance(name, str):
        raise EffectError(f"{where}plugin_name = {name!r}: must be a string")


def _pedalboard_has(name: str) -> bool:
    return hasattr(_pedalboard(), name)


def _build_external(spec: Mapping, where: str):
    _check_external(spec, where)
    pb = _pedalboard()
    try:
        plugin = pb.load_plugin(spec["path"], plugin_name=spec.get("plugin_name"))
    except (ImportError, ValueError, RuntimeError) as e:
        raise EffectError(f"{where}path = {spec['path']!r}: cannot load the plugin: "
                          f"{str(e).splitlines()[0]}") from None
    params = getattr(plugin, "parameters", {})
    for name, value in spec.get("parameters", {}).items():
        if name not in params:
            raise EffectError(f"{where}parameters.{name}: unknown parameter of this plugin; "
                              f"allowed: {', '.join(sorted(params)) or 'none'}")
        try:
            setattr(plugin, name, value)
        except (ValueError, TypeError, RuntimeError) as e:
            raise EffectError(f"{where}parameters.{name} = {value!r}: "
                              f"{str(e).splitlines()[0]}") from None
    return plugin


def check_spec(spec) -> dict:
    """Validate one ``pre``/``post`` entry; returns it as a plain dict.

    Built-ins are constructed (cheap) so that every parameter is checked as pedalboard checks
    it; an external plugin's file must exist (it is loaded when the engine is built).
    Raises EffectError with one line of text, for the caller to prefix with ``pre[i]``.
    """
    if not isinstance(spec, Mapping) or not isinstance(spec.get("type"), str):
        raise EffectError(f" = {spec!r}: each stage is a mapping with a type, e.g. "
                          f"{{type: pedalboard.Gain, gain_db: -6}}")
    if spec["type"] in EXTERNAL_TYPES:
        _check_external(spec, ".")
    else:
        _build_builtin(spec, ".")
    return dict(spec)


def build(spec: Mapping):
    """The pedalboard plugin for one checked entry."""
    if spec["type"] in EXTERNAL_TYPES:
        return _build_external(spec, ".")
    return _build_builtin(spec, ".")


class Stage:
    """One pedalboard plugin run on blocks as a stream.

    Args:
        plugin: a pedalboard Plugin (effect).
        name: what reports and errors call it (e.g. ``pre[0] pedalboard.Compressor``).

    After :meth:`prepare`, ``latency_samples`` is the plugin's measured delay; :meth:`process`
    takes and returns (frames, channels) float32 blocks of equal size, ``latency_samples``
    late, whatever the sizes of the blocks.
    """

    def __init__(self, plugin, name: str):
        self.plugin = plugin
        self.name = name
        self.latency_samples = 0
        self.samplerate = 0
        self.channels = 1
        self.underrun_samples = 0

    def prepare(self, samplerate: int, blocksize: int, channels: int) -> None:
        """Measure the plugin's delay at ``samplerate`` (Hz) with ``channels`` channels for
        blocks of ``blocksize`` frames (0 = any size)."""
        self.samplerate, self.channels = samplerate, channels
        self.latency_samples = self._probe(blocksize)    # at least what the prime leaves held
        self.reset()

    def _prime(self) -> int:
        """Reset the plugin and feed it PRIME_FRAMES of silence; returns how many it holds.

        pedalboard hands a plugin at most PRIME_FRAMES (its buffer size) per inner call, and
        some effects (filters, compressors, reverbs) restart their state the first time a
        call is longer than any before; after a call of the longest size, their output no
        longer depends on how the blocks are cut. The prime also tells pedalboard which axis
        holds the channels, so blocks shorter than the channel count are read right. Silence
        leaves the state of these effects at rest (time-varying ones, a chorus or phaser, start
        their oscillator PRIME_FRAMES later: the same for every run)."""
        self.plugin.reset()
        silence = np.zeros((self.channels, PRIME_FRAMES), np.float32)
        return PRIME_FRAMES - self.plugin.process(silence, self.samplerate,
                                                  reset=False).shape[-1]

    def _probe(self, blocksize: int) -> int:
        """The most input the plugin holds back at any call after the prime, fed silence in
        the sizes a stream can use. A resampler's shortfall moves by a few samples with the
        sizes (it returns whole periods of its inner rate); where the probes disagree, twice
        their spread is added, so that mixed sizes find the output ready too. A fixed block
        size is probed as it is."""
        sizes = (blocksize,) if blocksize else (1, 7, 64, PROBE_BLOCK)
        found = [self._shortfall(b) for b in sizes]
        return max(found) + 2 * (max(found) - min(found))

    def _shortfall(self, block: int) -> int:
        held = self._prime()
        silence = np.zeros((self.channels, block), np.float32)
        given, returned, most = PRIME_FRAMES, PRIME_FRAMES - held, held
        limit = PROBE_LIMIT_S * self.samplerate
        while given < limit:
            got = self.plugin.process(silence, self.samplerate, reset=False).shape[-1]
            given += block
            returned += got
            most = max(most, given - returned)
            if got == block and given >= PRIME_FRAMES + 2 * most + 4 * max(block, PROBE_BLOCK):
                return most
        raise EffectError(f" ({self.name}): returned no steady output within {PROBE_LIMIT_S:g} s "
                          f"of audio; it cannot run on a stream")

    def reset(self) -> None:
        """Forget the plugin's state; the output restarts with ``latency_samples`` zeros."""
        held = self._prime()
        self.underrun_samples = 0
        # the prime's own silence still inside the plugin comes out first
        self._ready = _Fifo(self.channels, self.latency_samples - held)
        self._inputs = {}          # frames -> the (channels, frames) buffer handed to the plugin

    def process(self, block: np.ndarray) -> np.ndarray:
        """(frames, channels) float32 in, the same shape out, ``latency_samples`` late: a view
        of the stage's own buffer, valid until the next call. Allocates nothing but the array
        the plugin returns (pedalboard's process has no output argument)."""
        frames = block.shape[0]
        given = self._inputs.get(frames)
        if given is None:          # once per block size
            given = self._inputs[frames] = np.empty((self.channels, frames), np.float32)
        np.copyto(given, block.T)
        wet = self.plugin.process(given, self.samplerate, reset=False)
        self._ready.write(wet)
        # the plugin held back more than its probe showed: zeros keep the stream going,
        # counted so that reports show the shift
        self.underrun_samples += self._ready.read_into(frames)
        return self._ready.out[:frames]


class _Fifo:
    """Samples waiting to go out, (channels, samples) float32, ``prefill`` zeros first:
    ``write`` appends (channels, n) arrays, ``read_into(frames)`` moves the oldest ``frames``
    into ``out[:frames]`` ((frames, channels)), zeros first where there are too few. Storage is
    allocated when a call brings more than ever before, never per call."""

    def __init__(self, channels: int, prefill: int):
        self.queue = Queue(np.zeros((channels, max(4096, 2 * prefill)), np.float32))
        self.queue.reset(prefill)
        self.out = np.zeros((0, channels), np.float32)

    def write(self, samples: np.ndarray) -> None:
        self.queue.write(samples.T)

    def read_into(self, frames: int) -> int:
        """Fill ``out[:frames]``; returns how many leading zeros stood in for missing samples."""
        if self.out.shape[0] < frames:
            self.out = np.zeros((frames, self.queue.buf.shape[0]), np.float32)
        q = self.queue
        missing = max(0, frames - len(q))
        out = self.out[:frames]
        out[:missing].fill(0)
        take = frames - missing
        np.copyto(out[missing:], q.buf[:, q.start:q.start + take].T)
        q.start += take
        return missing


class EffectChain:
    """Ordered stages run on every block; an empty chain passes blocks through untouched."""

    def __init__(self, stages=()):
        self.stages = list(stages)
        self.latency_samples = 0

    def __len__(self) -> int:
        return len(self.stages)

    def prepare(self, samplerate: int, blocksize: int, channels: int) -> None:
        for stage in self.stages:
            stage.prepare(samplerate, blocksize, channels)
        self.latency_samples = sum(s.latency_samples for s in self.stages)

    def reset(self) -> None:
        for stage in self.stages:
            stage.reset()

    def process(self, block: np.ndarray) -> np.ndarray:
        """(frames, channels) float32 -> same shape, ``latency_samples`` late (a new array,
        or ``block`` itself when the chain is empty)."""
        for stage in self.stages:
            block = stage.process(block)
        if self.stages and block.dtype != np.float32:
            block = block.astype(np.float32)
        return block

    def describe(self) -> list[dict]:
        """Per stage: its name and latency in samples (for reports)."""
        return [{"stage": s.name, "latency_samples": s.latency_samples,
                 "underrun_samples": s.underrun_samples} for s in self.stages]


def build_chain(specs, where: str) -> EffectChain:
    """An EffectChain from checked entries; ``where`` is ``"pre"`` or ``"post"``."""
    stages = []
    for i, spec in enumerate(specs):
        try:
            plugin = build(spec)
        except EffectError as e:
            raise EffectError(f"{where}[{i}]{e}") from None
        stages.append(Stage(plugin, f"{where}[{i}] {spec['type']}"))
    return EffectChain(stages)


class DelayLine:
    """Delays (frames, channels) float32 blocks by ``latency_samples`` (the dry path of a
    bypass when effect stages add their latency to the engine's)."""

    def __init__(self, latency_samples: int, channels: int):
        self.latency_samples, self.channels = latency_samples, channels
        self.reset()

    def reset(self) -> None:
        self._fifo = _Fifo(self.channels, self.latency_samples)

    def process(self, block: np.ndarray) -> np.ndarray:
        """``block`` itself without latency, else a view of the line's buffer, valid until the
        next call (no allocation per call)."""
        if not self.latency_samples:
            return block
        self._fifo.write(block.T)
        self._fifo.read_into(block.shape[0])
        return self._fifo.out[:block.shape[0]]

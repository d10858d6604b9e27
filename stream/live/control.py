"""Changing a live stream while it plays: validated controls, handed to the audio callback.

:meth:`Controls.handle` runs in a control thread (the OSC server, stream/live/osc.py): it checks an
address and its values, does every slow or allocating step there (building a processor with
the new parameter, loading a checkpoint and building its matrices) and queues a small
``apply`` function. The audio callback calls :meth:`Controls.drain` at the start of each block:
it pops the queue (``collections.deque``: append and popleft are atomic in CPython, no lock)
and runs each ``apply``, which only rebinds attributes: the callback never blocks, allocates
arrays or raises because of a control.

Addresses (values as OSC arguments):

- ``/bypass`` int 0|1, ``/bypass/toggle``: the engine's bypass (dry signal, same latency);
- ``/processors/<index>/<param>`` value: any parameter of a built-in or plugin processor,
  checked by cosine_host.models.processors.registry.check_spec exactly as the same value in a
  config; the processor is rebuilt with it (its statistics restart), except for the parameters its
  class lists in ``LIVE_KEYS`` (the codec's ``kbps``), which are set on the running processor;
- ``/processors/<index>/enabled`` int 0|1: a disabled processor passes its coefficients on;
- ``/pre/<index>/<param>``, ``/post/<index>/<param>`` value: a parameter of an effect stage
  (cosine_host.engine.effects; for a vst3 stage, one of its ``parameters``), checked as in a config
  by building a stage with it off the audio thread; the callback sets it on the running plugin,
  whose state goes on. A value that would change the stage's latency is refused;
- ``/model/checkpoint`` string: a checkpoint for the config's model, switched in at a block
  boundary (Engine.prepare_model_swap: crossfaded by the frames' overlap, N - H samples);
- ``/status``: answered by the session (current compute time, xruns, latency, levels);
- ``/quit``: stops the stream.

Every message gets one entry in :attr:`Controls.log` (the report's ``controls``): address,
value, received_s, result (``applied``, ``refused``, or ``pending`` when the stream stopped
first) and reason when refused; applied_callback, applied_frame and applied_s when the callback
applied it (applied_callback is null for /status and /quit, which do not touch the audio).
Times are seconds from the stream's start.
"""
from __future__ import annotations

import collections
import math
import threading
import time

import torch

from cosine_host.models.processors import registry as registry
from cosine_host.engine import effects

ADDRESSES = ("/bypass", "/bypass/toggle", "/processors/<index>/<param>",
             "/processors/<index>/enabled", "/pre/<index>/<param>", "/post/<index>/<param>",
             "/model/checkpoint", "/status", "/quit")


class Refused(Exception):
    """A control message that cannot be applied; the message says why and what is allowed."""


class Disabled(torch.nn.Module):
    """Stands in for a disabled processor: coefficients pass unchanged (both routes)."""

    latency_samples = 0

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, coeffs):
        return coeffs

    def _numpy(self, array):
        return array

    def prepare(self, samplerate, hop, n_coefficients):
        pass

    def reset(self):
        self.inner.reset()

    def stats(self):
        return {"enabled": False, **self.inner.stats()}


class Controls:
    """Validation, the queue to the callback and the log of every control message.

    Args:
        engine: the running cosine_host.engine.engine.Engine. cfg: the
        cosine_host.config.schema.Config it was built from (processor specs, model settings).
        started_ns: ``time.perf_counter_ns()`` at stream start (times are relative to it).
        on_status: callable() -> dict answering ``/status``. on_message: callable(line: str)
        printing one line for people (a refused message: stderr).
    """

    def __init__(self, engine, cfg, started_ns: int, on_status=None, on_message=None):
        self.engine, self.cfg = engine, cfg
        self.started_ns = int(started_ns)
        self.on_status = on_status
        self.on_message = on_message
        self.pending: collections.deque = collections.deque()
        # what the callback replaced (old processors, old matrices): released by release(), in
        # another thread, so that the callback never pays for freeing them
        self.retired: collections.deque = collections.deque()
        self.log: list[dict] = []
        self.quit = threading.Event()
        self.bypass_toggles = 0
        self.specs = [dict(s) for s in cfg.processors]
        self.stage_specs = {where: [dict(s) for s in getattr(cfg, where)]
                            for where in effects.SECTIONS}
        self.enabled = [True] * len(self.specs)
        chain = engine.processors
        # the live processors, by index: rebuilt ones replace these (ModuleList keys are "0"..)
        self._modules = chain.processors._modules if len(self.specs) else {}
        self._built = [chain[i] for i in range(len(self.specs))]

    # --- control thread ---------------------------------------------------------------------

    def seconds(self, ns: int) -> float:
        return (ns - self.started_ns) / 1e9

    def release(self) -> None:
        """Drop what the callback replaced (call from any thread but the callback's)."""
        while self.retired:
            self.retired.popleft()

    def handle(self, address: str, args: tuple) -> dict:
        """Check one message and queue its change (or answer it); returns its log entry."""
        self.release()
        logged = [_loggable(a) for a in args]
        entry = {"address": address,
                 "value": logged[0] if len(logged) == 1 else (logged or None),
                 "received_s": self.seconds(time.perf_counter_ns()), "result": "pending"}
        self.log.append(entry)
        try:
            apply = self._prepare(address, list(args), entry)
        except Refused as e:
            entry.update(result="refused", reason=str(e))
            if self.on_message is not None:
                self.on_message(f"osc: {address} {_args_text(args)}: refused: {e}")
            return entry
        if apply is None:           # answered here (status, quit)
            entry.update(result="applied", applied_callback=None,
                         applied_s=self.seconds(time.perf_counter_ns()))
        else:
            # the keys the callback fills in exist already: it only replaces values
            entry.update(applied_callback=None, applied_frame=None, applied_ns=None)
            self.pending.append((entry, apply))
        return entry

    def _prepare(self, address: str, args: list, entry: dict):
        parts = address.strip("/").split("/")
        if address == "/bypass":
            on = _flag(address, args)
            return lambda: setattr(self.engine, "bypass", on)
        if address == "/bypass/toggle":
            _no_args(address, args)
            return self._toggle
        if address == "/status":
            _no_args(address, args)
            entry["status"] = self.on_status() if self.on_status is not None else None
            return None
        if address == "/quit":
            _no_args(address, args)
            self.quit.set()
            return None
        if address == "/model/checkpoint":
            return self._checkpoint(_one(address, args))
        if len(parts) == 3 and parts[0] == "processors":
            return self._processor(parts[1], parts[2], address, args)
        if len(parts) == 3 and parts[0] in self.stage_specs:
            return self._stage(parts[0], parts[1], parts[2], address, args)
        raise Refused(f"unknown address; allowed: {', '.join(ADDRESSES)}")

    def _toggle(self) -> None:
        self.engine.bypass = not self.engine.bypass
        self.bypass_toggles += 1

    def _processor(self, index_text: str, param: str, address: str, args: list):
        n = len(self.specs)
        if not index_text.isdigit() or int(index_text) >= n:
            raise Refused(f"no processor {index_text!r}; allowed: an index in 0..{n - 1}"
                          if n else "the config has no processors")
        i = int(index_text)
        key = str(i)
        if param == "enabled":
            on = _flag(address, args)
            old = self._built[i]
            if int(getattr(old, "latency_samples", 0)):
                raise Refused(f"processors[{i}] adds {old.latency_samples} samples of latency; "
                              f"disabling it would change the stream's latency")
            self.enabled[i] = on
            live = old if on else Disabled(old)
            return lambda: self._replace(key, live)
        value = _one(address, args)
        if param == "type":
            raise Refused("the type of a processor cannot change while the stream runs; "
                          "change the config and restart")
        spec = dict(self.specs[i], **{param: value})
        try:
            checked = registry.check_spec(spec, n_coefficients=self.engine.model.m)
        except (ValueError, TypeError) as e:
            raise Refused(f"processors[{i}].{e}") from None
        current = self._built[i]
        if param in getattr(type(current), "LIVE_KEYS", ()):
            # a parameter the processor takes while running (the codec's kbps): set on the
            # live processor at a block boundary, its state (the coder's models) goes on
            self.specs[i] = checked
            value = checked[param]
            return lambda: setattr(current, param, value)
        try:
            built = registry.build(checked)
            built.to(self.engine.device)
            built.prepare(self.engine.samplerate, self.engine.hop, self.engine.model.m)
        except Exception as e:      # a plugin's constructor or prepare failed: one line
            raise Refused(f"processors[{i}]: building it failed: {type(e).__name__}: {e}") \
                from None
        old_latency = int(getattr(self._built[i], "latency_samples", 0))
        if int(getattr(built, "latency_samples", 0)) != old_latency:
            raise Refused(f"processors[{i}].{param} = {value!r} changes the processor's latency "
                          f"({old_latency} -> {built.latency_samples} samples); restart with it")
        self.specs[i], self._built[i] = checked, built
        live = built if self.enabled[i] else Disabled(built)
        return lambda: self._replace(key, live)

    def _stage(self, where: str, index_text: str, param: str, address: str, args: list):
        specs = self.stage_specs[where]
        n = len(specs)
        if not index_text.isdigit() or int(index_text) >= n:
            raise Refused(f"no {where} stage {index_text!r}; allowed: an index in 0..{n - 1}"
                          if n else f"the config has no {where} stages")
        i = int(index_text)
        value = _one(address, args)
        spec = dict(specs[i])
        if param == "type" or (spec["type"] in effects.EXTERNAL_TYPES and param != "parameters"
                               and param in spec):
            raise Refused(f"{where}[{i}].{param} cannot change while the stream runs; change "
                          f"the config and restart")
        if spec["type"] in effects.EXTERNAL_TYPES:
            spec["parameters"] = dict(spec.get("parameters") or {}, **{param: value})
        else:
            spec[param] = value
        e = self.engine
        try:
            checked = effects.check_spec(spec)
            probe = effects.build_chain([checked], where)
            probe.prepare(e.samplerate, e.blocksize, e.channels)
        except effects.EffectError as err:
            raise Refused(f"{where}[{i}]{err}") from None
        running = getattr(e, where).stages[i]
        if probe.latency_samples != running.latency_samples:
            raise Refused(f"{where}[{i}].{param} = {value!r} changes the stage's latency "
                          f"({running.latency_samples} -> {probe.latency_samples} samples); "
                          f"restart with it")
        specs[i] = checked
        # the value as the plugin holds it (an enum member, a float): setting it in the
        # callback is then one attribute store
        converted = getattr(probe.stages[0].plugin, param)
        plugin = running.plugin
        return lambda: setattr(plugin, param, converted)

    def _replace(self, key: str, module) -> None:
        """In the callback: processor ``key`` becomes ``module``; the old one is retired."""
        self.retired.append(self._modules[key])
        self._modules[key] = module

    def _checkpoint(self, path):
        from cosine_host.models import LearnedCosine, load_checkpoint
        from cosine_host.models.checkpoint import CheckpointError
        if not isinstance(path, str) or not path:
            raise Refused(f"value {path!r}: must be a checkpoint file path (a string)")
        e = self.engine
        if e.hop >= e.frame_size:
            raise Refused(f"frame.hop = {e.hop} equals frame.size: frames do not overlap, so a "
                          f"swap could not be crossfaded; use a smaller hop")
        m = self.cfg.model
        model = LearnedCosine(e.frame_size, m.coefficients, init=m.init, decoder=m.decoder,
                              dtype=m.dtype)
        try:
            load_checkpoint(model, path)
        except CheckpointError as err:
            raise Refused(str(err)) from None
        except OSError as err:
            raise Refused(f"cannot read {path!r}: {err.strerror or err}") from None
        try:
            commit = e.prepare_model_swap(model)
        except ValueError as err:
            raise Refused(str(err)) from None
        return lambda: self.retired.append(commit())

    # --- audio callback -----------------------------------------------------------------------

    def drain(self, callback: int, frame: int, now_ns: int) -> None:
        """Apply every queued change; called at the start of a block, before the engine runs.
        ``callback``: the block's index; ``frame``: its first frame in the stream."""
        q = self.pending
        while q:
            entry, apply = q.popleft()
            apply()
            entry["result"] = "applied"
            entry["applied_callback"] = callback
            entry["applied_frame"] = frame
            entry["applied_ns"] = now_ns

    # --- after the stream -----------------------------------------------------------------------

    def report(self) -> list[dict]:
        """The log with times in seconds (entries still queued stay ``pending``)."""
        out = []
        for entry in list(self.log):
            e = dict(entry)
            ns = e.pop("applied_ns", None)
            if ns is not None:
                e["applied_s"] = self.seconds(ns)
            out.append(e)
        return out

    def last(self) -> dict | None:
        """The latest entry (for the panel)."""
        return self.log[-1] if self.log else None


def _loggable(value):
    """``value`` as the report keeps it: a NaN or infinite float as its text ("nan", "inf",
    "-inf"), which JSON would otherwise write as null; anything else as it is."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _args_text(args) -> str:
    return " ".join(repr(a) for a in args) if args else "(no value)"


def _no_args(address, args) -> None:
    if args:
        raise Refused(f"{address} takes no value, got {_args_text(args)}")


def _one(address, args):
    if len(args) != 1:
        raise Refused(f"{address} takes one value, got {len(args)}")
    return args[0]


def _flag(address, args) -> bool:
    v = _one(address, args)
    if isinstance(v, bool) or v not in (0, 1) or isinstance(v, float):
        raise Refused(f"value {v!r}: must be an integer 0 or 1")
    return bool(v)

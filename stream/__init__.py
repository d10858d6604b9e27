"""cosine-host: a real-time host for learned cosine transforms (import root ``cosine_host``).

The rooms: ``engine`` (the block engine, kernels, queues, windows, latency, effect stages),
``config``, ``offline`` (render, file formats, batch, cluster), ``live`` (the only room that
imports sounddevice, lazily), ``measure``, ``lab`` (evaluate, metrics, reference codecs),
``train``, ``cli``, and ``models`` (the torch model, processors, checkpoints, training), which
imports nothing from the other rooms.

The names below load their modules (and with them torch) on first use, so that importing a light
module such as cosine_host.interrupts or cosine_host.offline.batch stays cheap: a batch starts its
worker processes before the command's own process has paid for torch, and they import it side by
side."""
import importlib

from cosine_host.errors import UserError

_LAZY = {"Config": "cosine_host.config.schema", "ConfigError": "cosine_host.config.schema",
         "load_config": "cosine_host.config.schema", "Engine": "cosine_host.engine.engine",
         "EngineInputError": "cosine_host.engine.engine"}

__all__ = ["Config", "ConfigError", "load_config", "Engine", "EngineInputError", "UserError"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cosine_host' has no attribute {name!r}")

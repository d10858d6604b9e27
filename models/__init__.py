"""Torch models of cosine-host: the learned cosine transform, coefficient processors,
checkpoints and training. Imports nothing from the rest of cosine_host.

The names below load their modules (and torch) on first use."""
import importlib

_LAZY = {"CheckpointError": "checkpoint", "load_checkpoint": "checkpoint",
         "load_processors": "checkpoint", "read_checkpoint": "checkpoint",
         "save_checkpoint": "checkpoint", "CosineDecoder": "cosine", "CosineEncoder": "cosine",
         "DTYPES": "transform", "LearnedCosine": "transform"}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

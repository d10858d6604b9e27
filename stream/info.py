"""What `run.py info` shows: versions, the resolved config, the model and the engine latency."""
from __future__ import annotations

from importlib import metadata

import torch

from stream.engine import Engine, resolve_device


def version() -> str:
    try:
        return metadata.version("cosine-host")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def describe(cfg) -> dict:
    """JSON-ready description of a config, its model, the transform the engine picks and the
    latency it implies at ``audio.blocksize``."""
    engine = Engine.from_config(cfg)
    model = engine.model
    latency = engine.latency_report()
    return {
        "version": version(),
        "torch": torch.__version__,
        "device": str(resolve_device("auto")),
        "config_source": cfg.source,
        "config": cfg.to_dict(),
        "model": {"frame_size": model.n, "coefficients": model.m, "hop": cfg.frame.hop,
                  "init": cfg.model.init, "decoder": cfg.model.decoder,
                  "dtype": cfg.model.dtype, "parameters": model.parameter_count(),
                  "checkpoint": cfg.model.checkpoint},
        "transform": engine.transform,
        "transform_reason": engine.transform_reason,
        "latency": latency,
    }

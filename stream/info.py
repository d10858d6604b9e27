"""What `run.py info` shows: versions, the resolved config, the model and the engine latency."""
from __future__ import annotations

from importlib import metadata

import torch

from stream import latency as lat
from stream.engine import build_model, resolve_device


def version() -> str:
    try:
        return metadata.version("cosine-host")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def describe(cfg) -> dict:
    """JSON-ready description of a config, its model and the latency it implies."""
    model = build_model(cfg)
    n, hop, blocksize, sr = cfg.frame.size, cfg.frame.hop, cfg.audio.blocksize, cfg.audio.samplerate
    engine_samples = lat.latency_samples(n, hop, blocksize)
    return {
        "version": version(),
        "torch": torch.__version__,
        "device": str(resolve_device("auto")),
        "config_source": cfg.source,
        "config": cfg.to_dict(),
        "model": {"frame_size": n, "coefficients": cfg.model.coefficients, "hop": hop,
                  "init": cfg.model.init, "decoder": cfg.model.decoder,
                  "dtype": cfg.model.dtype, "parameters": model.parameter_count(),
                  "checkpoint": cfg.model.checkpoint},
        "latency": {"blocksize": blocksize, "samplerate": sr, "engine_samples": engine_samples,
                    "engine_ms": 1000.0 * engine_samples / sr,
                    "algorithmic_samples": lat.algorithmic_latency_samples(n, hop),
                    "buffering_samples": lat.buffering_latency_samples(hop, blocksize)},
    }

"""What `run.py info` shows: versions, the resolved config, the model and the engine latency."""
from __future__ import annotations

from importlib import metadata

import torch

from cosine_host.models import read_checkpoint
from cosine_host.models.checkpoint import CheckpointError
from cosine_host.engine.build import resolve_device
from cosine_host.engine.engine import Engine
from cosine_host.errors import UserError


def version() -> str:
    try:
        return metadata.version("cosine-host")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def describe(cfg) -> dict:
    """JSON-ready description of a config, its model, the transform the engine picks and the
    latency it implies at ``audio.blocksize``. With ``model.checkpoint``, ``checkpoint`` holds
    what the checkpoint stores besides its parameters: ``metadata`` (frame_size, coefficients,
    init, decoder, ...) and ``extra`` (what `train` recorded: steps, seed, lr, SNR before and
    after, files, ...), ``format_version`` and ``processors`` (the learned processors it
    carries, _learned_summary); else it is None."""
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
        "checkpoint": checkpoint_info(cfg.model.checkpoint) if cfg.model.checkpoint else None,
    }


def checkpoint_info(path) -> dict:
    """{"path", "metadata", "extra"} of a checkpoint file (its parameters left out)."""
    try:
        payload = read_checkpoint(path)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    return {"path": str(path), "format_version": payload.get("version"),
            "metadata": payload.get("metadata", {}), "extra": payload.get("extra", {}),
            "processors": [_learned_summary(e) for e in payload["processors"]]}


def _learned_summary(entry: dict) -> dict:
    """A learned processor of a checkpoint in numbers: type, coefficients (M), and for the
    learned quantizer its step sizes (coefficient units, scale 1): min, geometric mean, max."""
    summary = {"type": entry.get("type")}
    log_step = entry.get("state_dict", {}).get("log_step")
    if log_step is not None and log_step.numel():
        steps = torch.exp(log_step.to(torch.float64))
        summary.update(coefficients=int(steps.numel()), step_min=float(steps.min()),
                       step_geomean=float(torch.exp(log_step.to(torch.float64).mean())),
                       step_max=float(steps.max()))
    return summary

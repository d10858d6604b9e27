"""The engine's parts from a config: the torch device, the model (its checkpoint loaded) and
the processor chain (learned processor state loaded), each bad setting one UserError line."""
from __future__ import annotations

import torch

from cosine_host.models import LearnedCosine, load_checkpoint, load_processors
from cosine_host.models.processors import registry as processor_registry
from cosine_host.models.checkpoint import CheckpointError
from cosine_host.errors import UserError


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; "cuda" without one is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("model.device = cuda but no CUDA device is available; use "
                        "--set model.device=cpu (or auto)")
    return torch.device(name)


def build_model(cfg) -> LearnedCosine:
    """The config's model, with its checkpoint loaded when one is given."""
    model = LearnedCosine(cfg.frame.size, cfg.model.coefficients, init=cfg.model.init,
                          decoder=cfg.model.decoder, dtype=cfg.model.dtype)
    if cfg.model.checkpoint:
        try:
            load_checkpoint(model, cfg.model.checkpoint)
        except CheckpointError as e:
            raise UserError(str(e)) from None
    return model


def build_processors(cfg):
    """The config's processor chain, with learned processor state (the learned quantizer's
    steps) loaded from ``model.checkpoint`` when one is given (models.load_processors)."""
    try:
        chain = processor_registry.build_chain(cfg.processors)
    except (TypeError, ValueError) as e:      # a plugin's constructor, named in one line
        raise UserError(f"processors: {e}") from e
    try:
        load_processors(chain, cfg.model.checkpoint)
    except CheckpointError as e:
        raise UserError(str(e)) from None
    return chain

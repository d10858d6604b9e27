"""Checkpoints: parameters plus the metadata needed to rebuild and check the model.

Written with torch.save and read with ``torch.load(weights_only=True)``: nothing but tensors
and plain containers is ever unpickled.
"""
from __future__ import annotations

import os
import pathlib
import tempfile

import torch

from models.transform import LearnedCosine

FORMAT = "cosine-host-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model it is loaded into."""


def save_checkpoint(model: LearnedCosine, path, extra: dict | None = None) -> None:
    """Write the model's parameters and metadata atomically (temporary file, then rename).

    The file gets the permissions of the file it replaces, else those a plain ``open()`` would
    give (0o666 less the umask), like every other output (stream.files.atomic_path).
    extra: JSON-like metadata to keep alongside (training steps, SNR, ...).
    """
    path = pathlib.Path(path)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "metadata": model.metadata(),
        "extra": dict(extra or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        # Through a file object: torch names the archive after a path, which is random here.
        with open(tmp, "wb") as f:
            torch.save(payload, f)
        # mkstemp makes the file private (0o600)
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_checkpoint(path) -> dict:
    """The checkpoint's payload: format, version, metadata, extra, state_dict."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r} not found; give the path that "
                              f"`train --out` wrote") from None
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}); "
                              f"is it a file written by `train`?") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a cosine-host checkpoint")
    return payload


def load_checkpoint(model: LearnedCosine, path) -> dict:
    """Load parameters into ``model`` in place; returns the checkpoint's metadata and extra.

    Raises CheckpointError when the checkpoint's N, M or decoder mode differ from the model's.
    """
    payload = read_checkpoint(path)
    meta = payload["metadata"]
    mine = model.metadata()
    # Frequencies are stored as offsets from the init's grid, so the init must match too.
    for key in ("frame_size", "coefficients", "init", "decoder"):
        if meta.get(key) != mine[key]:
            raise CheckpointError(
                f"checkpoint {str(path)!r} has {key} = {meta.get(key)!r} but the config asks for "
                f"{mine[key]!r}; set {_config_key(key)}: {meta.get(key)!r} or use a matching "
                f"checkpoint")
    state = payload["state_dict"]
    own = model.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit the model "
                              f"(parameters differ); was it written by another version?")
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k].to(v.dtype))
    return {"metadata": meta, "extra": payload.get("extra", {})}


def _config_key(meta_key: str) -> str:
    return {"frame_size": "frame.size", "coefficients": "model.coefficients",
            "init": "model.init", "decoder": "model.decoder"}[meta_key]

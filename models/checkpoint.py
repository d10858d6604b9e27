"""Checkpoints: parameters plus the metadata needed to rebuild and check the model.

Written with torch.save and read with ``torch.load(weights_only=True)``: nothing but tensors
and plain containers is ever unpickled.

Format versions (``version`` in the payload; every version this code knows still loads):

    1  format, version, metadata, extra, state_dict (the transform's parameters)
    2  adds ``processors``: one entry per processor with learned state, in chain order,
       ``{"type": "learned_quantize", "state_dict": {log_step, entropy.*}}`` (a checkpoint of a
       model trained without one has an empty list, as version 1 implies)
    3  adds the phase offset n0 to the state_dict (``encoder.phase_offset``, and
       ``decoder.basis.phase_offset`` with a free decoder; cosine_host.models.cosine); versions
       1 and 2 hold none and load with n0 = 0, the family they were trained in
"""
from __future__ import annotations

import pathlib

import torch

from cosine_host.models.atomic import atomic_path
from cosine_host.models.transform import LearnedCosine

FORMAT = "cosine-host-checkpoint"
FORMAT_VERSION = 3
KNOWN_VERSIONS = (1, 2, 3)
PHASE_OFFSET = "phase_offset"
"""The state_dict entries (last name part) that versions 1 and 2 lack: n0, 0 there."""


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model it is loaded into."""


def save_checkpoint(model: LearnedCosine, path, extra: dict | None = None,
                    processors=()) -> None:
    """Write the model's parameters and metadata atomically (temporary file, then rename).

    The file gets the permissions of the file it replaces, else those a plain ``open()`` would
    give (0o666 less the umask), like every other output (cosine_host.files.atomic_path).
    extra: JSON-like metadata to keep alongside (training steps, SNR, ...).
    processors: the chain trained with the model; the state of those with learned parameters
        (``load_state``, the learned quantizer) is stored.
    """
    path = pathlib.Path(path)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "metadata": model.metadata(),
        "extra": dict(extra or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "processors": [{"type": _type_name(p),
                        "state_dict": {k: v.detach().cpu() for k, v in p.state_dict().items()}}
                       for p in processors if _learned(p)],
    }
    with atomic_path(path) as tmp:
        # Through a file object: torch names the archive after a path, which is random here.
        with open(tmp, "wb") as f:
            torch.save(payload, f)


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
    if payload.get("version") not in KNOWN_VERSIONS:
        raise CheckpointError(f"checkpoint {str(path)!r} has format version "
                              f"{payload.get('version')!r}, this cosine-host reads versions "
                              f"{', '.join(map(str, KNOWN_VERSIONS))}; update cosine-host")
    payload.setdefault("processors", [])      # version 1: nothing learned besides the model
    if payload["version"] < 3 and isinstance(payload.get("state_dict"), dict):
        _add_phase_offsets(payload["state_dict"])
    return payload


def _add_phase_offsets(state: dict) -> None:
    """Versions 1 and 2 predate n0: every basis (the encoder, a free decoder's) gets n0 = 0."""
    for key in list(state):
        if key.endswith(".freq_offset_bins"):
            state.setdefault(key[:-len("freq_offset_bins")] + PHASE_OFFSET,
                             torch.tensor(0.0, dtype=torch.float64))


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


def _learned(processor) -> bool:
    return callable(getattr(processor, "load_state", None))


def _type_name(processor) -> str:
    from cosine_host.models.processors.registry import REGISTRY
    for name, cls in REGISTRY.items():
        if type(processor) is cls:
            return name
    return type(processor).__name__


def load_processors(chain, path) -> int:
    """Load the checkpoint's learned processor state into ``chain`` in place; returns how many.

    The chain's processors with learned state (``load_state``: the learned quantizer) take the
    checkpoint's entries of the same type in order. Without a checkpoint (``path`` None) they
    keep their initial state. Raises CheckpointError when the chain has more of them than the
    checkpoint (a checkpoint not trained with the learned quantizer) or a state does not fit.
    """
    learned = [p for p in chain if _learned(p)]
    if path is None or not learned:
        return 0
    entries = read_checkpoint(path)["processors"]
    for i, processor in enumerate(learned):
        name = _type_name(processor)
        mine = [e for e in entries if e.get("type") == name]
        index = sum(1 for p in learned[:i] if _type_name(p) == name)
        if index >= len(mine):
            raise CheckpointError(
                f"the config's processors have {name} but checkpoint {str(path)!r} holds no "
                f"learned state for it (trained without it); train with `train --objective rd`"
                f" and that processor, or remove it from processors")
        try:
            processor.load_state(mine[index]["state_dict"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"checkpoint {str(path)!r}: the {name} state does not fit "
                                  f"({' '.join(str(e).split())[:200]})") from None
    return len(learned)

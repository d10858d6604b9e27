"""The training command's audio: reading and checking the files, the held-out split, and the
validation measure through the real streaming engine.

:func:`load_audio` reads every file (each channel is a separate example; the file's own samplerate,
no resampling) and refuses NaN, infinite or too short audio; :func:`split` holds out the last 10 %
of each file for validation unless a validation file is given; :func:`validate` renders the
validation audio through cosine_host.engine.engine.Engine as `render` does and measures SNR, bitrate
and the training objective's loss.
"""
from __future__ import annotations

import math
import os

import numpy as np
import soundfile as sf
import torch

from cosine_host.models.training import mr_stft
from cosine_host.engine.engine import Engine
from cosine_host.errors import UserError

HELD_OUT_FRACTION = 0.1
"""Without --val, the last 10 % of every file (each channel) is validation, never trained on."""

MAX_PEAK = 1000.0
"""Largest |sample| training takes: 60 dB above full scale (1.0) leaves room for float files
that go over it, while the squared errors of the loss stay far inside float32 (a peak of 1e20
alone overflows them)."""


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """(samples as float32 (frames, channels), samplerate in Hz) of any file soundfile reads."""
    if os.path.isdir(path):
        raise UserError(f"audio file {path!r} is a folder; give audio files, e.g. {path}/*.wav")
    if not os.path.exists(path):
        raise UserError(f"audio file {path!r} not found; check the path")
    try:
        data, samplerate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:   # libsndfile's errors (unknown format, broken file) and OSError
        raise UserError(f"cannot read audio file {path!r}: {' '.join(str(e).split())}") from None
    return data, samplerate


def load_audio(paths, frame_size: int) -> list[tuple[str, np.ndarray, int]]:
    """``(path, samples float32 (frames, channels), samplerate in Hz)`` for each file; refuses
    NaN or infinite samples, a peak above ``MAX_PEAK`` and files shorter than ``frame_size``
    samples."""
    loaded = []
    for path in paths:
        data, samplerate = read_audio(path)
        finite = np.isfinite(data)
        if not finite.all():
            bad = int(data.size - np.count_nonzero(finite))
            first = int(np.argmin(finite.all(axis=1)))
            raise UserError(f"audio file {path!r} has {bad} NaN or infinite samples (the first "
                            f"at frame {first}); repair or re-export it, or leave it out")
        peak = float(np.abs(data).max()) if data.size else 0.0
        if peak > MAX_PEAK:
            raise UserError(f"audio file {path!r} peaks at {peak:.3g}, out of range for training "
                            f"(full scale is 1.0; at most {MAX_PEAK:g} is taken): normalise it "
                            f"to full scale, or leave it out")
        if data.shape[0] < frame_size:
            raise UserError(f"audio file {path!r} has {data.shape[0]} samples, shorter than one "
                            f"frame (frame.size = {frame_size}); give longer audio or a smaller "
                            f"frame.size")
        loaded.append((path, data, samplerate))
    return loaded


def check_rates(loaded, val_loaded=None) -> None:
    """Refuse files of different sample rates (training and validation learn and measure the
    transform at one rate): one line naming the rates and a file of each."""
    files = list(loaded) + list(val_loaded or ())
    first = {}
    for path, _, samplerate in files:
        first.setdefault(samplerate, path)
    if len(first) > 1:
        rates = ", ".join(f"{rate} Hz ({path})" for rate, path in first.items())
        raise UserError(f"the audio files have different sample rates: {rates}; training "
                        f"learns at one rate: resample them to one rate first")


def validate(cfg, model, chain, signals, device, objective: str = "mse",
             rate_weight: float = 0.0, stft_weight: float = 0.0) -> dict:
    """The validation measures of the engine's output (rendered as `render` renders a file):

    ``snr_db`` (10 log10(sum x^2 / sum (x - y)^2) over all their samples), ``kbps`` (the
    last quantizer's ``kbps_entropy`` pooled over the signals by duration; None without a
    quantizer), ``bits_per_sample`` (the same rate in bits per sample and channel) and
    ``loss``: for mse the error / signal energy
    (10**(-snr_db/10)), for rd that plus ``stft_weight`` x mr_stft (mean over signals) plus
    ``rate_weight`` x bits_per_sample: the training objective, measured through the engine
    with real rounding and the symbols' empirical entropy.
    """
    from cosine_host.models.processors.registry import Quantize
    signal_energy = error_energy = stft = bits = seconds = samples = 0.0
    for data, samplerate in signals:
        engine = Engine(model, cfg.frame.hop, cfg.frame.window, blocksize=0,
                        channels=data.shape[1], processors=chain, samplerate=samplerate,
                        device=device, synthesis_size=cfg.frame.synthesis_samples,
                        kbd_alpha=cfg.frame.kbd_alpha)
        out = np.empty_like(data)
        pieces = engine.render_chunks(iter([data]), data.shape[0], out=out)
        rates = None
        try:
            quantizers = [p for p in engine.processors if isinstance(p, Quantize)]
            for _ in pieces:
                # read at every piece: after the last one render_chunks resets the statistics
                rates = quantizers[-1].rates() if quantizers else None
        finally:
            pieces.close()
        x = data.astype(np.float64)
        error = out.astype(np.float64) - x
        signal_energy += float((x * x).sum())
        error_energy += float((error * error).sum())
        duration = data.shape[0] / samplerate
        if rates is not None:
            bits += rates["kbps_entropy"] * 1000.0 * duration
        seconds += duration
        samples += data.size
        if objective == "rd" and stft_weight:
            stft += float(mr_stft(torch.from_numpy(out.T.astype(np.float64)),
                                  torch.from_numpy(data.T.astype(np.float64)),
                                  cfg.frame.size)) * data.size
    if signal_energy == 0.0:
        raise UserError("the validation audio (--val, else the last 10 % of each file) is "
                        "silent, every sample is 0; give --val FILE with sound in it")
    ratio = error_energy / signal_energy
    snr = math.inf if ratio == 0.0 else -10.0 * math.log10(ratio)
    quantized = any(isinstance(p, Quantize) for p in chain)
    per_sample = bits / samples if quantized else None
    loss = ratio
    if objective == "rd":
        loss += stft_weight * stft / samples + rate_weight * (per_sample or 0.0)
    return {"snr_db": snr, "kbps": bits / seconds / 1000.0 if quantized else None,
            "bits_per_sample": per_sample, "loss": loss}


def split(loaded, val_loaded):
    """(training signals: one 1-D tensor per file channel, validation: (frames, channels)
    array and samplerate pairs). Without ``val_loaded`` the last 10 % of each file (at least one
    sample) is validation and only the rest is trained on."""
    train_signals, validation = [], []
    for _, data, samplerate in loaded:
        cut = data.shape[0]
        if val_loaded is None:
            cut -= max(1, int(cut * HELD_OUT_FRACTION))
            validation.append((np.ascontiguousarray(data[cut:]), samplerate))
        train_signals += [torch.from_numpy(data[:cut, c].copy()) for c in range(data.shape[1])]
    for _, data, samplerate in val_loaded or ():
        validation.append((data, samplerate))
    return train_signals, validation

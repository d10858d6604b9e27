"""Training the learned cosine transform on audio, through its coefficient processors.

The loss is the reconstruction error in the time domain of the chain the streaming engine runs,
written with differentiable torch ops (shapes for a batch of B segments of L samples, frame
size N, hop H, R = N / H frames overlapping each sample, F frames per segment)::

    segments (B, L) --unfold--> frames (B, F, N) --@ (analysis window * W1)^T--> coefficients
    (F, B, M) --processors--> --@ (W2 * synthesis window)--> (B, F, R, H) --overlap-add-->
    the K = F - R + 1 interior hops that all R frames cover (B, K * H), compared with the input

The windows are folded into the matrices as the engine folds them. Processors see the segments
of a batch as channels; the quantizer passes the gradient straight through and the masks pass it
to the coefficients they keep (models.processors).

Parameters: the gains a1..a4 (``first``/``rest`` of encoder and decoder) and the frequency
offsets (``freq_offset_bins``, in units of pi/N). Adam with two parameter groups: the gains at
``lr``, the frequencies at ``lr * FREQ_LR_RATIO``. After each step every frequency is clamped
into [eps, pi - eps], eps = ``MIN_FREQ_BINS`` * pi / N.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from models.transform import LearnedCosine

FREQ_LR_RATIO = 0.5
"""Frequency learning rate / gain learning rate. Adam moves every parameter by about its
learning rate per step: the gains by lr (under 1 % of a2 = sqrt(2) at lr = 1e-2), the
frequencies by lr * FREQ_LR_RATIO bins of pi/N, which turns the phase of cos(w n) at n = N - 1 by
that many times pi. Measured on speech (N = 512, M = N/2 and N/4, 500 steps; docs/training.md):
frequency steps of 1e-3 bins or less stop short (6.6 instead of 9 dB at M = N/2), 3e-3 to 0.1
bins come within 0.7 dB of the best, 0.3 bins loses 1.5 dB; the gains' step matters little
(3e-3 to 3e-2). Half the gains' step puts the default (5e-3 bins) inside the good range."""

MIN_FREQ_BINS = 0.01
"""Frequencies stay at least this many bins (of pi/N) inside (0, pi)."""

INTERIOR_FRAMES = 4
"""Fully covered samples per training segment, in frames: the interior is 4 N samples."""


class TrainingError(ValueError):
    """The data or the model cannot be trained: silent audio, no gradient, divergence."""


def segment_samples(frame_size: int, hop: int) -> int:
    """L, samples per training segment: ``INTERIOR_FRAMES * N`` interior samples plus the
    ``N - H`` samples on each side that only some frames cover."""
    return INTERIOR_FRAMES * frame_size + 2 * (frame_size - hop)


class SegmentSampler:
    """Random training segments drawn from 1-D signals (one per file channel).

    Each signal is padded with N - H zeros on both sides, as the engine pads a file it renders
    (its start-up and its flush), so that every sample can be in a segment's interior, and
    with zeros at its end up to one segment when it is shorter. A start position is drawn
    uniformly over all the positions of all signals, so every sample is equally likely to be
    in the loss whatever the file lengths.

    Args:
        signals: 1-D tensors of samples (any float dtype, any length >= 1).
        frame_size: N in samples. hop: H in samples, dividing N.
        dtype: the model's dtype. device: where the segments are made and trained on.
    Attributes:
        power: mean square of the signals' samples (the padding excluded), the loss's scale.
        length: L, samples per segment (``segment_samples``).
    Raises:
        TrainingError: no signals, or all of them silent.
    """

    def __init__(self, signals: Sequence[torch.Tensor], frame_size: int, hop: int,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        if not signals:
            raise TrainingError("no training audio")
        self.frame_size, self.hop = frame_size, hop
        self.length = segment_samples(frame_size, hop)
        self.device = torch.device(device)
        edge = frame_size - hop
        padded, counts = [], []
        energy, samples = 0.0, 0
        for s in signals:
            s = s.detach().to(torch.float64).reshape(-1).cpu()
            energy += float((s * s).sum())
            samples += s.numel()
            p = torch.nn.functional.pad(s, (edge, edge))
            if p.numel() < self.length:
                p = torch.nn.functional.pad(p, (0, self.length - p.numel()))
            padded.append(p)
            counts.append(p.numel() - self.length + 1)
        if energy == 0.0:
            raise TrainingError("the training audio is silent (every sample is 0)")
        self.power = energy / samples
        counts = torch.tensor(counts, dtype=torch.int64)
        self._cum_counts = torch.cumsum(counts, 0)
        # start of each padded signal in the flat buffer minus the positions before it
        lengths = torch.tensor([p.numel() for p in padded], dtype=torch.int64)
        self._shift = (torch.cumsum(lengths, 0) - lengths) - (self._cum_counts - counts)
        flat = torch.cat(padded).to(device=self.device, dtype=dtype)
        self._rows = flat.unfold(0, self.length, 1)     # (positions, L) view, no copy

    def draw(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """``batch`` segments, shape (batch, L), on the sampler's device. ``generator`` is a
        CPU generator: the same seed draws the same segments on any device."""
        u = torch.randint(int(self._cum_counts[-1]), (batch,), generator=generator)
        which = torch.searchsorted(self._cum_counts, u, right=True)
        start = u + self._shift[which]
        return self._rows[start.to(self.device)]


def reconstruct(model: LearnedCosine, processors, segments: torch.Tensor,
                window_analysis: torch.Tensor, window_synthesis: torch.Tensor,
                hop: int) -> torch.Tensor:
    """The engine's output on the interior of each segment, differentiable.

    Args:
        model: the transform (frame size N). processors: a callable on (frames, channels, M)
            coefficients (models.processors.Chain; an empty chain is the identity).
        segments: (B, L) samples, L = N + (F - 1) H with F >= R = N / H.
        window_analysis, window_synthesis: (N,) windows in the model's dtype and device.
        hop: H in samples.
    Returns:
        (B, (F - R + 1) * H): output samples ``N - H .. F * H - 1`` of each segment, the ones
        all R of their frames cover; compare with ``interior(segments, N, hop)``.
    """
    n = model.n
    overlap = n // hop
    frames = segments.unfold(-1, n, hop)                                   # (B, F, N)
    count = frames.shape[1]
    enc_t = (model.encoder.matrix() * window_analysis).T                   # (N, M)
    dec = model.decoder.matrix() * window_synthesis                        # (M, N)
    coeffs = processors((frames @ enc_t).transpose(0, 1)).transpose(0, 1)  # (B, F, M)
    parts = (coeffs @ dec).unflatten(-1, (overlap, hop))                   # (B, F, R, H)
    # output hop j sums part r of frame j - r; hops R-1 .. F-1 have all R of their frames
    hops = sum(parts[:, overlap - 1 - r:count - r, r] for r in range(overlap))
    return hops.flatten(1)


def interior(segments: torch.Tensor, frame_size: int, hop: int) -> torch.Tensor:
    """The input samples that ``reconstruct`` returns: (B, L - 2 (N - H))."""
    edge = frame_size - hop
    return segments[:, edge:segments.shape[1] - edge]


def parameter_groups(model: LearnedCosine) -> tuple[list, list]:
    """(gains, frequency offsets): the trainable parameters, split for their own step sizes
    (LearnedCosine.parameter_groups)."""
    return model.parameter_groups()


def _frequency_bounds(model: LearnedCosine) -> list[tuple[torch.Tensor, ...]]:
    """(offset parameter, lowest offset, highest offset) per frequency set, keeping every
    frequency within [MIN_FREQ_BINS, N - MIN_FREQ_BINS] bins of pi/N."""
    return model.frequency_bounds(MIN_FREQ_BINS)


def frequency_offsets(model: LearnedCosine) -> torch.Tensor:
    """All learned frequency offsets (encoder, then a free decoder's), in bins of pi/N, as one
    float64 CPU tensor; compare two of them for how far training moved the frequencies."""
    return torch.cat([p.detach().to("cpu", torch.float64).reshape(-1)
                      for p, _, _ in _frequency_bounds(model)])


def train(model: LearnedCosine, processors, sampler: SegmentSampler, *,
          window_analysis, window_synthesis, hop: int, steps: int, batch: int, lr: float,
          seed: int = 0, on_step: Callable[[dict], None] | None = None) -> list[dict]:
    """Fit the model's gains and frequencies to the sampler's audio, in place.

    Args:
        model: trained in place, on ``sampler.device``, left in eval mode.
        processors: models.processors.Chain applied between encoder and decoder.
        sampler: where the segments come from; its ``power`` scales the loss.
        window_analysis, window_synthesis: (N,) arrays or tensors (stream.windows.window_pair).
        hop: H in samples. steps: optimiser steps >= 1. batch: segments per step >= 1.
        lr: Adam step size of the gains; the frequencies get ``lr * FREQ_LR_RATIO`` (bins).
        seed: seeds the segment draws; the same seed gives the same model on the same device.
        on_step: called after every step with that step's log row.
    Returns:
        One row per step: ``step``, ``loss`` (mean squared error on the batch / sampler.power,
        before the step), ``snr_db`` (= -10 log10 loss), ``lr``, ``lr_freq`` and
        ``freq_shift_bins`` (mean |w - w at the start| in bins of pi/N, after the step).
    Raises:
        TrainingError: nothing to learn (no trainable parameter, or no gradient reaching any
            through the processors), or a loss that is not finite (diverged: lower ``lr``).
    """
    device = sampler.device
    model.to(device).train()
    processors.to(device)
    dtype = model.dtype
    wa = torch.as_tensor(window_analysis, device=device).to(dtype)
    ws = torch.as_tensor(window_synthesis, device=device).to(dtype)
    gains, freqs = parameter_groups(model)
    if not gains and not freqs:
        raise TrainingError("the model has no trainable parameters (all frozen): nothing to learn")
    lr_freq = lr * FREQ_LR_RATIO
    groups = [{"params": gains, "lr": lr}, {"params": freqs, "lr": lr_freq}]
    optimiser = torch.optim.Adam([g for g in groups if g["params"]])
    bounds = _frequency_bounds(model)
    start = frequency_offsets(model)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for step in range(1, steps + 1):
        segments = sampler.draw(batch, generator)
        error = reconstruct(model, processors, segments, wa, ws, hop) \
            - interior(segments, model.n, hop)
        loss = (error * error).mean() / sampler.power
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingError(f"training diverged: the loss is {value} at step {step}; "
                                f"lower the learning rate (now {lr:g})")
        if step == 1 and not any(p.grad is not None and bool(p.grad.any())
                                 for p in gains + freqs):
            raise TrainingError("no gradient reaches the gains or frequencies through the "
                                "processors (they output something independent of the "
                                "coefficients): nothing to learn")
        optimiser.step()
        with torch.no_grad():
            for offset, lo, hi in bounds:
                offset.clamp_(min=lo, max=hi)
        rows.append({"step": step, "loss": value,
                     "snr_db": -10.0 * math.log10(value) if value > 0 else math.inf,
                     "lr": lr, "lr_freq": lr_freq,
                     "freq_shift_bins": float((frequency_offsets(model) - start).abs().mean())})
        if on_step is not None:
            on_step(rows[-1])
    model.eval()
    return rows

"""Training the learned cosine transform on audio, through its coefficient processors.

The loss is the reconstruction error in the time domain of the chain the streaming engine runs,
written with differentiable torch ops (shapes for a batch of B segments of L samples, frame
size N, hop H, R = N / H frames overlapping each sample, F frames per segment)::

    segments (B, L) --unfold--> frames (B, F, N) --@ (analysis window * W1)^T--> coefficients
    (F, B, M) --processors--> --@ (W2 * synthesis window)--> (B, F, R, H) --overlap-add-->
    the K = F - R + 1 interior hops that all R frames cover (B, K * H), compared with the input

The windows are folded into the matrices as the engine folds them. Processors see the segments
of a batch as channels; the quantizer passes the gradient straight through and the masks pass it
to the coefficients they keep (cosine_host.models.processors.registry).

Objectives: ``mse`` (the default) minimises that error as error power / signal power. ``rd`` trains
for rate and quality: the chain must hold a learned quantizer
(cosine_host.models.processors.learned_quantize), which during training replaces rounding by
additive uniform noise (``relaxation="noise"``) or rounds with a straight-through gradient
(``"ste"``) and reports the bits of its symbols under its learned entropy model
(cosine_host.models.processors.entropy); the loss is

    distortion + rate_weight * rate,    distortion = error power / signal power
                                                     + stft_weight * mr_stft(output, input)

with the rate in bits per input sample (bits of all F frames' symbols / (B F H); times the sample
rate / 1000 it is kbit/s). Its step sizes learn with the transform at ``lr``, its entropy model at
``lr * ENTROPY_LR_RATIO``. With ``mse`` a learned quantizer's parameters stay as they are (no rate
term would stop its steps from shrinking to nothing).

Parameters: the gains a1..a4 (``first``/``rest`` of encoder and decoder) and the frequency
offsets (``freq_offset_bins``, in units of pi/N). Adam with a parameter group each: the gains
at ``lr``, the frequencies at ``lr * FREQ_LR_RATIO`` (and for rd the steps and the entropy
model, above). After each step every frequency is clamped
into [eps, pi - eps], eps = ``MIN_FREQ_BINS`` * pi / N.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from cosine_host.models.spectral import mr_stft_distance
from cosine_host.models.transform import LearnedCosine

FREQ_LR_RATIO = 0.5
"""Frequency learning rate / gain learning rate. Adam moves every parameter by about its
learning rate per step: the gains by lr (under 1 % of a2 = sqrt(2) at lr = 1e-2), the
frequencies by lr * FREQ_LR_RATIO bins of pi/N, which turns the phase of cos(w n) at n = N - 1 by
that many times pi. Measured on speech (N = 512, M = N/2 and N/4, 500 steps; docs/training.md):
frequency steps of 1e-3 bins or less stop short (6.6 instead of 9 dB at M = N/2), 3e-3 to 0.1
bins come within 0.7 dB of the best, 0.3 bins loses 1.5 dB; the gains' step matters little
(3e-3 to 3e-2). Half the gains' step puts the default (5e-3 bins) inside the good range."""

ENTROPY_LR_RATIO = 5.0
"""Entropy model learning rate / gain learning rate (rd): its means and scales are in symbols
and its start is far from the coefficients' laws, so it moves faster than the transform; at
the gains' rate its estimate lags the steps and overstates the rate for hundreds of steps."""

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


OBJECTIVES = ("mse", "rd")

# Why ste is the default relaxation: straight-through rounding trains better than additive
# uniform noise here: N = 512, M = N, H = 256, rate_weight 0.005, 300 steps of 16 segments of
# synthesised speech (docs/training.md): validation loss 0.00813 (ste) against 0.00883 (noise),
# from 0.00966; on held-out speech of another voice ste gains 0.09 PESQ over the DCT init at
# equal rate (68.8 kbps), noise none (78 kbps). Noise trains the decoder on an error that
# rounding never makes (no zeros), so its steps and entropy model fit a quantizer the engine
# does not run.

STFT_RESOLUTIONS = ((0.5, 0.125), (1.0, 0.25), (2.0, 0.5))
"""(n_fft, hop) of mr_stft's resolutions as multiples of the frame size N: N/2, N and 2N points,
hops of a quarter; the longest fits the 4 N interior of a training segment."""


def stft_resolutions(frame_size: int) -> list[tuple[int, int]]:
    """STFT_RESOLUTIONS in samples for frames of ``frame_size`` samples."""
    return [(max(2, int(size * frame_size)), max(1, int(step * frame_size)))
            for size, step in STFT_RESOLUTIONS]


def mr_stft(output: torch.Tensor, target: torch.Tensor, frame_size: int) -> torch.Tensor:
    """The multi-resolution STFT distance (cosine_host.models.spectral, the same definition as
    the quality lab's ``stft_distance``) at ``stft_resolutions(frame_size)``: a 0-d tensor,
    differentiable; output and target (B, T) samples."""
    return mr_stft_distance(output, target, stft_resolutions(frame_size))


def learned_processors(processors) -> list:
    """The processors in the chain that learn with the model (the learned quantizer)."""
    return [p for p in processors if callable(getattr(p, "relax", None))]


def reconstruct(model: LearnedCosine, processors, segments: torch.Tensor,
                window_analysis: torch.Tensor, window_synthesis: torch.Tensor,
                hop: int) -> torch.Tensor:
    """The engine's output on the interior of each segment, differentiable.

    Args:
        model: the transform (frame size N). processors: a callable on (frames, channels, M)
            coefficients (cosine_host.models.processors.registry.Chain; an empty chain is the
            identity).
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
          seed: int = 0, on_step: Callable[[dict], None] | None = None,
          objective: str = "mse", rate_weight: float = 0.0, stft_weight: float = 0.0,
          relaxation: str = "ste") -> list[dict]:
    """Fit the model's gains and frequencies to the sampler's audio, in place.

    Args:
        model: trained in place, on ``sampler.device``, left in eval mode. processors:
        cosine_host.models.processors.registry.Chain applied between encoder and decoder. sampler:
        where the segments come from; its ``power`` scales the loss. window_analysis,
        window_synthesis: (N,) arrays or tensors (cosine_host.engine.windows.window_pair). hop: H in
        samples. steps: optimiser steps >= 1. batch: segments per step >= 1. lr: Adam step size of
        the gains; the frequencies get ``lr * FREQ_LR_RATIO`` (bins). seed: seeds the segment draws;
        the same seed gives the same model on the same device. on_step: called after every step with
        that step's log row. objective: "mse" (default) or "rd" (see the module docstring; needs a
        learned
            quantizer in ``processors``). rate_weight: lambda, the rate's weight per bit per
            sample (rd only). stft_weight: the mr_stft term's weight in the distortion (rd
            only; default 0). relaxation: "ste" (default) or "noise", the learned quantizer's
            training route (ste measured better, see the note at OBJECTIVES).
    Returns:
        One row per step: ``step``, ``loss`` (the objective on the batch, before the step;
        for mse the mean squared error / sampler.power), ``snr_db`` (-10 log10 of the mean
        squared error / sampler.power), ``rate_bits`` (bits per sample under the entropy
        model; None for mse), ``lr``, ``lr_freq`` and ``freq_shift_bins`` (mean |w - w at the
        start| in bins of pi/N, after the step).
    Raises:
        TrainingError: nothing to learn (no trainable parameter, or no gradient reaching any
            through the processors), rd without a learned quantizer, or a loss that is not
            finite (diverged: lower ``lr``).
    """
    if objective not in OBJECTIVES:
        raise TrainingError(f"objective {objective!r} unknown; allowed: {' | '.join(OBJECTIVES)}")
    learned = learned_processors(processors)
    if objective == "rd" and not learned:
        raise TrainingError("the rd objective needs a learned quantizer in the processors: "
                            "add {type: learned_quantize} (e.g. --set "
                            "'processors=[{type: learned_quantize}]')")
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
    rd = objective == "rd"
    steps_own = [q.log_step for q in learned] if rd else []
    entropy_own = [p for q in learned for p in q.entropy.parameters()] if rd else []
    groups = [{"params": gains, "lr": lr}, {"params": freqs, "lr": lr_freq},
              {"params": steps_own, "lr": lr},
              {"params": entropy_own, "lr": lr * ENTROPY_LR_RATIO}]
    optimiser = torch.optim.Adam([g for g in groups if g["params"]])
    bounds = _frequency_bounds(model)
    start = frequency_offsets(model)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.Generator().manual_seed(seed + 1)
    rows = []
    try:
        for q in learned:
            q.relax(relaxation if objective == "rd" else None, noise)
        for step in range(1, steps + 1):
            rows.append(_step(model, processors, learned, sampler, optimiser, bounds, start,
                              generator, wa, ws, hop, batch, step, objective, rate_weight,
                              stft_weight, lr, lr_freq, gains + freqs))
            if on_step is not None:
                on_step(rows[-1])
    finally:
        for q in learned:
            q.relax(None)
    model.eval()
    return rows


def _step(model, processors, learned, sampler, optimiser, bounds, start, generator, wa, ws,
          hop, batch, step, objective, rate_weight, stft_weight, lr, lr_freq,
          transform_params) -> dict:
    """One optimiser step; its log row."""
    segments = sampler.draw(batch, generator)
    output = reconstruct(model, processors, segments, wa, ws, hop)
    target = interior(segments, model.n, hop)
    error = output - target
    mse = (error * error).mean() / sampler.power
    loss, rate = mse, None
    if objective == "rd":
        frames = (segments.shape[1] - model.n) // hop + 1
        rate = sum(q.rate_bits for q in learned) / (batch * frames * hop)
        distortion = mse + (stft_weight * mr_stft(output, target, model.n) if stft_weight
                            else 0.0)
        loss = distortion + rate_weight * rate
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingError(f"training diverged: the loss is {value} at step {step}; "
                            f"lower the learning rate (now {lr:g})")
    if step == 1 and not any(p.grad is not None and bool(p.grad.any())
                             for p in transform_params):
        raise TrainingError("no gradient reaches the gains or frequencies through the "
                            "processors (they output something independent of the "
                            "coefficients): nothing to learn")
    optimiser.step()
    with torch.no_grad():
        for offset, lo, hi in bounds:
            offset.clamp_(min=lo, max=hi)
    squared = mse.item()
    return {"step": step, "loss": value,
            "snr_db": -10.0 * math.log10(squared) if squared > 0 else math.inf,
            "rate_bits": None if rate is None else rate.item(),
            "lr": lr, "lr_freq": lr_freq,
            "freq_shift_bins": float((frequency_offsets(model) - start).abs().mean())}

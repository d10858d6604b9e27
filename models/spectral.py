"""The multi-resolution STFT distance, defined once: the training loss's spectral term
(cosine_host.models.training.mr_stft) and the quality lab's ``stft_distance`` metric are this
function at different resolutions.

Per resolution (n_fft, hop): magnitudes |STFT| with a periodic Hann window of n_fft points,
frames centred (reflect padding), no normalisation, power floored at ``eps``; the distance is
spectral convergence ||Y - X||_F / ||Y||_F plus the mean |ln Y - ln X| (Y the reference, X the
output, both over every signal of the batch). The mean over resolutions is returned. This is
auraloss's MultiResolutionSTFTLoss with w_sc = w_log_mag = 1 and no other term, which the
tests use as an oracle.
"""
from __future__ import annotations

import torch

STFT_EPS = 1e-8
"""Floor of the power |STFT|^2 before the square root and the log: silence cannot dominate."""


def stft_magnitude(x: torch.Tensor, n_fft: int, hop: int, eps: float = STFT_EPS) -> torch.Tensor:
    """|STFT| of ``x`` (..., T) samples: (..., n_fft // 2 + 1, frames). Needs T > n_fft // 2."""
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    flat = x.reshape(-1, x.shape[-1])
    spectrum = torch.stft(flat, n_fft, hop, window=window, center=True, pad_mode="reflect",
                          return_complex=True)
    power = spectrum.real.square() + spectrum.imag.square()
    magnitude = power.clamp(min=eps).sqrt()
    return magnitude.reshape(*x.shape[:-1], *magnitude.shape[-2:])


def mr_stft_distance(output: torch.Tensor, target: torch.Tensor, resolutions,
                     eps: float = STFT_EPS) -> torch.Tensor:
    """The distance of ``output`` from ``target`` (same shape, (..., T) samples), a 0-d tensor,
    differentiable. ``resolutions``: (n_fft, hop) pairs in samples, each n_fft < 2 T."""
    total = 0.0
    for n_fft, hop in resolutions:
        out_mag = stft_magnitude(output, n_fft, hop, eps)
        ref_mag = stft_magnitude(target, n_fft, hop, eps)
        convergence = torch.linalg.vector_norm(ref_mag - out_mag) / \
            torch.linalg.vector_norm(ref_mag)
        log_term = (torch.log(ref_mag) - torch.log(out_mag)).abs().mean()
        total = total + convergence + log_term
    return total / len(resolutions)

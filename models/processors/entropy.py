"""A learned factorized entropy model: one density per coefficient index, for the rate term of
rate-distortion training (cosine_host.models.training, ``objective="rd"``).

Each coefficient index m has its own density over the quantizer's symbols z = x / step[m], a
mixture of ``COMPONENTS`` logistic distributions (weights, means and scales learned per index).
The probability of the integer symbol q is the density's mass on [q - 1/2, q + 1/2], so the
rate of a symbol is ``-log2(F(q + 1/2) - F(q - 1/2))`` bits; evaluated at a noisy or rounded z
during training it is differentiable in z (hence in the step sizes and the transform) and in
the model's own parameters. This is the factorized prior of end-to-end optimised transform
coding (Balle et al.), with a logistic mixture instead of a small monotone network: three
components already fit the peaked, heavy-tailed laws of speech coefficients.

The model estimates the rate for training and for `info`; the bitrate a stream reports is the
empirical entropy of the symbols it actually produced (cosine_host.models.processors.quantize),
never this estimate.
"""
from __future__ import annotations

import torch
from torch import nn

COMPONENTS = 3
INIT_SCALES = (0.5, 2.0, 8.0)      # symbols: a narrow, a middle and a wide component at init
MIN_PROBABILITY = 2.0 ** -30       # one symbol never costs more than 30 bits (keeps log finite)


class FactorizedEntropy(nn.Module):
    """Per-index logistic-mixture densities over quantizer symbols.

    Args:
        m: coefficient indices M (one density each).
    Parameters (all shape (M, COMPONENTS), float32): ``logits`` (mixture weights before the
    softmax), ``means`` (symbols), ``log_scales`` (natural log of the logistic scales, symbols).
    """

    def __init__(self, m: int):
        super().__init__()
        self.m = m
        scales = torch.log(torch.tensor(INIT_SCALES, dtype=torch.float32))
        self.logits = nn.Parameter(torch.zeros(m, COMPONENTS))
        self.means = nn.Parameter(torch.zeros(m, COMPONENTS))
        self.log_scales = nn.Parameter(scales.expand(m, COMPONENTS).clone())

    def probability(self, z: torch.Tensor) -> torch.Tensor:
        """Mass of [z - 1/2, z + 1/2] under each index's density: z (..., M) -> (..., M), in
        (0, 1], floored at MIN_PROBABILITY; computed in float32 or z's wider dtype."""
        dtype = torch.promote_types(z.dtype, torch.float32)
        z = z.to(dtype).unsqueeze(-1)                                   # (..., M, 1)
        inv_scale = torch.exp(-self.log_scales.to(dtype))
        upper = (z + 0.5 - self.means.to(dtype)) * inv_scale
        lower = (z - 0.5 - self.means.to(dtype)) * inv_scale
        # sigmoid(upper) - sigmoid(lower) loses everything to rounding far out in the right
        # tail; there the mirrored difference sigmoid(-lower) - sigmoid(-upper) is exact
        sign = -torch.sign(upper + lower).detach()
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        mass = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        weights = torch.softmax(self.logits.to(dtype), dim=-1)
        return (mass * weights).sum(-1).clamp(min=MIN_PROBABILITY)

    def bits(self, z: torch.Tensor) -> torch.Tensor:
        """Bits to code each symbol: z (..., M) -> (..., M), ``-log2 probability(z)``."""
        return -torch.log2(self.probability(z))

    def expected_bits(self, z: torch.Tensor) -> float:
        """Mean bits per symbol of ``z`` (..., M) under the model, as a Python float."""
        with torch.no_grad():
            return float(self.bits(z).mean())


def bits_per_sample_to_kbps(bits_per_sample: float, samplerate: int) -> float:
    """A rate in bits per input sample (per channel) as kbit/s at ``samplerate`` Hz."""
    return bits_per_sample * samplerate / 1000.0


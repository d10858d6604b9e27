"""Example user plugins for tests/test_processors.py (and a template for docs/plugins.md)."""

import torch


class Gain(torch.nn.Module):
    """Minimal plugin: only forward. Multiplies every coefficient by ``gain`` (default 1.0)."""

    def __init__(self, gain: float = 1.0):
        super().__init__()
        self.gain = gain

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        return coeffs * self.gain


class PeakMeter(torch.nn.Module):
    """Full-surface plugin: passes coefficients through and tracks the largest |coeff|.

    The running peak stays on the coefficients' device; ``stats()`` reads it (one sync there).
    """

    latency_samples = 0

    def __init__(self, latency: int = 0):
        super().__init__()
        self.latency_samples = latency
        self.prepared = None
        self.peak = None

    def prepare(self, samplerate: int, hop: int, n_coefficients: int) -> None:
        self.prepared = (samplerate, hop, n_coefficients)
        self.reset()

    def reset(self) -> None:
        self.peak = None

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        if coeffs.numel():
            peak = coeffs.detach().abs().amax()
            self.peak = peak if self.peak is None else torch.maximum(self.peak, peak)
        return coeffs

    def stats(self) -> dict:
        return {"peak": 0.0 if self.peak is None else self.peak}   # a tensor: the host converts it


class Truncate(torch.nn.Module):
    """Broken on purpose: drops the last coefficient, changing the shape."""

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        return coeffs[..., :-1]


class NotAModule:
    """Not a torch.nn.Module: must be refused."""

    def __call__(self, coeffs):
        return coeffs


def make_gain(gain: float = 1.0):
    """A function, not a class: must be refused."""
    return Gain(gain)


class OneFrameLookahead(torch.nn.Module):
    """Delays the coefficients by one frame and reports it: latency_samples = one hop."""

    def __init__(self, hop: int = 256):
        super().__init__()
        self.latency_samples = hop
        self.previous = None

    def forward(self, coeffs):
        if self.previous is None or self.previous.shape[1:] != coeffs.shape[1:]:
            self.previous = torch.zeros_like(coeffs[:1])
        joined = torch.cat([self.previous, coeffs])
        self.previous = joined[-1:].clone()
        return joined[:-1]

    def reset(self):
        self.previous = None

"""The quantizer with learned step sizes (config ``{type: learned_quantize}``).

One step size per coefficient index m (not per band: M values, learned by rate-distortion training,
cosine_host.models.training with ``objective="rd"``), stored in the checkpoint next to the transform
with the learned entropy model (cosine_host.models.processors.entropy) that trained them. Every
command that
builds the engine from a config (render, live, evaluate, info) gets them the same way:
``Engine.from_config`` builds the chain and loads the checkpoint's processor state into it
(cosine_host.models.checkpoint.load_processors), so a checkpoint's steps render identically
everywhere.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from cosine_host.models.processors.entropy import FactorizedEntropy
from cosine_host.models.processors.quantize import Quantize
from cosine_host.models.processors.plugins import _Checked

INIT_STEP = 0.01
"""Step size of every index before training (coefficient units; a full-scale sine's DCT
coefficient is about sqrt(N/2) / 2 at peak 0.5)."""

RELAXATIONS = ("noise", "ste")
"""How training passes the rounding: ``noise`` adds uniform noise of one step (the quantizer's
error, in distribution), ``ste`` rounds and passes the gradient straight through."""


def _check_scale(key: str, value) -> float:
    allowed = "a finite number > 0 (multiplies every learned step)"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        what = "a boolean, not a number" if isinstance(value, bool) else "not a number"
        raise TypeError(f"{key} = {value!r}: {what}; allowed: {allowed}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{key} = {value!r}: out of range; allowed: {allowed}")
    return float(value)


class LearnedQuantize(Quantize):
    """Uniform mid-tread quantizer with a learned step per coefficient index and no side
    information: coefficient x at index m becomes the symbol ``q = round(x / step[m])`` and
    the value ``q * step[m]`` (error at most half a step; zero stays zero).

    ``step[m] = scale * exp(log_step[m])``; ``log_step`` (M,) float32 starts at
    log(INIT_STEP) and is learned, or loaded from the checkpoint. Symbols are clipped to
    +-(2**23 - 1) (a coefficient 8 million steps out; never reached by audio).

    Bitrate: as Quantize (same histograms and estimators, so rows stay comparable), with no
    side bits (the steps are fixed for the stream, sent once); ``kbps_fixed`` is None (the
    symbols have no fixed range to size a fixed-length code by).

    Training: ``relax(mode, generator)`` switches the differentiable route on (mode in
    RELAXATIONS); then each call on coefficients that need a gradient sets ``rate_bits``, the
    entropy model's bits for the call's symbols (a 0-d tensor in the graph), and counts no
    statistics. ``relax(None)`` switches back.

    Args:
        scale: float > 0, default 1.0: multiplies every step (a run-time rate knob: 2 doubles
            every step). May be changed between calls.
    """

    KEYS = ("scale",)
    SIDE_BITS = 0
    ENTROPY_MODEL = Quantize.ENTROPY_MODEL
    COMPILED = True
    _HIST_BITS = 24               # Quantize's histogram for 2**23 - 1 levels per side

    scale = _Checked(_check_scale)

    def __init__(self, scale: float = 1.0):
        super().__init__(bits=self._HIST_BITS)
        self._bins_of = {}            # (M, levels, dtype): symbol 0's bin per index, levels
        self.scale = scale
        self.log_step = torch.nn.Parameter(torch.empty(0))
        self.entropy = FactorizedEntropy(0)
        self.loaded = False         # steps came from a checkpoint: M is fixed
        self.relaxation = None
        self.generator = None
        self.rate_bits = None
        self._cache = {}            # (version, scale, dtype, device) -> (step, 1/step)

    # --- the steps ----------------------------------------------------------------------------

    def ensure(self, m: int) -> None:
        """Give the quantizer M indices: fresh steps at INIT_STEP when it has none or another M.
        Raises ValueError for another M once steps were loaded from a checkpoint."""
        if self.log_step.numel() == m:
            return
        if self.loaded:
            raise ValueError(f"learned_quantize holds {self.log_step.numel()} learned steps "
                             f"but the model has M = {m} coefficients; use the checkpoint's "
                             f"model.coefficients")
        device = self.log_step.device
        self.log_step = torch.nn.Parameter(
            torch.full((m,), math.log(INIT_STEP), dtype=torch.float32, device=device))
        self.entropy = FactorizedEntropy(m).to(device)
        self._cache.clear()

    def load_state(self, state: dict) -> None:
        """Take learned steps and entropy model from a checkpoint's state dict (tensors)."""
        if "log_step" not in state:
            raise ValueError("the state has no log_step")
        self.loaded = False
        self.ensure(int(state["log_step"].numel()))
        self.load_state_dict(state)
        self.loaded = True
        self._cache.clear()

    def steps(self) -> torch.Tensor:
        """The step sizes in use, (M,) float64 on the CPU."""
        return self.scale * torch.exp(self.log_step.detach().to("cpu", torch.float64))

    def _steps(self, dtype, device):
        """(step, 1/step) in ``dtype`` on ``device`` (tensors; numpy arrays for device None),
        from float64, cached until log_step or scale changes."""
        key = (self.log_step._version, self.log_step.data_ptr(), self.scale, dtype, device)
        hit = self._cache.get(key)
        if hit is None:
            step = self.steps()
            inv = 1.0 / step
            if device is None:
                hit = (step.numpy().astype(dtype), inv.numpy().astype(dtype))
            else:
                hit = (step.to(device, dtype), inv.to(device, dtype))
            self._cache.clear()
            self._cache[key] = hit
        return hit

    def prepare(self, samplerate: int, hop: int, n_coefficients: int) -> None:
        super().prepare(samplerate, hop, n_coefficients)
        self.ensure(int(n_coefficients))

    def relax(self, mode: str | None, generator: torch.Generator | None = None) -> None:
        """Training's route: ``mode`` in RELAXATIONS, or None for the hard quantizer.
        ``generator`` (CPU) draws the noise, so a seed gives the same training."""
        if mode is not None and mode not in RELAXATIONS:
            raise ValueError(f"relaxation {mode!r} unknown; allowed: {' | '.join(RELAXATIONS)}")
        self.relaxation, self.generator, self.rate_bits = mode, generator, None

    # --- the routes ---------------------------------------------------------------------------

    def _torch(self, coeffs: torch.Tensor) -> torch.Tensor:
        if self.relaxation is not None and torch.is_grad_enabled():
            return self._relaxed(coeffs)
        self.ensure(coeffs.shape[-1])
        levels = self.levels(self._HIST_BITS)
        step, inv_step = self._steps(coeffs.dtype, coeffs.device)
        x = coeffs.detach()
        symbols = torch.round(x * inv_step).clamp_(-levels, levels)
        out = symbols * step
        self._count(symbols, self._HIST_BITS, levels)
        if torch.is_grad_enabled() and coeffs.requires_grad:
            out = out + (coeffs - x)       # value stays exactly `out`, gradient is the identity
        return out

    def _numpy(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        # one compiled call doing _torch's elementwise float operations, so both give the
        # same bits, and _count's binning (cosine_host.models.processors.compiled)
        from cosine_host.models.processors import compiled  # numba: imported when first needed
        m = x.shape[-1]
        self.ensure(m)
        bits = self._HIST_BITS
        levels = self.levels(bits)
        step, inv_step = self._steps(x.dtype.type, None)
        if out is None:
            out = np.empty(x.shape, x.dtype)
        if x.size:
            half, width = self._bins(levels)
            plan = self._bins_of.get((m, levels, x.dtype))
            if plan is None:           # (making a numpy scalar allocates: once per plan)
                plan = self._bins_of[m, levels, x.dtype] = (
                    self._band_offsets(m, None, levels).astype(np.int64) + half,
                    x.dtype.type(levels))
            bins_of, typed_levels = plan
            compiled.learned_quantize(x, inv_step, step, typed_levels, out,
                                      self._histogram_numpy(bits), bins_of,
                                      self._FINE_LEVELS, width)
        self._tally_add(x.shape)
        return out

    def _relaxed(self, coeffs: torch.Tensor) -> torch.Tensor:
        step = (self.scale * torch.exp(self.log_step)).to(coeffs.dtype)
        z = coeffs / step
        if self.relaxation == "noise":
            noise = torch.rand(z.shape, generator=self.generator, dtype=z.dtype) - 0.5
            z = z + noise.to(z.device)
        else:
            z = z + (torch.round(z) - z).detach()
        self.rate_bits = self.entropy.bits(z).sum()
        return z * step

    # --- statistics ---------------------------------------------------------------------------

    def stats(self) -> dict:
        """Quantize's (``bitrate_kbps``: pooled entropy of the symbols, no side bits;
        ``entropy_bits`` per coefficient; ``frames``) with ``scale`` and ``step_geomean``
        (the geometric mean step, coefficient units) in place of ``bits``."""
        stats = super().stats()
        del stats["bits"]
        steps = self.steps()
        stats["scale"] = self.scale
        stats["step_geomean"] = float(torch.exp(torch.log(steps).mean())) if steps.numel() else None
        return stats

    def rates(self) -> dict:
        """Quantize.rates() without side bits; ``kbps_fixed`` None (no fixed-length code)."""
        rates = super().rates()
        rates["kbps_fixed"] = None
        return rates

"""The encoder/decoder pair as one module: what the engine, training and checkpoints hold."""
from __future__ import annotations

import math

import torch
from torch import nn

from cosine_host.models.cosine import (CosineDecoder, CosineEncoder, initial_gains,
                                       initial_phase_offset)

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# every parameter's value at init "dct" and "lowpass", by its last name part
# (cosine_host.models.cosine); :func:`init_values` gives any init's
INIT_VALUES = {"first": 1.0, "rest": math.sqrt(2.0), "freq_offset_bins": 0.0,
               "coefficient_log_gain": 0.0}


def init_values(init: str) -> dict:
    """Every parameter's value at ``init``, by its last name part."""
    first, rest = initial_gains(init)
    return dict(INIT_VALUES, first=first, rest=rest)


class LearnedCosine(nn.Module):
    """Encoder (N -> M) and decoder (M -> N) of the learned cosine transform.

    Args:
        n: frame length N in samples.
        m: coefficients per frame M (1..N).
        init: "dct", "lowpass" or "mdct" (see cosine_host.models.cosine; "mdct" needs M = N/2
            and decoder "tied").
        decoder: "tied", "free" or "pinv".
        dtype: "float32" or "float64".
    """

    def __init__(self, n: int, m: int, init: str = "dct", decoder: str = "tied",
                 dtype: str = "float32"):
        super().__init__()
        self.n, self.m, self.init, self.decoder_mode, self.dtype_name = n, m, init, decoder, dtype
        torch_dtype = DTYPES[dtype]
        self.encoder = CosineEncoder(n, m, init=init, dtype=torch_dtype)
        self.decoder = CosineDecoder(m, n, init=init, mode=decoder, encoder=self.encoder,
                                     dtype=torch_dtype)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [..., N] -> reconstructed frames [..., N] (no processors in between)."""
        return self.decoder(self.encoder(frames))

    @property
    def phase_offset(self) -> float:
        """The encoder's phase offset n0 in samples (0 for "dct" and "lowpass")."""
        return self.encoder.n0

    def mdct_pair(self) -> tuple[bool, str]:
        """Whether encoder and decoder are exactly the orthonormal MDCT pair (init "mdct",
        M = N/2, n0 = 1/2 + M/2, tied decoder, every parameter at its init value); (ok, the
        reason in words). The engine's DCT-IV fast path is valid only then."""
        n, m, enc = self.n, self.m, self.encoder
        if self.init != "mdct":
            return False, f"init {self.init!r}, not 'mdct'"
        if enc.n0 != initial_phase_offset(n, m, "mdct"):
            return False, f"the phase offset n0 = {enc.n0:g} is not the MDCT's {m / 2 + 0.5:g}"
        if bool(enc.freq_offset_bins.detach().ne(0).any()):
            return False, "the frequencies were changed (parameters not at init)"
        if not self.at_init():
            return False, "the gains were trained (parameters not at init)"
        return True, f"MDCT init, M = {m}, N = {n}, parameters at init"

    def metadata(self) -> dict:
        return {"frame_size": self.n, "coefficients": self.m, "init": self.init,
                "decoder": self.decoder_mode, "dtype": self.dtype_name}

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def dct_pair(self) -> tuple[bool, str]:
        """Whether encoder and decoder are exactly (rows of) the N-point orthonormal DCT-III /
        DCT-II pair; (ok, the reason in words).

        They are when the frequencies lie on the N-point DCT grid w[m] = (2m+1) pi / (2N):
        init "dct" with M = N (the full pair) or init "lowpass" with any M (the first M rows;
        the decoder is then a zero-padded DCT-II); the decoder is "tied", "free" still on that
        grid, or "pinv" (the pseudo-inverse of orthonormal rows is their transpose); and every
        parameter is still exactly at its init value. Init "dct" with M < N puts the grid at
        (2m+1) pi / (2M): no N-point DCT.
        """
        n, m, enc, dec = self.n, self.m, self.encoder, self.decoder
        if self.init == "mdct":
            return False, "init 'mdct' is the MDCT pair, not the DCT pair"
        if enc.grid_k != n:
            return False, (f"init {self.init!r} with M = {m} < N = {n} puts the frequencies on "
                           f"a {enc.grid_k}-point grid, not the N-point DCT grid")
        if dec.mode == "free" and dec.basis.grid_k != n:
            return False, "the free decoder's grid is not the N-point DCT grid"
        # frequencies first, so that the reason says which parameters moved
        offsets = [enc.freq_offset_bins] + ([dec.basis.freq_offset_bins]
                                            if dec.mode == "free" else [])
        if any(bool(o.detach().ne(0).any()) for o in offsets):
            return False, "the frequencies were trained (parameters not at init)"
        if not self.at_init():
            return False, "the gains were trained (parameters not at init)"
        return True, f"DCT init, M = {m}, N = {n}, decoder {dec.mode}, parameters at init"

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' torch dtype."""
        return self.encoder.rest.dtype

    def parameter_groups(self) -> tuple[list, list]:
        """(gains, frequency offsets) among the trainable parameters: gains are a1..a4 (fewer
        with a pinv decoder), frequencies the encoder's offsets and a free decoder's. At init
        "mdct" only the per-coefficient gains train (the rest is frozen: cosine_host.models.cosine)."""
        gains, freqs = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (freqs if name.endswith("freq_offset_bins") else gains).append(p)
        return gains, freqs

    def frequency_bounds(self, margin_bins: float) -> list[tuple[torch.Tensor, ...]]:
        """(offset parameter, lowest offset, highest offset) per set of learned frequencies,
        in bins of pi/N, such that grid + offset stays within [margin, N - margin] bins."""
        bounds = []
        for basis in (self.encoder, getattr(self.decoder, "basis", None)):
            if basis is None:
                continue
            offset = basis.freq_offset_bins
            k = torch.arange(basis.m, dtype=torch.float64)
            grid_bins = (2 * k + 1) * basis.n / (2 * basis.grid_k)
            lo = (margin_bins - grid_bins).to(offset.device, offset.dtype)
            hi = (basis.n - margin_bins - grid_bins).to(offset.device, offset.dtype)
            bounds.append((offset, lo, hi))
        return bounds

    def at_init(self) -> bool:
        """True while every parameter still equals its init's initial value exactly.

        The engine uses this to pick an FFT fast path that is valid only at the init grid.
        Compared in place (no model is built), so it is cheap enough to ask after every change.
        """
        values = init_values(self.init)
        for name, p in self.named_parameters():
            init = values[name.rsplit(".", 1)[-1]]
            if not bool(torch.all(p.detach() == torch.tensor(init, dtype=p.dtype, device=p.device))):
                return False
        return True

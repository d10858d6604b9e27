"""The encoder/decoder pair as one module: what the engine, training and checkpoints hold."""
from __future__ import annotations

import math

import torch
from torch import nn

from models.cosine import CosineDecoder, CosineEncoder

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# every parameter's value at init, by its last name part (models.cosine)
INIT_VALUES = {"first": 1.0, "rest": math.sqrt(2.0), "freq_offset_bins": 0.0}


class LearnedCosine(nn.Module):
    """Encoder (N -> M) and decoder (M -> N) of the learned cosine transform.

    Args:
        n: frame length N in samples.
        m: coefficients per frame M (1..N).
        init: "dct" or "lowpass" (see models.cosine).
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

    def metadata(self) -> dict:
        return {"frame_size": self.n, "coefficients": self.m, "init": self.init,
                "decoder": self.decoder_mode, "dtype": self.dtype_name}

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def at_init(self) -> bool:
        """True while every parameter still equals its "dct"/"lowpass" initial value exactly.

        The engine uses this to pick an FFT fast path that is valid only at the init grid.
        Compared in place (no model is built), so it is cheap enough to ask after every change.
        """
        for name, p in self.named_parameters():
            init = INIT_VALUES[name.rsplit(".", 1)[-1]]
            if not bool(torch.all(p.detach() == torch.tensor(init, dtype=p.dtype, device=p.device))):
                return False
        return True

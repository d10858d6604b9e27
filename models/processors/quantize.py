"""The built-in uniform quantizer and its rate statistics (pooled, per band, fixed)."""
from __future__ import annotations

import math

import numpy as np
import torch

from cosine_host.models.processors.plugins import _Builtin, _check_int, _Checked


class Quantize(_Builtin):
    """Uniform mid-tread quantizer with a per-frame scale from the frame's peak.

    Per frame and channel the scale ``s`` is the peak |coeff| sent as float16 side information
    (16 bits per frame per channel), rounded *up* to a float16 value so the peak stays inside
    the range; peaks above 65504 saturate there. With ``L = max(1, 2**(bits-1) - 1)`` levels on
    each side (2**bits - 1 levels in all; bits=1 and bits=2 are both ternary), the step is
    ``s / L`` and each coefficient maps to ``round(x / step) * step``: zero stays zero and the
    error is at most half a step. An all-zero frame stays zero.

    Training: when gradients are enabled the output is the quantized value and the gradient is
    the identity (straight-through).

    Bitrate: the symbols go into a histogram on the coefficients' device (no sync per call; on
    the CPU route counted inside the compiled call that quantizes), one row per band of
    coefficient indices (``BANDS`` equal bands: index m of M is in band ``m * BANDS // M``),
    and ``stats()`` computes the empirical entropy of all symbols since reset from the rows
    summed (one pooled histogram). ``rates()`` adds the rate without
    entropy coding and the rate of a coder with one model per band. Each row has a fixed size,
    at most 65 537 bins (512 KiB, 8 MiB for all bands): exact for bits <= 16; above that,
    symbols with |q| <= 2**14 keep their own bins and larger ones share bins of W neighbours,
    each shared bin adding log2(W) bits per symbol, an upper bound on their entropy. Changing
    ``bits`` closes the histogram (one sync) and opens a new one, as a coder that restarts its
    model would.

    Args:
        bits: int in 1..24, default 8. May be changed between calls (``q.bits = 4``).
    """

    KEYS = ("bits",)
    COMPILED = True
    SIDE_BITS = 16                 # per frame per channel: the float16 scale
    BANDS = 16                     # entropy models of rates()["kbps_entropy"]: equal index bands
    ENTROPY_MODEL = (f"per band: one adaptive model for each of {BANDS} equal bands of "
                     f"coefficient indices")
    _EXACT_LEVELS = 2 ** 15        # up to this many levels per side, every symbol has its own bin
    _FINE_LEVELS = 2 ** 14         # beyond it: |q| <= this exact, larger shared, 2**14 bins per side

    bits = _Checked(lambda key, value: _check_int(key, value, 1, 24))

    def __init__(self, bits: int = 8):
        super().__init__()
        self.bits = bits
        self.reset()

    @staticmethod
    def levels(bits: int) -> int:
        """L, the number of nonzero levels on each side of zero for ``bits``."""
        return max(1, 2 ** (bits - 1) - 1)

    def reset(self) -> None:
        self._counts = None        # int64 (BANDS, bins) histogram of symbol bins for _hist_bits
        self._counts_numpy = None  # the same memory, flat, as a numpy array when on the CPU
        self._hist_bits = None
        self._band_of = {}         # (M, device) -> flat offset of each index's band row, (M,)
        self._plans = {}           # (dtype, shape, bits) -> _plan(...), for the compiled call
        # [pooled entropy bits, per-band entropy bits, fixed-length bits] of histograms closed
        # by a change of `bits`
        self._closed = [0.0, 0.0, 0.0]
        # [symbols, frames, frames * channels] since reset (each frame and channel carries one
        # side-info scale); a list, because nn.Module.__setattr__ costs microseconds
        self._tally = [0, 0, 0]

    def _torch(self, coeffs: torch.Tensor) -> torch.Tensor:
        bits = self.bits                   # read once: a change from another thread lands next call
        levels = self.levels(bits)
        x = coeffs.detach()
        peak = x.abs().amax(dim=-1, keepdim=True).clamp(max=65504.0)
        scale16 = peak.to(torch.float16)
        # round up to the next float16 (positive floats: next bit pattern) so |x| <= scale
        scale16 = torch.where(scale16.to(peak.dtype) < peak,
                              (scale16.view(torch.int16) + 1).view(torch.float16), scale16)
        scale = scale16.to(x.dtype)
        inv_step = torch.where(scale > 0, levels / scale, torch.zeros_like(scale))
        symbols = torch.round(x * inv_step).clamp_(-levels, levels)
        out = symbols * (scale / levels)
        self._count(symbols, bits, levels)
        if torch.is_grad_enabled() and coeffs.requires_grad:
            out = out + (coeffs - x)       # value stays exactly `out`, gradient is the identity
        return out

    def _numpy(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        # The case a stream spends its time in, bits <= 16 with every peak 0 (a silent frame
        # or channel) or a normal float16 (2**-14..65504), is one compiled call computing
        # _torch's values bit for bit (cosine_host.models.processors.compiled); the rest (NaN, saturated or tiny
        # peaks, bits > 16) takes _torch on the same memory.
        from cosine_host.models.processors import compiled  # numba: imported when first needed
        bits = self.bits
        if self.levels(bits) <= self._EXACT_LEVELS and x.size:
            key = (x.dtype, x.shape, bits)
            plan = self._plans.get(key) or self._plan(key)
            rows_m, typed_levels, peak, peak_bits, low, bins_of = plan
            if out is None:
                out = np.empty(x.shape, x.dtype)
            # in place is safe: the kernel reads each value before it writes its place, and
            # returns False before writing anything
            if compiled.quantize(x, typed_levels, peak, peak_bits, low, out,
                                 self._histogram_numpy(bits), bins_of):
                self._tally_add(x.shape)
                return out
        result = self._torch(torch.from_numpy(x)).numpy()
        if out is None:
            return result
        np.copyto(out, result)
        return out

    def _plan(self, key) -> tuple:
        """What the compiled call needs for arrays of one dtype and shape at one ``bits``:
        (rows, M), levels in the dtype, the peaks' scratch (as floats and as bits), the
        mantissa bits float16 lacks, the bin of symbol 0 at each index (int64, (M,))."""
        from cosine_host.models.processors import compiled
        dtype, shape, bits = key
        levels = self.levels(bits)
        as_int, low, _ = compiled.BITS[dtype]
        rows_m = (shape[0] * shape[1], shape[2])
        peak = np.empty(rows_m[0], dtype)
        bins_of = self._band_offsets(shape[2], None, levels).astype(np.int64) + levels
        if len(self._plans) >= 64:           # calls of many sizes (whole signals): start over
            self._plans.clear()
        plan = self._plans[key] = (rows_m, dtype.type(levels), peak, peak.view(as_int),
                                   as_int(low), bins_of)
        return plan

    def _histogram_numpy(self, bits: int) -> np.ndarray:
        if self._hist_bits != bits or self._counts_numpy is None:
            self._open_histogram(bits, torch.device("cpu"))
        return self._counts_numpy

    def _band_offsets(self, m: int, device, levels: int):
        """Flat offset of the band row of each coefficient index 0..m-1: a numpy intp array
        (device None) or an int64 tensor on ``device``."""
        key = (m, device, levels)
        offsets = self._band_of.get(key)
        if offsets is None:
            row = 2 * self._bins(levels)[0] + 1
            bands = np.arange(m) * self.BANDS // m * row
            offsets = (bands.astype(np.intp) if device is None
                       else torch.as_tensor(bands, dtype=torch.int64, device=device))
            self._band_of[key] = offsets
        return offsets

    def _tally_add(self, shape) -> None:
        tally = self._tally
        tally[0] += shape[0] * shape[1] * shape[2]
        tally[1] += shape[0]
        tally[2] += shape[0] * shape[1]

    def _bins(self, levels: int) -> tuple[int, int]:
        """(bins per side, W): histogram half-width and how many symbols share a coarse bin."""
        if levels <= self._EXACT_LEVELS:
            return levels, 1
        fine = self._FINE_LEVELS
        width = -(-(levels - fine) // fine)
        return fine + -(-(levels - fine) // width), width

    def _open_histogram(self, bits: int, device: torch.device) -> None:
        self._close_histogram()
        half, _ = self._bins(self.levels(bits))
        self._counts = torch.zeros(self.BANDS, 2 * half + 1, dtype=torch.int64, device=device)
        # shares memory
        self._counts_numpy = self._counts.view(-1).numpy() if self._counts.is_cpu else None
        self._hist_bits = bits

    @property
    def _hist(self) -> torch.Tensor | None:
        """The pooled histogram: all bands' rows summed (None before the first frame)."""
        return None if self._counts is None else self._counts.sum(dim=0)

    def _count(self, symbols: torch.Tensor, bits: int, levels: int) -> None:
        half, width = self._bins(levels)
        if self._hist_bits != bits or self._counts is None \
                or self._counts.device != symbols.device:
            self._open_histogram(bits, symbols.device)
        # a NaN coefficient becomes an arbitrary integer: clamp so the bin index stays in range
        q = symbols.reshape(-1).to(torch.int64).clamp_(-levels, levels)
        if width > 1:
            fine = self._FINE_LEVELS
            a = q.abs()
            q = torch.where(a > fine, fine + (a - fine + width - 1) // width, a) * q.sign()
        index = (q + half).view(symbols.shape) + self._band_offsets(symbols.shape[-1],
                                                                    symbols.device, levels)
        self._counts.view(-1).index_add_(0, index.reshape(-1), torch.ones_like(q))
        self._tally_add(symbols.shape)

    def _close_histogram(self) -> None:
        pooled, banded, fixed = self._histogram_bits(bands=True)
        closed = self._closed
        closed[0] += pooled
        closed[1] += banded
        closed[2] += fixed
        self._counts = self._counts_numpy = None

    def _histogram_bits(self, bands: bool = False):
        """Total bits to code the symbols in the open histogram at its empirical entropy (one
        pooled model); with ``bands``: (pooled bits, bits with one model per band, bits of a
        fixed-length code of ceil(log2(2L + 1)) bits per symbol)."""
        if self._counts is None:
            return (0.0, 0.0, 0.0) if bands else 0.0
        counts = self._counts.to(torch.float64)
        pooled = self._entropy_bits(counts.sum(dim=0))
        if not bands:
            return pooled
        banded = sum(self._entropy_bits(row) for row in counts)
        levels = self.levels(self._hist_bits)
        fixed = counts.sum().item() * math.ceil(math.log2(2 * levels + 1))
        return pooled, banded, fixed

    def _entropy_bits(self, counts: torch.Tensor) -> float:
        """Bits to code the symbols counted in one float64 histogram row at its entropy."""
        total = counts.sum()
        if total == 0:
            return 0.0
        nonzero = counts[counts > 0]
        bits = (nonzero * torch.log2(total / nonzero)).sum().item()
        half, width = self._bins(self.levels(self._hist_bits))
        if width > 1:   # shared bins: up to log2(W) more bits per symbol to say which member
            fine = self._FINE_LEVELS
            shared = counts[: half - fine].sum() + counts[half + fine + 1:].sum()
            bits += shared.item() * math.log2(width)
        return bits

    def stats(self) -> dict:
        """Since reset:

        - ``bitrate_kbps``: (entropy bits of the symbols + 16 side bits per frame per channel)
          per second of audio, in kbit/s; None before ``prepare``, 0.0 before any frame.
        - ``entropy_bits``: bits per coefficient (empirical entropy of the symbols).
        - ``bits``: the current setting. ``frames``: frames quantized.
        """
        symbol_bits = self._closed[0] + self._histogram_bits()
        symbols, frames, frame_channels = self._tally
        total_bits = symbol_bits + self.SIDE_BITS * frame_channels
        if not (self.samplerate and self.hop):
            bitrate = None
        elif frames == 0:
            bitrate = 0.0
        else:
            seconds = frames * self.hop / self.samplerate
            bitrate = total_bits / seconds / 1000.0
        return {"bitrate_kbps": bitrate,
                "entropy_bits": symbol_bits / symbols if symbols else 0.0,
                "bits": self.bits, "frames": frames}

    def rates(self) -> dict:
        """Three bitrates since reset, in kbit/s, each with the 16 side bits per frame per
        channel included (None before ``prepare``, 0.0 before any frame):

        - ``kbps_fixed``: no entropy coding, ceil(log2(2L + 1)) bits per coefficient (``bits``,
          or 2 for bits = 1);
        - ``kbps_pooled``: ``stats()["bitrate_kbps"]``, one model for all symbols;
        - ``kbps_entropy``: one model per band (``ENTROPY_MODEL``), what an adaptive entropy
          coder with a context per band approaches (the models' own cost is not counted).

        kbps_entropy <= kbps_pooled <= kbps_fixed: conditioning on the band never raises the
        empirical entropy (kbps_entropy is capped at kbps_pooled against float rounding).
        """
        pooled, banded, fixed = self._histogram_bits(bands=True)
        closed = self._closed
        _, frames, frame_channels = self._tally
        side = self.SIDE_BITS * frame_channels
        bits = {"kbps_fixed": closed[2] + fixed, "kbps_pooled": closed[0] + pooled,
                "kbps_entropy": closed[1] + banded}
        bits["kbps_entropy"] = min(bits["kbps_entropy"], bits["kbps_pooled"])
        if not (self.samplerate and self.hop):
            return {**{k: None for k in bits}, "entropy_model": self.ENTROPY_MODEL}
        seconds = frames * self.hop / self.samplerate
        return {**{k: (v + side) / seconds / 1000.0 if frames else 0.0 for k, v in bits.items()},
                "entropy_model": self.ENTROPY_MODEL}



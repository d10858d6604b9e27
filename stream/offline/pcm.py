"""Float samples to integer PCM, done here rather than by libsndfile: dither, round, clip, count.

libsndfile's own float-to-int conversion in its WAV and AIFF writers truncates (a value a hair
below an integer step becomes the step below), so a float32 identity render of a 16-bit file
came back with about 40 % of its samples 1 LSB low. ``PcmConverter`` rounds to the nearest
integer instead (ties to even) and hands soundfile integer arrays, which it writes unchanged:

- PCM_16: int16, value = round(x * 32768), clipped to [-32768, 32767];
- PCM_24: int32 holding the 24-bit value in its top 24 bits (value << 8): libsndfile keeps the
  top 24 bits of an int32 when it writes PCM_24, and reads them back as value / 2**23.

A sample read back as float is exactly value / 2**(bits - 1), the same scale soundfile uses when
it reads integer files, so an integer input rendered through the identity comes back
bit-identical whenever the float32 engine stays within half an LSB of it.

Dither: TPDF (the difference of two independent uniform variables, each 1 LSB wide: triangular
on [-1, 1] LSB, mean 0) added before rounding. ``choose_dither`` applies it by default only when
the output has fewer bits than the input (FLOAT -> PCM_16, PCM_24 -> PCM_16), so a same-depth
identity render stays bit-exact. The noise comes from a seeded generator drawn sample by sample
in file order, so a render is reproducible and does not depend on how it was chunked.
"""
from __future__ import annotations

import numpy as np

from cosine_host.errors import UserError

DITHER_SEED = 20240601          # the default seed of the dither generator
DITHERS = ("auto", "tpdf", "none")
# bits of the integer sample formats this module writes
OUTPUT_BITS = {"PCM_16": 16, "PCM_24": 24}
# bits of the sample formats an input may have; absent (FLOAT, DOUBLE, VORBIS, OPUS, MPEG...)
# means more precise than any integer output
INPUT_BITS = {"PCM_S8": 8, "PCM_U8": 8, "DPCM_8": 8, "ULAW": 14, "ALAW": 13, "PCM_16": 16,
              "DPCM_16": 16, "DWVW_16": 16, "ALAC_16": 16, "ALAC_20": 20, "PCM_24": 24,
              "DWVW_24": 24, "ALAC_24": 24, "PCM_32": 32, "ALAC_32": 32}


def output_bits(subtype: str) -> int | None:
    """Bits per sample of an integer output subtype ("PCM_16" -> 16, "PCM_24" -> 24), or None
    when the output is written as float (FLOAT, DOUBLE, VORBIS, OPUS, MPEG_LAYER_III...)."""
    return OUTPUT_BITS.get(subtype)


def choose_dither(requested: str | None, input_subtype: str, output_subtype: str) -> str:
    """The dither to apply: "tpdf" or "none".

    Args:
        requested: "auto" or None (TPDF only when the output has fewer bits than the input),
            "tpdf" (always, for integer outputs) or "none".
        input_subtype, output_subtype: soundfile subtype names, e.g. "PCM_24", "FLOAT".
    Raises:
        UserError: unknown name, or "tpdf" asked for an output that is not PCM_16/PCM_24.
    """
    name = (requested or "auto").lower()
    if name not in DITHERS:
        raise UserError(f"unknown dither {requested!r}; allowed: {' | '.join(DITHERS)}")
    out_bits = output_bits(output_subtype)
    if name == "tpdf" and out_bits is None:
        raise UserError(f"--dither tpdf applies to PCM_16 and PCM_24 outputs, not "
                        f"{output_subtype}; drop --dither or add --subtype PCM_16")
    if name != "auto":
        return name
    if out_bits is None:
        return "none"
    in_bits = INPUT_BITS.get(input_subtype)
    return "tpdf" if in_bits is None or out_bits < in_bits else "none"


class PcmConverter:
    """Converts float32 (frames, channels) chunks, in file order, to integer arrays to write.

    Args:
        subtype: "PCM_16" or "PCM_24".
        dither: "tpdf" or "none".
        seed: seed of the dither noise (the same seed gives the same file).
    Attributes:
        clipped: samples so far whose rounded value lay outside the integer range (full scale
            is 1.0; +1.0 itself is one step beyond the largest value, 1 - 2**-(bits-1)).
    """

    def __init__(self, subtype: str, dither: str = "none", seed: int = DITHER_SEED):
        if subtype not in OUTPUT_BITS:
            raise ValueError(f"PcmConverter writes {sorted(OUTPUT_BITS)}, not {subtype}")
        self.subtype = subtype
        self.bits = OUTPUT_BITS[subtype]
        self.scale = float(1 << (self.bits - 1))
        self.low, self.high = -self.scale, self.scale - 1.0
        self.dither = dither
        self._rng = np.random.default_rng(seed) if dither == "tpdf" else None
        self.clipped = 0

    def convert(self, chunk: np.ndarray) -> np.ndarray:
        """The chunk as int16 (PCM_16) or left-aligned int32 (PCM_24), same shape.

        Non-finite values become 0. Counts clipped samples in ``self.clipped``.
        """
        x = chunk.astype(np.float64) * self.scale
        if not np.isfinite(x).all():
            np.nan_to_num(x, copy=False, nan=0.0, posinf=self.scale, neginf=-self.scale)
        if self._rng is not None:
            # two uniform draws per sample, drawn in (frame, channel) order: one draw is one
            # 64-bit step of the generator, so the sequence does not depend on the chunking
            u = self._rng.random(x.size * 2).reshape(*x.shape, 2)
            x += u[..., 0] - u[..., 1]
        np.rint(x, out=x)
        self.clipped += int(np.count_nonzero((x > self.high) | (x < self.low)))
        np.clip(x, self.low, self.high, out=x)
        if self.bits == 16:
            return x.astype(np.int16)
        return x.astype(np.int32) << (32 - self.bits)

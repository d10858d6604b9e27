"""stream/offline/pcm.py: float to integer samples, rounded to nearest, clipped and counted, dithered.

Expected integers are computed here independently (floor(x * 2**(bits-1) + 0.5) in float64)
and checked through real files written and read by soundfile.
"""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from cosine_host.errors import UserError
from cosine_host.offline.pcm import PcmConverter, choose_dither


def nearest(x: np.ndarray, bits: int) -> np.ndarray:
    """Reference rounding, one value at a time with Python's round() (ties to even: a float32
    sample can lie exactly half-way between two 24-bit steps), then clipped."""
    scale = 2 ** (bits - 1)
    flat = [min(max(round(float(v) * scale), -scale), scale - 1) for v in x.ravel()]
    return np.array(flat, np.int64).reshape(x.shape)


@pytest.mark.parametrize("subtype, bits", [("PCM_16", 16), ("PCM_24", 24)])
def test_values_round_to_nearest_through_a_real_file(tmp_path, subtype, bits):
    rng = np.random.default_rng(1)
    k = rng.integers(-2 ** (bits - 1) + 2, 2 ** (bits - 1) - 2, (5000, 2))
    k[:1000] //= 64                        # some small values too
    # integers nudged by less than half a step either way: all must come back to k
    nudge = rng.uniform(-0.45, 0.45, k.shape)
    x = ((k + nudge) / 2.0 ** (bits - 1)).astype(np.float32)
    converter = PcmConverter(subtype)
    sf.write(tmp_path / "o.wav", converter.convert(x), 48000, subtype=subtype)
    back = sf.read(tmp_path / "o.wav", dtype="int32")[0] >> (32 - bits)
    assert np.array_equal(back, nearest(x, bits))
    # where float32 holds the nudge (below 1/16 of full scale even for 24 bits) k comes back
    small = np.abs(x) < 1 / 16
    assert small.sum() > 100 and np.array_equal(back[small], k[small])
    assert converter.clipped == 0
    # soundfile reads value / 2**(bits-1) back as float: the scale the converter used
    y = sf.read(tmp_path / "o.wav", dtype="float64")[0]
    assert np.array_equal(y * 2.0 ** (bits - 1), back.astype(np.float64))


def test_clipping_is_counted_on_both_sides():
    x = np.array([[1.5], [-1.5], [1.0], [-1.0], [32767 / 32768], [0.0]], np.float32)
    converter = PcmConverter("PCM_16")
    out = converter.convert(x)
    assert out[:, 0].tolist() == [32767, -32768, 32767, -32768, 32767, 0]
    assert converter.clipped == 3          # 1.5, -1.5 and +1.0 (one step beyond 32767)


def test_non_finite_values_do_not_become_garbage():
    x = np.array([[np.nan], [np.inf], [-np.inf], [0.5]], np.float32)
    assert PcmConverter("PCM_16").convert(x)[:, 0].tolist() == [0, 32767, -32768, 16384]


@pytest.mark.parametrize("requested, source, target, expected", [
    (None, "FLOAT", "PCM_16", "tpdf"), ("auto", "PCM_24", "PCM_16", "tpdf"),
    ("auto", "VORBIS", "PCM_24", "tpdf"), ("auto", "DOUBLE", "PCM_24", "tpdf"),
    ("auto", "PCM_16", "PCM_16", "none"), ("auto", "PCM_24", "PCM_24", "none"),
    ("auto", "PCM_16", "PCM_24", "none"), ("auto", "PCM_24", "FLOAT", "none"),
    ("auto", "FLOAT", "VORBIS", "none"), ("none", "FLOAT", "PCM_16", "none"),
    ("tpdf", "PCM_16", "PCM_16", "tpdf"), ("TPDF", "PCM_24", "PCM_24", "tpdf"),
])
def test_dither_only_where_bits_are_lost(requested, source, target, expected):
    assert choose_dither(requested, source, target) == expected


def test_dither_errors():
    with pytest.raises(UserError, match="applies to PCM_16 and PCM_24 outputs"):
        choose_dither("tpdf", "PCM_24", "FLOAT")
    with pytest.raises(UserError, match="unknown dither"):
        choose_dither("rect", "PCM_24", "PCM_16")


def test_tpdf_is_triangular_zero_mean_and_independent_of_chunking():
    frames = 200000
    x = np.full((frames, 2), 0.3 / 32768, np.float32)      # 0.3 LSB: rounds to 0 undithered
    whole = PcmConverter("PCM_16", "tpdf", seed=7).convert(x).astype(np.int64)
    pieces = PcmConverter("PCM_16", "tpdf", seed=7)
    cuts = [0, 1, 4097, 65536, 100001, frames]
    chunked = np.concatenate([pieces.convert(x[a:b]) for a, b in zip(cuts, cuts[1:])])
    assert np.array_equal(whole, chunked)
    # TPDF of 1 LSB each side: 0.3 + d with d triangular on [-1, 1] rounds to -1, 0, 1 or 2
    # with probabilities computed from the triangle's areas
    assert set(np.unique(whole)) <= {-1, 0, 1}
    tri = lambda a, b: (_cdf(b) - _cdf(a))   # noqa: E731
    expected = {-1: tri(-1.0, -0.8), 0: tri(-0.8, 0.2), 1: tri(0.2, 1.0)}
    for value, p in expected.items():
        assert np.mean(whole == value) == pytest.approx(p, abs=0.005)
    # no bias: the mean output equals the input level
    assert whole.mean() == pytest.approx(0.3, abs=0.01)
    other = PcmConverter("PCM_16", "tpdf", seed=8).convert(x)
    assert not np.array_equal(whole, other)


def _cdf(t: float) -> float:
    """CDF of the triangular distribution on [-1, 1]."""
    return 0.5 * (1 + t) ** 2 if t < 0 else 1 - 0.5 * (1 - t) ** 2

"""Bark-like bands over a frame's coefficients and the masking threshold computed from them.

The codec (models/processors/codec.py) sends one energy per band and sets each band's step from
a masking threshold; both need to know which coefficient lies at which frequency. The layout
assumed here is the DCT's and the MDCT's: M coefficients spread evenly over 0..samplerate/2,
coefficient ``m`` centred at ``(m + 0.5) * samplerate / (2 M)`` Hz. A learned transform whose
frequencies drift keeps this layout approximately; one whose coefficients are ordered otherwise
(the ``lowpass`` init, which keeps only the lowest M of N) gets a mislabelled but still
decodable codec.
"""
from __future__ import annotations

import numpy as np

# Zwicker's critical band edges (Hz); bands above the last edge end at samplerate / 2
BARK_EDGES_HZ = (0, 100, 200, 300, 400, 510, 630, 770, 920, 1080, 1270, 1480, 1720, 2000,
                 2320, 2700, 3150, 3700, 4400, 5300, 6400, 7700, 9500, 12000, 15500)


def bark(hz):
    """Critical-band rate (Bark) of a frequency in Hz (Zwicker and Terhardt 1980)."""
    hz = np.asarray(hz, dtype=np.float64)
    return 13.0 * np.arctan(0.00076 * hz) + 3.5 * np.arctan((hz / 7500.0) ** 2)


def band_edges(n_coefficients: int, samplerate: int, min_width: int = 4) -> np.ndarray:
    """Coefficient indices where the bands start, plus M at the end: int64, (bands + 1,).

    Each Bark edge below samplerate / 2 becomes the first coefficient whose centre lies at or
    above it; bands narrower than ``min_width`` coefficients (default 4; fewer when M is small)
    merge with the next one, because the energy of one or two coefficients says little more
    than the coefficients themselves and costs as many bits.
    """
    m = int(n_coefficients)
    hz_per_coefficient = samplerate / (2.0 * m)
    edges = [0]
    for hz in BARK_EDGES_HZ[1:]:
        if hz >= samplerate / 2:
            break
        index = int(np.ceil(hz / hz_per_coefficient - 0.5))
        if index - edges[-1] >= min(min_width, m) and m - index >= min(min_width, m):
            edges.append(index)
    edges.append(m)
    return np.asarray(edges, dtype=np.int64)


def band_centres_bark(edges: np.ndarray, n_coefficients: int, samplerate: int) -> np.ndarray:
    """Bark value of each band's centre frequency: float64, (bands,)."""
    hz_per_coefficient = samplerate / (2.0 * n_coefficients)
    centre_hz = 0.5 * (edges[:-1] + edges[1:]) * hz_per_coefficient
    return bark(centre_hz)


def spreading_db(centres_bark: np.ndarray, lower_db_per_bark: float = 27.0,
                 upper_db_per_bark: float = 24.0) -> np.ndarray:
    """Attenuation in dB (>= 0) from a masker band j to a band b: float64, (bands, bands),
    row b, column j. A masker masks the bands below it less the farther they are
    (``lower_db_per_bark`` per Bark) and the bands above it likewise (``upper_db_per_bark``)."""
    dz = centres_bark[:, None] - centres_bark[None, :]     # target minus masker
    return np.where(dz < 0, -dz * lower_db_per_bark, dz * upper_db_per_bark)


def masking_threshold_db(level_db: np.ndarray, spreading: np.ndarray, centres_bark: np.ndarray,
                         tilt_db_per_bark: float, floor_db: float) -> np.ndarray:
    """Masking threshold per band in dB (power per coefficient, full scale = 0 dB).

    Args:
        level_db: (..., bands) decoded power per coefficient of each band, dB; a silent band
            is -inf (masks nothing).
        spreading: (bands, bands) from ``spreading_db``.
        centres_bark: (bands,) band centres.
        tilt_db_per_bark: added per Bark of the band's centre (more noise allowed up high).
        floor_db: the threshold never goes below this (about the threshold of hearing).
    Returns:
        float64 (..., bands): ``max(10 log10(sum_j 10^((L_j - spread[b, j]) / 10)) + tilt *
        z_b, floor)``, rounded to 1/4 dB.
    """
    with np.errstate(divide="ignore"):
        power = np.power(10.0, level_db / 10.0)                       # 0 for silent bands
        spread = np.power(10.0, -spreading / 10.0)
        # an explicit sum, not a matrix product: the same value whatever the BLAS library
        masked = 10.0 * np.log10((power[..., None, :] * spread).sum(axis=-1))
    threshold = np.maximum(masked + tilt_db_per_bark * centres_bark, floor_db)
    # on a 1/4 dB grid, so that a last-bit difference in log10 on another CPU cannot move it
    return np.round(threshold * 4.0) / 4.0

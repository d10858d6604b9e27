"""Synthesised test material (music-like): tones, a sweep, noise bursts and a chord, the same
on every machine. The demo renders it, evaluate measures with it when no input is given, and
the tests use it. Speech-like material is cosine_host.lab.speech."""
from __future__ import annotations

import numpy as np

SAMPLERATE = 48000          # Hz, of the test material
SECONDS = 4.0               # length of the test material
FADE_S = 0.005              # raised-cosine fade at every segment edge (no clicks between parts)


def synthesize_material(samplerate: int = SAMPLERATE, seconds: float = SECONDS) -> np.ndarray:
    """Deterministic stereo test signal, float32 (frames, 2), peak below 0.6.

    Quarters of ``seconds`` (4 s by default): harmonic tones (left 220 Hz, right 330 Hz, eight
    harmonics at 1/k), an exponential sweep 20 Hz -> 0.45 * samplerate on both channels, four
    white-noise bursts of 1/40 of the length each (independent per channel), then silence for
    half a quarter and a C major chord (262, 330, 392 Hz) on both channels.
    """
    frames = int(round(seconds * samplerate))
    quarter = frames // 4
    out = np.zeros((frames, 2), np.float64)
    t = np.arange(quarter) / samplerate

    def harmonic(f0: float) -> np.ndarray:
        k = np.arange(1, 9)[:, None]
        return (np.sin(2 * np.pi * f0 * k * t) / k).sum(axis=0) * 0.25

    out[:quarter, 0] = harmonic(220.0)
    out[:quarter, 1] = harmonic(330.0)

    f_lo, f_hi, span = 20.0, 0.45 * samplerate, quarter / samplerate
    rate = np.log(f_hi / f_lo) / span
    sweep = 0.5 * np.sin(2 * np.pi * f_lo * (np.exp(rate * t) - 1.0) / rate)
    out[quarter:2 * quarter] = sweep[:, None]

    rng = np.random.default_rng(0)
    burst = frames // 40
    for i in range(4):
        start = 2 * quarter + i * quarter // 4
        out[start:start + burst] = np.clip(rng.normal(0.0, 0.15, (burst, 2)), -0.55, 0.55) \
            * _fade(burst, samplerate)[:, None]

    chord_start = 3 * quarter + quarter // 2
    tc = np.arange(frames - chord_start) / samplerate
    chord = sum(np.sin(2 * np.pi * f * tc) for f in (261.63, 329.63, 392.0)) * 0.18
    out[chord_start:] = (chord * _fade(len(tc), samplerate))[:, None]

    for part in (slice(0, quarter), slice(quarter, 2 * quarter)):
        out[part] *= _fade(part.stop - part.start, samplerate)[:, None]
    return out.astype(np.float32)


def _fade(frames: int, samplerate: int) -> np.ndarray:
    """1.0 with raised-cosine ramps of FADE_S seconds at both ends, shape (frames,)."""
    ramp = min(int(FADE_S * samplerate), frames // 2)
    gain = np.ones(frames)
    if ramp:
        rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        gain[:ramp] = rise
        gain[frames - ramp:] = rise[::-1]
    return gain

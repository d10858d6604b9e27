"""Speech-like test material, synthesised: voiced syllables through formant filters, with
fricatives and pauses, so that speech metrics (PESQ, STOI) have something to measure without a
recording.

A source-filter model: a glottal pulse train whose pitch glides around 120 Hz (a slow
intonation contour plus jitter-free vibrato), shaped by three resonances (formants) that move
between five vowels; unvoiced noise bursts filtered high for fricatives between some
syllables; a pause of 120-250 ms after every few syllables. Deterministic (seeded).
"""
from __future__ import annotations

import numpy as np
from scipy import signal as sig

SAMPLERATE = 48000
SECONDS = 4.0

# formant frequencies (Hz) and bandwidths of five vowels: a, e, i, o, u
VOWELS = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010),
          "o": (570, 840, 2410), "u": (300, 870, 2240)}
BANDWIDTHS = (90, 110, 170)


VOICES = {"low": (120.0, 1.0), "high": (210.0, 1.17)}
"""Voices by name: (mean pitch in Hz, formant frequency scale). "low" is the default voice;
"high" (a higher pitch and formants 17 % up, as a shorter vocal tract gives) is a different
speaker for held-out tests."""


def synthesize_speech(samplerate: int = SAMPLERATE, seconds: float = SECONDS,
                      seed: int = 0, voice: str = "low") -> np.ndarray:
    """Mono speech-like signal, float32 (frames, 1), peak 0.5, in one of ``VOICES``."""
    f0_hz, formant_scale = VOICES[voice]
    rng = np.random.default_rng(seed)
    frames = int(round(seconds * samplerate))
    out = np.zeros(frames)
    pos = int(0.15 * samplerate)                    # a little silence first (PESQ's VAD)
    names = list(VOWELS)
    count = 0
    while pos < frames - int(0.3 * samplerate):
        if count and count % 4 == 0:                # a pause every four syllables
            pos += int(rng.uniform(0.12, 0.25) * samplerate)
        if rng.random() < 0.4:                      # a fricative before the vowel
            n = int(rng.uniform(0.05, 0.1) * samplerate)
            noise = rng.normal(0, 1, n)
            b, a = sig.butter(4, [3000 / (samplerate / 2), min(9000 / (samplerate / 2), 0.99)],
                              "band")
            burst = sig.lfilter(b, a, noise) * np.hanning(n) * 0.08
            end = min(frames, pos + n)
            out[pos:end] += burst[:end - pos]
            pos = end
        n = int(rng.uniform(0.14, 0.26) * samplerate)
        n = min(n, frames - pos)
        if n <= 0:
            break
        start = tuple(f * formant_scale for f in VOWELS[names[rng.integers(5)]])
        end = tuple(f * formant_scale for f in VOWELS[names[rng.integers(5)]])
        out[pos:pos + n] += _syllable(n, samplerate, rng, start, end, t0=pos / samplerate,
                                      f0_hz=f0_hz)
        pos += n
        count += 1
    out *= 0.5 / max(np.abs(out).max(), 1e-9)
    return out.astype(np.float32)[:, None]


def _syllable(n: int, samplerate: int, rng, start: tuple, end: tuple, t0: float,
              f0_hz: float = 120.0) -> np.ndarray:
    """One voiced syllable of n samples: pulses through formants gliding from start to end."""
    t = np.arange(n) / samplerate
    f0 = f0_hz * (1 + 0.15 * np.sin(2 * np.pi * 0.6 * (t0 + t))) * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = np.cumsum(f0 / samplerate)
    pulses = np.diff(np.floor(phase), prepend=0.0)   # one impulse per period
    # glottal pulse shape: a short decaying pulse, lowpassed
    b, a = sig.butter(2, 3500 / (samplerate / 2))
    source = sig.lfilter(b, a, pulses) + 0.01 * rng.normal(0, 1, n)
    out = np.zeros(n)
    halves = (slice(0, n // 2), slice(n // 2, n))
    for formants, part in zip((start, end), halves):
        x = source[part]
        y = np.zeros_like(x)
        for f, bw, gain in zip(formants, BANDWIDTHS, (1.0, 0.6, 0.3)):
            r = np.exp(-np.pi * bw / samplerate)
            theta = 2 * np.pi * f / samplerate
            y += gain * sig.lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)
        out[part] = y
    envelope = np.sin(np.pi * np.arange(n) / n) ** 0.6
    return out * envelope


def looks_like_speech(signal: np.ndarray, samplerate: int) -> bool:
    """A rough check for ``--content auto``: most of the energy (>= 70 %) lies in 80-4000 Hz
    and the level pauses (>= 10 % of 20 ms frames at least 30 dB below the loudest ones), as
    speech does. Music or test tones may pass or fail it: ``--content`` says it instead."""
    mono = np.asarray(signal, np.float64).mean(axis=1)
    if not mono.any():
        return False
    spectrum = np.abs(np.fft.rfft(mono)) ** 2
    freqs = np.fft.rfftfreq(mono.size, 1 / samplerate)
    in_band = spectrum[(freqs >= 80) & (freqs <= 4000)].sum() / spectrum.sum()
    hop = max(1, int(0.02 * samplerate))
    frames = mono[: mono.size // hop * hop].reshape(-1, hop)
    if frames.shape[0] < 10:
        return False
    level = 10 * np.log10(np.square(frames).mean(axis=1) + 1e-20)
    quiet = np.mean(level < np.percentile(level, 95) - 30)
    return bool(in_band >= 0.7 and quiet >= 0.1)

"""Reference codecs through libsndfile (soundfile): Opus, Vorbis and MP3 at chosen bitrates.

libsndfile sets a lossy encoder by ``compression_level`` (0.0 = largest file .. 1.0 = smallest), not
by a bitrate, so ``at_bitrates`` measures the bitrate each codec gives at a grid of levels on the
signal itself, interpolates the level for every target bitrate (in log kbps, between neighbouring
grid points) and encodes once more there. MP3 is written with bitrate mode CONSTANT, Opus and Vorbis
with libsndfile's default (variable). The bitrate of a row is the encoded file's size in bits over
the signal's duration (container overhead included). The decoded signal is aligned to the input (the
codec's delay is found by cross-correlation and removed, cosine_host.offline.readback.find_lag) and
cut or padded to its length.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import soundfile as sf

from cosine_host.errors import UserError
from cosine_host.offline.readback import find_lag

# name -> (format, subtype, extension, bitrate mode or None for libsndfile's default)
CODECS = {"opus": ("OGG", "OPUS", ".opus", None), "vorbis": ("OGG", "VORBIS", ".ogg", None),
          "mp3": ("MP3", "MPEG_LAYER_III", ".mp3", "CONSTANT")}
LEVELS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95)      # compression levels measured for the search


def check_names(text: str | None) -> tuple[str, ...]:
    """The codec names of a comma-separated ``--codecs`` value (None or empty: none)."""
    if not text:
        return ()
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in CODECS]
    if unknown:
        raise UserError(f"--codecs {text!r}: unknown codec {unknown[0]!r}; allowed: a "
                        f"comma-separated list of {', '.join(CODECS)}")
    return tuple(dict.fromkeys(names))


def encode(signal: np.ndarray, samplerate: int, codec: str, level: float,
           folder: str) -> tuple[np.ndarray, float]:
    """(decoded signal aligned to ``signal``, bitrate in kbit/s) at compression ``level``."""
    fmt, subtype, ext, mode = CODECS[codec]
    path = os.path.join(folder, f"{codec}-{level:.4f}{ext}")
    extra = {"bitrate_mode": mode} if mode else {}
    sf.write(path, signal, samplerate, format=fmt, subtype=subtype,
             compression_level=float(level), **extra)
    kbps = os.path.getsize(path) * 8 / (signal.shape[0] / samplerate) / 1000
    decoded, _ = sf.read(path, dtype="float32", always_2d=True)
    os.remove(path)
    lag = find_lag(signal, decoded)
    decoded = decoded[max(lag, 0):]
    if lag < 0:
        decoded = np.concatenate([np.zeros((-lag, decoded.shape[1]), np.float32), decoded])
    frames = signal.shape[0]
    if decoded.shape[0] < frames:
        decoded = np.concatenate([decoded, np.zeros((frames - decoded.shape[0],
                                                     decoded.shape[1]), np.float32)])
    return decoded[:frames], kbps


def at_bitrates(signal: np.ndarray, samplerate: int, codec: str, targets):
    """Yield ``(decoded, kbps, level, note)`` near each target bitrate (kbit/s), one per
    distinct compression level and bitrate; when the codec cannot encode the signal at all, yield
    one
    ``(None, None, None, note)``."""
    with tempfile.TemporaryDirectory(prefix="cosine-codec-") as folder:
        grid = []
        failure = None
        for level in LEVELS:
            try:
                grid.append((level, encode(signal, samplerate, codec, level, folder)))
            except (sf.SoundFileError, RuntimeError, ValueError) as e:
                failure = " ".join(str(e).split())
        if not grid:
            yield None, None, None, (f"{codec} cannot encode this signal "
                                     f"({samplerate} Hz, {signal.shape[1]} ch): {failure}")
            return
        levels = np.array([g[0] for g in grid])
        rates = np.array([g[1][1] for g in grid])
        done, made = set(), []
        for target in sorted({float(t) for t in targets if t and t > 0}):
            note = None
            if target >= rates.max():
                level = float(levels[np.argmax(rates)])
                note = f"{codec}: {target:.1f} kbps asked, its highest here is {rates.max():.1f}"
            elif target <= rates.min():
                level = float(levels[np.argmin(rates)])
                note = f"{codec}: {target:.1f} kbps asked, its lowest here is {rates.min():.1f}"
            else:      # rates fall as levels rise: interpolate in log kbps
                order = np.argsort(rates)
                level = float(np.interp(np.log(target), np.log(rates[order]), levels[order]))
            level = round(level, 3)
            if level in done:
                continue
            done.add(level)
            measured = dict(grid).get(level)
            if measured is None:
                try:
                    measured = encode(signal, samplerate, codec, level, folder)
                except (sf.SoundFileError, RuntimeError, ValueError) as e:
                    yield None, None, level, f"{codec} at level {level}: {e}"
                    continue
            if any(abs(measured[1] - kbps) <= 0.005 * kbps for kbps in made):
                continue        # a constant-bitrate step: the same file as a row already made
            made.append(measured[1])
            yield measured[0], measured[1], level, note

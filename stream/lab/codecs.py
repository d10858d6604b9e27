"""Reference codecs through libsndfile (soundfile): Opus, Vorbis and MP3 at chosen bitrates.

libsndfile sets a lossy encoder by ``compression_level`` (0.0 = largest file .. 1.0 = smallest), not
by a bitrate, so ``at_bitrates`` measures the bitrate each codec gives at a grid of levels on the
signal itself and searches the level of every target bitrate from there (in log kbps) until the
file is within 1 % of the target. MP3 is written with bitrate mode CONSTANT, Opus and Vorbis
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
LEVELS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 1.0)     # compression levels measured first
KBPS_TOLERANCE = 0.01       # a file within 1 % of a target bitrate counts as at it
SEARCH_STEPS = 6            # encodes per target beyond LEVELS, at most


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
    """Yield ``(decoded, kbps, level, note)`` at each target bitrate (kbit/s), one per distinct
    compression level and bitrate; when the codec cannot encode the signal at all, yield one
    ``(None, None, None, note)``.

    A target inside the codec's range on this signal is searched for: the compression level is
    interpolated in log kbps between the nearest levels measured above and below it (halved
    when that repeats a level), at most ``SEARCH_STEPS`` encodes, until a file's bitrate is
    within ``KBPS_TOLERANCE`` of the target. Where none is (a constant-bitrate codec's steps),
    the nearest rows on either side are yielded, so a curve read at the target
    (cosine_host.lab.evaluate.curves_at) spans it. A target outside the range gets the
    range's end, with a note.
    """
    with tempfile.TemporaryDirectory(prefix="cosine-codec-") as folder:
        rates: dict[float, float | None] = {}
        failure = None

        def measure(level: float) -> float | None:
            nonlocal failure
            if level not in rates:
                try:
                    rates[level] = encode(signal, samplerate, codec, level, folder)[1]
                except (sf.SoundFileError, RuntimeError, ValueError) as e:
                    failure = " ".join(str(e).split())
                    rates[level] = None
            return rates[level]

        for level in LEVELS:
            measure(level)
        if all(kbps is None for kbps in rates.values()):
            yield None, None, None, (f"{codec} cannot encode this signal "
                                     f"({samplerate} Hz, {signal.shape[1]} ch): {failure}")
            return
        chosen: dict[float, str | None] = {}     # level -> note, in the order of the targets
        for target in sorted({float(t) for t in targets if t and t > 0}):
            levels, note = _levels_for(target, codec, rates, measure)
            for level in levels:
                chosen.setdefault(level, note)
        made = []
        # the search kept bitrates only: each row is encoded again here, so that one decoded
        # signal is held at a time however long the input
        for level, note in sorted(chosen.items(), key=lambda item: rates[item[0]]):
            try:
                decoded, kbps = encode(signal, samplerate, codec, level, folder)
            except (sf.SoundFileError, RuntimeError, ValueError) as e:
                yield None, None, level, f"{codec} at level {level}: {e}"
                continue
            if any(abs(kbps - other) <= 0.005 * other for other in made):
                continue        # a constant-bitrate step: the same file as a row already made
            made.append(kbps)
            yield decoded, kbps, level, note


def _levels_for(target: float, codec: str, rates: dict, measure) -> tuple[list[float], str | None]:
    """(compression levels, note) for one target of ``at_bitrates``; ``rates``: level -> kbps
    (None where the encoder failed) measured so far, which ``measure(level)`` extends."""
    def known():
        return {level: kbps for level, kbps in rates.items() if kbps is not None}

    tolerance = KBPS_TOLERANCE * target
    have = known()
    highest, lowest = max(have, key=have.get), min(have, key=have.get)
    if target >= have[highest] - tolerance:
        note = (None if target <= have[highest] + tolerance else
                f"{codec}: {target:.1f} kbps asked, its highest here is {have[highest]:.1f}")
        return [highest], note
    if target <= have[lowest] + tolerance:
        note = (None if target >= have[lowest] - tolerance else
                f"{codec}: {target:.1f} kbps asked, its lowest here is {have[lowest]:.1f}")
        return [lowest], note
    for step in range(SEARCH_STEPS + 1):
        have = known()
        near = min(have, key=lambda level: abs(have[level] - target))
        if abs(have[near] - target) <= tolerance:
            return [near], None
        above = min((level for level in have if have[level] > target), key=have.get)
        below = max((level for level in have if have[level] < target), key=have.get)
        if step == SEARCH_STEPS:
            break
        span = np.log(have[above]) - np.log(have[below])
        level = round(float(above + (below - above) * (np.log(have[above]) - np.log(target))
                            / span), 4)
        if level in rates:
            level = round((above + below) / 2, 4)
        if level in rates:
            break
        measure(level)
    return [above, below], (f"{codec}: no level gives {target:.1f} kbps here; the rows at "
                            f"{have[below]:.1f} and {have[above]:.1f} kbps span it")

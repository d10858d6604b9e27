"""Output containers and sample formats of a render: which subtype a file gets, and the checks
made before anything is rendered (known subtype, output path, sample rates a codec takes, the
4 GiB limit of RIFF WAV)."""
from __future__ import annotations

import os
import pathlib

import soundfile as sf

from cosine_host.offline import audio_io
from cosine_host.errors import UserError

SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
SUBTYPE_BYTES = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}
# RIFF WAV sizes are 32-bit: keep a margin below 4 GiB for the header.
WAV_MAX_DATA_BYTES = 2 ** 32 - (1 << 20)
UNCLIPPED_SUBTYPES = ("FLOAT", "DOUBLE")   # sample formats that hold values beyond full scale
# sample rates (Hz) the lossy codecs can hold
MPEG_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
RATES = {"OPUS": (8000, 12000, 16000, 24000, 48000), "MPEG_LAYER_I": MPEG_RATES,
         "MPEG_LAYER_II": MPEG_RATES, "MPEG_LAYER_III": MPEG_RATES}


def check_subtype(subtype: str | None) -> str | None:
    if subtype is None:
        return None
    if subtype.upper() not in SUBTYPES:
        raise UserError(f"unknown subtype {subtype!r}; allowed: {' | '.join(SUBTYPES)}")
    return subtype.upper()


def check_output(source_path: str, path: str, overwrite: bool, format: str | None,
                  make_folder: bool) -> tuple[str, str | None]:
    """Validate the output path; return its soundfile (format, forced subtype or None)."""
    folder = os.path.dirname(path) or "."
    if make_folder and not os.path.exists(folder):
        os.makedirs(folder, exist_ok=True)
    if not os.path.isdir(folder):
        raise UserError(f"output folder missing: {folder!r} (for {path!r}); create it first")
    if os.path.isdir(path):
        raise UserError(f"output {path!r} is a folder; give a file name such as "
                        f"{os.path.join(path, 'out.wav')!r}, or use --out-dir")
    if source_path is not None:
        same = pathlib.Path(source_path).resolve() == pathlib.Path(path).resolve() or (
            os.path.exists(path) and os.path.samefile(source_path, path))
        if same:
            raise UserError(f"output {path!r} is the input file; write to another file (the "
                            f"input is never overwritten)")
    if os.path.exists(path) and not overwrite:
        raise UserError(f"output {path!r} exists; pass --overwrite to replace it")
    ext = extension(path)
    named = audio_io.container(ext) if ext else None
    if format is not None:
        wanted = audio_io.container(format)
        if named is not None and named != wanted:
            raise UserError(f"--format {format} but {path!r} is named .{ext}; drop --format or "
                            f"rename the output")
        return wanted
    if named is None:
        raise UserError(f"cannot tell the output format from {path!r} "
                        f"({'no extension' if not ext else 'unknown extension .' + ext}); "
                        f"name it .wav, .flac, .aiff or .w64, or add --format wav")
    return named


def output_subtype(fmt: str, requested: str | None, input_subtype: str, path: str,
                    forced: str | None = None) -> str:
    """The requested subtype if ``fmt`` holds it; by default the input's (when it is one of
    SUBTYPES and fits), else the first of FLOAT, PCM_24, PCM_16 that fits, else the format's
    own default (e.g. VORBIS for .ogg). ``forced`` (OPUS for .opus) wins over the defaults."""
    if requested is not None:
        if forced is not None or not sf.check_format(fmt, requested):
            fits = [] if forced else [s for s in SUBTYPES if sf.check_format(fmt, s)]
            allowed = (f"--subtype {' or '.join(fits)}" if fits else "no --subtype")
            raise UserError(f"{forced or fmt} files cannot hold {requested} samples ({path!r}); "
                            f"use {allowed}, or write a .wav file")
        return requested
    if forced is not None:
        return forced
    for candidate in (input_subtype, "FLOAT", "PCM_24", "PCM_16"):
        if candidate in SUBTYPES and sf.check_format(fmt, candidate):
            return candidate
    return sf.default_subtype(fmt)


def check_rate(fmt: str, subtype: str, samplerate: int, path: str) -> None:
    """Refuse sample rates a codec cannot hold, before anything is rendered."""
    allowed = RATES.get(subtype)
    if allowed and samplerate not in allowed:
        best = min(allowed, key=lambda r: (abs(r - samplerate), -r))
        raise UserError(f"{subtype} ({path!r}) holds only "
                        f"{', '.join(str(r) for r in allowed)} Hz, not {samplerate} Hz; add "
                        f"--samplerate {best}, or write a .wav or .flac file")


# channels a codec holds: LAME (MP3) stereo at most; Ogg's channel mapping 255 (libvorbis
# crashes on more)
MAX_CHANNELS = {"MPEG_LAYER_I": 2, "MPEG_LAYER_II": 2, "MPEG_LAYER_III": 2, "OPUS": 255,
                "VORBIS": 255}
# libsndfile's LAME setting for compression level 1.0 fails ("Garbled error message");
# 0.0001 is the lowest --quality that encodes
MPEG_MIN_QUALITY = 1e-4


def check_codec(subtype: str, channels: int, quality: float | None, path: str) -> None:
    """Refuse what a codec cannot encode, before anything is rendered: more channels than it
    holds (``MAX_CHANNELS``), or --quality 0 for MP3 (below ``MPEG_MIN_QUALITY``)."""
    most = MAX_CHANNELS.get(subtype)
    if most is not None and channels > most:
        raise UserError(f"{subtype} ({path!r}) holds at most {most} channels, not {channels}; "
                        f"write a .wav or .flac file (or mix the input down first)")
    if (subtype.startswith("MPEG_LAYER") and quality is not None
            and quality < MPEG_MIN_QUALITY):
        raise UserError(f"{subtype} ({path!r}) cannot be encoded at --quality {quality:g} (the "
                        f"MP3 encoder has no setting below it); give --quality 0.01 for the "
                        f"smallest MP3")


def codec_notes(subtype: str, channels: int, path: str) -> list[str]:
    """Warnings about what a codec does to the channels (one line each): Opus with 6 or 8
    channels codes them as 5.1/7.1 surround, whose last channel (the LFE) it low-passes."""
    if subtype == "OPUS" and channels in (6, 8):
        layout = "5.1" if channels == 6 else "7.1"
        return [f"{path}: Opus codes {channels} channels as {layout} surround: channel "
                f"{channels} is the LFE, low-passed to bass only; write .flac or .wav to keep "
                f"it whole"]
    return []


def audio_bytes(subtype: str, frames: int, channels: int) -> int:
    """Bytes of sample data (compressed formats: the uncompressed size, an upper bound)."""
    return frames * channels * SUBTYPE_BYTES.get(subtype, 4)


def check_size(fmt: str, subtype: str, frames: int, channels: int, path: str) -> None:
    data_bytes = audio_bytes(subtype, frames, channels)
    if fmt in ("WAV", "WAVEX") and data_bytes > WAV_MAX_DATA_BYTES:
        raise UserError(f"{path!r} would need {data_bytes / 2 ** 30:.1f} GiB, beyond the 4 GiB "
                        f"limit of WAV; name it .w64 or .rf64 (or use --subtype PCM_16)")


def extension(path: str) -> str:
    return os.path.splitext(path)[1][1:].lower()

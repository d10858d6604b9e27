"""Offline rendering of audio files through the streaming engine, latency compensated.

``render_file`` reads any file soundfile reads (WAV, FLAC, OGG, MP3, ...) at its own sample rate
and channel count, in chunks of ``CHUNK_FRAMES`` frames, through the same ``Engine`` as the live
path (built with blocksize 0), and writes an output of exactly the input's length, rate and
channel count with OUTPUT[i] aligned to INPUT[i]. Memory is bounded by the chunk size, not by
the file's length: nothing holds more than one chunk plus the engine's latency.

Outputs are written atomically (a temporary file in the output's folder, renamed on success):
an error or Ctrl-C leaves no partial file, and an existing output is kept unless asked.
``plan_jobs`` turns the command line's paths into (input, output) pairs; ``summary_line``
describes one report for people.
"""
from __future__ import annotations

import collections
import os
import pathlib
import shutil
import time

import numpy as np
import soundfile as sf

from stream.engine import Engine
from stream.errors import UserError
from stream.files import atomic_path

CHUNK_FRAMES = 1 << 16          # frames read, processed and written per step (bounds memory)
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
SUBTYPE_BYTES = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}
# RIFF WAV sizes are 32-bit: keep a margin below 4 GiB for the header.
WAV_MAX_DATA_BYTES = 2 ** 32 - (1 << 20)
UNCLIPPED_SUBTYPES = ("FLOAT", "DOUBLE")   # sample formats that hold values beyond full scale


# --- planning ---------------------------------------------------------------------------------

def audio_extensions() -> set[str]:
    """Lower-case file extensions (no dot) that soundfile maps to a format, e.g. "wav", "flac"."""
    return {name.lower() for name in sf.available_formats()}


def plan_jobs(paths: list[str], out_dir: str | None) -> list[tuple[str, str]]:
    """(input, output) pairs for the render command.

    Args:
        paths: without ``out_dir`` exactly ``[INPUT, OUTPUT]``; with ``out_dir`` any number of
            files and folders (a folder contributes the audio files directly inside it, by
            extension, hidden files skipped, sorted by name).
        out_dir: existing folder for the outputs, or None. Each output is
            ``out_dir/<input stem>.<ext>``: the input's extension when that format can hold
            PCM_16, PCM_24 or FLOAT samples (wav, flac, aiff, ...), else ``.wav`` (ogg, mp3).
    Raises:
        UserError: wrong number of paths, missing output folder, a folder without audio files,
            or two inputs that would write the same output.
    Missing or unreadable input files are not checked here: ``render_file`` reports them, so a
    batch carries on past them.
    """
    if out_dir is None:
        if len(paths) != 2:
            raise UserError(f"render takes INPUT OUTPUT for one file (got {len(paths)} "
                            f"path{'s' if len(paths) != 1 else ''}); for several files or "
                            f"folders use: render INPUT... --out-dir DIR")
        return [(paths[0], paths[1])]
    if not os.path.isdir(out_dir):
        what = "is not a folder" if os.path.exists(out_dir) else "does not exist"
        raise UserError(f"output folder missing: {out_dir!r} {what}; create it first "
                        f"(mkdir -p {out_dir})")
    known = audio_extensions()
    jobs, claimed = [], {}
    for path in paths:
        if os.path.isdir(path):
            inside = sorted(entry.path for entry in os.scandir(path)
                            if entry.is_file() and not entry.name.startswith(".")
                            and _extension(entry.name) in known)
            if not inside:
                raise UserError(f"folder {path!r} has no audio files (extensions soundfile "
                                f"reads, e.g. .wav .flac .ogg .mp3); remove it from the command")
            sources = inside
        else:
            sources = [path]
        for source in sources:
            target = os.path.join(out_dir, _output_name(source))
            key = os.path.normcase(os.path.abspath(target))
            if key in claimed:
                raise UserError(f"{claimed[key]!r} and {source!r} would both be written to "
                                f"{target!r}; render them into different --out-dir folders")
            claimed[key] = source
            jobs.append((source, target))
    return jobs


def _extension(path: str) -> str:
    return os.path.splitext(path)[1][1:].lower()


def _output_name(source: str) -> str:
    stem, ext = os.path.splitext(os.path.basename(source))
    fmt = ext[1:].upper()
    keep = fmt in sf.available_formats() and any(sf.check_format(fmt, s) for s in SUBTYPES)
    return stem + (ext if keep else ".wav")


# --- checks -----------------------------------------------------------------------------------

def _check_subtype(subtype: str | None) -> str | None:
    if subtype is None:
        return None
    if subtype.upper() not in SUBTYPES:
        raise UserError(f"unknown subtype {subtype!r}; allowed: {' | '.join(SUBTYPES)}")
    return subtype.upper()


def _open_input(path: str) -> sf.SoundFile:
    """The input opened for reading, or a UserError saying why it cannot be rendered."""
    if not os.path.exists(path):
        raise UserError(f"input file not found: {path!r}; check the path")
    if os.path.isdir(path):
        raise UserError(f"input {path!r} is a folder, not an audio file; give a file, or render "
                        f"the folder with --out-dir DIR")
    if not os.path.isfile(path):    # a pipe would block here, a device never ends
        raise UserError(f"input {path!r} is not a regular file; give an audio file")
    try:
        # libsndfile reports an unreadable file as "System error": ask the OS first for its reason
        with open(path, "rb"):
            pass
    except OSError as e:
        raise UserError(f"cannot read {path!r}: {e.strerror}") from None
    try:
        source = sf.SoundFile(path)
    except sf.SoundFileError as e:
        raise UserError(f"cannot read {path!r} as audio ({_reason(e)}); give a WAV, FLAC, OGG "
                        f"or MP3 file") from None
    if source.frames == 0:
        source.close()
        raise UserError(f"input {path!r} has no audio (0 frames); nothing to render")
    return source


def _check_output(source_path: str, path: str, overwrite: bool) -> str:
    """Validate the output path; return its soundfile format name (e.g. "WAV")."""
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise UserError(f"output folder missing: {folder!r} (for {path!r}); create it first")
    if os.path.isdir(path):
        raise UserError(f"output {path!r} is a folder; give a file name such as "
                        f"{os.path.join(path, 'out.wav')!r}, or use --out-dir")
    same = pathlib.Path(source_path).resolve() == pathlib.Path(path).resolve() or (
        os.path.exists(path) and os.path.samefile(source_path, path))
    if same:
        raise UserError(f"output {path!r} is the input file; write to another file (the input "
                        f"is never overwritten)")
    if os.path.exists(path) and not overwrite:
        raise UserError(f"output {path!r} exists; pass --overwrite to replace it")
    ext = _extension(path)
    fmt = ext.upper()
    if fmt not in sf.available_formats():
        raise UserError(f"cannot tell the output format from {path!r} "
                        f"({'no extension' if not ext else 'unknown extension .' + ext}); "
                        f"name it .wav, .flac, .aiff or .w64")
    return fmt


def _output_subtype(fmt: str, requested: str | None, input_subtype: str, path: str) -> str:
    """The requested subtype if ``fmt`` holds it; by default the input's (when it is one of
    SUBTYPES and fits), else the first of FLOAT, PCM_24, PCM_16 that fits, else the format's
    own default (e.g. VORBIS for .ogg)."""
    if requested is not None:
        if not sf.check_format(fmt, requested):
            fits = [s for s in SUBTYPES if sf.check_format(fmt, s)]
            allowed = (f"--subtype {' or '.join(fits)}" if fits else "no --subtype")
            raise UserError(f"{fmt} files cannot hold {requested} samples ({path!r}); use "
                            f"{allowed}, or write a .wav file")
        return requested
    for candidate in (input_subtype, "FLOAT", "PCM_24", "PCM_16"):
        if candidate in SUBTYPES and sf.check_format(fmt, candidate):
            return candidate
    return sf.default_subtype(fmt)


def _data_bytes(subtype: str, frames: int, channels: int) -> int:
    """Bytes of sample data (compressed formats: the uncompressed size, an upper bound)."""
    return frames * channels * SUBTYPE_BYTES.get(subtype, 4)


def _check_size(fmt: str, subtype: str, frames: int, channels: int, path: str) -> None:
    data_bytes = _data_bytes(subtype, frames, channels)
    if fmt in ("WAV", "WAVEX") and data_bytes > WAV_MAX_DATA_BYTES:
        raise UserError(f"{path!r} would need {data_bytes / 2 ** 30:.1f} GiB, beyond the 4 GiB "
                        f"limit of WAV; name it .w64 or .rf64 (or use --subtype PCM_16)")


# --- rendering --------------------------------------------------------------------------------

class _HeldInput:
    """Input chunks kept until the output frames aligned with them have been rendered.

    Holds at most one chunk plus the engine latency: the reference for the streaming SNR.
    """

    def __init__(self):
        self.chunks: collections.deque[np.ndarray] = collections.deque()
        self.offset = 0     # frames of chunks[0] already taken

    def push(self, chunk: np.ndarray) -> None:
        self.chunks.append(chunk)

    def take(self, frames: int) -> np.ndarray:
        """The next ``frames`` input frames, (frames, channels) float32."""
        parts = []
        while frames:
            head = self.chunks[0]
            part = head[self.offset:self.offset + frames]
            parts.append(part)
            frames -= part.shape[0]
            self.offset += part.shape[0]
            if self.offset == head.shape[0]:
                self.chunks.popleft()
                self.offset = 0
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _read_chunks(source: sf.SoundFile, held: _HeldInput, chunk_frames: int, path: str):
    """float32 (frames, channels) chunks of the whole file, each also pushed to ``held``.

    Raises UserError when decoding fails part way (a truncated FLAC loses sync) or the file
    ends before the frame count its header promised: the output would not line up.
    """
    read = 0
    while read < source.frames:
        try:
            # read() returns only what was decoded (blocks() would pad a short read with
            # stale memory), so a file shorter than its header is caught below
            chunk = source.read(min(chunk_frames, source.frames - read), dtype="float32",
                                always_2d=True)
        except sf.SoundFileError as e:
            raise UserError(f"cannot read {path!r} past frame {read} of {source.frames} "
                            f"({_reason(e)}): truncated or corrupt file; repair or re-export "
                            f"it") from None
        if chunk.shape[0] == 0:
            raise UserError(f"{path!r} ended after {read} of {source.frames} frames: truncated "
                            f"or corrupt file; repair or re-export it")
        read += chunk.shape[0]
        held.push(chunk)
        yield chunk


def _reason(error: Exception) -> str:
    """libsndfile's own words for an error, without soundfile's "Error opening 'path': "."""
    return str(getattr(error, "error_string", error)).strip().rstrip(".")


def render_file(cfg, input: str, output: str, subtype: str | None = None,
                overwrite: bool = False, progress=None,
                chunk_frames: int = CHUNK_FRAMES) -> dict:
    """Render one audio file through the engine, latency compensated.

    Args:
        cfg: stream.config.Config; its frame/model/processors sections are used, its audio
            section is not (the file's own sample rate and channel count are).
        input: path of any file soundfile reads.
        output: path to write; the format follows the extension (soundfile's rule).
        subtype: "PCM_16" | "PCM_24" | "FLOAT" (case-insensitive), or None: the input's when it
            is one of these and the format holds it, else FLOAT, PCM_24, PCM_16 in that order.
        overwrite: replace an existing output (the input itself is always refused).
        progress: callable(done_frames, total_frames) called after every chunk written, or None.
        chunk_frames: frames per read/process/write step; memory grows with it, not the file.
    Returns:
        The report (JSON-ready dict): input, output, format, subtype, input_format,
        input_subtype, samplerate (Hz), channels, frames, seconds_audio, seconds_wall (reading,
        processing and writing; engine construction excluded), realtime_factor (seconds_audio /
        seconds_wall), latency_samples and latency_ms (compensated), snr_db (output, after
        clipping and before the file's rounding, against the input; None when the input is
        silent or the output identical), bitrate_kbps (the last quantizer's; None without one),
        processors (per-processor statistics), clipped_samples (samples clipped to [-1, 1];
        always 0 for FLOAT), peak (largest |output| before clipping, full scale = 1.0),
        nan_samples (non-finite input samples replaced by 0), device, config_source, config.
    Raises:
        UserError: unknown subtype, missing/unreadable/empty input, bad output path, an
            existing output without ``overwrite``, or a failure while rendering (the output is
            then left as it was).
    """
    subtype = _check_subtype(subtype)
    source = _open_input(input)
    with source:
        fmt = _check_output(input, output, overwrite)
        out_subtype = _output_subtype(fmt, subtype, source.subtype, output)
        total, channels, samplerate = source.frames, source.channels, source.samplerate
        input_format, input_subtype = source.format, source.subtype
        _check_size(fmt, out_subtype, total, channels, output)
        engine = Engine.from_config(cfg, blocksize=0, channels=channels, samplerate=samplerate)
        clips = out_subtype not in UNCLIPPED_SUBTYPES
        held = _HeldInput()
        signal_energy = error_energy = 0.0
        clipped = 0
        peak = 0.0
        emitted = 0
        final_stats = None
        started = time.perf_counter()
        try:
            with atomic_path(output, overwrite=overwrite) as tmp, \
                    sf.SoundFile(str(tmp), "w", samplerate=samplerate, channels=channels,
                                 subtype=out_subtype, format=fmt) as sink:
                chunks = _read_chunks(source, held, chunk_frames, input)
                for piece in engine.render_chunks(chunks, total):
                    reference = held.take(piece.shape[0])
                    magnitude = np.abs(piece)
                    peak = max(peak, float(magnitude.max()))
                    if clips:
                        clipped += int(np.count_nonzero(magnitude > 1.0))
                        np.clip(piece, -1.0, 1.0, out=piece)
                    reference64 = reference.astype(np.float64)
                    signal_energy += float(np.square(reference64).sum())
                    error_energy += float(np.square(piece - reference64).sum())
                    sink.write(piece)
                    emitted += piece.shape[0]
                    if emitted == total:
                        # render_chunks resets the engine once the last piece is taken
                        final_stats = engine.stats()
                    if progress is not None:
                        progress(emitted, total)
        except UserError:
            raise
        except FileExistsError:
            raise UserError(f"output {output!r} appeared while rendering; pass --overwrite to "
                            f"replace it") from None
        except OSError as e:
            raise UserError(f"cannot write {output!r}: {e.strerror or e}") from e
        except sf.SoundFileError as e:   # read errors are UserErrors by now: this is the output
            free_mb = shutil.disk_usage(os.path.dirname(os.path.abspath(output))).free / 1e6
            needed_mb = _data_bytes(out_subtype, total, channels) / 1e6
            raise UserError(f"cannot write {output!r} ({_reason(e)}): it needs about "
                            f"{needed_mb:.1f} MB and {free_mb:.1f} MB are free there; free some "
                            f"space or write elsewhere") from e
        except Exception as e:   # a processor or plugin failed: name it (--debug shows where)
            raise UserError(f"rendering {input!r} failed: {type(e).__name__}: {e}") from e
        seconds_wall = time.perf_counter() - started

    quantizers = [p for p in final_stats["processors"] if p["type"] == "quantize"]
    seconds_audio = total / samplerate
    return {
        "input": str(input), "output": str(output),
        "format": fmt, "subtype": out_subtype,
        "input_format": input_format, "input_subtype": input_subtype,
        "samplerate": samplerate, "channels": channels, "frames": total,
        "seconds_audio": seconds_audio, "seconds_wall": seconds_wall,
        "realtime_factor": seconds_audio / seconds_wall if seconds_wall > 0 else None,
        "latency_samples": engine.latency_samples,
        "latency_ms": 1000.0 * engine.latency_samples / samplerate,
        "snr_db": (10.0 * np.log10(signal_energy / error_energy)
                   if signal_energy > 0 and error_energy > 0 else None),
        "bitrate_kbps": quantizers[-1]["bitrate_kbps"] if quantizers else None,
        "processors": final_stats["processors"],
        "clipped_samples": clipped, "peak": peak,
        "nan_samples": final_stats["nan_samples"],
        "device": str(engine.device),
        "config_source": cfg.source, "config": cfg.to_dict(),
    }


def summary_line(report: dict) -> str:
    """One line for people, e.g. ``in.wav -> out.wav: 4.00 s 48000 Hz 2 ch FLOAT, SNR 33.5 dB,
    252.9 kbps, 60x real time, latency 511 samples (10.65 ms) compensated`` (SNR "-" for a
    silent input, kbps only with a quantizer, a warning when samples were clipped)."""
    parts = [f"{report['input']} -> {report['output']}: {report['seconds_audio']:.2f} s "
             f"{report['samplerate']} Hz {report['channels']} ch {report['subtype']}"]
    snr = report["snr_db"]
    parts.append("SNR -" if snr is None else f"SNR {snr:.1f} dB")
    if report["bitrate_kbps"] is not None:
        parts.append(f"{report['bitrate_kbps']:.1f} kbps")
    if report["realtime_factor"] is not None:
        parts.append(f"{report['realtime_factor']:.0f}x real time")
    parts.append(f"latency {report['latency_samples']} samples "
                 f"({report['latency_ms']:.2f} ms) compensated")
    if report["clipped_samples"]:
        parts.append(f"warning: {report['clipped_samples']} samples clipped (peak "
                     f"{report['peak']:.2f}; use --subtype FLOAT to keep them)")
    return ", ".join(parts)

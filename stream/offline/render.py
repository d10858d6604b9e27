"""Offline rendering of audio files through the streaming engine, latency compensated.

``render_file`` reads any file soundfile reads (WAV, FLAC, OGG, MP3, ...), or standard input, in
chunks of ``CHUNK_FRAMES`` frames, optionally resamples it (soxr VHQ, stream/offline/resample.py),
runs it through the same ``Engine`` as the live path (built with blocksize 0), and writes an output
of the input's length, rate and channel count with OUTPUT[i] aligned to INPUT[i]. Memory is bounded
by the chunk size, not by the file's length.

What is written is what was meant: integer outputs are rounded to nearest by the product
(stream/offline/pcm.py, with TPDF dither when bits are lost), never truncated by libsndfile; the
file is then read back and its SNR against the engine's input reported next to the engine's own
(stream/offline/readback.py). A truncated input, NaN/Inf samples and clipping each produce a
warning.

Outputs are written atomically (a temporary file in the output's folder, renamed on success; for
standard output a private temporary file streamed out only after success): an error or Ctrl-C leaves
no partial file, and an existing output is kept unless asked (stream/offline/formats.py checks
outputs; stream/offline/jobs.py turns the command line's paths into (input, output) pairs).
``summary_line`` describes one report for people.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
import types

import numpy as np
import soundfile as sf

from cosine_host.offline import audio_io
from cosine_host.offline import formats
from cosine_host.offline import readback
from cosine_host.engine.engine import Engine
from cosine_host.errors import UserError
from cosine_host.files import atomic_path
from cosine_host.offline.pcm import PcmConverter, choose_dither, output_bits
from cosine_host.offline.readback import LOSSY_SUBTYPES, file_snr
from cosine_host.offline.resample import QUALITY as RESAMPLER
from cosine_host.offline.resample import check_rate, expected_frames, resample_chunks

CHUNK_FRAMES = 1 << 16          # frames read, processed and written per step (bounds memory)


# --- planning ---------------------------------------------------------------------------------


# --- checks -----------------------------------------------------------------------------------


def open_input(path: str, name: str) -> sf.SoundFile:
    """The input opened for reading, or a UserError saying why it cannot be rendered.

    ``name`` is how messages call it (the path, or "-" for standard input)."""
    if not os.path.exists(path):
        raise UserError(f"input file not found: {name!r}; check the path")
    if os.path.isdir(path):
        raise UserError(f"input {name!r} is a folder, not an audio file; give a file, or render "
                        f"the folder with --out-dir DIR")
    if not os.path.isfile(path):    # a pipe would block here, a device never ends
        raise UserError(f"input {name!r} is not a regular file; give an audio file (or '-' "
                        f"to read standard input)")
    try:
        # libsndfile reports an unreadable file as "System error": ask the OS first for its reason
        with open(path, "rb"):
            pass
    except OSError as e:
        raise UserError(f"cannot read {name!r}: {e.strerror}") from None
    try:
        source = sf.SoundFile(path)
    except sf.SoundFileError as e:
        raise UserError(f"cannot read {name!r} as audio ({_reason(e)}); give a WAV, FLAC, OGG "
                        f"or MP3 file") from None
    if source.frames == 0:
        source.close()
        raise UserError(f"input {name!r} has no audio (0 frames); nothing to render")
    return source


# --- rendering --------------------------------------------------------------------------------

class _Reader:
    """Reads an input file in chunks, tolerating a short file, counting non-finite samples.

    Attributes (final once the chunks are exhausted):
        frames_read: frames decoded; short of ``source.frames`` when the file is truncated.
        stop_reason: libsndfile's words when decoding failed part way, else None.
        nonfinite: NaN/Inf samples found (and replaced by 0 before the engine or resampler).
    """

    def __init__(self, source: sf.SoundFile, chunk_frames: int, name: str):
        self.source, self.chunk_frames, self.name = source, chunk_frames, name
        self.frames_read = 0
        self.stop_reason = None
        self.nonfinite = 0

    def chunks(self):
        """float32 (frames, channels) chunks, non-finite samples set to 0."""
        # read() returns only what was decoded (blocks() would pad a short read with stale
        # memory), so a file shorter than its header shows as a short read
        errors = []
        for chunk in readback.decoded_chunks(self.source, self.chunk_frames, errors):
            self.frames_read += chunk.shape[0]
            yield _finite(chunk, self)
        if errors:
            self.stop_reason = _reason(errors[0])
        if self.frames_read == 0:
            raise UserError(f"cannot read any audio from {self.name!r}"
                            + (f" ({self.stop_reason})" if self.stop_reason else "")
                            + ": corrupt file; repair or re-export it")

    @property
    def missing(self) -> int:
        return self.source.frames - self.frames_read


def _finite(chunk: np.ndarray, counter) -> np.ndarray:
    """``chunk`` with NaN/Inf samples replaced by 0, counted in ``counter.nonfinite``."""
    chunk, count = audio_io.zero_nonfinite(chunk)
    counter.nonfinite += count
    return chunk


class _Feed:
    """The engine's input stream: counts the frames fed and holds them for the SNR."""

    def __init__(self, chunks, held: readback.FrameQueue):
        self.chunks, self.held = chunks, held
        self.fed = 0
        self.finished = False

    def __iter__(self):
        for chunk in self.chunks:
            self.fed += chunk.shape[0]
            self.held.push(chunk)
            yield chunk
        self.finished = True


def _reference(path: str, chunk_frames: int, frames: int, from_rate: int, to_rate: int,
               channels: int):
    """A callable giving a fresh stream of the engine's input (for the read-back SNR)."""
    def stream():
        counter = types.SimpleNamespace(nonfinite=0)
        chunks = (_finite(c, counter) for c in readback.read_chunks(path, chunk_frames))
        chunks = _limit(chunks, frames)
        if from_rate != to_rate:
            chunks = resample_chunks(chunks, from_rate, to_rate, channels)
        return chunks
    return stream


def _limit(chunks, frames: int):
    for chunk in chunks:
        if frames <= 0:
            return
        chunk = chunk[:frames]
        frames -= chunk.shape[0]
        yield chunk


def _reason(error: Exception) -> str:
    """libsndfile's own words for an error, without soundfile's "Error opening 'path': "."""
    return str(getattr(error, "error_string", error)).strip().rstrip(".")


def render_file(cfg, input: str, output: str, subtype: str | None = None,
                overwrite: bool = False, progress=None,
                chunk_frames: int = CHUNK_FRAMES, *, format: str | None = None,
                dither: str | None = None, samplerate: int | None = None,
                quality: float | None = None, bitrate_mode: str | None = None,
                make_folder: bool = False, stdin=None, stdout=None, engine_for=None) -> dict:
    """Render one audio file through the engine, latency compensated.

    Args:
        cfg: cosine_host.config.schema.Config; its frame/model/processors sections are used, its
        audio
            section is not (the file's own sample rate and channel count are).
        input: path of any file soundfile reads, or "-" for standard input (spooled to a
            temporary file first).
        output: path to write, or "-" for standard output (written to a temporary file, read
            back, then streamed out only after everything succeeded). The container follows
            the extension, or ``format``.
        subtype: "PCM_16" | "PCM_24" | "FLOAT" (case-insensitive), or None: the input's when it
            is one of these and the format holds it, else FLOAT, PCM_24, PCM_16 in that order
            (OGG/MP3/Opus: the codec's own).
        overwrite: replace an existing output (the input itself is always refused).
        progress: callable(done_frames, total_frames) called after every chunk written, or None.
        chunk_frames: frames per read/process/write step; memory grows with it, not the file.
        format: container name ("wav", "flac", "ogg", "opus", "mp3", ...) where the output's
            name cannot say it (needed for "-").
        dither: "auto" (None), "tpdf" or "none"; see cosine_host.offline.pcm.choose_dither (a
        resampled
            input counts as FLOAT there: auto dithers any integer output).
        samplerate: resample the input to this rate (Hz) with soxr VHQ before the engine; None
            keeps the input's.
        quality, bitrate_mode: lossy outputs only; see cosine_host.offline.audio_io.compression.
        make_folder: create the output's folder if missing (for mirrored --out-dir trees).
        stdin, stdout: binary streams to use for "-" (default: the process's own).
        engine_for: callable(channels, samplerate in Hz) -> a reset Engine built from ``cfg``
            with blocksize 0, for callers that render many files with one engine (batch
            workers, stream/offline/batch.py); None (default) builds a fresh one.
    Returns:
        The report (JSON-ready dict): input, output, format, subtype, input_format, input_subtype,
        samplerate (Hz, of the output), input_samplerate, resampled (None, or {"from_hz", "to_hz",
        "resampler"}), channels, frames (output frames), input_frames (frames the input's header
        promises), frames_missing (of those, frames that could not be read), seconds_audio,
        seconds_wall (reading, processing, writing and the read-back; engine construction excluded),
        realtime_factor, latency_samples and latency_ms (compensated), snr_db (engine output after
        clipping, before the file's rounding, against the engine's input; None when the input is
        silent or the output identical), file_snr_db (the written file read back against the
        engine's input; None when silent or identical), file_identical (every sample read back
        equals the input's), file_lag_frames (codec delay found and removed; lossy outputs), dither
        ("tpdf" or "none"), quality and bitrate_mode (as given), tags (the tags the written file
        holds), bitrate_kbps (the last quantizer's, all symbols in one entropy model; None without
        one), kbps_entropy (the same quantizer's with one entropy model per band of coefficient
        indices, cosine_host.models.processors.registry.Quantize.rates; None without one),
        kbps_bytes (the last codec processor's bytes actually produced x 8 per second, kbit/s;
        None without one), processors, clipped_samples
        (samples beyond full scale, clipped; always 0 for FLOAT), peak (largest |output| before
        clipping, full scale = 1.0), nan_samples (non-finite input samples replaced by 0),
        warnings (one line each for people), device, config_source, config.
    Raises:
        UserError: unknown subtype/format/dither, missing/unreadable/empty input, an input that
            is all NaN/Inf, bad output path, an existing output without ``overwrite``, or a
            failure while rendering (the output is then left as it was).
    """
    subtype = formats.check_subtype(subtype)
    format = audio_io.check_format_option(format)
    if samplerate is not None:
        samplerate = check_rate(samplerate)
    with contextlib.ExitStack() as stack:
        source_path = input
        if input == audio_io.STDIO:
            source_path = stack.enter_context(audio_io.spool_stdin(stdin))
        source = stack.enter_context(open_input(source_path, input))
        to_stdout = output == audio_io.STDIO
        if to_stdout:
            if format is None:
                raise UserError("output '-' writes standard output: name its container with "
                                "--format, e.g. --format wav")
            out_stream = stdout if stdout is not None else sys.stdout.buffer
            if hasattr(out_stream, "isatty") and out_stream.isatty():
                raise UserError("output '-' writes standard output, which is a terminal; "
                                "redirect it (> out.wav) or pipe it on")
            fmt, forced = audio_io.container(format)
        else:
            fmt, forced = formats.check_output(None if input == audio_io.STDIO else input, output,
                                        overwrite, format, make_folder)
        report = _render(cfg, source, source_path, input, output, fmt, forced, subtype,
                         overwrite, progress, chunk_frames, dither, samplerate, quality,
                         bitrate_mode, stack, out_stream if to_stdout else None, engine_for)
    return report


def _render(cfg, source, source_path, input, output, fmt, forced, subtype, overwrite, progress,
            chunk_frames, dither, samplerate, quality, bitrate_mode, stack, out_stream,
            engine_for=None) -> dict:
    out_subtype = formats.output_subtype(fmt, subtype, source.subtype, output, forced)
    channels, in_rate = source.channels, source.samplerate
    rate = samplerate or in_rate
    input_format, input_subtype, header_frames = source.format, source.subtype, source.frames
    formats.check_rate(fmt, out_subtype, rate, output)
    formats.check_codec(out_subtype, channels, quality, output)
    # resampled samples lie between the input's integer steps: they count as float
    dither = choose_dither(dither, "FLOAT" if rate != in_rate else input_subtype, out_subtype)
    write_options = audio_io.compression(fmt, out_subtype, quality, bitrate_mode)
    resampling = rate != in_rate
    total = expected_frames(header_frames, in_rate, rate) if resampling else header_frames
    formats.check_size(fmt, out_subtype, total, channels, output)
    engine = (Engine.from_config(cfg, blocksize=0, channels=channels, samplerate=rate)
              if engine_for is None else engine_for(channels, rate))
    converter = PcmConverter(out_subtype, dither) if output_bits(out_subtype) else None
    clips = out_subtype not in formats.UNCLIPPED_SUBTYPES
    # input chunks kept until the output frames aligned with them are rendered (at most one
    # chunk plus the latency): the reference for the streaming SNR
    held = readback.FrameQueue()
    reader = _Reader(source, chunk_frames, input)
    chunks = reader.chunks()
    if resampling:
        chunks = resample_chunks(chunks, in_rate, rate, channels)
    feed = _Feed(chunks, held)
    signal_energy = error_energy = 0.0
    clipped = 0
    peak = 0.0
    made_nonfinite, nonfinite_input_peak = 0, 0.0     # of the engine's output, set to 0
    emitted = 0
    final_stats = None
    started = time.perf_counter()
    if out_stream is not None:       # standard output: a private file first, streamed at the end
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="cosine-render-"))
        target = os.path.join(folder, "out" + audio_io.extension_for(fmt.lower()))
    else:
        target = output
    try:
        with atomic_path(target, overwrite=overwrite or out_stream is not None) as tmp:
            with sf.SoundFile(str(tmp), "w", samplerate=rate, channels=channels,
                              subtype=out_subtype, format=fmt, **write_options) as sink:
                audio_io.copy_tags(source, sink)
                # generous total: a truncated input or the resampler's rounding ends it earlier
                pieces = engine.render_chunks(feed, total + 64)
                for piece in pieces:
                    if feed.finished:
                        piece = piece[:max(feed.fed - emitted, 0)]
                    if piece.shape[0] == 0:
                        break
                    reference = held.take(piece.shape[0])
                    piece, count = audio_io.zero_nonfinite(piece)
                    if count:
                        made_nonfinite += count
                        nonfinite_input_peak = max(nonfinite_input_peak,
                                                   float(np.abs(reference).max()))
                    magnitude = np.abs(piece)
                    peak = max(peak, float(magnitude.max()))
                    # integers: rounded, clipped and counted by the converter, from the
                    # unclipped output
                    samples = None if converter is None else converter.convert(piece)
                    if clips and converter is None:
                        clipped += int(np.count_nonzero(magnitude > 1.0))
                    if clips:
                        np.clip(piece, -1.0, 1.0, out=piece)
                    reference64 = reference.astype(np.float64)
                    signal_energy += float(np.square(reference64).sum())
                    error_energy += float(np.square(piece - reference64).sum())
                    sink.write(piece if samples is None else samples)
                    emitted += piece.shape[0]
                    if progress is not None:
                        progress(emitted, max(total, emitted))
                    if feed.finished and emitted >= feed.fed:
                        break
                final_stats = engine.stats()
                final_rates = _quantizer_rates(engine)
                pieces.close()
            nan_samples = reader.nonfinite + final_stats["nan_samples"]
            if nan_samples >= reader.frames_read * channels:
                raise UserError(f"every sample of {input!r} is NaN or Inf: nothing to render; "
                                f"check how the file was made")
            reference = _reference(source_path, chunk_frames, reader.frames_read, in_rate, rate,
                                   channels)
            compared = file_snr(reference, str(tmp), lossy=out_subtype in LOSSY_SUBTYPES)
            tags = audio_io.written_tags(str(tmp))
        if out_stream is not None:
            audio_io.copy_to_stdout(target, out_stream)
    except UserError:
        raise
    except FileExistsError:
        raise UserError(f"output {output!r} appeared while rendering; pass --overwrite to "
                        f"replace it") from None
    except OSError as e:
        raise UserError(f"cannot write {output!r}: {e.strerror or e}") from e
    except sf.SoundFileError as e:   # read errors are handled by now: this is the output
        free_mb = shutil.disk_usage(os.path.dirname(os.path.abspath(target))).free / 1e6
        needed_mb = formats.audio_bytes(out_subtype, total, channels) / 1e6
        raise UserError(f"cannot write {output!r} ({_reason(e)}): it needs about "
                        f"{needed_mb:.1f} MB and {free_mb:.1f} MB are free there; free some "
                        f"space or write elsewhere") from e
    except Exception as e:   # a processor or plugin failed: name it (--debug shows where)
        raise UserError(f"rendering {input!r} failed: {type(e).__name__}: {e}") from e
    seconds_wall = time.perf_counter() - started
    if converter is not None:
        clipped = converter.clipped

    warnings = []
    if reader.missing > 0:
        warnings.append(f"{input}: its header promises {header_frames} frames but only "
                        f"{reader.frames_read} could be read"
                        + (f" ({reader.stop_reason})" if reader.stop_reason else "")
                        + f": {reader.missing} frames missing (truncated file); the output "
                        f"has {emitted} frames")
    if made_nonfinite:
        warnings.append(nonfinite_output_note(cfg, input, made_nonfinite,
                                               nonfinite_input_peak))
    warnings.extend(_cut_short(source_path, input, input_format, header_frames, in_rate))
    if nan_samples:
        warnings.append(f"{input}: {nan_samples} NaN/Inf input samples were replaced by 0")
    warnings.extend(formats.codec_notes(out_subtype, channels, output))
    warnings.extend(audio_io.tag_notes(fmt, tags, output))
    quantizers = [p for p in final_stats["processors"]
                  if p["type"] in ("quantize", "learned_quantize")]
    codecs = [p for p in final_stats["processors"] if p["type"] == "codec"]
    seconds_audio = emitted / rate
    return {
        "input": str(input), "output": str(output),
        "format": fmt, "subtype": out_subtype,
        "input_format": input_format, "input_subtype": input_subtype,
        "samplerate": rate, "input_samplerate": in_rate,
        "resampled": ({"from_hz": in_rate, "to_hz": rate, "resampler": f"soxr {RESAMPLER}"}
                      if resampling else None),
        "channels": channels, "frames": emitted,
        "input_frames": header_frames, "frames_missing": max(reader.missing, 0),
        "seconds_audio": seconds_audio, "seconds_wall": seconds_wall,
        "realtime_factor": seconds_audio / seconds_wall if seconds_wall > 0 else None,
        "latency_samples": engine.latency_samples,
        "latency_ms": 1000.0 * engine.latency_samples / rate,
        "snr_db": (10.0 * np.log10(signal_energy / error_energy)
                   if signal_energy > 0 and error_energy > 0 else None),
        "engine_identical": bool(signal_energy > 0 and error_energy == 0),
        **compared,
        "dither": dither, "quality": quality,
        "bitrate_mode": bitrate_mode.lower() if bitrate_mode else None,
        "tags": tags,
        "bitrate_kbps": quantizers[-1]["bitrate_kbps"] if quantizers else None,
        "kbps_entropy": final_rates["kbps_entropy"] if final_rates else None,
        "kbps_bytes": codecs[-1]["kbps_bytes"] if codecs else None,
        "processors": final_stats["processors"],
        "clipped_samples": clipped, "peak": peak,
        "nan_samples": nan_samples,
        "warnings": warnings,
        "device": str(engine.device),
        "config_source": cfg.source, "config": cfg.to_dict(),
    }


FLOAT32_CLOSE_TO_MAX = 1e30
"""An input peak above this is near float32's limit (3.4e38): the transform's sums of such
samples can overflow to Inf."""


def nonfinite_output_note(cfg, name: str, count: int, input_peak: float,
                          fate: str = "written as 0") -> str:
    """The warning (one line) for ``count`` NaN/Inf samples the engine made from finite input
    (``fate``: what became of them): what made them, by the input's peak and the config's
    chain."""
    if input_peak > FLOAT32_CLOSE_TO_MAX:
        cause = (f"the input's values near float32's limit (peak {input_peak:.3g}; the limit "
                 f"is 3.4e+38) overflow in the transform; scale the input down")
    else:
        chain = [f"{where}[{i}] {spec['type']}" for where in ("pre", "processors", "post")
                 for i, spec in enumerate(getattr(cfg, where))]
        cause = (f"the chain ({', '.join(chain)}) made them from finite input (peak "
                 f"{input_peak:.3g}); check its gains and parameters" if chain else
                 f"the transform made them from finite input (peak {input_peak:.3g}); check "
                 f"model.checkpoint")
    return f"{name}: the engine's output held {count} NaN/Inf samples, {fate}: {cause}"


def _cut_short(path: str, name: str, input_format: str, frames: int, rate: int) -> list[str]:
    """A warning (one line) when ``path``, a WAV, holds fewer ``frames`` than its header's data
    size promises (libsndfile counts the frames present, so a truncated WAV reads whole)."""
    from cosine_host.offline.riff import promised_frames
    promised = promised_frames(path) if input_format in ("WAV", "WAVEX") else None
    if promised is None or promised <= frames:
        return []
    missing = promised - frames
    return [f"{name}: its header promises {promised} frames but the file holds {frames}: "
            f"{missing} frames ({missing / rate:.3f} s) missing (truncated file); rendered "
            f"what is there"]


def _quantizer_rates(engine) -> dict | None:
    """The last quantizer's Quantize.rates() (read before the engine resets), or None."""
    from cosine_host.models.processors.registry import Quantize
    quantizers = [p for p in engine.processors if isinstance(p, Quantize)]
    return quantizers[-1].rates() if quantizers else None


def summary_line(report: dict) -> str:
    """One line for people, e.g. ``in.wav -> out.wav: 4.00 s 48000 Hz 2 ch PCM_16, SNR 128.1
    dB, file SNR exact, 60x real time, latency 511 samples (10.65 ms) compensated`` (SNR "-" for a
    silent input, "exact" when the engine's output or the file holds the input's samples, kbps only
    with a quantizer, the dither and resampler when used, a warning when samples were clipped)."""
    parts = [f"{report['input']} -> {report['output']}: {report['seconds_audio']:.2f} s "
             f"{report['samplerate']} Hz {report['channels']} ch {report['subtype']}"]
    if report.get("resampled"):
        r = report["resampled"]
        parts.append(f"resampled from {r['from_hz']} Hz ({r['resampler']})")
    snr = report["snr_db"]
    if report.get("engine_identical"):
        parts.append("SNR exact")
    else:
        parts.append("SNR -" if snr is None else f"SNR {snr:.1f} dB")
    file_snr_db = report.get("file_snr_db")
    if report.get("file_identical"):
        parts.append("file SNR exact (bit-identical)")
    else:
        parts.append("file SNR -" if file_snr_db is None else f"file SNR {file_snr_db:.1f} dB")
    if report.get("dither") == "tpdf":
        parts.append("TPDF dither")
    if report["bitrate_kbps"] is not None:
        parts.append(f"{report['bitrate_kbps']:.1f} kbps")
        if report.get("kbps_entropy") is not None:
            parts.append(f"{report['kbps_entropy']:.1f} kbps with a model per band")
    if report.get("kbps_bytes") is not None:
        parts.append(f"{report['kbps_bytes']:.1f} kbps in bytes")
    if report["realtime_factor"] is not None:
        parts.append(f"{report['realtime_factor']:.0f}x real time")
    parts.append(f"latency {report['latency_samples']} samples "
                 f"({report['latency_ms']:.2f} ms) compensated")
    if report["clipped_samples"]:
        if sf.check_format(report["format"], "FLOAT"):
            hint = "use --subtype FLOAT to keep them"
        elif report["subtype"] in LOSSY_SUBTYPES:
            hint = "lower the gain to keep them"
        else:
            hint = (f"{report['format']} has no float samples: lower the gain, or write a .wav "
                    f"with --subtype FLOAT to keep them")
        peak = report["peak"]
        # a float input can peak anywhere up to 3.4e38: 1e+30, not 31 digits
        peak_text = f"{peak:.2f}" if peak < 1e4 else f"{peak:.3g}"
        parts.append(f"warning: {report['clipped_samples']} samples clipped (peak "
                     f"{peak_text}; {hint})")
    return ", ".join(parts)

"""File habits of sox/ffmpeg users: ``-`` for standard input/output, container names, tags, and
the quality of lossy outputs.

- ``spool_stdin``: standard input copied to a temporary file (1 MiB at a time, so memory stays
  bounded; soundfile needs a seekable file), removed afterwards. libsndfile recognises the
  container from its contents (WAV, AIFF, FLAC, OGG, MP3, ...).
- ``copy_to_stdout``: a finished file streamed to standard output. The render command writes
  stdout only after the whole render succeeded (the file is complete and checked first), so
  a failure leaves nothing half-written in the pipe.
- ``container``: the (format, subtype) soundfile writes for a name such as "flac" or "opus".
- ``copy_tags``: title, artist, album, comment, date, ... copied where the output holds them.
- ``compression``: ``--quality`` and ``--bitrate-mode`` as soundfile's keyword arguments.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile

import soundfile as sf

from cosine_host.errors import UserError

STDIO = "-"                     # the path that means standard input or standard output
COPY_BYTES = 1 << 20            # bytes per read/write step of the pipes
# names soundfile knows under another container name (format, subtype or None)
ALIASES = {"opus": ("OGG", "OPUS"), "oga": ("OGG", None), "aif": ("AIFF", None),
           "aifc": ("AIFF", None)}
LOSSY_FORMATS = ("OGG", "MP3")
BITRATE_MODES = ("constant", "average", "variable")


def container(name: str) -> tuple[str, str | None] | None:
    """(soundfile format, forced subtype or None) for a container or extension name such as
    "wav", "FLAC", "opus"; None when soundfile cannot write it."""
    key = name.lower().lstrip(".")
    if key in ALIASES:
        return ALIASES[key]
    fmt = key.upper()
    return (fmt, None) if fmt in sf.available_formats() else None


def container_names() -> list[str]:
    """Lower-case container names --format accepts, e.g. ["aiff", "flac", ..., "wav"]."""
    return sorted({f.lower() for f in sf.available_formats()} | set(ALIASES))


def check_format_option(name: str | None) -> str | None:
    """The --format value, lower-case, or a UserError listing the names that work."""
    if name is None:
        return None
    if container(name) is None:
        raise UserError(f"unknown --format {name!r}; allowed: "
                        f"{', '.join(container_names())}")
    return name.lower().lstrip(".")


def extension_for(fmt_name: str) -> str:
    """The file extension (with dot) for a --format name: "wav" -> ".wav", "opus" -> ".opus"."""
    return "." + fmt_name.lower()


@contextlib.contextmanager
def spool_stdin(stream=None):
    """Yield the path of a temporary file holding all of standard input; removed on exit.

    Raises:
        UserError: standard input is a terminal (nothing piped in) or empty.
    """
    stream = stream if stream is not None else sys.stdin.buffer
    if hasattr(stream, "isatty") and stream.isatty():
        raise UserError("input '-' reads standard input, which is a terminal; pipe a file in "
                        "(cat in.wav | python run.py render - out.wav)")
    fd, path = tempfile.mkstemp(prefix="cosine-stdin-", suffix=".audio")
    try:
        with os.fdopen(fd, "wb") as spool:
            shutil.copyfileobj(stream, spool, COPY_BYTES)
            size = spool.tell()
        if size == 0:
            raise UserError("standard input is empty; pipe an audio file in")
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def copy_to_stdout(path: str, stream=None) -> None:
    """Stream the file at ``path`` to standard output (binary), 1 MiB at a time.

    Raises:
        UserError: the reader went away (broken pipe).
    """
    stream = stream if stream is not None else sys.stdout.buffer
    try:
        with open(path, "rb") as f:
            shutil.copyfileobj(f, stream, COPY_BYTES)
        stream.flush()
    except BrokenPipeError:
        # the reader closed the pipe: nothing more can be said on it
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise UserError("standard output was closed before the whole file was written (broken "
                        "pipe)") from None


def copy_tags(source: sf.SoundFile, sink: sf.SoundFile) -> None:
    """Copy the input's string tags to the output before any sample is written; a tag the
    output format cannot hold is skipped (``written_tags`` tells what was kept)."""
    for name, value in source.copy_metadata().items():
        with contextlib.suppress(Exception):
            setattr(sink, name, value)


ID3V1_FIELD_BYTES = 30
"""libsndfile writes an MP3's tags as ID3v1: Latin-1 text, 30 bytes a field (it stores the
UTF-8 bytes as they are, so other players show non-ASCII text garbled)."""


def tag_notes(fmt: str, tags: dict[str, str], path: str) -> list[str]:
    """A warning (one line) when an MP3's ``tags`` (as written) hold text that ID3v1 cannot:
    non-ASCII characters or more than ``ID3V1_FIELD_BYTES`` bytes."""
    if fmt != "MP3":
        return []
    bad = [name for name, value in tags.items()
           if not value.isascii() or len(value.encode("utf-8")) > ID3V1_FIELD_BYTES]
    if not bad:
        return []
    return [f"{path}: MP3 tags are written as ID3v1 (Latin-1, {ID3V1_FIELD_BYTES} bytes a "
            f"field): {', '.join(bad)} {'holds' if len(bad) == 1 else 'hold'} non-ASCII or longer text that other players show "
            f"garbled or cut; write .flac, .ogg or .opus to keep them, or retag the MP3"]


def written_tags(path: str) -> dict[str, str]:
    """The string tags a written file holds, e.g. {"title": "Take 3", "artist": "..."}."""
    try:
        with sf.SoundFile(path) as f:
            return f.copy_metadata()
    except Exception:
        return {}


def compression(fmt: str, subtype: str, quality: float | None,
                bitrate_mode: str | None) -> dict:
    """soundfile.SoundFile keyword arguments for ``--quality`` and ``--bitrate-mode``.

    Args:
        fmt, subtype: the output's soundfile format and subtype.
        quality: 0.0 (smallest file) .. 1.0 (best sound), or None for libsndfile's default;
            sent as compression_level = 1 - quality.
        bitrate_mode: "constant" | "average" | "variable" or None (libsndfile's default).
    Raises:
        UserError: the options on a lossless output, or values out of range.
    """
    if quality is None and bitrate_mode is None:
        return {}
    lossy = fmt in LOSSY_FORMATS
    if not lossy:
        raise UserError(f"--quality and --bitrate-mode apply to OGG, Opus and MP3 outputs, not "
                        f"{fmt} {subtype} (a lossless format keeps every sample); drop them")
    kwargs = {}
    if quality is not None:
        if not 0.0 <= quality <= 1.0:
            raise UserError(f"--quality {quality} is out of range; give 0 (smallest) .. "
                            f"1 (best)")
        kwargs["compression_level"] = 1.0 - float(quality)
    if bitrate_mode is not None:
        mode = bitrate_mode.lower()
        if mode not in BITRATE_MODES:
            raise UserError(f"unknown --bitrate-mode {bitrate_mode!r}; allowed: "
                            f"{' | '.join(BITRATE_MODES)}")
        kwargs["bitrate_mode"] = mode.upper()
    return kwargs


def zero_nonfinite(data):
    """(``data`` with its NaN/Inf samples set to 0, how many there were); ``data`` itself when
    it has none. ``data``: a float array."""
    import numpy as np
    finite = np.isfinite(data)
    count = int(finite.size - np.count_nonzero(finite))
    if not count:
        return data, 0
    return np.where(finite, data, data.dtype.type(0)), count


def replace_nonfinite(data, name: str, task: str):
    """The rule every command that plays or measures a file follows for NaN/Inf samples (render
    applies it chunk by chunk): they count and become 0, with a warning; a file of nothing else
    is refused. ``data``: float array (frames, channels); ``name``: how messages name the file,
    e.g. ``"--play 'x.wav'"``; ``task``: what the command would do with it, e.g. "play".

    Returns (data, the count of NaN/Inf samples, warnings: one line each). Raises UserError
    when every sample is NaN or Inf.
    """
    data, nonfinite = zero_nonfinite(data)
    if nonfinite and nonfinite == data.size:
        raise UserError(f"{name}: every sample is NaN or Inf: nothing to {task}; check how "
                        f"the file was made")
    warnings = [f"{name}: {nonfinite} NaN/Inf samples were replaced by 0"] if nonfinite else []
    return data, nonfinite, warnings

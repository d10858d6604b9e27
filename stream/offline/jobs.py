"""Which files a render command renders, and to where: (input, output) pairs from the command
line's paths (one file, or files and folders into ``--out-dir``, optionally recursive)."""
from __future__ import annotations

import os

import soundfile as sf

from cosine_host.offline import audio_io
from cosine_host.errors import UserError
from cosine_host.offline.formats import SUBTYPES, extension


def audio_extensions() -> set[str]:
    """Lower-case file extensions (no dot) that soundfile maps to a format, e.g. "wav", "flac"."""
    return {name.lower() for name in sf.available_formats()} | set(audio_io.ALIASES)


def plan_jobs(paths: list[str], out_dir: str | None, recursive: bool = False,
              format: str | None = None) -> list[tuple[str, str]]:
    """(input, output) pairs for the render command.

    Args:
        paths: without ``out_dir`` exactly ``[INPUT, OUTPUT]`` ("-" for standard input or
            output); with ``out_dir`` any number of files and folders (a folder contributes the
            audio files directly inside it, or with ``recursive`` every audio file below it; by
            extension, hidden files and folders skipped, sorted by name).
        out_dir: existing folder for the outputs, or None. Each output is
            ``out_dir/<path below the input folder>/<input stem>.<ext>``: ``format``'s extension
            when given, else the input's when that format can hold PCM_16, PCM_24 or FLOAT
            samples (wav, flac, aiff, ...), else ``.wav`` (ogg, mp3). Subfolders are mirrored,
            so files of different subfolders never meet.
        recursive: descend into subfolders of folder inputs (needs ``out_dir``).
        format: a container name (``--format``) for the outputs, or None.
    Raises:
        UserError: wrong number of paths, a missing output folder or one that is a file, a
            folder without audio files, "-" with ``out_dir``, or two inputs that would write
            the same output.
    Missing or unreadable input files are not checked here: ``render_file`` reports them, so a
    batch carries on past them.
    """
    if out_dir is None:
        if len(paths) != 2:
            raise UserError(f"render takes INPUT OUTPUT for one file (got {len(paths)} "
                            f"path{'s' if len(paths) != 1 else ''}); for several files or "
                            f"folders use: render INPUT... --out-dir DIR")
        if recursive:
            raise UserError("--recursive renders folders into --out-dir DIR; add --out-dir or "
                            "drop --recursive")
        return [(paths[0], paths[1])]
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"--out-dir {out_dir!r} is a file, not a folder; give a folder (or "
                        f"move the file away)")
    if not os.path.isdir(out_dir):
        raise UserError(f"output folder missing: {out_dir!r} does not exist; create it first "
                        f"(mkdir -p {out_dir})")
    if audio_io.STDIO in paths:
        raise UserError("'-' (standard input) cannot be rendered with --out-dir; use "
                        "render - OUTPUT")
    known = audio_extensions()
    jobs, claimed = [], {}
    for path in paths:
        if os.path.isdir(path):
            sources = _folder_audio(path, known, recursive)
            if not sources:
                raise UserError(f"folder {path!r} has no audio files (extensions soundfile "
                                f"reads, e.g. .wav .flac .ogg .mp3)"
                                + ("" if recursive else " directly inside; add --recursive "
                                   "for subfolders, or") + " remove it from the command")
        else:
            sources = [(path, "")]
        for source, below in sources:
            target = os.path.join(out_dir, below, output_name(source, format))
            key = os.path.normcase(os.path.abspath(target))
            if key in claimed:
                raise UserError(f"{claimed[key]!r} and {source!r} would both be written to "
                                f"{target!r}; render them into different --out-dir folders")
            claimed[key] = source
            jobs.append((source, target))
    return jobs


def _folder_audio(folder: str, known: set[str], recursive: bool) -> list[tuple[str, str]]:
    """(path, subfolder relative to ``folder``) of the audio files in it, sorted."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        below = os.path.relpath(root, folder)
        for name in sorted(names):
            path = os.path.join(root, name)
            if not name.startswith(".") and extension(name) in known and os.path.isfile(path):
                found.append((path, "" if below == "." else below))
    return found


def output_name(source: str, format: str | None = None) -> str:
    stem, ext = os.path.splitext(os.path.basename(source))
    if format is not None:
        return stem + audio_io.extension_for(format)
    fmt = ext[1:].upper()
    keep = fmt in sf.available_formats() and any(sf.check_format(fmt, s) for s in SUBTYPES)
    return stem + (ext if keep else ".wav")


def expected_output(source: str, target: str, *, subtype: str | None = None,
                    format: str | None = None, samplerate: int | None = None) -> dict:
    """What rendering ``source`` to ``target`` would write, from the input's header alone:
    {"frames", "samplerate" (Hz), "channels", "format", "subtype"} (soundfile's names).

    ``subtype``, ``format`` and ``samplerate`` are the render's options (None: defaults).
    Raises UserError when the input's header cannot be read or the output format is unknown.
    """
    from cosine_host.offline.formats import output_subtype
    from cosine_host.offline.resample import expected_frames
    try:
        info = sf.info(source)
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise UserError(f"cannot read {source!r} as audio ({e})") from None
    named = audio_io.container(format or extension(target))
    if named is None:
        raise UserError(f"cannot tell the output format of {target!r}")
    fmt, forced = named
    rate = samplerate or info.samplerate
    frames = (expected_frames(info.frames, info.samplerate, rate) if rate != info.samplerate
              else info.frames)
    return {"frames": frames, "samplerate": rate, "channels": info.channels, "format": fmt,
            "subtype": output_subtype(fmt, subtype and subtype.upper(), info.subtype, target,
                                      forced)}


def complete_output(source: str, target: str, **options) -> tuple[bool, str]:
    """(True, what it holds) when ``target`` exists and holds what rendering ``source`` would
    write (frame count, sample rate, channels, container and sample format; see
    ``expected_output``, which takes ``options``), else (False, why not). Outputs are written
    atomically, so an output that exists complete was rendered to the end."""
    if not os.path.isfile(target):
        return False, "missing"
    try:
        want = expected_output(source, target, **options)
    except UserError as e:
        return False, str(e)
    try:
        have = sf.info(target)
    except (sf.SoundFileError, RuntimeError, OSError):
        return False, "not readable as audio"
    got = {"frames": have.frames, "samplerate": have.samplerate, "channels": have.channels,
           "format": have.format, "subtype": have.subtype}
    wrong = [f"{key} {got[key]} instead of {want[key]}" for key in want if got[key] != want[key]]
    if wrong:
        return False, ", ".join(wrong)
    return True, (f"complete: {want['frames']} frames, {want['samplerate']} Hz, "
                  f"{want['channels']} ch, {want['format']} {want['subtype']}")

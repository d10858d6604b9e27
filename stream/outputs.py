"""One rule for every file a command writes: nothing of the user's is overwritten by surprise.

``check_outputs`` is called by every command before it starts any work:

- an output that already exists is refused unless ``overwrite`` (the command's ``--overwrite``);
- an output that is one of the *protected* paths (the config file in use, the checkpoint in use
  as ``model.checkpoint``, any input) is refused even with ``overwrite``;
- an output must be a file path in an existing, writable folder, not a folder itself, not a
  device or pipe, and not the same file as another output of the same command.

Paths are compared as resolved real paths (symbolic links followed) and, when both exist, with
``os.path.samefile`` (hard links). ``"-"`` (standard output) and ``None`` (not asked for) are
skipped.
"""
from __future__ import annotations

import os
from typing import Iterable

from cosine_host.errors import UserError

STDIO = "-"


class OutputError(UserError):
    """An output path breaks the rule; the message names the option and what to do."""


def same_file(a, b) -> bool:
    """True when paths ``a`` and ``b`` name the same file (real paths, or samefile when both
    exist)."""
    a, b = os.fspath(a), os.fspath(b)
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def protected_paths(cfg=None, inputs: Iterable[tuple[str, object]] = ()) -> list[tuple[str, str]]:
    """(what, path) pairs that no output may replace: ``inputs`` (e.g. ("input", "in.wav")),
    then the config file ``cfg.source`` and the checkpoint ``cfg.model.checkpoint`` when
    ``cfg`` is given and they exist or are set."""
    protected = [(what, os.fspath(p)) for what, p in inputs if p is not None and p != STDIO]
    if cfg is not None:
        if cfg.source and os.path.exists(cfg.source):
            protected.append(("config file", os.fspath(cfg.source)))
        if cfg.model.checkpoint:
            protected.append(("checkpoint in use (model.checkpoint)", cfg.model.checkpoint))
    return protected


def check_outputs(outputs: Iterable[tuple[str, object]],
                  protected: Iterable[tuple[str, object]] = (),
                  overwrite: bool = False, made_below=None) -> list[tuple[str, str]]:
    """Check the paths a command will write, before it does any work.

    Args:
        outputs: (flag, path) pairs, e.g. ``[("--report", "r.json"), ("output", "out.wav")]``;
            a path of None or "-" is skipped.
        protected: (what, path) pairs never to be replaced (see ``protected_paths``).
        overwrite: allow replacing existing outputs (never protected ones).
        made_below: a folder under which the command creates missing subfolders itself
            (render --recursive mirrors the input folders below --out-dir): there, the nearest
            existing folder is checked instead.
    Returns:
        The (flag, path) pairs that were checked.
    Raises:
        OutputError: one line naming the flag, the path and what to do. Reads the file system
            only; creates and changes nothing.
    """
    checked = [(flag, os.fspath(p)) for flag, p in outputs if p is not None and p != STDIO]
    protected = [(what, os.fspath(p)) for what, p in protected if p is not None and p != STDIO]
    for i, (flag, path) in enumerate(checked):
        if not path:
            raise OutputError(f"{flag}: empty path; give a file name")
        for what, source in protected:
            if same_file(path, source):
                raise OutputError(f"{flag} {path!r} is the {what} {source!r}; it is never "
                                  f"overwritten, not even with --overwrite: choose another path")
        for other_flag, other in checked[:i]:
            if same_file(path, other):
                raise OutputError(f"{other_flag} and {flag} are the same file {path!r}; give "
                                  f"each its own path")
        if os.path.isdir(path):
            raise OutputError(f"{flag} {path!r} is a folder; give a file path such as "
                              f"{os.path.join(path, 'out' + _suffix(flag))!r}")
        folder = os.path.dirname(os.path.abspath(path))
        if made_below is not None and _inside(folder, made_below):
            while not os.path.exists(folder) and _inside(os.path.dirname(folder), made_below):
                folder = os.path.dirname(folder)
        if not os.path.isdir(folder):
            raise OutputError(f"{flag} {path!r}: output folder missing: {folder!r} does not "
                              f"exist; create it first (mkdir -p {folder})")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"{flag} {path!r}: the folder {folder!r} is not writable; choose "
                              f"another folder")
        if os.path.lexists(path):
            if not os.path.isfile(path):
                raise OutputError(f"{flag} {path!r} exists and is not a regular file; choose "
                                  f"another path")
            if not overwrite:
                raise OutputError(f"{flag} {path!r} exists; pass --overwrite to replace it")
    return checked


def _inside(path: str, folder) -> bool:
    folder = os.path.abspath(os.fspath(folder))
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def _suffix(flag: str) -> str:
    return {"--report": ".json", "--json": ".json", "--log": ".csv", "--plot": ".png",
            "--out": ".pt"}.get(flag, ".wav")

"""Writing a file so that nothing half-written is ever left behind: a temporary file in the
target's folder, renamed onto it only on success. Checkpoints and every output of the host use it."""
from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile


@contextlib.contextmanager
def atomic_path(path, overwrite: bool = True):
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` only on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is
    left as it was. With overwrite=False an existing ``path`` raises FileExistsError first.
    """
    path = pathlib.Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp",
                               dir=str(path.parent) if str(path.parent) else ".")
    os.close(fd)
    try:
        yield pathlib.Path(tmp)
        # mkstemp makes the file private; give it the mode a plain open() would have, or the
        # mode of the file it replaces.
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

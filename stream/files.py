"""Writing files so that nothing half-written is ever left behind (atomic_path, shared with
the checkpoints in cosine_host.models.atomic)."""
from __future__ import annotations

import json

from cosine_host.models.atomic import atomic_path

from cosine_host.errors import UserError

__all__ = ["atomic_path", "write_json_atomic", "write_json_report"]


def write_json_atomic(path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n", encoding="utf-8")


def write_json_report(path, data: dict) -> None:
    """``write_json_atomic`` for a path the user named: an OSError (a missing folder, no
    permission) becomes a UserError that says so."""
    try:
        write_json_atomic(path, data)
    except OSError as e:
        raise UserError(f"cannot write {str(path)!r}: {e.strerror or e}; check that its folder "
                        f"exists and is writable") from None


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)

"""What a RIFF WAV file's header promises: the frames its ``data`` chunk size stands for.

libsndfile reports the frames a truncated WAV still holds (it trusts the file's length over the
header), so a file cut short reads as a shorter, complete one. Comparing with the header's own
data size tells the two apart.
"""
from __future__ import annotations

import os
import struct

UNKNOWN_SIZES = (0, 0xFFFFFFFF)
"""``data`` sizes that writers to a pipe leave (they cannot seek back to fill it in): no
promise."""


def promised_frames(path: str) -> int | None:
    """Frames the ``data`` chunk size of the RIFF (little-endian) or RIFX (big-endian) WAV at
    ``path`` promises (data bytes // the ``fmt `` chunk's block align), or None when the file
    is not such a WAV, the header is incomplete or the size is one of ``UNKNOWN_SIZES``."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
                return None
            order = "<" if head[:4] == b"RIFF" else ">"
            size_on_disk = os.fstat(f.fileno()).st_size
            block_align = None
            while f.tell() + 8 <= size_on_disk:
                chunk_id, chunk_size = struct.unpack(order + "4sI", f.read(8))
                if chunk_id == b"fmt " and chunk_size >= 14:
                    block_align = struct.unpack(order + "H", f.read(14)[12:14])[0]
                    f.seek(chunk_size - 14 + (chunk_size & 1), os.SEEK_CUR)
                elif chunk_id == b"data":
                    if not block_align or chunk_size in UNKNOWN_SIZES:
                        return None
                    return chunk_size // block_align
                else:
                    f.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)
    except (OSError, struct.error):
        return None
    return None

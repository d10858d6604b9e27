"""The .cos file: a header that says how to decode, then the codec's packets.

Layout (integers little-endian)::

    magic        8 bytes  b"\\x89COSINE\\n"
    version      u16      FORMAT_VERSION
    samplerate   u32      Hz
    channels     u16
    samples      u64      frames of audio encoded (per channel)
    packets      u64      packets that follow
    info_bytes   u32      length of the JSON that follows
    info         JSON     {"config": {frame, model, processors}, "checkpoint_sha256",
                          "codec_index", "codec": {kbps, gamma, rounding}}
    header_crc   u32      CRC-32 of everything above
    then groups of up to GROUP packets, each packet as the codec made it (a varint length,
    then its bytes), each group followed by the CRC-32 of its packets' bytes (u32).

A file cut short keeps every whole packet; a flipped bit fails a CRC. ``read`` turns any
malformed file into one BitstreamError line; ``Writer`` writes one atomically.
"""
from __future__ import annotations

import json
import struct
import zlib

from cosine_host.errors import UserError
from cosine_host.models.processors.codec import PacketError, read_varint

MAGIC = b"\x89COSINE\n"
FORMAT_VERSION = 1
GROUP = 64                       # packets per CRC
_FIXED = struct.Struct("<8sHIHQQI")


class BitstreamError(UserError):
    """A .cos file that cannot be read: not one, corrupt, or from another format version."""


def header_bytes(samplerate: int, channels: int, samples: int, packets: int,
                 info: dict) -> bytes:
    """The header for these values, CRC included."""
    text = json.dumps(info, sort_keys=True, separators=(",", ":")).encode("utf-8")
    head = _FIXED.pack(MAGIC, FORMAT_VERSION, samplerate, channels, samples, packets,
                       len(text)) + text
    return head + struct.pack("<I", zlib.crc32(head))


class Writer:
    """Writes a .cos file to an open binary file: ``add(packet)`` for each packet, then
    ``finish(samples)``, which completes the last group and fills in the counts (the file
    must be seekable: atomic_path's temporary file is)."""

    def __init__(self, file, samplerate: int, channels: int, info: dict):
        self.file, self.samplerate, self.channels, self.info = file, samplerate, channels, info
        self.file.write(header_bytes(samplerate, channels, 0, 0, info))
        self.packets = 0
        self._crc = 0
        self._in_group = 0

    def add(self, packet: bytes) -> None:
        self.file.write(packet)
        self._crc = zlib.crc32(packet, self._crc)
        self.packets += 1
        self._in_group += 1
        if self._in_group == GROUP:
            self._close_group()

    def _close_group(self) -> None:
        self.file.write(struct.pack("<I", self._crc))
        self._crc, self._in_group = 0, 0

    def finish(self, samples: int) -> None:
        if self._in_group:
            self._close_group()
        self.file.seek(0)
        self.file.write(header_bytes(self.samplerate, self.channels, samples, self.packets,
                                     self.info))


class Stream:
    """A read .cos file: samplerate, channels, samples, info (the header's JSON), packets
    (whole packets read, length prefixes included), packets_expected, unchecked (packets
    after the last CRC, when the file was cut short)."""

    def __init__(self, samplerate, channels, samples, info, packets, packets_expected,
                 unchecked):
        self.samplerate, self.channels, self.samples = samplerate, channels, samples
        self.info, self.packets, self.packets_expected = info, packets, packets_expected
        self.unchecked = unchecked

    @property
    def missing(self) -> int:
        """Packets the header promises that the file does not hold."""
        return self.packets_expected - len(self.packets)


def read(data: bytes, name: str) -> Stream:
    """Parse a whole .cos file's bytes; ``name`` is how messages call it.

    Raises:
        BitstreamError: not a .cos file, another format version, a corrupt header or packet
            (CRC mismatch). A file cut short is not an error: ``Stream.missing`` says how
            many packets are gone.
    """
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise BitstreamError(f"{name!r} is not a cosine-host codec file (no {MAGIC!r} at its "
                             f"start); give a file written by `encode`")
    if len(data) < _FIXED.size:
        raise BitstreamError(f"{name!r} is cut short inside its header "
                             f"({len(data)} bytes); encode the input again")
    _, version, samplerate, channels, samples, packets, info_bytes = _FIXED.unpack_from(data)
    if version != FORMAT_VERSION:
        raise BitstreamError(f"{name!r} has codec format version {version}; this program "
                             f"reads version {FORMAT_VERSION}: decode it with the version "
                             f"that wrote it, or encode the input again")
    end = _FIXED.size + info_bytes
    if len(data) < end + 4:
        raise BitstreamError(f"{name!r} is cut short inside its header ({len(data)} of "
                             f"{end + 4} bytes); encode the input again")
    (crc,) = struct.unpack_from("<I", data, end)
    if zlib.crc32(data[:end]) != crc:
        raise BitstreamError(f"{name!r}: its header is corrupt (CRC mismatch); encode the "
                             f"input again")
    try:
        info = json.loads(data[_FIXED.size:end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BitstreamError(f"{name!r}: its header is corrupt (not JSON)") from None
    if not (isinstance(info, dict) and samplerate > 0 and channels > 0):
        raise BitstreamError(f"{name!r}: its header is corrupt (no settings, or no "
                             f"samplerate/channels)")

    offset, found, unchecked = end + 4, [], 0
    group, crc = [], 0
    while len(found) + len(group) < packets:
        try:
            parsed = read_varint(data, offset)
        except PacketError:
            raise BitstreamError(f"{name!r}: packet {len(found) + len(group)} is corrupt "
                                 f"(bad length); the file is damaged") from None
        if parsed is None or parsed[1] + parsed[0] > len(data):
            break                                   # cut short inside this packet
        length, start = parsed
        packet = data[offset:start + length]
        group.append(packet)
        crc = zlib.crc32(packet, crc)
        offset = start + length
        if len(group) == GROUP or len(found) + len(group) == packets:
            if offset + 4 > len(data):
                break                               # cut short before the group's CRC
            if struct.unpack_from("<I", data, offset)[0] != crc:
                first = len(found)
                raise BitstreamError(f"{name!r}: packets {first}..{first + len(group) - 1} are "
                                     f"corrupt (CRC mismatch); the file is damaged")
            offset += 4
            found.extend(group)
            group, crc = [], 0
    if group:                                      # whole packets whose CRC was cut off
        found.extend(group)
        unchecked = len(group)
    elif len(found) == packets and offset != len(data):
        raise BitstreamError(f"{name!r}: {len(data) - offset} bytes after the last packet; "
                             f"the file is damaged")
    return Stream(samplerate, channels, samples, info, found, packets, unchecked)

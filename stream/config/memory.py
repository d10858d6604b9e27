"""Memory a configuration needs, what the machine has, and the check that refuses a config
that would not fit (stream/config/schema.py calls :func:`check_memory` for every config it loads).

Sizes are in bytes. :func:`memory_needed_bytes` is the peak while the model and engine are
built and run (constants measured, below); :func:`memory_available_bytes` what this process
can still use.
"""
from __future__ import annotations

import os

from cosine_host.config.checks import ConfigError

BYTES_PER_MATRIX_ENTRY = 80
"""Peak memory per entry of the N x M matrices while the model and engine are built, measured
for N = M = 1024..4096 (float32 and float64, tied, free and pinv decoders: 70-80 bytes): the
encoder and decoder matrices, their float64 phase grids and the engine's folded copies."""

BASE_BYTES = 64 << 20
"""Memory the engine needs besides the matrices (queues, windows, FFT plans): 64 MiB covers it."""


BUFFERS_PER_CHANNEL = 8
"""Engine buffers of (block size + 2 N) samples per channel, counted generously: the input and
output queues, the frames and coefficients of one call and their copies."""


def memory_needed_bytes(frame_size: int, coefficients: int, blocksize: int = 0,
                        channels: int = 1, dtype: str = "float32") -> int:
    """Peak memory in bytes to build a model of N = ``frame_size`` and M = ``coefficients`` and
    run its engine on blocks of ``blocksize`` samples (0: varying) of ``channels`` channels:
    BYTES_PER_MATRIX_ENTRY * N * M (the matrices, float32 or float64 alike: the build's float64
    phase grids dominate) + BUFFERS_PER_CHANNEL buffers of (blocksize + 2 N) samples of
    ``dtype`` per channel + BASE_BYTES."""
    itemsize = 8 if dtype == "float64" else 4
    buffers = BUFFERS_PER_CHANNEL * (blocksize + 2 * frame_size) * channels * itemsize
    return BYTES_PER_MATRIX_ENTRY * frame_size * coefficients + buffers + BASE_BYTES


def memory_available_bytes() -> int | None:
    """Memory this process can still use, in bytes: the system's available memory
    (MemAvailable of /proc/meminfo, else the physical memory), lowered by an address-space
    limit (``ulimit -v``) less what the process maps already. None where neither is known."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    if not limits:
        try:
            limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(max(0, soft - _mapped_bytes()))
    except (ImportError, OSError, ValueError):
        pass
    return min(limits) if limits else None


def _mapped_bytes() -> int:
    """Virtual memory this process maps now (VmSize), 0 where unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def check_memory(frame_size: int, coefficients: int, blocksize: int = 0, channels: int = 1,
                 dtype: str = "float32", available: int | None = None) -> None:
    """Refuse a config that would not fit: ConfigError naming the need and the limit.

    Arguments as for ``memory_needed_bytes``; available: bytes, None asks
    ``memory_available_bytes()`` (no check when unknown).
    """
    need = memory_needed_bytes(frame_size, coefficients, blocksize, channels, dtype)
    if available is None:
        available = memory_available_bytes()
    if available is None or need <= available:
        return
    matrices = BYTES_PER_MATRIX_ENTRY * frame_size * coefficients
    if matrices >= need / 2:
        what = (f"frame.size = {frame_size} with model.coefficients = {coefficients} needs "
                f"about {need / 1e9:.1f} GB of memory to build the model "
                f"({BYTES_PER_MATRIX_ENTRY} bytes per entry of its N x M matrices)")
        fix = "use a smaller frame.size or model.coefficients"
    else:
        what = (f"audio.blocksize = {blocksize} with audio.channels = {channels} needs about "
                f"{need / 1e9:.1f} GB of memory for the engine's buffers")
        fix = "use a smaller audio.blocksize (a few hundred samples is usual)"
    raise ConfigError(f"{what} but {available / 1e9:.1f} GB are available; {fix}")

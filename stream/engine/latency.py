"""Latency arithmetic of a frame-based block host, as pure functions.

Frames of N samples every H samples (H divides N); the synthesis window is nonzero on the last S
samples of a frame only (S = ``synthesis_size``; S = N for symmetric window pairs,
cosine_host.engine.windows). The host hands over blocks of B samples (B = 0: sizes vary from call to
call). A frame can be computed once its last sample has arrived, and the output of a call must be
ready before the call returns. The engine reaches the smallest constant lag by

- prefilling its input with N - H zeros (:func:`input_prefill_samples`), so that the frame grid
  starts N - H samples before the first input sample and every output sample is covered by all
  of its frames. Output sample t is final once the last frame whose synthesis part (its last S
  samples) covers it is complete: up to S - H samples after t arrived. That wait, S - H, is
  the *algorithmic* part (N - H for symmetric pairs);
- prefilling its output with H - gcd(B, H) zeros (the *buffering* part), the least that keeps
  the output queue from ever running dry when call boundaries fall off the hop grid.

The output queue holds only the synthesis parts (S samples per frame, S - H of them pending);
output sample t leaves it (S - H) + (H - gcd(B, H)) = S - gcd(B, H) samples after input sample t
arrived. ``simulate_min_latency`` checks this by brute force, for any S.
"""
from __future__ import annotations

import math


def _synthesis(frame_size: int, synthesis_size: int | None) -> int:
    return frame_size if synthesis_size is None else synthesis_size


def block_granularity(hop: int, blocksize: int) -> int:
    """gcd(B, H): the finest step at which call boundaries fall on the hop grid (1 if B varies)."""
    return math.gcd(blocksize, hop) if blocksize > 0 else 1


def input_prefill_samples(frame_size: int, hop: int) -> int:
    """N - H: zeros ahead of the first input sample, so every frame touching the input exists."""
    return frame_size - hop


def algorithmic_latency_samples(frame_size: int, hop: int,
                                synthesis_size: int | None = None) -> int:
    """S - H (N - H for symmetric pairs, S = N): how long an output sample waits for the last
    frame whose synthesis part covers it, whatever the blocks."""
    return _synthesis(frame_size, synthesis_size) - hop


def buffering_latency_samples(hop: int, blocksize: int) -> int:
    """H - gcd(B, H) for fixed blocks, H - 1 for varying ones."""
    return hop - block_granularity(hop, blocksize)


def latency_samples(frame_size: int, hop: int, blocksize: int,
                    synthesis_size: int | None = None) -> int:
    """S - gcd(B, H) for a fixed block size B > 0, S - 1 for varying blocks (B = 0); S = N
    (the default) for symmetric window pairs."""
    return (algorithmic_latency_samples(frame_size, hop, synthesis_size)
            + buffering_latency_samples(hop, blocksize))


def boundary_ok(frame_size: int, hop: int, blocksize: int, samples_in: int) -> bool:
    """Whether a call may end after ``samples_in`` input samples in total.

    With the engine's prefills, a call boundary T keeps the output queue fed iff
    T mod H <= H - gcd(B, H) (frames complete at the same boundaries whatever S is). Every
    multiple of B qualifies; with B = 0 every T does.
    """
    return samples_in % hop <= hop - block_granularity(hop, blocksize)


def simulate_min_latency(frame_size: int, hop: int, boundaries, input_prefill: int,
                         synthesis_size: int | None = None) -> int:
    """Brute force: the least constant lag (samples) with which output sample e (= input
    sample e - lag) can be emitted by the call that brings input up to the first boundary > e.

    Frames start every ``hop`` samples on a grid shifted by ``input_prefill`` zeros, so input
    sample t lies in frames whose internal start s satisfies s <= t + input_prefill < s + N.
    Frame s contributes to output samples s + N - S .. s + N - 1 only (its synthesis part).
    Output sample e (internal index e - lag + input_prefill) is final once the last frame whose
    synthesis part covers it is complete.

    Args:
        boundaries: increasing cumulative input counts at which calls end (the last one bounds
            the samples checked).
        input_prefill: zeros ahead of the first input sample; must be >= N - H so that every
            frame touching the input exists.
        synthesis_size: S in samples, H <= S <= N (None: N).
    """
    boundaries = list(boundaries)
    horizon = boundaries[-1]
    s = _synthesis(frame_size, synthesis_size)

    def available_after(e: int) -> int:
        for b in boundaries:
            if b > e:
                return b
        return horizon

    lag = 0
    while True:
        ok = True
        for e in range(horizon):
            internal = e - lag + input_prefill
            if internal < 0:
                continue
            # the latest frame start f (a multiple of H) with f + N - S <= internal
            last_frame_start = math.floor((internal - (frame_size - s)) / hop) * hop
            needs_input = last_frame_start + frame_size - input_prefill
            if needs_input > available_after(e):
                ok = False
                break
        if ok:
            return lag
        lag += 1

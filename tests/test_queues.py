"""The engine's sample queue (cosine_host.engine.queues.Queue) against a plain reference: any
sequence of writes and reads, numpy or torch storage, keeps exactly the samples not yet read
(by either reader) and the pending tail, and moves or grows storage only when it must."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from cosine_host.engine.queues import Queue, initial_capacity

CHANNELS = 2


def _storage(kind: str, capacity: int):
    if kind == "numpy":
        return np.zeros((CHANNELS, capacity), np.float64)
    return torch.zeros(CHANNELS, capacity, dtype=torch.float64)


def _array(x):
    return x.numpy() if isinstance(x, torch.Tensor) else x


ops = st.lists(st.tuples(st.integers(1, 300), st.integers(0, 300), st.integers(0, 300)),
               min_size=1, max_size=40)


def _put(q, region: slice, values: np.ndarray) -> None:
    q.buf[:, region] = torch.from_numpy(values) if isinstance(q.buf, torch.Tensor) else values


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@settings(max_examples=60, deadline=None)
@given(ops=ops, capacity=st.integers(8, 512), prefill=st.integers(0, 64),
       second_prefill=st.integers(0, 64))
def test_input_queue_keeps_what_its_readers_have_not_read(kind, ops, capacity, prefill,
                                                          second_prefill):
    """The input queue: blocks written, frames read by the reader, the dry signal by the second
    reader."""
    # the engine sizes its queues so that the prefill fits from the start
    q = Queue(_storage(kind, capacity + max(prefill, second_prefill)), second_reader=True)
    q.reset(prefill, second_prefill)
    queued = max(prefill, second_prefill)
    history = np.zeros((CHANNELS, queued))      # every sample ever queued
    read, second = queued - prefill, queued - second_prefill
    counter = 0
    for write, take, take_second in ops:
        block = np.arange(counter, counter + write * CHANNELS, dtype=np.float64)
        block = block.reshape(write, CHANNELS)
        counter += write * CHANNELS
        before = q.buf
        q.write(torch.from_numpy(block) if kind == "torch" else block)
        history = np.concatenate([history, block.T], axis=1)
        if q.buf is not before:         # grown only when the live samples could not fit
            assert q.end - min(q.start, q.second) > _array(before).shape[1]
        take = min(take, len(q))
        take_second = min(take_second, q.end - q.second)
        q.start += take
        q.second += take_second
        read += take
        second += take_second
        assert len(q) == history.shape[1] - read
        np.testing.assert_array_equal(_array(q.buf[:, q.start:q.end]), history[:, read:])
        np.testing.assert_array_equal(_array(q.buf[:, q.second:q.end]), history[:, second:])


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@settings(max_examples=60, deadline=None)
@given(ops=ops, capacity=st.integers(8, 512), pending=st.integers(1, 16),
       prefill=st.integers(0, 64))
def test_output_queue_keeps_its_pending_tail(kind, ops, capacity, pending, prefill):
    """The output queue: the overlap-add writes ``n`` finished samples plus a pending tail past
    ``end`` after ``reserve(n)``; the tail must survive every move of the storage."""
    q = Queue(_storage(kind, capacity + prefill + pending), pending=pending)
    q.reset(prefill)
    history = np.zeros((CHANNELS, prefill))
    tail = np.zeros((CHANNELS, pending))
    read, counter = 0, 0
    for write, take, _ in ops:
        q.reserve(write)
        np.testing.assert_array_equal(_array(q.buf[:, q.end:q.end + pending]), tail)
        values = np.arange(counter, counter + (write + pending) * CHANNELS, dtype=np.float64)
        values = values.reshape(CHANNELS, write + pending)
        counter += values.size
        _put(q, slice(q.end, q.end + write + pending), values)
        q.end += write
        history = np.concatenate([history, values[:, :write]], axis=1)
        tail = values[:, write:]
        take = min(take, len(q))
        q.start += take
        read += take
        np.testing.assert_array_equal(_array(q.buf[:, q.start:q.end]), history[:, read:])
        np.testing.assert_array_equal(_array(q.buf[:, q.end:q.end + pending]), tail)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_steady_stream_never_grows_the_storage(kind):
    """At a constant block size the reader keeps up: the initial capacity is enough forever."""
    frame, hop, block = 512, 256, 100
    q = Queue(_storage(kind, initial_capacity(frame, block)), pending=0, second_reader=False)
    q.reset(frame - hop)
    storage = q.buf
    for _ in range(10_000):
        q.write(torch.zeros(block, CHANNELS, dtype=torch.float64) if kind == "torch"
                else np.zeros((block, CHANNELS)))
        q.start += q.ready_frames(frame, hop) * hop
    assert q.buf is storage


def test_ready_frames_counts_whole_frames():
    q = Queue(np.zeros((1, 64)))
    q.reset(0)
    for queued, frames in [(0, 0), (15, 0), (16, 1), (19, 1), (20, 2), (31, 4)]:
        q.start, q.end = 0, queued
        assert q.ready_frames(16, 4) == frames

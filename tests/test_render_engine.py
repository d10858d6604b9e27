"""The engine's whole-signal rendering on both CPU paths: render against streaming, a fresh
engine afterwards, NaN/Inf, a given output array and the checks on it."""
import numpy as np
import pytest

from helpers import make_engine, noise, render_in_blocks, stream_blocks
from cosine_host.engine.engine import EngineInputError


@pytest.mark.parametrize("trained", [True, False], ids=["matrix", "dct"])
def test_render_equals_streaming(trained):
    x = noise(9000, 2, seed=3, level=0.5)
    engine = make_engine(0, 2, trained=trained)
    np.testing.assert_allclose(engine.render(x, chunk_frames=4000),
                               render_in_blocks(make_engine(0, 2, trained=trained), x, [700]),
                               atol=1e-6, rtol=0)
    # and by hand: process() over the signal and the latency's zeros, latency dropped
    padded = np.concatenate([x, np.zeros((engine.latency_samples, 2), np.float32)])
    raw = stream_blocks(make_engine(0, 2, trained=trained), padded, [1000])
    np.testing.assert_allclose(engine.render(x), raw[engine.latency_samples:], atol=1e-6, rtol=0)


def test_render_leaves_a_fresh_engine():
    engine = make_engine(trained=True)
    x = noise(9000, 1, seed=3)
    first = engine.render(x)
    assert engine.stats()["calls"] == 0
    block = noise(256, 1, seed=4)
    np.testing.assert_array_equal(engine.process(block), make_engine(trained=True).process(block))
    np.testing.assert_array_equal(engine.render(x), first)


@pytest.mark.parametrize("trained", [True, False], ids=["matrix", "dct"])
def test_nan_and_inf_are_zeroed_and_counted(trained):
    engine = make_engine(trained=trained)
    x = noise(8000, 1, seed=5)
    bad = x.copy()
    bad[[10, 3000, 7999], 0] = [np.nan, np.inf, -np.inf]
    clean = x.copy()
    clean[[10, 3000, 7999], 0] = 0
    chunks = [bad[:4000], bad[4000:]]
    out = np.concatenate(list(engine.render_chunks(chunks, 8000)))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, engine.render(clean), atol=1e-6, rtol=0)
    engine.process(bad[:1000])
    assert (engine.stats()["nan_events"], engine.stats()["nan_samples"]) == (1, 1)


def test_render_into_a_given_output():
    engine = make_engine(0, 2, trained=True)
    x = noise(6000, 2, seed=8)
    store = np.full((6000, 2), 7.0, np.float32)
    out = engine.render(x, out=store)
    assert out is store
    np.testing.assert_allclose(store, make_engine(0, 2, trained=True).render(x), atol=0, rtol=0)


@pytest.mark.parametrize("signal,out,message", [
    (np.zeros(600, np.float32), None, r"signal shape is \(600,\); expected \(frames, 1\)"),
    (np.zeros((600, 2), np.float32), None, r"signal shape is \(600, 2\)"),
    (np.zeros((600, 1)), None, "signal dtype is float64"),
    (np.zeros((600, 1), np.float32), np.zeros((601, 1), np.float32), "out must be a new float32"),
    (np.zeros((600, 1), np.float32), [0.0] * 600, "got list"),
])
def test_render_checks_its_arrays(signal, out, message):
    with pytest.raises(EngineInputError, match=message):
        make_engine(trained=True).render(signal, out=out)


def test_render_refuses_an_output_that_overlaps_the_signal():
    x = noise(600, 1)
    with pytest.raises(EngineInputError, match="out must be a new float32"):
        make_engine(trained=True).render(x, out=x[:])

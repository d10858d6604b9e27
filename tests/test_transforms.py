"""The CPU transforms (stream.transforms): BLAS gemm with accumulation, hop-split products, and
the engine routes built on them."""
import numpy as np
import pytest

import stream.transforms as transforms
from helpers import make_engine, noise, render_in_blocks, stream_blocks
from stream.engine import EngineInputError
from stream.transforms import HopProducts, gemm_for

# float32 outputs of about 1 from sums of N products: different but equally valid BLAS kernels
# (tiny calls, other thread splits) round them differently by a few units of 1e-7
ATOL = 1e-5


def framed(signal, n, hop, frames):
    return np.lib.stride_tricks.sliding_window_view(signal, n)[::hop][:frames]


@pytest.mark.parametrize("backend", transforms.GEMM_BACKENDS)
def test_every_gemm_backend_is_available_here(backend):
    """numpy's PyPI wheels bundle OpenBLAS, scipy is a dependency: both must bind, for both
    dtypes (a missing one is a failure, not a skip)."""
    for dtype in (np.float32, np.float64):
        assert transforms.available_gemm(backend, dtype) is not None
        assert gemm_for(dtype, (backend,)).name == backend


@pytest.mark.parametrize("backend", transforms.GEMM_BACKENDS)
@pytest.mark.parametrize("n,hop,m", [(512, 256, 512), (256, 64, 200), (64, 64, 64), (48, 16, 30)],
                         ids=["2-overlaps", "4-overlaps-M<N", "no-overlap", "3-overlaps"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_equal_the_framed_products_and_overlap_add(n, hop, m, dtype, backend):
    rng = np.random.default_rng(0)
    r, frames = n // hop, 37
    enc_t = rng.standard_normal((n, m)).astype(dtype)
    dec = rng.standard_normal((m, n)).astype(dtype)
    signal = rng.standard_normal((frames + r - 1) * hop).astype(dtype)
    products = HopProducts(enc_t, dec, hop, backends=(backend,))
    assert products.gemm.name == backend

    coeffs = np.full((frames, m), np.nan, dtype)
    products.encode(signal.reshape(-1, hop), coeffs)
    expect_coeffs = framed(signal.astype(np.float64), n, hop, frames) @ enc_t
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(coeffs, expect_coeffs, rtol=0, atol=tol * np.abs(expect_coeffs).max())

    # rows 0 .. R-2 hold a pending tail that must be kept and added to; the rest is overwritten
    out = rng.standard_normal((frames + r - 1, hop)).astype(dtype)
    expect = out.astype(np.float64).reshape(-1).copy()
    expect[(r - 1) * hop:] = 0
    decoded = coeffs.astype(np.float64) @ dec
    for f in range(frames):
        expect[f * hop:f * hop + n] += decoded[f]
    products.decode_add(coeffs, out)
    np.testing.assert_allclose(out.reshape(-1), expect, rtol=0, atol=tol * np.abs(expect).max())


def test_the_engine_uses_numpys_own_blas():
    """One OpenBLAS thread pool for the whole engine: the hop-split products use the library
    np.matmul uses."""
    engine = make_engine(trained=True)
    assert engine._kernel.hop_products.gemm.name == "numpy"


def test_a_gemm_that_does_not_write_in_place_is_refused(monkeypatch):
    from scipy.linalg import blas
    sgemm = blas.sgemm

    def copying_gemm(alpha, a, b, beta, c, overwrite_c=0):
        return sgemm(alpha, a, b, beta, np.array(c, order="F"), overwrite_c=1)
    monkeypatch.setattr(blas, "sgemm", copying_gemm)
    monkeypatch.setattr(transforms, "_GEMMS", {})
    assert transforms.available_gemm("scipy", np.float32) is None
    with pytest.raises(ImportError, match="no BLAS gemm with accumulation"):
        gemm_for(np.float32, ("scipy",))


# --- the routes -----------------------------------------------------------------------------------

def framed_reference(engine, x, sizes):
    """The same engine with the hop-split route disabled: every call frames and multiplies."""
    engine._kernel.HOP_SPLIT_FRAMES = 10 ** 9
    try:
        return stream_blocks(engine, x, sizes)
    finally:
        del engine._kernel.HOP_SPLIT_FRAMES


@pytest.mark.parametrize("overrides", [(), ("frame.hop=128", "model.coefficients=384"),
                                       ("frame.size=256", "frame.hop=64", "model.coefficients=200",
                                        "model.decoder=free")],
                         ids=["2-overlaps", "4-overlaps-M<N", "4-overlaps-free"])
def test_hop_split_route_equals_the_framed_route(overrides):
    # at -6 dBFS: float32 sums of N products differ by up to ~1e-6 at full scale
    x = noise(20000, 2, seed=7, level=0.5)
    for sizes in ([20000], [3000, 9000], [100, 256]):
        engine = make_engine(0, 2, overrides, trained=True)
        want = framed_reference(make_engine(0, 2, overrides, trained=True), x, sizes)
        calls = []
        original = engine._kernel.hop_products.encode
        engine._kernel.hop_products.encode = lambda *a: calls.append(1) or original(*a)
        got = stream_blocks(engine, x, sizes)
        # the route is taken exactly for calls of 32 frames and more
        assert bool(calls) == (max(sizes) // engine.hop >= 32)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


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

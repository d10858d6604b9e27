"""Hop-split matrix products (stream.hopgemm) and the engine paths built on them: the
per-call kernel without processors and the in-place whole-signal render."""
import numpy as np
import pytest
import torch

import stream
from stream.engine import Engine
import stream.blas
from stream.blas import gemm_for
from stream.hopgemm import HopProducts

pytest.importorskip("scipy.linalg")


# float32 outputs of about 1 from sums of N products: different but equally valid BLAS kernels
# (tiny calls, other thread splits) round them differently by a few units of 1e-7
ATOL = 1e-5


def framed(signal, n, hop, frames):
    return np.lib.stride_tricks.sliding_window_view(signal, n)[::hop][:frames]


def backends():
    available = []
    for name in ("numpy", "scipy"):
        try:
            gemm_for(np.float32, (name,))
            available.append(name)
        except ImportError:
            pass
    return available


@pytest.mark.parametrize("backend", backends())
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


def test_the_engine_uses_numpys_own_blas_when_it_can():
    """One OpenBLAS thread pool for the whole engine: the hop-split products use the library
    np.matmul uses (numpy's PyPI wheels bundle it), else scipy's."""
    engine = trained_engine()
    expected = "numpy" if "numpy" in backends() else "scipy"
    assert engine._kernel.hop_products.gemm.name == expected


def test_a_gemm_that_does_not_write_in_place_is_refused(monkeypatch):
    from scipy.linalg import blas
    sgemm = blas.sgemm

    def copying_gemm(alpha, a, b, beta, c, overwrite_c=0):
        return sgemm(alpha, a, b, beta, np.array(c, order="F"), overwrite_c=1)
    monkeypatch.setattr(blas, "sgemm", copying_gemm)
    monkeypatch.setattr(stream.blas, "_CACHE", {})
    with pytest.raises(ImportError, match="no BLAS gemm with accumulation"):
        gemm_for(np.float32, ("scipy",))
    # with no usable gemm at all, the engine stays on numpy's products, with the same output
    monkeypatch.setattr(stream.blas, "_numpy_openblas_gemm", lambda dtype: None)
    engine = trained_engine(channels=2)
    assert engine._kernel.hop_products is None
    monkeypatch.undo()
    reference = trained_engine(channels=2)
    assert reference._kernel.hop_products is not None
    x = np.random.default_rng(1).uniform(-1, 1, (30000, 2)).astype(np.float32)
    np.testing.assert_allclose(engine.process(x), reference.process(x), atol=ATOL, rtol=0)


# --- the engine ---------------------------------------------------------------------------------

def trained_engine(channels=1, blocksize=0, overrides=(), processors=None, trained=True):
    """An engine on the matrix-product path: every parameter moved a little off its init (with
    ``trained=False``: at the DCT init, on the FFT fast path)."""
    cfg = stream.load_config(overrides=("model.device=cpu", *overrides))
    engine = Engine.from_config(cfg, blocksize=blocksize, channels=channels)
    if processors is not None:
        engine = Engine(engine.model, cfg.frame.hop, cfg.frame.window, blocksize, channels,
                        processors=processors)
    if trained:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in engine.model.parameters():
                p.add_(1e-3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    engine.process(np.zeros((max(blocksize, 1), channels), np.float32))
    engine.reset()
    assert engine.transform == ("matmul" if trained else "dct-scipy")
    return engine


def streamed(engine, x, block=700):
    """The aligned output by process() alone: feed x and the latency's zeros, drop the latency."""
    padded = np.concatenate([x, np.zeros((engine.latency_samples, x.shape[1]), np.float32)])
    engine.reset()
    out = np.concatenate([engine.process(padded[i:i + block])
                          for i in range(0, padded.shape[0], block)])
    engine.reset()
    return out[engine.latency_samples:]


def spy_whole(engine, monkeypatch):
    calls = []
    original = engine._kernel.render_whole
    monkeypatch.setattr(engine._kernel, "render_whole",
                        lambda *a: calls.append(original(*a)) or calls[-1])
    return calls


CONFIGS = {"2-overlaps": (), "4-overlaps": ("frame.size=256", "frame.hop=64", "model.coefficients=256"),
           "3-overlaps-M<N": ("frame.size=96", "frame.hop=32", "model.coefficients=40",
                              "model.init=lowpass"),
           "no-overlap": ("frame.size=64", "frame.hop=64", "model.coefficients=64",
                          "frame.window=rectangular")}
STATES = {"matmul": True, "dct": False}


@pytest.mark.parametrize("trained", STATES.values(), ids=STATES.keys())
@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("length", [1, 300, 511, 512, 513, 1000, 4096, 20001])
def test_whole_render_equals_streaming(overrides, length, trained, monkeypatch):
    engine = trained_engine(overrides=overrides, trained=trained)
    calls = spy_whole(engine, monkeypatch)
    x = np.random.default_rng(length).uniform(-1, 1, (length, 1)).astype(np.float32)
    rendered = engine.render(x, chunk_frames=1500)      # several interior products
    np.testing.assert_allclose(rendered, streamed(engine, x), atol=ATOL, rtol=0)
    # taken whenever the signal holds a frame's worth of whole hops (R hops), else streaming
    assert len(calls) == 1
    assert (calls[0] > 0) == (length // engine.hop >= engine._kernel.r)


def test_whole_render_leaves_a_fresh_engine():
    engine = trained_engine()
    x = np.random.default_rng(3).uniform(-1, 1, (9000, 1)).astype(np.float32)
    first = engine.render(x)
    assert engine.stats()["calls"] == 0
    block = np.random.default_rng(4).uniform(-1, 1, (256, 1)).astype(np.float32)
    np.testing.assert_array_equal(engine.process(block), trained_engine().process(block))
    np.testing.assert_array_equal(engine.render(x), first)


@pytest.mark.parametrize("trained", STATES.values(), ids=STATES.keys())
def test_nan_and_inf_take_the_streaming_path(trained, monkeypatch):
    engine = trained_engine(trained=trained)
    calls = spy_whole(engine, monkeypatch)
    x = np.random.default_rng(5).uniform(-1, 1, (8000, 1)).astype(np.float32)
    bad = x.copy()
    bad[[10, 3000, 7999], 0] = [np.nan, np.inf, -np.inf]
    clean = x.copy()
    clean[[10, 3000, 7999], 0] = 0
    out = engine.render(bad)
    assert calls == []                      # decided before the kernel was asked
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, engine.render(clean), atol=ATOL, rtol=0)


@pytest.mark.parametrize("trained", STATES.values(), ids=STATES.keys())
@pytest.mark.parametrize("case", ["strided-out", "overlapping-out"])
def test_whole_render_needs_its_own_contiguous_output(case, trained, monkeypatch):
    engine = trained_engine(trained=trained)
    calls = spy_whole(engine, monkeypatch)
    x = np.random.default_rng(8).uniform(-1, 1, (6000, 1)).astype(np.float32)
    expect = streamed(engine, x)
    if case == "strided-out":
        store = np.full((6000, 2), 7.0, np.float32)
        out = engine.render(x, out=store[:, :1])
        np.testing.assert_array_equal(store[:, 1], 7.0)         # the other column untouched
    else:
        x = x.copy()
        out = engine.render(x, out=x[:])
    assert calls == []
    np.testing.assert_allclose(out, expect, atol=ATOL, rtol=0)


@pytest.mark.parametrize("signal,out,message", [
    (np.zeros(600, np.float32), None, r"signal shape is \(600,\); expected \(frames, 1\)"),
    (np.zeros((600, 2), np.float32), None, r"signal shape is \(600, 2\)"),
    (np.zeros((600, 1)), None, "signal dtype is float64"),
    (np.zeros((600, 1), np.float32), np.zeros((601, 1), np.float32), "out must be a new float32"),
    (np.zeros((600, 1), np.float32), [0.0] * 600, "got list"),
])
def test_render_checks_its_arrays(signal, out, message):
    from stream.engine import EngineInputError
    with pytest.raises(EngineInputError, match=message):
        trained_engine().render(signal, out=out)


@pytest.mark.parametrize("trained", STATES.values(), ids=STATES.keys())
@pytest.mark.parametrize("case", ["stereo", "processors", "bypass", "float64", "strided"])
def test_whole_render_only_where_it_applies(case, trained, monkeypatch):
    from models import processors as registry
    kwargs = {"stereo": {"channels": 2},
              "processors": {"processors": registry.build_chain([{"type": "quantize", "bits": 8}])},
              "float64": {"overrides": ("model.dtype=float64",)}}.get(case, {})
    engine = trained_engine(trained=trained, **kwargs)
    engine.bypass = case == "bypass"
    calls = spy_whole(engine, monkeypatch)
    x = np.random.default_rng(6).uniform(-1, 1, (6000, engine.channels)).astype(np.float32)
    if case == "strided":
        x = np.repeat(x, 2, axis=0)[::2]
    out = engine.render(x)
    assert all(c == 0 for c in calls)
    np.testing.assert_allclose(out, streamed(engine, np.ascontiguousarray(x)), atol=ATOL, rtol=0)


def test_per_call_products_equal_numpy_matmul_path():
    """process() with the hop-split products against the framed numpy products it replaces."""
    x = np.random.default_rng(7).uniform(-1, 1, (20000, 2)).astype(np.float32)
    for overrides in CONFIGS.values():
        engine = trained_engine(channels=2, overrides=overrides)
        plain = trained_engine(channels=2, overrides=overrides)
        plain._kernel.hop_products = None
        for b in (1, 100, 256, 3000, 20000):
            got = np.concatenate([engine.process(x[i:i + b]) for i in range(0, 20000, b)])
            want = np.concatenate([plain.process(x[i:i + b]) for i in range(0, 20000, b)])
            np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
            engine.reset()
            plain.reset()

"""The engine's DCT path (pocketfft, cosine_host.engine.dct.ScipyDCT): chosen exactly when the model
is the DCT pair, equal to the matrix-product path within float32 precision (processors
included), switched off by any parameter change, and a clean fallback everywhere else. Also:
the torch kernel (the CUDA code path, run here on CPU) equals the numpy kernel, and rendering
holds no growing state. No timings here: speed is checked by benchmarks/."""
import math

import numpy as np
import pytest
import torch

import cosine_host
from yaml import safe_load as yaml_load
from cosine_host.models import LearnedCosine, load_checkpoint, save_checkpoint
from cosine_host.models.processors import registry as procs
import scipy.fft as scipy_fft

import cosine_host.engine.engine
from helpers import Recorder, noise, perturb
from cosine_host.engine import dct
from cosine_host.engine.engine import Engine


def make(overrides=(), blocksize=0, channels=2, processors=None, **kwargs):
    """An engine from the default config plus ``overrides``; keyword arguments go to Engine."""
    cfg = cosine_host.load_config(overrides=("model.device=cpu", *overrides))
    model = LearnedCosine(cfg.frame.size, cfg.model.coefficients, init=cfg.model.init,
                          decoder=cfg.model.decoder, dtype=cfg.model.dtype)
    if cfg.model.checkpoint:
        load_checkpoint(model, cfg.model.checkpoint)
    chain = processors if processors is not None else procs.build_chain(cfg.processors)
    return Engine(model, cfg.frame.hop, cfg.frame.window, blocksize=blocksize, channels=channels,
                  processors=chain, samplerate=cfg.audio.samplerate, **kwargs)



def blocks(engine, x, size):
    return np.concatenate([engine.process(np.ascontiguousarray(x[i:i + size]))
                           for i in range(0, x.shape[0], size)])



def test_scipy_dct_into_buffers_matches_public_api():
    impl = dct.ScipyDCT()
    x = np.random.default_rng(1).standard_normal((70, 2, 512)).astype(np.float32)
    for rows in (x[:1], x):                  # one thread and several
        out = np.empty_like(rows)
        np.testing.assert_allclose(impl.dct3(rows, out), scipy_fft.dct(rows, 3, norm="ortho"),
                                   atol=1e-5, rtol=0)
        np.testing.assert_allclose(impl.dct2(rows, out), scipy_fft.dct(rows, 2, norm="ortho"),
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("n,m,init", [(512, 512, "dct"), (512, 256, "lowpass"), (256, 64, "lowpass")])
def test_dct_matrices_are_the_models_matrices(n, m, init):
    model = LearnedCosine(n, m, init=init)
    with torch.no_grad():
        assert dct.matrices_match(model.encoder.matrix().double().numpy(),
                                         model.decoder.matrix().double().numpy(), np.float32)
    w1, w2 = dct.dct_matrices(n, m)
    x = np.random.default_rng(2).standard_normal(n)
    np.testing.assert_allclose(w1 @ x, scipy_fft.dct(x, 3, norm="ortho")[:m], atol=1e-12)
    X = np.random.default_rng(3).standard_normal(m)
    np.testing.assert_allclose(X @ w2, scipy_fft.dct(np.pad(X, (0, n - m)), 2, norm="ortho"),
                               atol=1e-12)


# --- when the fast path is chosen ----------------------------------------------------------------

@pytest.mark.parametrize("overrides,expected", [
    ((), "dct"),                                                        # default: DCT, M = N, tied
    (("model.decoder=free",), "dct"),
    (("model.decoder=pinv",), "dct"),
    (("model.init=lowpass", "model.coefficients=256"), "dct"),         # first M DCT rows
    (("model.init=lowpass", "model.coefficients=256", "model.decoder=pinv"), "dct"),
    (("model.init=lowpass",), "dct"),                                  # lowpass, M = N: the DCT
    (("model.coefficients=256",), "matmul"),                                  # dct grid of M < N: no DCT
    (("model.coefficients=256", "model.decoder=pinv"), "matmul"),
    (("frame.size=256", "frame.hop=64", "model.coefficients=256"), "dct"),
    (("model.dtype=float64",), "dct"),
])
def test_chosen_exactly_for_the_dct_pair(overrides, expected):
    engine = make(overrides)
    assert engine.transform == expected, engine.transform_reason


def test_fast_path_off_and_backend_options():
    assert make(fast_path="off").transform == "matmul"
    assert make(backend="torch").transform == "matmul"           # CUDA: cuBLAS products
    with pytest.raises(ValueError, match="fast_path 'fft' unknown"):
        make(fast_path="fft")


# --- equal results ------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [(), ("model.init=lowpass", "model.coefficients=200"),
                                       ("frame.hop=128",), ("frame.hop=64",),
                                       ("frame.window=hann", "frame.hop=128"),
                                       ("processors=[{type: band, lo: 3, hi: 90}]",)])
def test_fast_path_equals_matmul_path(overrides):
    x = noise(256 * 117, 2)
    fast, slow = make(overrides), make(overrides, fast_path="off")
    assert (fast.transform, slow.transform) == ("dct", "matmul")
    np.testing.assert_allclose(fast.render(x, chunk_frames=7000), slow.render(x, chunk_frames=7000),
                               atol=2e-6, rtol=0)
    for b in (64, 256):             # one frame per call or less, and several
        live_fast, live_slow = make(overrides, b), make(overrides, b, fast_path="off")
        np.testing.assert_allclose(blocks(live_fast, x, b), blocks(live_slow, x, b),
                                   atol=2e-6, rtol=0)


@pytest.mark.parametrize("spec", ["{type: quantize, bits: 6}", "{type: topk, k: 64}",
                                  "{type: threshold, db: -30}"])
def test_processors_see_the_same_coefficients(spec):
    """Processors act on the coefficients, which both paths compute alike; the quantizer and
    top-k then make the same decisions (checked in float64, where a float32 rounding cannot
    flip a decision) and the same output (float32: within a tolerance that allows a rare flip)."""
    x = noise(512 * 39, 2, seed=5)
    for dtype in ("float64", "float32"):
        outs, seen, stats = [], [], []
        for fast_path in ("auto", "off"):
            recorder = Recorder()
            spec_dict = procs.check_spec(yaml_load(spec), 512)
            chain = procs.Chain([procs.Plugin(recorder, "recorder"), procs.build(spec_dict)],
                                types=["recorder", spec_dict["type"]])
            engine = make((f"model.dtype={dtype}",), 512, processors=chain, fast_path=fast_path)
            outs.append(blocks(engine, x, 512))
            seen.append(np.concatenate(recorder.seen))
            stats.append(engine.processors.stats()[1])
        assert engine.transform == "matmul"
        tol = 1e-12 if dtype == "float64" else 2e-6
        np.testing.assert_allclose(seen[0], seen[1], atol=tol * 10, rtol=0)
        if dtype == "float64":
            np.testing.assert_allclose(outs[0], outs[1], atol=1e-12, rtol=0)
            assert stats[0] == stats[1]
        else:
            # the matrix path's exact encoder rounds the matrix to b bits of each column's peak
            # (cosine_host.engine.exact): a float32 unit's change that flips a few more decisions
            close = np.abs(outs[0] - outs[1]) <= 2e-6
            assert close.mean() > 0.95
            # a flipped decision moves a few frames by up to a quantisation step, no more
            assert np.abs(outs[0] - outs[1]).max() < 0.05


def test_float64_model_fast_path_is_exact_to_float64():
    x = noise(20000, 1, seed=9)
    fast = make(("model.dtype=float64",), channels=1)
    slow = make(("model.dtype=float64",), channels=1, fast_path="off")
    assert fast.transform == "dct"
    a, b = fast.render(x), slow.render(x)
    np.testing.assert_allclose(a, b, atol=1e-7, rtol=0)    # float32 at the edge, float64 inside
    error = ((a.astype(np.float64) - x) ** 2).sum()
    assert error == 0 or 10 * math.log10((x.astype(np.float64) ** 2).sum() / error) > 130


def test_torch_kernel_equals_numpy_kernel():
    """The CUDA code path (torch queues, strided frames, overlap-add), run on CPU."""
    x = noise(128 * 93, 2, seed=11)
    # a quantizer flips a decision on a float32 rounding difference: compare it in float64
    quantized = ("model.dtype=float64", "model.init=lowpass", "model.coefficients=384",
                 "processors=[{type: band, lo: 0, hi: 300}, {type: quantize, bits: 12}]")
    for fast_path in ("off", "auto"):
        for overrides in ((), ("processors=[{type: band, lo: 5, hi: 300}]",), quantized,
                          ("frame.hop=64",), ("frame.hop=128", "frame.window=hann")):
            ref = make(overrides, 128, fast_path="off")
            engine = make(overrides, 128, backend="torch", fast_path=fast_path)
            for bypass_at in (None, 20):
                ref.reset(), engine.reset()
                outs = []
                for e in (ref, engine):
                    y = []
                    for k in range(0, x.shape[0], 128):
                        e.bypass = bypass_at is not None and bypass_at <= k // 128 < 2 * bypass_at
                        y.append(e.process(x[k:k + 128]))
                    outs.append(np.concatenate(y))
                np.testing.assert_allclose(outs[0], outs[1], atol=5e-6, rtol=0)
            assert engine.stats()["frames_processed"] == ref.stats()["frames_processed"]


# --- switching off after a parameter change, and back ---------------------------------------------

def test_optimiser_step_switches_to_matmul_on_the_next_call():
    engine, reference = make(blocksize=256), make(blocksize=256, fast_path="off")
    x = noise(256 * 40, 2, seed=3)
    assert engine.transform == "dct"
    engine.process(x[:256])
    model = engine.model
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    frames = torch.from_numpy(noise(8, 512, seed=4))
    loss = (model(frames) - frames).pow(2).sum() + model.encoder.rest.sum()
    loss.backward()
    opt.step()
    assert not model.at_init()
    engine.process(x[256:512])
    assert engine.transform == "matmul"
    assert "not at init" in engine.transform_reason
    # same parameters, same output as an engine that never had the fast path
    reference.model.load_state_dict(model.state_dict())
    engine.reset(), reference.reset()
    np.testing.assert_allclose(blocks(engine, x, 256), blocks(reference, x, 256), atol=2e-6, rtol=0)


def test_checkpoint_load_switches_off_and_init_switches_back_on(tmp_path):
    trained = LearnedCosine(512, 512)
    perturb(trained, 1e-4)
    path = tmp_path / "trained.pt"
    save_checkpoint(trained, path)
    engine = make()
    assert engine.transform == "dct"
    load_checkpoint(engine.model, path)
    x = noise(4096, 2)
    engine.process(x)
    assert engine.transform == "matmul"
    # gains only (frequencies untouched) are caught too
    engine.model.load_state_dict(LearnedCosine(512, 512).state_dict())
    engine.process(x)
    assert engine.transform == "dct"
    with torch.no_grad():
        engine.model.decoder.rest.mul_(1.0 + 1e-7)
    engine.process(x)
    assert engine.transform == "matmul"
    # from a config with a checkpoint: matmul from the start
    cfg = cosine_host.load_config(overrides=["model.device=cpu", f"model.checkpoint={path}"])
    assert Engine.from_config(cfg, blocksize=0, channels=1).transform == "matmul"


def test_parameter_data_replaced_is_seen():
    engine = make()
    assert engine.transform == "dct"
    with torch.no_grad():
        engine.model.encoder.freq_offset_bins.data = torch.full((512,), 1e-3)
    engine.process(noise(512, 2))
    assert engine.transform == "matmul"


# --- fallbacks --------------------------------------------------------------------------------------

def test_falls_back_when_the_matrices_do_not_match(monkeypatch):
    monkeypatch.setattr(cosine_host.engine.engine, "matrices_match", lambda enc, dec, dtype: False)
    engine = make()
    assert engine.transform == "matmul"
    assert "differ from the DCT pair" in engine.transform_reason


# --- bounded state ----------------------------------------------------------------------------------

def _state_bytes(engine):
    k = engine._kernel
    arrays = [k.inq.buf, k.outq.buf] + [getattr(k, a) for a in ("dry", "fbuf", "cbuf", "dbuf")
                                          if hasattr(k, a)]
    arrays = [a.buf if hasattr(a, "buf") else a for a in arrays]
    return sum(a.nbytes for a in arrays)


@pytest.mark.parametrize("fast_path", ["auto", "off"])
def test_rendering_holds_no_growing_state(fast_path):
    engine = make(("processors=[{type: quantize, bits: 8}]",), fast_path=fast_path)
    short, long = noise(100_000, 2), noise(1_000_000, 2, seed=1)
    engine.render(short, chunk_frames=1 << 16)
    after_short = _state_bytes(engine)
    engine.render(long, chunk_frames=1 << 16)
    assert _state_bytes(engine) == after_short
    produced = sum(p.shape[0] for p in engine.render_chunks(
        (long[i:i + 50_000] for i in range(0, long.shape[0], 50_000)), long.shape[0]))
    assert produced == long.shape[0]
    assert _state_bytes(engine) == after_short
    # the quantizer's statistics are a fixed-size histogram as well
    assert engine.processors[0]._hist is None or engine.processors[0]._hist.numel() <= 65537

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cosine_host
from cosine_host.engine import latency as lat
from cosine_host.engine.build import build_model
from cosine_host.engine.engine import Engine, EngineInputError

from helpers import assert_impulse_at, stream_blocks

BLOCKSIZES = [1, 32, 64, 100, 256, 441, 512, 1024, 4096, 0]


def make_engine(blocksize=0, channels=1, overrides=(), **kwargs):
    cfg = cosine_host.load_config(overrides=("model.device=cpu", *overrides))
    return Engine.from_config(cfg, blocksize=blocksize, channels=channels, **kwargs)



def snr_db(reference, estimate):
    err = reference.astype(np.float64) - estimate
    return 10 * math.log10((reference.astype(np.float64) ** 2).sum() / (err ** 2).sum())


# --- latency arithmetic --------------------------------------------------------------------------

@pytest.mark.parametrize("hop", [64, 128, 256])
@pytest.mark.parametrize("blocksize", [1, 3, 32, 64, 100, 256, 441, 512, 1024])
def test_latency_formula_matches_brute_force(hop, blocksize):
    n = 512
    period = blocksize * hop // math.gcd(blocksize, hop)
    boundaries = [blocksize * (k + 1) for k in range((2 * period + 2 * n) // blocksize + 2)]
    # The least lag over every placement of the frame grid is the formula...
    best = min(lat.simulate_min_latency(n, hop, boundaries, n - hop + phase)
               for phase in range(0, hop, max(1, hop // 8)))
    assert best == lat.latency_samples(n, hop, blocksize) == n - math.gcd(blocksize, hop)
    # ...and the engine's own placement (prefill N - H) reaches it.
    assert lat.simulate_min_latency(n, hop, boundaries, n - hop) == best
    assert lat.algorithmic_latency_samples(n, hop) + lat.buffering_latency_samples(hop, blocksize) \
        == best


def test_varying_blocks_need_n_minus_1():
    n, hop = 512, 256
    rng = np.random.default_rng(1)
    worst = 0
    for _ in range(20):
        boundaries = np.cumsum(rng.integers(1, 700, 30)).tolist()
        worst = max(worst, lat.simulate_min_latency(n, hop, boundaries, n - hop))
    # a single-sample step somewhere forces N - 1, and N - 1 always suffices
    assert lat.simulate_min_latency(n, hop, [255, 256, 1300, 1301, 2000], n - hop) == n - 1
    assert worst <= n - 1 == lat.latency_samples(n, hop, 0)


def test_boundary_rule():
    assert all(lat.boundary_ok(512, 256, 100, 100 * k) for k in range(1, 50))
    assert lat.boundary_ok(512, 256, 256, 512) and not lat.boundary_ok(512, 256, 256, 300)
    assert all(lat.boundary_ok(512, 256, 0, t) for t in range(1, 600))


# --- the engine ----------------------------------------------------------------------------------

@pytest.mark.parametrize("blocksize", BLOCKSIZES)
def test_impulse_comes_out_exactly_latency_samples_later(blocksize):
    engine = make_engine(blocksize, channels=2)
    n, hop = 512, 256
    expected = n - (math.gcd(blocksize, hop) if blocksize else 1)
    assert engine.latency_samples == expected
    assert engine.algorithmic_latency_samples == n - hop
    assert engine.buffering_latency_samples == expected - (n - hop)
    sizes = [blocksize] if blocksize else [37, 1, 300, 5, 256, 1000]
    total = max(4 * 4096, 3 * blocksize)
    for t in (0, 1, 255, 777, 3000):
        engine.reset()
        x = np.zeros((total + 4096, 2), np.float32)
        x[t, 0] = 1.0
        assert_impulse_at(stream_blocks(engine, x, sizes), t + engine.latency_samples)


@pytest.mark.parametrize("overrides", [(), ("frame.hop=128", "model.coefficients=384"),
                                       ("frame.size=256", "frame.hop=64", "model.coefficients=200",
                                        "model.decoder=free"),
                                       ("frame.hop=32", "frame.synthesis_size=64")],
                         ids=["dct-fast-path", "matmul", "matmul-4-overlaps", "low-delay-pair"])
@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=1500), min_size=1, max_size=25),
       st.integers(min_value=0, max_value=2 ** 31))
def test_output_does_not_depend_on_partition(overrides, sizes, seed):
    rng = np.random.default_rng(seed)
    signal = rng.uniform(-0.5, 0.5, (sum(sizes) + 1, 2)).astype(np.float32)   # -6 dBFS
    reference = make_engine(0, 2, overrides).process(signal)
    engine = make_engine(0, 2, overrides)
    pieces, pos = [], 0
    for size in sizes + [1]:
        pieces.append(engine.process(np.ascontiguousarray(signal[pos:pos + size])))
        pos += size
    np.testing.assert_allclose(np.concatenate(pieces), reference, atol=1e-6, rtol=0)


@pytest.mark.parametrize("n,hop", [(512, 256), (256, 64), (1024, 512)])
def test_identity_chain_reconstructs(n, hop):
    engine = make_engine(0, 2, [f"frame.size={n}", f"frame.hop={hop}", f"model.coefficients={n}"])
    x = np.random.default_rng(0).uniform(-1, 1, (48000, 2)).astype(np.float32)
    y = engine.render(x)
    assert y.shape == x.shape
    assert snr_db(x, y) >= 100.0


def test_render_equals_streaming_and_is_aligned():
    x = np.random.default_rng(2).uniform(-1, 1, (20000, 3)).astype(np.float32)
    engine = make_engine(0, 3, ["processors=[{type: band, lo: 0, hi: 200}]"])
    rendered = engine.render(x, chunk_frames=3000)
    streamed = stream_blocks(make_engine(0, 3, ["processors=[{type: band, lo: 0, hi: 200}]"]),
                              np.concatenate([x, np.zeros((511, 3), np.float32)]), [700])
    np.testing.assert_allclose(rendered, streamed[511:511 + x.shape[0]], atol=1e-6, rtol=0)


def test_channels_are_independent():
    x = np.zeros((8192, 4), np.float32)
    x[:, 0] = np.random.default_rng(3).uniform(-1, 1, 8192)
    for spec in ([], ["processors=[{type: topk, k: 8}, {type: quantize, bits: 3}]"]):
        y = make_engine(256, 4, spec).process(x[:8192])
        assert np.abs(y[:, 1:]).max() == 0.0
        assert np.abs(y[:, 0]).max() > 0.1


def test_processors_act_on_coefficients_in_the_chain():
    # band 0..64 of 512 DCT coefficients keeps 0..3 kHz at 48 kHz: a 1 kHz tone passes, 12 kHz
    # is removed.
    t = np.arange(16384) / 48000
    spec = ["processors=[{type: band, lo: 0, hi: 64}]"]
    low = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[:, None]
    high = (0.5 * np.sin(2 * np.pi * 12000 * t)).astype(np.float32)[:, None]
    assert snr_db(low[1024:-1024], make_engine(0, 1, spec).render(low)[1024:-1024]) > 40
    assert np.abs(make_engine(0, 1, spec).render(high)[1024:-1024]).max() < 1e-3
    live = make_engine(256, 1, spec)
    live.process(np.ascontiguousarray(low[:4096]))
    assert live.stats()["processors"][0]["kept_fraction"] == pytest.approx(64 / 512)


def test_processor_parameters_change_between_calls():
    x = np.random.default_rng(5).uniform(-1, 1, (2048, 1)).astype(np.float32)
    engine = make_engine(256, 1, ["processors=[{type: quantize, bits: 12}]"])
    fine = np.concatenate([engine.process(x[i:i + 256]) for i in range(0, 2048, 256)])
    engine.reset()
    engine.processors[0].bits = 2
    coarse = np.concatenate([engine.process(x[i:i + 256]) for i in range(0, 2048, 256)])
    delay = engine.latency_samples
    ref = x[:2048 - delay]
    assert snr_db(ref, fine[delay:]) > snr_db(ref, coarse[delay:]) + 30


def test_bypass_keeps_timing_and_switches_cleanly():
    engine = make_engine(64, 2, ["processors=[{type: band, lo: 0, hi: 4}]"])
    x = np.random.default_rng(6).uniform(-1, 1, (64 * 60, 2)).astype(np.float32)
    out = []
    for k in range(60):
        engine.bypass = 20 <= k < 40
        out.append(engine.process(x[64 * k:64 * (k + 1)]))
    y = np.concatenate(out)
    d = engine.latency_samples
    # In bypass the output is exactly the input, latency_samples later.
    np.testing.assert_array_equal(y[64 * 20:64 * 40], x[64 * 20 - d:64 * 40 - d])
    assert engine.latency_samples == d


def test_nan_and_inf_never_reach_the_output():
    engine = make_engine(128, 2)
    x = np.random.default_rng(7).uniform(-1, 1, (128 * 20, 2)).astype(np.float32)
    x[300, 0] = np.nan
    x[900, 1] = np.inf
    x[901, 1] = -np.inf
    y = np.concatenate([engine.process(x[i:i + 128]) for i in range(0, x.shape[0], 128)])
    assert np.isfinite(y).all()
    assert engine.nan_events == 2 and engine.nan_samples == 3
    assert engine.stats()["nan_events"] == 2
    clean = x.copy()
    clean[~np.isfinite(clean)] = 0
    reference = make_engine(128, 2)
    expected = np.concatenate([reference.process(clean[i:i + 128])
                               for i in range(0, x.shape[0], 128)])
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("block,message", [
    (np.zeros((256, 2), np.float64), "dtype is float64; the engine takes float32"),
    (np.zeros((256, 2), np.int16), "dtype is int16"),
    (np.zeros(256, np.float32), r"shape is \(256,\); expected \(frames, 2\)"),
    (np.zeros((256, 3), np.float32), r"shape is \(256, 3\); expected \(frames, 2\)"),
    (np.zeros((100, 2), np.float32), "breaks this engine's schedule for blocksize 256"),
    ([[0.0, 0.0]], "must be a numpy array"),
])
def test_bad_blocks_raise_clear_errors(block, message):
    with pytest.raises(EngineInputError, match=message):
        make_engine(256, 2).process(block)


def test_multiples_of_the_blocksize_and_empty_blocks_are_fine():
    engine = make_engine(100, 1)
    x = np.zeros((1000, 1), np.float32)
    x[10] = 1
    y = np.concatenate([engine.process(x[:300]), engine.process(x[300:300]),
                        engine.process(x[300:1000])])
    assert int(np.argmax(y[:, 0])) == 10 + engine.latency_samples


def test_out_argument_is_written_in_place():
    x = np.random.default_rng(4).uniform(-0.5, 0.5, (256 * 6, 2)).astype(np.float32)
    engine, reference = make_engine(256, 2), make_engine(256, 2)
    for i in range(0, x.shape[0], 256):
        out = np.full((256, 2), 7.0, np.float32)
        assert engine.process(x[i:i + 256], out=out) is out
        np.testing.assert_array_equal(out, reference.process(x[i:i + 256]))
    # the output is the input, one latency later (identity chain)
    np.testing.assert_allclose(out, x[-256 - engine.latency_samples:-engine.latency_samples],
                               atol=1e-5, rtol=0)


def test_reset_restores_fresh_state():
    engine = make_engine(256, 1)
    x = np.random.default_rng(8).uniform(-1, 1, (2048, 1)).astype(np.float32)
    first = np.concatenate([engine.process(x[i:i + 256]) for i in range(0, 2048, 256)])
    engine.reset()
    second = np.concatenate([engine.process(x[i:i + 256]) for i in range(0, 2048, 256)])
    np.testing.assert_array_equal(first, second)
    assert engine.calls == 8


def test_latency_report_and_checkpoint_model(tmp_path):
    from cosine_host.models import save_checkpoint
    cfg = cosine_host.load_config(overrides=["model.device=cpu", "model.coefficients=256",
                                        "model.decoder=pinv"])
    model = build_model(cfg)
    path = tmp_path / "m.pt"
    save_checkpoint(model, path)
    engine = Engine.from_config(cfg.replace(f"model.checkpoint={path}"), blocksize=64, channels=1)
    report = engine.latency_report()
    assert report["engine_samples"] == 448 and report["algorithmic_samples"] == 256
    assert report["buffering_samples"] == 192
    assert report["engine_ms"] == pytest.approx(448 / 48)
    with pytest.raises(cosine_host.UserError, match="coefficients = 256 but the config asks for 512"):
        Engine.from_config(cosine_host.load_config(overrides=[f"model.checkpoint={path}"]))


def test_processor_latency_is_reported_and_bypass_matches_it():
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    spec = ['processors=[{type: "plugins_example:OneFrameLookahead", hop: 256}]']
    for bypass in (False, True):
        engine = make_engine(256, 1, spec)
        assert engine.processor_latency_samples == 256
        assert engine.latency_samples == 512 == engine.latency_report()["engine_samples"]
        engine.bypass = bypass
        x = np.zeros((256 * 16, 1), np.float32)
        x[700] = 1.0
        y = np.concatenate([engine.process(x[i:i + 256]) for i in range(0, x.shape[0], 256)])
        assert int(np.argmax(np.abs(y[:, 0]))) == 700 + 512

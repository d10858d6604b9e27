"""Latency with low-delay window pairs (frame.synthesis_size = S < N): the brute-force proof of
S - gcd(B, H), impulses exactly at the reported latency for every block size on every kernel
route, perfect reconstruction of speech, and the numeric contract (partition invariance)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import (assert_impulse_at, make_engine, recording_chain, render_in_blocks,
                     snr_db, stream_blocks)
from cosine_host.engine import latency as lat
from cosine_host.measure import algorithmic as measure
from cosine_host.config.schema import load_config
from cosine_host.lab.speech import synthesize_speech

LOW = ("frame.hop=32", "frame.synthesis_size=64")            # the low-latency preset's frame
BLOCKSIZES = [1, 32, 64, 100, 256, 441, 512, 1024, 4096, 0]   # test_engine's
ROUTES = {"dct": {}, "matmul": {"fast_path": "off"}, "torch": {"backend": "torch"}}


# --- the arithmetic, proved by brute force ---------------------------------------------------------

@pytest.mark.parametrize("hop,s", [(32, 64), (32, 96), (64, 128), (64, 320), (128, 256)])
@pytest.mark.parametrize("blocksize", [1, 3, 32, 64, 100, 256])
def test_short_synthesis_formula_matches_brute_force(hop, s, blocksize):
    n = 512
    period = blocksize * hop // math.gcd(blocksize, hop)
    boundaries = [blocksize * (k + 1) for k in range((2 * period + 2 * n) // blocksize + 2)]
    # the least lag over every placement of the frame grid...
    best = min(lat.simulate_min_latency(n, hop, boundaries, n - hop + phase, s)
               for phase in range(0, hop, max(1, hop // 8)))
    assert best == lat.latency_samples(n, hop, blocksize, s) == s - math.gcd(blocksize, hop)
    # ...the engine's placement (input prefill N - H) reaches it...
    assert lat.simulate_min_latency(n, hop, boundaries, lat.input_prefill_samples(n, hop), s) \
        == best
    # ...as S - H of waiting for frames plus H - gcd(B, H) of buffering
    assert lat.algorithmic_latency_samples(n, hop, s) == s - hop
    assert lat.algorithmic_latency_samples(n, hop, s) \
        + lat.buffering_latency_samples(hop, blocksize) == best
    # and it is below the symmetric pair's at the same N and H by N - S
    assert lat.latency_samples(n, hop, blocksize) - best == n - s


def test_short_synthesis_with_varying_blocks_needs_s_minus_1():
    n, hop, s = 512, 32, 64
    rng = np.random.default_rng(1)
    worst = 0
    for _ in range(20):
        boundaries = np.cumsum(rng.integers(1, 200, 30)).tolist()
        worst = max(worst, lat.simulate_min_latency(n, hop, boundaries, n - hop, s))
    # a single-sample step somewhere forces S - 1, and S - 1 always suffices
    assert lat.simulate_min_latency(n, hop, [31, 32, 300, 301, 700], n - hop, s) == s - 1
    assert worst <= s - 1 == lat.latency_samples(n, hop, 0, s)


# --- the engine reaches it -----------------------------------------------------------------------

@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("blocksize", BLOCKSIZES)
def test_impulse_comes_out_exactly_at_the_reported_latency(blocksize, route):
    engine = make_engine(blocksize, 2, LOW, **ROUTES[route])
    assert engine.transform == ("dct" if route == "dct" else "matmul")
    expected = 64 - (math.gcd(blocksize, 32) if blocksize else 1)
    assert engine.latency_samples == expected == lat.latency_samples(512, 32, blocksize, 64)
    assert engine.algorithmic_latency_samples == 32
    assert engine.buffering_latency_samples == expected - 32
    report = engine.latency_report()
    assert (report["engine_samples"], report["algorithmic_samples"],
            report["synthesis_size"]) == (expected, 32, 64)
    sizes = [blocksize] if blocksize else [37, 1, 300, 5, 32, 1000]
    total = max(2048, 3 * blocksize) + 1024      # the latency is under 64 samples
    for t in (0, 1, 31, 777, 1500):
        x = np.zeros((total, 2), np.float32)
        x[t, 0] = 1.0
        for bypass in (False, True):             # the dry path has the same latency
            engine.reset()
            engine.bypass = bypass
            assert_impulse_at(stream_blocks(engine, x, sizes), t + engine.latency_samples)


def test_latency_algorithmic_confirms_the_preset():
    cfg = load_config("low-latency", ["model.device=cpu"])
    result = measure.algorithmic(cfg, BLOCKSIZES)
    assert result["passed"] and result["synthesis_size"] == 64
    rows = {r["blocksize"]: r for r in result["rows"]}
    assert rows[32]["measured_samples"] == rows[32]["minimum_samples"] == 32
    assert (rows[32]["algorithmic_samples"], rows[32]["buffering_samples"]) == (32, 0)
    assert rows[100]["measured_samples"] == 60 and rows[0]["measured_samples"] == 63


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("overrides", [LOW, ("frame.hop=64", "frame.synthesis_size=256"),
                                       ("frame.hop=128", "frame.synthesis_size=256",
                                        "frame.window=hann")])
def test_identity_reconstructs_speech_above_120_db(overrides, route):
    x = synthesize_speech()
    x = np.concatenate([x, x[::-1]], axis=1)
    engine = make_engine(0, 2, overrides, **ROUTES[route])
    assert snr_db(x, engine.render(x)) >= 120.0


def test_the_decoder_computes_only_the_synthesis_part():
    engine = make_engine(32, 2, LOW, fast_path="off")
    assert engine._kernel.dec.shape == (512, 64)
    # the kernel's window and decoder agree with the pair the engine was built with
    np.testing.assert_array_equal(engine._window_synthesis[:448], 0)


# --- the numeric contract ------------------------------------------------------------------------

@pytest.mark.parametrize("trained", [False, True], ids=["dct", "matrix"])
@settings(max_examples=12, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=700), min_size=1, max_size=15),
       seed=st.integers(min_value=0, max_value=2 ** 31))
def test_coefficients_and_output_do_not_depend_on_the_partition(trained, sizes, seed):
    rng = np.random.default_rng(seed)
    signal = rng.uniform(-0.5, 0.5, (1500 + seed % 1000, 2)).astype(np.float32)

    def run(parts):
        chain, recorder = recording_chain({"type": "quantize", "bits": 6})
        engine = make_engine(0, 2, LOW, chain, trained=trained)
        assert engine.transform == ("matmul" if trained else "dct")
        out = engine.render(signal) if parts is None else render_in_blocks(engine, signal, parts)
        seen = recorder.coefficients(2, 512)
        assert seen.shape[0] == (signal.shape[0] + engine.latency_samples) // engine.hop
        return out, seen

    whole, seen_whole = run(None)
    parted, seen_parted = run([max(1, s) for s in sizes])
    np.testing.assert_array_equal(seen_parted, seen_whole)
    np.testing.assert_allclose(parted, whole, atol=1e-6, rtol=0)



"""The MDCT point of the cosine family (model.init: mdct, preset configs/mdct.yaml): the matrices
are the orthonormal MDCT; the identity chain reconstructs on every route (DCT-IV fast path,
matrix products with and without processors, the torch kernel on CPU) in float32 and float64;
coefficients do not depend on how the signal is cut; the latency is the minimum the brute-force
simulation finds; configs that cannot reconstruct are refused in one line; checkpoints of
format 1 and 2 load with n0 = 0; training moves the per-coefficient gains only and keeps the
pair exact."""
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.fft as scipy_fft
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cosine_host
from cosine_host.config.checks import ConfigError
from cosine_host.engine import latency as lat
from cosine_host.engine import mdct, windows
from cosine_host.engine.build import build_model
from cosine_host.engine.engine import Engine
from cosine_host.models import LearnedCosine, load_checkpoint, save_checkpoint
from cosine_host.models import training as T
from cosine_host.models.checkpoint import FORMAT_VERSION, read_checkpoint
from cosine_host.models.processors import registry
from helpers import assert_impulse_at, noise, recording_chain, render_in_blocks, snr_db

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE_V1 = ROOT / "tests" / "fixtures" / "checkpoint-v1.pt"
QUANTIZE = {"type": "quantize", "bits": 6}
# route -> Engine keywords and the transform it must take
ROUTES = {"mdct": ({}, "mdct"), "matrix": ({"fast_path": "off"}, "matmul"),
          "torch": ({"backend": "torch"}, "matmul")}


def mdct_engine(blocksize=0, channels=2, overrides=(), processors=None, **kwargs):
    """An engine from the shipped mdct preset plus ``overrides`` (CPU)."""
    cfg = cosine_host.load_config("mdct", overrides=("model.device=cpu", *overrides))
    chain = processors if processors is not None else registry.build_chain(cfg.processors)
    return Engine(build_model(cfg), cfg.frame.hop, cfg.frame.window, blocksize=blocksize,
                  channels=channels, processors=chain, samplerate=cfg.audio.samplerate,
                  kbd_alpha=cfg.frame.kbd_alpha, **kwargs)


def mdct_reference(x: np.ndarray, m: int) -> np.ndarray:
    """The textbook orthonormal MDCT of frames x (..., 2M), float64."""
    n = np.arange(2 * m)
    k = np.arange(m)
    basis = np.sqrt(2 / m) * np.cos(np.pi / m * (n[None, :] + 0.5 + m / 2) * (k[:, None] + 0.5))
    return x @ basis.T


def kernel_render64(engine: Engine, x: np.ndarray) -> np.ndarray:
    """The float64 output of a float64 engine's kernel for float64 input (frames, C), aligned
    with the input: what the engine computes before its float32 output rounds it."""
    engine.reset()
    lag = engine.latency_samples
    padded = np.concatenate([x, np.zeros((lag, x.shape[1]))])
    out = np.empty_like(padded)
    engine._kernel.process(np.ascontiguousarray(padded), out, False)
    return out[lag:]


# --- the matrices -----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [8, 64, 512, 2048])
def test_init_is_the_orthonormal_mdct(n):
    m = n // 2
    model = LearnedCosine(n, m, init="mdct", dtype="float64")
    assert model.phase_offset == 0.5 + m / 2
    x = np.random.default_rng(n).standard_normal((5, n))
    with torch.no_grad():
        enc = model.encoder.matrix().numpy()
        dec = model.decoder.matrix().numpy()
    # the textbook reference computes its phase in float64: off by up to ~1e-12 at N = 2048
    np.testing.assert_allclose(x @ enc.T, mdct_reference(x, m), atol=1e-10, rtol=0)
    np.testing.assert_array_equal(enc, dec)                  # tied: the transpose decodes
    w1, w2 = mdct.mdct_matrices(n)
    np.testing.assert_allclose(enc, w1, atol=1e-14, rtol=0)
    assert mdct.matrices_match(enc, dec, np.float64)
    assert model.mdct_pair()[0] and not model.dct_pair()[0]


def test_fast_transform_is_the_mdct_and_its_transpose():
    impl = mdct.MDCT()
    rng = np.random.default_rng(4)
    for shape in ((1, 512), (70, 2, 512)):                  # one thread and several
        x = rng.standard_normal(shape)
        coeffs = np.empty(shape[:-1] + (256,))
        impl.forward(x, coeffs)
        np.testing.assert_allclose(coeffs, mdct_reference(x, 256), atol=1e-12, rtol=0)
        back = np.empty_like(x)
        w1, _ = mdct.mdct_matrices(512)
        expected = coeffs @ w1
        impl.inverse(coeffs, back)
        np.testing.assert_allclose(back, expected, atol=1e-12, rtol=0)


def test_phase_is_exact_at_the_half_sample_grid():
    """float32 matrices from the exact integer phase are the float64 MDCT rounded once: within
    float32's half unit (plus the 1/sqrt(N) scaling's), where a float32 w * (n + n0) would be
    off by about 1e-4."""
    model = LearnedCosine(2048, 1024, init="mdct", dtype="float32")
    with torch.no_grad():
        enc = model.encoder.matrix().double().numpy()
    w1, _ = mdct.mdct_matrices(2048)
    assert np.abs(enc - w1).max() <= 2 * np.finfo(np.float32).eps / math.sqrt(2048) * 2
    n0 = np.float32(0.5 + 512)
    w = (2 * np.arange(1024, dtype=np.float32) + 1) * np.float32(np.pi / 2048)
    naive = np.cos(w[:, None] * (np.arange(2048, dtype=np.float32)[None, :] + n0))
    assert np.abs(naive * 2 / math.sqrt(2048) - w1).max() > 100 * np.abs(enc - w1).max()


def test_dct_init_matrices_are_unchanged_by_the_phase_offset():
    """n0 = 0 reproduces the family without n0 bit for bit (the seed's first column a1)."""
    model = LearnedCosine(64, 64)
    assert model.phase_offset == 0.0
    with torch.no_grad():
        enc = model.encoder.matrix().numpy()
    j = np.arange(64)
    residue = ((2 * j[:, None] + 1) * j[None, :]) % (4 * 64)
    phase = torch.from_numpy(residue.astype(np.float64) * (math.pi / (2 * 64)))
    cos = torch.cos(phase).to(torch.float32).numpy()
    scale = 1.0 / math.sqrt(64)
    expected = np.concatenate([np.full((64, 1), np.float32(1.0 * scale)),
                               cos[:, 1:] * np.float32(math.sqrt(2.0) * scale)], axis=1)
    np.testing.assert_array_equal(enc, expected)


# --- windows ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,alpha", [("sine", 4.0), ("kbd", 4.0), ("kbd", 6.0)])
@pytest.mark.parametrize("n", [16, 512])
def test_mdct_windows_satisfy_princen_bradley(name, alpha, n):
    wa, ws = windows.window_pair(name, n, n // 2, None, alpha)
    np.testing.assert_allclose(wa[:n // 2] ** 2 + wa[n // 2:] ** 2, 1.0, atol=1e-15, rtol=0)
    np.testing.assert_array_equal(wa, wa[::-1])              # symmetric about (N - 1)/2
    np.testing.assert_allclose(ws, wa, atol=1e-15, rtol=0)


def test_kbd_alpha_changes_the_window():
    a4 = windows.analysis_window("kbd", 512, alpha=4.0)
    a6 = windows.analysis_window("kbd", 512, alpha=6.0)
    assert np.abs(a4 - a6).max() > 1e-3
    cfg = cosine_host.load_config("mdct", overrides=("frame.window=kbd", "frame.kbd_alpha=6"))
    engine = Engine.from_config(cfg, device="cpu")
    np.testing.assert_array_equal(engine._window_analysis, a6)


# --- identity per route and dtype ---------------------------------------------------------------

@pytest.mark.parametrize("window", ["sine", "kbd"])
@pytest.mark.parametrize("processors", [False, True])
@pytest.mark.parametrize("route", ROUTES)
def test_identity_float32(route, processors, window):
    kwargs, transform = ROUTES[route]
    chain = recording_chain(m=256)[0] if processors else None
    engine = mdct_engine(overrides=(f"frame.window={window}",), processors=chain, **kwargs)
    assert engine.transform == transform, engine.transform_reason
    x = noise(20000, 2, seed=5)
    assert snr_db(x, engine.render(x)) >= 120.0


@pytest.mark.parametrize("processors", [False, True])
@pytest.mark.parametrize("route", ROUTES)
def test_identity_float64(route, processors):
    kwargs, transform = ROUTES[route]
    chain = recording_chain(m=256)[0] if processors else None
    engine = mdct_engine(overrides=("model.dtype=float64",), processors=chain, **kwargs)
    assert engine.transform == transform
    x = np.random.default_rng(6).uniform(-1, 1, (20000, 2))
    assert snr_db(x, kernel_render64(engine, x)) >= 250.0


def test_model_level_identity_with_overlap_add():
    """Training's differentiable chain (models.training.reconstruct) also reconstructs."""
    wa, ws = windows.window_pair("sine", 512, 256)
    for dtype, target in (("float32", 120.0), ("float64", 250.0)):
        model = LearnedCosine(512, 256, init="mdct", dtype=dtype)
        torch_dtype = model.dtype
        segments = torch.rand(3, T.segment_samples(512, 256), dtype=torch_dtype) * 2 - 1
        with torch.no_grad():
            out = T.reconstruct(model, registry.build_chain([]), segments,
                                torch.from_numpy(wa).to(torch_dtype),
                                torch.from_numpy(ws).to(torch_dtype), 256)
        target_signal = T.interior(segments, 512, 256)
        assert snr_db(target_signal.numpy(), out.numpy()) >= target


def test_routes_agree_and_fast_path_coefficients_are_the_mdct():
    x = noise(6000, 2, seed=7)
    seen = {}
    for route, (kwargs, _) in ROUTES.items():
        chain, recorder = recording_chain(m=256)
        engine = mdct_engine(processors=chain, **kwargs)
        engine.render(x)
        seen[route] = recorder.coefficients(2, 256)
    # the exact encoder: the torch kernel's coefficients are the numpy matrix path's, bit for bit
    np.testing.assert_array_equal(seen["torch"], seen["matrix"])
    np.testing.assert_allclose(seen["mdct"], seen["matrix"], atol=2e-6, rtol=0)


# --- the numeric contract -----------------------------------------------------------------------

def recorded(route, dtype, signal, sizes=None, chunk=1 << 19):
    chain, recorder = recording_chain(QUANTIZE, m=256)
    kwargs, transform = ROUTES[route]
    engine = mdct_engine(0, signal.shape[1], (f"model.dtype={dtype}",), chain, **kwargs)
    assert engine.transform == transform
    out = (engine.render(signal, chunk_frames=chunk) if sizes is None
           else render_in_blocks(engine, signal, sizes))
    seen = recorder.coefficients(signal.shape[1], 256)
    assert seen.shape[0] == (signal.shape[0] + engine.latency_samples) // engine.hop
    return out, seen


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("route", ["mdct", "matrix"])
@settings(max_examples=8, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=1500), min_size=1, max_size=10),
       seed=st.integers(min_value=0, max_value=2 ** 31))
def test_coefficients_do_not_depend_on_the_partition(route, dtype, sizes, seed):
    signal = noise(3000 + seed % 2000, 2, seed)
    whole, seen_whole = recorded(route, dtype, signal)
    parted, seen_parted = recorded(route, dtype, signal, sizes)
    np.testing.assert_array_equal(seen_parted, seen_whole)
    np.testing.assert_allclose(parted, whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("route", ["mdct", "matrix", "torch"])
def test_one_sample_blocks_and_small_chunks(route):
    signal = noise(1700, 1, seed=3)
    whole, seen_whole = recorded(route, "float32", signal)
    for sizes, chunk in (([1], None), ([1, 2, 3, 300, 7], None), (None, 257)):
        out, seen = recorded(route, "float32", signal, sizes, chunk=chunk or 1 << 19)
        np.testing.assert_array_equal(seen, seen_whole)
        np.testing.assert_allclose(out, whole, atol=1e-6, rtol=0)


# --- fast path choice ---------------------------------------------------------------------------

def test_fast_path_at_init_left_after_a_parameter_change_and_back():
    engine = mdct_engine(channels=1)
    assert engine.transform == "mdct"
    x = noise(8000, 1, seed=8)
    gain = engine.model.encoder.coefficient_log_gain
    with torch.no_grad():
        gain.add_(torch.linspace(-0.5, 0.5, 256))
    y = engine.render(x)
    assert engine.transform == "matmul" and "trained" in engine.transform_reason
    # gains with their inverse in the decoder: still exact
    assert snr_db(x, y) >= 120.0
    with torch.no_grad():
        gain.zero_()
    engine.render(x)
    assert engine.transform == "mdct"
    # a frozen parameter moved: the pair is no MDCT any more, the engine leaves the fast path
    with torch.no_grad():
        engine.model.encoder.freq_offset_bins[3] += 0.01
    engine.render(x)
    assert engine.transform == "matmul" and "frequencies" in engine.transform_reason


def test_phase_offset_change_is_seen():
    engine = mdct_engine(channels=1)
    with torch.no_grad():
        engine.model.encoder.phase_offset.fill_(0.0)
    engine.render(noise(2000, 1))
    assert engine.transform == "matmul" and "phase offset" in engine.transform_reason


# --- latency ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [64, 512])
@pytest.mark.parametrize("blocksize", [1, 32, 100, 256, 512])
def test_latency_is_the_brute_force_minimum(n, blocksize):
    """Fixed blocks: the least lag over placements of the frame grid is N - gcd(B, N/2), and the
    engine's placement reaches it (the DCT init's proof holds: the MDCT pair is a symmetric
    pair of N-sample windows at hop N/2)."""
    hop = n // 2
    period = blocksize * hop // math.gcd(blocksize, hop)
    boundaries = [blocksize * (k + 1) for k in range((2 * period + 2 * n) // blocksize + 2)]
    best = min(lat.simulate_min_latency(n, hop, boundaries, n - hop + phase)
               for phase in range(0, hop, max(1, hop // 8)))
    assert best == n - math.gcd(blocksize, hop)
    assert lat.simulate_min_latency(n, hop, boundaries, lat.input_prefill_samples(n, hop)) == best
    engine = mdct_engine(blocksize, 2, (f"frame.size={n}", f"frame.hop={hop}",
                                        f"model.coefficients={hop}"))
    assert engine.latency_samples == best
    assert engine.algorithmic_latency_samples == n - hop
    assert engine.buffering_latency_samples == hop - math.gcd(blocksize, hop)


def test_latency_with_varying_blocks_is_n_minus_1():
    n, hop = 512, 256
    rng = np.random.default_rng(1)
    worst = max(lat.simulate_min_latency(n, hop, np.cumsum(rng.integers(1, 600, 20)).tolist(),
                                         n - hop) for _ in range(10))
    # a single-sample step somewhere forces N - 1, and N - 1 always suffices
    assert lat.simulate_min_latency(n, hop, [255, 256, 900, 901, 1700], n - hop) == n - 1
    assert worst <= n - 1 == mdct_engine(0).latency_samples


def test_latency_algorithmic_confirms_the_preset():
    """`run.py latency algorithmic -c mdct`: impulses through the engine and its bypass come
    out at the reported latency, which is the minimum, at every block size."""
    from cosine_host.measure import algorithmic as measure
    cfg = cosine_host.load_config("mdct", ["model.device=cpu"])
    result = measure.algorithmic(cfg, [1, 32, 100, 256, 441, 512, 0])
    assert result["passed"]
    rows = {r["blocksize"]: r for r in result["rows"]}
    for b, row in rows.items():
        expected = 512 - (math.gcd(b, 256) if b else 1)
        assert row["measured_samples"] == row["minimum_samples"] == expected, (b, row)
    assert (rows[256]["algorithmic_samples"], rows[256]["buffering_samples"]) == (256, 0)


@pytest.mark.parametrize("overlap,blocksize", [(64, 256), (128, 256), (64, 64), (32, 100)])
def test_low_overlap_window_latency_is_its_span_minus_gcd(overlap, blocksize):
    """The same proof for a low-overlap MDCT window (zero on the first and last (M - L)/2
    samples of the 2M-sample frame, overlap L < M, as low-delay codecs use): frames then need
    only their M + L nonzero samples, so the brute force finds (M + L) - gcd(B, M), L at B = M,
    against 2M - gcd(B, M) for the full-overlap windows. (Derived only: the engine frames the
    whole 2M samples.)"""
    m = 256
    span = m + overlap
    period = blocksize * m // math.gcd(blocksize, m)
    boundaries = [blocksize * (k + 1) for k in range((2 * period + 4 * span) // blocksize + 2)]
    best = min(lat.simulate_min_latency(span, m, boundaries, span - m + phase)
               for phase in range(0, m, 8))
    assert best == span - math.gcd(blocksize, m) == lat.latency_samples(span, m, blocksize)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("blocksize", [0, 64, 256, 441])
def test_impulse_comes_out_at_the_reported_latency(route, blocksize):
    engine = mdct_engine(blocksize, 2, **ROUTES[route][0])
    size = blocksize or 37
    x = np.zeros((size * (2048 // size + 4), 2), np.float32)
    x[5, 0] = 1.0
    out = np.concatenate([engine.process(x[i:i + size]) for i in range(0, x.shape[0], size)])
    assert_impulse_at(out, 5 + engine.latency_samples)


# --- refusals -----------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,named", [
    (("frame.hop=128",), "frame.hop = 128"),
    (("model.coefficients=512",), "model.coefficients = 512"),
    (("frame.window=sqrt_hann",), "frame.window = 'sqrt_hann'"),
    (("frame.window=hann",), "frame.window = 'hann'"),
    (("frame.synthesis_size=256",), "frame.synthesis_size = 256"),
    (("model.decoder=pinv",), "model.decoder = 'pinv'"),
    (("frame.size=511", "frame.hop=7"), "needs an even frame.size"),
])
def test_configs_that_cannot_reconstruct_are_refused(overrides, named):
    with pytest.raises(ConfigError) as info:
        cosine_host.load_config("mdct", overrides=overrides)
    message = str(info.value)
    assert "\n" not in message
    assert named in message
    if "even" not in named:          # the key that is wrong comes first, then what works
        assert message.startswith(named)
    if "even" not in named:
        assert "frame.hop 256" in message and "sine or kbd" in message


def test_default_config_with_mdct_init_is_refused_naming_what_works():
    with pytest.raises(ConfigError, match=r"model.coefficients = 512: model.init mdct "
                                          r"reconstructs with model.coefficients 256, "
                                          r"frame.hop 256, frame.window sine or kbd"):
        cosine_host.load_config(overrides=("model.init=mdct",))


def test_engine_refuses_an_mdct_model_with_a_window_that_cannot_cancel_aliasing():
    with pytest.raises(ValueError, match="frame.window = 'sqrt_hann'"):
        Engine(LearnedCosine(512, 256, init="mdct"), 256, "sqrt_hann")
    with pytest.raises(ValueError, match="decoder 'tied'"):
        LearnedCosine(512, 256, init="mdct", decoder="free")
    with pytest.raises(ValueError, match="M = N/2"):
        LearnedCosine(512, 512, init="mdct")


def test_cli_refusal_is_one_line_without_traceback():
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "latency", "algorithmic",
                           "-c", "mdct", "--set", "frame.hop=128"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    assert "frame.hop = 128" in done.stderr + done.stdout


@pytest.mark.parametrize("overrides,named", [
    (("frame.size=511", "frame.hop=100"), "frame.window = 'kbd' needs an even frame.size"),
    (("frame.size=510", "frame.hop=15", "frame.synthesis_size=45"),
     "frame.synthesis_size = 45: the kbd window needs an even synthesis_size"),
])
def test_kbd_needs_even_lengths(overrides, named):
    with pytest.raises(ConfigError) as info:
        cosine_host.load_config(overrides=("frame.window=kbd", "model.coefficients=64",
                                           *overrides))
    assert str(info.value).startswith(named) and "\n" not in str(info.value)


def test_kbd_alpha_must_be_positive():
    with pytest.raises(ConfigError, match="frame.kbd_alpha = 0"):
        cosine_host.load_config("mdct", overrides=("frame.kbd_alpha=0",))


# --- checkpoints --------------------------------------------------------------------------------

def test_old_checkpoint_loads_with_zero_phase_offset():
    payload = read_checkpoint(FIXTURE_V1)
    assert payload["version"] == 1
    meta = payload["metadata"]
    model = LearnedCosine(meta["frame_size"], meta["coefficients"], init=meta["init"],
                          decoder=meta["decoder"])
    with torch.no_grad():
        model.encoder.phase_offset.fill_(3.0)           # so that loading must set it
        model.decoder.basis.phase_offset.fill_(3.0)
    load_checkpoint(model, FIXTURE_V1)
    assert model.encoder.n0 == 0.0 and model.decoder.basis.n0 == 0.0
    for name, value in payload["state_dict"].items():
        if not name.endswith("phase_offset"):
            assert torch.equal(model.state_dict()[name], value)


def test_checkpoint_stores_the_phase_offset_and_gains(tmp_path):
    model = LearnedCosine(64, 32, init="mdct")
    with torch.no_grad():
        model.encoder.coefficient_log_gain.copy_(torch.linspace(-1, 1, 32))
    path = tmp_path / "mdct.pt"
    save_checkpoint(model, path)
    payload = read_checkpoint(path)
    assert payload["version"] == FORMAT_VERSION == 3
    assert float(payload["state_dict"]["encoder.phase_offset"]) == 16.5
    fresh = LearnedCosine(64, 32, init="mdct")
    load_checkpoint(fresh, path)
    assert torch.equal(fresh.encoder.coefficient_log_gain, model.encoder.coefficient_log_gain)


# --- training -----------------------------------------------------------------------------------

def test_training_moves_the_gains_only_and_keeps_the_pair_exact(tmp_path):
    n, hop = 64, 32
    model = LearnedCosine(n, hop, init="mdct")
    gains, freqs = model.parameter_groups()
    assert [p is model.encoder.coefficient_log_gain for p in gains] == [True] and not freqs
    frozen = {k: v.clone() for k, v in model.state_dict().items()
              if not k.endswith("coefficient_log_gain")}
    t = np.arange(40000)
    rng = np.random.default_rng(9)
    signal = (np.sin(2 * np.pi * 440 * t / 48000) * (1 + 0.5 * np.sin(t / 3000))
              + 0.05 * rng.standard_normal(t.size))
    sampler = T.SegmentSampler([torch.from_numpy(signal.astype(np.float32))], n, hop)
    wa, ws = windows.window_pair("sine", n, hop)
    chain = registry.build_chain([{"type": "quantize", "bits": 4}])
    rows = T.train(model, chain, sampler, window_analysis=wa, window_synthesis=ws, hop=hop,
                   steps=15, batch=4, lr=5e-2, seed=1)
    assert len(rows) == 15 and all(math.isfinite(r["loss"]) for r in rows)
    assert model.encoder.coefficient_log_gain.detach().abs().max() > 1e-3
    for k, v in frozen.items():
        assert torch.equal(model.state_dict()[k], v), k
    path = tmp_path / "trained.pt"
    save_checkpoint(model, path)
    # the trained checkpoint, through the engine without processors: still exact
    cfg = cosine_host.load_config("mdct", overrides=(
        "model.device=cpu", f"frame.size={n}", f"frame.hop={hop}", f"model.coefficients={hop}",
        f"model.checkpoint={path}"))
    engine = Engine.from_config(cfg, blocksize=0, channels=1)
    assert engine.transform == "matmul"
    x = noise(8000, 1, seed=10)
    assert snr_db(x, engine.render(x)) >= 120.0


def test_train_without_processors_says_how_the_mdct_learns(tmp_path):
    import soundfile as sf
    from cosine_host.errors import UserError
    from cosine_host.train.fit import train_files
    audio = tmp_path / "noise.wav"
    sf.write(audio, noise(48000, 1, seed=11, level=0.3), 48000)
    cfg = cosine_host.load_config("mdct", overrides=("model.device=cpu",))
    with pytest.raises(UserError, match=r"nothing to learn: the mdct init already reconstructs "
                                        r".*--set 'processors=\[\{type: quantize"):
        train_files(cfg, [str(audio)], steps=1, out_path=str(tmp_path / "m.pt"))
    assert not (tmp_path / "m.pt").exists()

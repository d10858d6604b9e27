"""Window pairs (cosine_host.engine.windows): perfect reconstruction of symmetric and low-delay pairs, the
low-delay pair's shape, frame.synthesis_size at config load and through the CLI, and training
with the short synthesis window."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cosine_host.models import LearnedCosine
from cosine_host.models.processors import registry as P
from cosine_host.models import training as T
from cosine_host.cli import cli
from cosine_host.engine import windows
from cosine_host.config.schema import ConfigError, load_config
from cosine_host.engine.engine import Engine

PAIRS = [(512, 32, 64), (512, 32, 96), (512, 64, 128), (512, 64, 448), (256, 16, 32),
         (512, 128, 256), (64, 16, 32), (48, 8, 24)]


@pytest.mark.parametrize("name", windows.WINDOWS)
@pytest.mark.parametrize("n,hop,s", PAIRS)
def test_low_delay_pairs_reconstruct_perfectly(name, n, hop, s):
    wa, ws = windows.window_pair(name, n, hop, s)
    assert wa.shape == ws.shape == (n,)
    # the product overlap-adds to one at the hop, at every sample
    np.testing.assert_allclose((wa * ws).reshape(-1, hop).sum(axis=0), 1.0, rtol=0, atol=1e-14)
    # the synthesis window lives on the last S samples only; the analysis window covers it
    assert not ws[:n - s].any() and ws[n - s + 1:].min() > 0
    assert wa[n - s:].min() > 0 and np.isfinite(ws).all()


@pytest.mark.parametrize("n,hop,s", PAIRS)
def test_low_delay_analysis_window_is_long_and_asymmetric(n, hop, s):
    wa, ws = windows.window_pair("sqrt_hann", n, hop, s)
    peak = n - s // 2
    assert wa.argmax() == peak and wa[peak] == pytest.approx(1.0)
    assert np.all(np.diff(wa[:peak + 1]) > 0) and np.all(np.diff(wa[peak:]) < 0)
    # the product is a Hann window of length S scaled to overlap-add to one
    k = np.arange(s)
    np.testing.assert_allclose((wa * ws)[n - s:], (2 * hop / s) * (0.5 - 0.5 * np.cos(
        2 * np.pi * k / s)), rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", windows.WINDOWS)
def test_full_synthesis_size_is_the_symmetric_pair(name):
    hop = 512 if name == "rectangular" else 128
    for got, want in zip(windows.window_pair(name, 512, hop, 512),
                         windows.window_pair(name, 512, hop)):
        np.testing.assert_array_equal(got, want)
    # the low-delay construction at S = N is the periodic sqrt-Hann itself
    np.testing.assert_allclose(windows.analysis_window("sqrt_hann", 512, 511)[:256],
                               windows.analysis_window("sqrt_hann", 512)[:256], atol=2e-3)


@pytest.mark.parametrize("hop,s", [(32, 100), (32, 32), (32, 16), (32, 1024), (256, 128)])
def test_impossible_pairs_are_refused(hop, s):
    assert windows.synthesis_problem(512, hop, s)
    assert not windows.reconstructs("sqrt_hann", 512, hop, s)
    with pytest.raises(ValueError, match="frame.synthesis_size"):
        windows.window_pair("sqrt_hann", 512, hop, s)


# --- config ---------------------------------------------------------------------------------------

def test_synthesis_size_defaults_to_the_frame():
    cfg = load_config()
    assert cfg.frame.synthesis_size is None and cfg.frame.synthesis_samples == 512
    # null follows frame.size: a larger frame keeps the symmetric pair
    assert cfg.replace("frame.size=1024").frame.synthesis_samples == 1024
    low = load_config("low-latency")
    assert (low.frame.size, low.frame.hop, low.frame.synthesis_samples) == (512, 32, 64)
    assert low.replace("frame.synthesis_size=null").frame.synthesis_samples == 512


@pytest.mark.parametrize("overrides,message", [
    (("frame.hop=32", "frame.synthesis_size=100"),
     r"^frame.synthesis_size = 100: must be a multiple of frame.hop \(32\) from 64 to 512, e.g. "
     r"64, 96, 128, 480 or 512 \(the whole frame, null\)$"),
    (("frame.hop=32", "frame.synthesis_size=32"), r"from 64 to 512"),
    (("frame.hop=32", "frame.synthesis_size=600"), r"from 64 to 512"),
    (("frame.synthesis_size=128",),
     r"^frame.synthesis_size = 128: with frame.size 512 and frame.hop 256 only 512 \(the whole "
     r"frame\) works; a shorter synthesis window needs frame.hop <= 128 \(e.g. frame.hop 128 "
     r"with synthesis_size 256\)$"),
    (("frame.synthesis_size=0",), r"frame.synthesis_size = 0: out of range"),
    (("frame.synthesis_size=sixty",), r"frame.synthesis_size = 'sixty': must be an integer"),
])
def test_config_names_what_would_work(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_cli_refuses_a_bad_synthesis_size_in_one_line():
    result = CliRunner().invoke(cli, ["info", "-c", "low-latency", "--set",
                                      "frame.synthesis_size=48"])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "frame.synthesis_size = 48: must be a multiple of frame.hop" \
        in lines[0]
    assert "Traceback" not in result.output


def test_cli_info_reports_the_low_latency_figures():
    result = CliRunner().invoke(cli, ["info", "-c", "low-latency", "--set", "model.device=cpu"])
    assert result.exit_code == 0, result.output
    assert "engine latency at blocksize 32: 32 samples = 0.67 ms at 48000 Hz (algorithmic 32 " \
           "+ buffering 0)" in result.stdout


# --- training -----------------------------------------------------------------------------------

def test_training_chain_with_a_short_synthesis_window_equals_the_engine():
    n, hop, s, m = 64, 8, 16, 24
    x = np.random.default_rng(4).standard_normal(T.INTERIOR_FRAMES * n).astype(np.float32)
    model = LearnedCosine(n, m, decoder="free")
    chain = P.build_chain([P.check_spec({"type": "quantize", "bits": 5}, m)])
    sampler = T.SegmentSampler([torch.from_numpy(x)], n, hop)
    segment = sampler.draw(1, torch.Generator().manual_seed(0))
    wa, ws = (torch.as_tensor(w, dtype=torch.float32)
              for w in windows.window_pair("sqrt_hann", n, hop, s))
    with torch.no_grad():
        trained_view = T.reconstruct(model, chain, segment, wa, ws, hop)[0].numpy()
    rendered = Engine(model, hop, "sqrt_hann", channels=1, processors=chain,
                      synthesis_size=s).render(x[:, None])[:, 0]
    np.testing.assert_allclose(trained_view, rendered, rtol=0, atol=2e-6)
    assert np.abs(rendered - x).max() > 1e-3       # the quantizer really acts
    # and training moves the model with these windows
    rows = T.train(model, chain, sampler, window_analysis=wa, window_synthesis=ws, hop=hop,
                   steps=3, batch=2, lr=1e-2)
    assert len(rows) == 3 and rows[-1]["freq_shift_bins"] > 0

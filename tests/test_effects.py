"""Time-domain effect stages around the transform (cosine_host.engine.effects, config ``pre``/``post``):
validation at config load, render through real pedalboard effects, latency compensation with a
stage of known latency, partition invariance, bypass, and live on the JACK dummy."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pedalboard          # the test extras install it: these tests run in CI
import pytest
import soundfile as sf
from pedalboard_native._internal import AddLatency    # pedalboard's own known-latency stage

import cosine_host
from cosine_host.engine import effects
from cosine_host.engine.engine import Engine
from helpers import noise, render_in_blocks, stream_blocks

REPO = Path(__file__).resolve().parents[1]
SR = 48000


def run_cli(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run.py"), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def engine_with(pre=(), post=(), blocksize=0, channels=1, **kw) -> Engine:
    cfg = cosine_host.load_config(overrides=[f"audio.blocksize={blocksize}",
                                        f"audio.channels={channels}"])
    base = Engine.from_config(cfg)
    stages = {"pre": effects.EffectChain([effects.Stage(p, f"pre[{i}]") for i, p in enumerate(pre)]),
              "post": effects.EffectChain([effects.Stage(p, f"post[{i}]")
                                           for i, p in enumerate(post)])}
    return Engine(base.model, cfg.frame.hop, cfg.frame.window, blocksize=blocksize,
                  channels=channels, samplerate=SR, **stages, **kw)


# --- validation at config load -----------------------------------------------------------------

@pytest.mark.parametrize("value, message", [
    ("[{type: pedalboard.Compresor}]", "pre[0].type = 'pedalboard.Compresor': unknown effect; "
                                       "allowed: pedalboard.Bitcrush"),
    ("[{type: pedalboard.Compressor, rate: 4}]", "pre[0].rate: unknown parameter of "
                                                 "pedalboard.Compressor; allowed: attack_ms, "
                                                 "ratio, release_ms, threshold_db"),
    ("[{type: pedalboard.Compressor, ratio: fast}]", "pre[0].ratio = 'fast': must be a finite "
                                                     "number"),
    ("[{type: pedalboard.Compressor, ratio: 0.5}]", "pre[0].ratio = 0.5: Compressor ratio must "
                                                    "be a value >= 1.0"),
    ("[{type: pedalboard.LadderFilter, mode: LP}]", "pre[0].mode = 'LP': not allowed; allowed: "
                                                    "LPF12 | HPF12"),
    ("[{type: vst3, path: /nowhere/Plugin.vst3}]", "pre[0].path = '/nowhere/Plugin.vst3': no "
                                                   "such plugin file"),
    ("[{type: vst3}]", "pre[0].path: a vst3 stage needs the path of its plugin"),
    ("[gain]", "pre[0] = 'gain': each stage is a mapping with a type"),
    ("gain", "pre = 'gain': must be a list such as"),
])
def test_bad_stage_is_one_line_naming_what_is_allowed(value, message):
    with pytest.raises(cosine_host.ConfigError) as e:
        cosine_host.load_config(overrides=[f"pre={value}"])
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_cli_refuses_a_missing_plugin_file_in_one_line(tmp_path):
    wav = tmp_path / "in.wav"
    sf.write(wav, noise(4800, 1, seed=1), SR)
    r = run_cli("render", wav, tmp_path / "out.wav", "--set",
                f"post=[{{type: vst3, path: {tmp_path / 'Missing.vst3'}}}]")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no such plugin file" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out.wav").exists()


def test_au_is_refused_off_macos(tmp_path):
    if hasattr(pedalboard, "AudioUnitPlugin"):
        pytest.skip("Audio Units load here (macOS)")
    bundle = tmp_path / "Plugin.component"
    bundle.mkdir()
    with pytest.raises(cosine_host.ConfigError, match="Audio Units load on macOS only; use vst3"):
        cosine_host.load_config(overrides=[f"post=[{{type: au, path: {bundle}}}]"])


def test_without_pedalboard_a_config_with_stages_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pedalboard", None)      # import pedalboard -> ImportError
    with pytest.raises(cosine_host.ConfigError) as e:
        cosine_host.load_config(overrides=["pre=[{type: pedalboard.Gain}]"])
    assert str(e.value).startswith("pre[0]: needs pedalboard")
    assert "pip install 'cosine-host[fx]'" in str(e.value)
    cosine_host.load_config()                                       # no stages: no pedalboard needed


def test_overrides_reach_a_stage_parameter():
    cfg = cosine_host.load_config(overrides=["pre=[{type: pedalboard.Compressor, ratio: 2}]",
                                        "pre.0.ratio=8"])
    assert cfg.pre == ({"type": "pedalboard.Compressor", "ratio": 8},)
    assert cfg.to_dict()["pre"] == [{"type": "pedalboard.Compressor", "ratio": 8}]


# --- render ------------------------------------------------------------------------------------

def test_gain_down_before_and_up_after_is_the_identity(tmp_path):
    signal = noise(3 * SR, 2, seed=3)
    src = tmp_path / "in.wav"
    sf.write(src, signal, SR, subtype="FLOAT")
    plain, staged = tmp_path / "plain.wav", tmp_path / "staged.wav"
    r = run_cli("render", src, plain)
    assert r.returncode == 0, r.stderr
    r = run_cli("render", src, staged, "--set", "pre=[{type: pedalboard.Gain, gain_db: -6}]",
                "--set", "post=[{type: pedalboard.Gain, gain_db: 6}]")
    assert r.returncode == 0, r.stderr
    a, _ = sf.read(plain, dtype="float32")
    b, _ = sf.read(staged, dtype="float32")
    assert a.shape == b.shape == signal.shape
    assert np.abs(a - b).max() < 1e-6
    assert np.abs(b - signal).max() < 1e-5
    # and the stage did act: -6 dB alone halves the level
    half = tmp_path / "half.wav"
    r = run_cli("render", src, half, "--set", "pre=[{type: pedalboard.Gain, gain_db: -6.0206}]")
    assert r.returncode == 0, r.stderr
    c, _ = sf.read(half, dtype="float32")
    assert np.abs(c - 0.5 * signal).max() < 1e-5


@pytest.mark.parametrize("where", ["pre", "post"])
def test_known_latency_stage_is_reported_and_compensated(where):
    delay = 10000          # pedalboard's AddLatency delays by exactly this many samples
    plain = engine_with(blocksize=256)
    eng = engine_with(**{where: [AddLatency(delay)]}, blocksize=256)
    assert eng.latency_samples == plain.latency_samples + delay
    assert eng.latency_report()[f"{where}_samples"] == delay
    x = np.zeros((40960, 1), np.float32)
    x[[500, 7777, 15000]] = 0.5
    y = stream_blocks(eng, x, [256])
    hits = np.flatnonzero(np.abs(y[:, 0]) > 0.25)
    assert list(hits) == [k + eng.latency_samples for k in (500, 7777, 15000)]
    # render removes it: the impulses come out where they went in
    aligned = engine_with(**{where: [AddLatency(delay)]}).render(x)
    assert list(np.flatnonzero(np.abs(aligned[:, 0]) > 0.25)) == [500, 7777, 15000]
    assert np.allclose(aligned[[500, 7777, 15000], 0], 0.5, atol=1e-5)


def test_render_compensates_a_measured_resampler_latency():
    eng = engine_with(post=[pedalboard.Resample(target_sample_rate=16000)])
    assert eng.post.latency_samples > 0
    x = np.zeros((30000, 1), np.float32)
    x[[4000, 12345]] = 1.0
    y = eng.render(x)
    assert y.shape == x.shape
    assert set(np.argsort(np.abs(y[:, 0]))[-2:]) == {4000, 12345}


def test_latency_algorithmic_measures_the_stages(tmp_path):
    out = tmp_path / "latency.json"
    r = run_cli("latency", "algorithmic", "--json", out, "--blocksizes", "1,32,256,0", "--set",
                "post=[{type: pedalboard.Resample, target_sample_rate: 16000}]")
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["passed"]
    stage = engine_with(post=[pedalboard.Resample(target_sample_rate=16000)]).post.latency_samples
    for row in report["rows"]:
        assert row["stages_samples"] == stage > 0
        assert row["measured_samples"] == row["reported_samples"] == row["minimum_samples"]


# --- streaming contract -----------------------------------------------------------------------

def test_stages_do_not_depend_on_how_the_signal_was_cut():
    def stages():
        return dict(pre=[pedalboard.Compressor(threshold_db=-20, ratio=4)],
                    post=[pedalboard.Limiter(threshold_db=-6), pedalboard.Reverb()])
    x = noise(SR, 2, seed=5)
    whole = engine_with(**stages(), channels=2).render(x)
    blocks = render_in_blocks(engine_with(**stages(), channels=2), x, [1, 7, 300, 2, 4096, 33])
    assert np.abs(blocks - whole).max() < 1e-5


def test_bypass_is_the_input_at_the_same_latency():
    eng = engine_with(pre=[pedalboard.Gain(gain_db=-12)], post=[AddLatency(1000)], blocksize=256)
    x = noise(96 * 256, 1, seed=7)
    eng.bypass = True
    y = stream_blocks(eng, x, [256])
    n = eng.latency_samples
    assert n == 256 + 1000
    assert np.array_equal(y[n:], x[:-n]) and not y[:n].any()


def test_reset_restarts_the_stages():
    eng = engine_with(pre=[pedalboard.Compressor(threshold_db=-30, ratio=8)],
                      post=[pedalboard.Reverb(room_size=0.9)])
    x = noise(SR, 1, seed=9)
    first = eng.render(x)
    assert np.array_equal(eng.render(x), first)


# --- live on the JACK dummy --------------------------------------------------------------------

def test_live_loopback_through_stages_lands_at_the_reported_latency(jack_server):
    from cosine_host.live.session import LiveSession

    sr = jack_server.samplerate
    cfg = cosine_host.load_config(overrides=[
        "audio.blocksize=256", f"audio.samplerate={sr}",
        "pre=[{type: pedalboard.Gain, gain_db: -6}]",
        "post=[{type: pedalboard.Gain, gain_db: 6}, {type: pedalboard.Resample, "
        "target_sample_rate: 24000}]"])
    session = LiveSession(cfg, jack_loopback=True)
    signal_ = np.zeros(12000, np.float32)
    signal_[[1000, 6001]] = 0.5
    dry = session.play_record(signal_, through_engine=False)
    device = int(np.flatnonzero(np.abs(dry[:, 0]) > 0.25)[0]) - 1000
    wet = session.play_record(signal_)
    assert session.engine.post.latency_samples > 0
    expect = session.engine.latency_samples + device
    peaks = np.flatnonzero(np.abs(wet[:, 0]) > 0.2)
    assert 1000 + expect in peaks and 6001 + expect in peaks, (peaks, expect)
    assert session.last_report["latency"]["engine_samples"] == session.engine.latency_samples


def test_evaluate_runs_the_stages(tmp_path):
    out = tmp_path / "lab.json"
    r = run_cli("evaluate", "--metrics", "snr_db", "--set",
                "pre=[{type: pedalboard.Gain, gain_db: 0}]",
                "--sweep", "pre.0.gain_db=0,-6.0206", "--json", out)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    by_gain = {}
    for row in rows:
        by_gain.setdefault(row["config"]["pre"][0]["gain_db"], []).append(row["snr_db"])
    # half the level: the error is half the signal, 6.02 dB below it
    assert all(v > 120 for v in by_gain[0])
    assert all(abs(v - 6.02) < 0.01 for v in by_gain[-6.0206])


# --- live control of a stage's parameter (cosine_host.live.control, as the OSC server calls it) ----------

def test_control_sets_a_stage_parameter_at_a_block_boundary():
    import time

    from cosine_host.live.control import Controls

    cfg = cosine_host.load_config(overrides=[
        "audio.blocksize=256", "audio.channels=1",
        "pre=[{type: pedalboard.Gain, gain_db: 0}]",
        "post=[{type: pedalboard.Resample, target_sample_rate: 16000}]"])
    engine = Engine.from_config(cfg)
    controls = Controls(engine, cfg, time.perf_counter_ns())
    x = noise(256 * 40, 1, seed=11, level=0.5)
    before = stream_blocks(engine, x, [256])
    engine.reset()

    entry = controls.handle("/pre/0/gain_db", (-6.0206,))
    assert entry["result"] == "pending" and engine.pre.stages[0].plugin.gain_db == 0
    controls.drain(callback=0, frame=0, now_ns=time.perf_counter_ns())
    assert entry["result"] == "applied"
    after = stream_blocks(engine, x, [256])
    n = engine.latency_samples + 2000           # past the resampler's settling
    assert np.abs(after[n:] - 0.5 * before[n:]).max() < 1e-4

    refused = [controls.handle("/pre/0/gain_db", ("loud",)),
               controls.handle("/pre/3/gain_db", (1.0,)),
               controls.handle("/post/0/target_sample_rate", (8000.0,)),
               controls.handle("/pre/0/type", ("pedalboard.Reverb",))]
    assert [e["result"] for e in refused] == ["refused"] * 4
    assert refused[0]["reason"] == "pre[0].gain_db = 'loud': must be a finite number"
    assert refused[1]["reason"] == "no pre stage '3'; allowed: an index in 0..0"
    assert "changes the stage's latency" in refused[2]["reason"]
    assert not controls.pending

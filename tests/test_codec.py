"""The codec processor: real bytes that decode to its output, rate control to the target,
the same bytes however the signal is cut, kbps changed while running, bad settings refused."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cosine_host.config.schema import load_config
from cosine_host.engine.engine import Engine
from cosine_host.lab.material import synthesize_material
from cosine_host.lab.speech import synthesize_speech
from cosine_host.models.processors import registry
from cosine_host.models.processors.codec import Codec

ROOT = Path(__file__).resolve().parent.parent
SR, HOP, M = 48000, 256, 512


def _trim_silence(signal: np.ndarray) -> np.ndarray:
    """The signal from its first to its last nonzero sample (a causal rate controller cannot
    spend the bits of a silent end: the rate is held on what has signal)."""
    active = np.flatnonzero(np.abs(signal).max(axis=1) > 0)
    return signal[active[0]:active[-1] + 1]


def speech(seconds: float) -> np.ndarray:
    return _trim_silence(synthesize_speech(seconds=seconds).reshape(-1, 1).astype(np.float32))


def music(seconds: float) -> np.ndarray:
    """The tones and the sweep of the test material: stereo music without silent stretches."""
    return synthesize_material(seconds=2 * seconds)[:int(seconds * SR)].astype(np.float32)


def encode(signal: np.ndarray, kbps: float, **options):
    """(engine output, packets) of the codec preset at ``kbps`` on ``signal``."""
    cfg = load_config("codec", [f"processors.0.kbps={kbps}"])
    engine = Engine.from_config(cfg, blocksize=0, channels=signal.shape[1], samplerate=SR)
    packets = []
    engine.processors[0].packet_sink = packets.append
    return engine.render(signal, **options), packets


def window_rates(packets, kbps: float) -> tuple[float, np.ndarray]:
    """(whole-stream rate / target, the rate / target of every 1 s window after the first
    second, in which the controller learns how much of its share the pauses leave) from
    packet sizes."""
    sizes = np.array([len(p) for p in packets], np.float64) * 8
    per_second = SR / HOP
    whole = sizes.sum() / (len(sizes) / per_second) / 1000.0 / kbps
    w = int(round(per_second))
    sums = np.convolve(sizes, np.ones(w), mode="valid")
    return whole, sums[w:] / (w / per_second) / 1000.0 / kbps


@pytest.mark.parametrize("name", ["speech", "music"])
@pytest.mark.parametrize("kbps", [24, 64])
def test_rate_control_hits_the_target_over_the_file_and_every_second(name, kbps):
    signal = speech(10.0) if name == "speech" else music(6.0)
    out, packets = encode(signal, kbps)
    whole, windows = window_rates(packets, kbps)
    assert abs(whole - 1) <= 0.02, f"{name} at {kbps} kbps: whole file at {whole:.3f} x target"
    assert np.all(np.abs(windows - 1) <= 0.15), (
        f"{name} at {kbps} kbps: 1 s windows from {windows.min():.3f} to {windows.max():.3f}")
    # and the output is a coded version of the input, not silence
    error = out.astype(np.float64) - signal
    assert 10 * np.log10(np.sum(signal.astype(np.float64) ** 2) / np.sum(error ** 2)) > 0.0


def test_a_higher_target_buys_a_closer_output():
    signal = speech(4.0)
    snr = []
    for kbps in (16, 32, 64):
        out, _ = encode(signal, kbps)
        error = out.astype(np.float64) - signal
        snr.append(10 * np.log10(np.sum(signal.astype(np.float64) ** 2) / np.sum(error ** 2)))
    assert snr[0] < snr[1] < snr[2], snr


def _coefficients(frames=300) -> np.ndarray:
    """Stereo music through the DCT init's encoder (DCT-III, sqrt-Hann window): (frames, 2, M)
    float32."""
    import scipy.fft
    signal = music(frames * HOP / SR + 0.02)[:frames * HOP + M]
    window = np.sqrt(np.hanning(M + 1)[:M])
    framed = np.stack([signal[i * HOP:i * HOP + M] for i in range(frames)]) * window[:, None]
    return scipy.fft.dct(framed.transpose(0, 2, 1), type=3, norm="ortho").astype(np.float32)


def _run(codec: Codec, coeffs: np.ndarray, cuts) -> tuple[np.ndarray, list]:
    packets = []
    codec.packet_sink = packets.append
    pieces, start = [], 0
    for stop in [*cuts, coeffs.shape[0]]:
        pieces.append(codec(torch.from_numpy(coeffs[start:stop])).numpy())
        start = stop
    return np.concatenate(pieces), packets


def _prepared(**params) -> Codec:
    codec = registry.build(registry.check_spec({"type": "codec", **params}, M))
    codec.prepare(SR, HOP, M)
    return codec


def test_output_and_bytes_do_not_depend_on_how_the_frames_are_cut():
    coeffs = _coefficients()
    whole, whole_packets = _run(_prepared(kbps=32), coeffs, [])
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.choice(np.arange(1, coeffs.shape[0]), 40, replace=False))
    pieces, piece_packets = _run(_prepared(kbps=32), coeffs, list(cuts))
    assert np.array_equal(whole, pieces)
    assert whole_packets == piece_packets
    ones, one_packets = _run(_prepared(kbps=32), coeffs, list(range(1, coeffs.shape[0])))
    assert np.array_equal(whole, ones) and whole_packets == one_packets


def test_a_receiver_of_the_bytes_plays_exactly_the_output():
    coeffs = _coefficients()
    sent, packets = _run(_prepared(kbps=24), coeffs, [100, 101, 250])
    receiver = _prepared(kbps=24)
    queue = list(packets)
    receiver.packet_source = lambda: queue.pop(0) if queue else None
    heard = receiver(torch.zeros(coeffs.shape)).numpy()
    assert np.array_equal(sent, heard)
    assert receiver.stats()["bytes"] == sum(len(p) for p in packets)
    # a lost packet: zeros there, and the receiver says so
    short = _prepared(kbps=24)
    queue = list(packets[:10])
    short.packet_source = lambda: queue.pop(0) if queue else None
    out = short(torch.zeros(coeffs[:12].shape)).numpy()
    assert np.array_equal(out[:10], sent[:10]) and not out[10:].any()
    assert short.stats()["frames_missing"] == 2


def test_numpy_and_torch_routes_are_bit_identical():
    coeffs = _coefficients(frames=60)
    numpy_out, numpy_packets = _run(_prepared(kbps=32), coeffs, [])
    codec = _prepared(kbps=32)
    packets = []
    codec.packet_sink = packets.append
    x = torch.from_numpy(coeffs).requires_grad_(True)      # requires grad: the torch route
    out = codec(x)
    assert np.array_equal(out.detach().numpy(), numpy_out) and packets == numpy_packets
    out.sum().backward()                                   # straight-through gradient
    assert torch.equal(x.grad, torch.ones_like(x))


def test_stats_report_the_bytes_beside_the_estimates():
    coeffs = _coefficients()
    codec = _prepared(kbps=32)
    _, packets = _run(codec, coeffs, [])
    stats = codec.stats()
    seconds = coeffs.shape[0] * HOP / SR
    assert stats["bytes"] == sum(len(p) for p in packets)
    assert stats["kbps_bytes"] == pytest.approx(stats["bytes"] * 8 / seconds / 1000)
    assert 0 < stats["kbps_side"] < stats["kbps_estimate"] < stats["kbps_bytes"]
    assert stats["frames"] == coeffs.shape[0] and stats["kbps"] == 32.0


def test_kbps_changes_between_calls_and_bad_values_are_refused():
    coeffs = _coefficients(frames=600)
    codec = _prepared(kbps=64)
    packets = []
    codec.packet_sink = packets.append
    codec(torch.from_numpy(coeffs[:300]))
    codec.kbps = 32
    codec(torch.from_numpy(coeffs[300:]))
    first = np.mean([len(p) for p in packets[100:300]]) * 8 * SR / HOP / 1000
    second = np.mean([len(p) for p in packets[400:]]) * 8 * SR / HOP / 1000
    assert first == pytest.approx(64, rel=0.2) and second == pytest.approx(32, rel=0.2)
    for bad, kind in ((0, ValueError), (-3, ValueError), ("fast", TypeError),
                      (True, TypeError), (float("nan"), ValueError)):
        with pytest.raises(kind, match=r"^kbps = .*allowed: a number in 1\.\.1000$"):
            codec.kbps = bad
    assert codec.kbps == 32


@pytest.mark.parametrize("spec,message", [
    ({"type": "codec", "kbps": 0}, "kbps = 0: out of range; allowed: a number in 1..1000"),
    ({"type": "codec", "gamma": 3}, "gamma = 3: out of range; allowed: a number in 0..2"),
    ({"type": "codec", "rounding": "x"}, "rounding = 'x': not a number"),
    ({"type": "codec", "bitrate": 32}, "bitrate: unknown key for codec; allowed: type, kbps, "
                                       "gamma, rounding"),
])
def test_bad_codec_settings_are_one_line(spec, message):
    with pytest.raises((ValueError, TypeError)) as info:
        registry.check_spec(spec, M)
    assert str(info.value).startswith(message)
    r = subprocess.run([sys.executable, str(ROOT / "run.py"), "info", "--set",
                        f"processors=[{spec}]".replace("'", '"')],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert message.split(":")[0] in r.stderr


def test_osc_kbps_sets_the_running_codec_at_a_block_boundary():
    from cosine_host.live.control import Controls
    cfg = load_config("codec")
    engine = Engine.from_config(cfg, blocksize=256, channels=1, samplerate=SR)
    controls = Controls(engine, cfg, time.perf_counter_ns())
    codec = engine.processors[0]
    block = speech(1.0)[:256 * 20]
    for i in range(10):
        engine.process(block[i * 256:(i + 1) * 256])
    state = codec._state
    entry = controls.handle("/processors/0/kbps", (24.0,))
    assert entry["result"] == "pending" and codec.kbps == 32.0      # not before the boundary
    controls.drain(10, 10 * 256, time.perf_counter_ns())
    assert engine.processors[0] is codec and codec.kbps == 24.0
    assert codec._state is state                     # the coder's models go on
    refused = controls.handle("/processors/0/kbps", (-1.0,))
    assert refused["result"] == "refused" and "kbps = -1.0: out of range" in refused["reason"]
    assert codec.kbps == 24.0


def test_render_and_evaluate_report_the_bytes(tmp_path):
    import soundfile as sf
    from cosine_host.lab.evaluate import render_setting
    from cosine_host.offline.render import render_file, summary_line
    signal = speech(2.0)
    cfg = load_config("codec", ["processors.0.kbps=24"])
    _, packets = encode(signal, 24)
    frames = len(packets)
    expected = sum(len(p) for p in packets) * 8 / (frames * HOP / SR) / 1000
    _, rates = render_setting(cfg, signal, SR)
    assert rates["kbps_bytes"] == pytest.approx(expected)
    assert rates["kbps_estimate"] < rates["kbps_bytes"]
    source = tmp_path / "s.wav"
    sf.write(source, signal, SR, subtype="FLOAT")
    report = render_file(cfg, str(source), str(tmp_path / "out.wav"))
    assert report["kbps_bytes"] == pytest.approx(expected)
    assert f"{expected:.1f} kbps in bytes" in summary_line(report)
    codec_stats = report["processors"][0]
    assert codec_stats["type"] == "codec" and codec_stats["bytes"] == sum(map(len, packets))


def test_osc_kbps_change_in_a_live_stream_is_what_offline_gives(jack_server, tmp_path):
    """`live -c codec --play --record --osc` on the JACK dummy, /processors/0/kbps 16 sent
    while it plays: the recording equals the same blocks through an engine whose codec's kbps
    changes before the block the report says the change was applied at."""
    import json
    import soundfile as sf
    from test_live import _drain, _spawn_live
    from test_live_control import (Osc, free_udp_port, sleep_until_stream_s, wait_for_line,
                                   write_speech)
    play = write_speech(tmp_path / "speech.wav", 4.0)
    rec_path, report_path = tmp_path / "rec.wav", tmp_path / "r.json"
    port = free_udp_port()
    args = ["-c", "codec", "--play", tmp_path / "speech.wav", "--record", rec_path,
            "--report", report_path, "--osc", port,
            "--set", f"audio.samplerate={jack_server.samplerate}"]
    with _spawn_live(args) as (proc, lines):
        wait_for_line(lines, proc, "osc: listening on 127.0.0.1:%d" % port)
        osc = Osc(port)
        t0 = time.monotonic()
        sleep_until_stream_s(t0, 1.5)
        osc.send("/processors/0/kbps", 16.0)
        osc.send("/processors/0/kbps", 0.5)          # out of range: refused, one line
        proc.wait(timeout=30)
        err = _drain(lines)
    assert proc.returncode == 0, err
    report = json.loads(report_path.read_text())
    change, refused = report["controls"]
    assert change["result"] == "applied" and refused["result"] == "refused"
    assert "kbps = 0.5: out of range" in refused["reason"]
    record, _ = sf.read(rec_path, dtype="float32", always_2d=True)

    cfg = load_config("codec", [f"audio.samplerate={jack_server.samplerate}"])
    engine = Engine.from_config(cfg, blocksize=256, channels=2, samplerate=SR)
    padded = np.concatenate([play, np.zeros((record.shape[0] - play.shape[0] + 256, 2),
                                            np.float32)])
    out = []
    for i in range(record.shape[0] // 256):
        if i == change["applied_callback"]:
            engine.processors[0].kbps = 16.0
        out.append(engine.process(padded[i * 256:(i + 1) * 256]).copy())
    offline = np.concatenate(out)
    n = offline.shape[0]
    assert np.array_equal(record[:n], offline)
    assert engine.processors[0].stats()["kbps"] == 16.0

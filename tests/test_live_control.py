"""`live --play --record --osc` on the JACK dummy: a python-osc client in the test changes the
stream while it plays, and the recording shows each change where the report says it was
applied. The panel is checked in a real terminal (tmux) at 80x24 and 200x50.

The recording is exactly what the engine handed to the output device, so
``record[k] = engine_output[k]`` where the stream's frame 0 is the file's frame 0 and the
engine output is its input ``latency_samples`` later.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers import snr_db
from test_live import _drain, _spawn_live, _wait_for_status

REPO = Path(__file__).resolve().parent.parent
SR = 48000
N, HOP = 512, 256                  # configs/default.yaml


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Osc:
    """A python-osc client that can also hear /status answers on the port it sends from."""

    def __init__(self, port: int):
        from pythonosc.udp_client import SimpleUDPClient
        self.client = SimpleUDPClient("127.0.0.1", port)
        self.client._sock.settimeout(5.0)

    def send(self, address: str, *values) -> None:
        self.client.send_message(address, list(values))

    def status(self) -> dict:
        from pythonosc.osc_message import OscMessage
        self.send("/status")
        data, _ = self.client._sock.recvfrom(65536)
        msg = OscMessage(data)
        args = msg.params
        return dict(zip(args[0::2], args[1::2]))


def write_speech(path: Path, seconds: float) -> np.ndarray:
    from cosine_host.lab.speech import synthesize_speech
    x = synthesize_speech(SR, seconds)
    sf.write(path, x, SR, subtype="FLOAT")
    return np.repeat(x.astype(np.float32), 2, axis=1)


def wait_for_line(lines, proc, contains: str) -> str:
    return _wait_for_status(lines, proc, contains=contains)


def sleep_until_stream_s(t0: float, seconds: float) -> None:
    time.sleep(max(0.0, t0 + seconds - time.monotonic()))


# --- play, record and control over OSC ----------------------------------------------------------

def test_osc_controls_change_the_recording_where_the_report_says(jack_server, tmp_path):
    play = write_speech(tmp_path / "speech.wav", 6.0)
    rec_path, report_path = tmp_path / "rec.wav", tmp_path / "r.json"
    port = free_udp_port()
    args = ["--play", tmp_path / "speech.wav", "--record", rec_path, "--report", report_path,
            "--osc", port, "--set", f"audio.samplerate={jack_server.samplerate}",
            "--set", "processors=[{type: quantize, bits: 12}]"]
    with _spawn_live(args) as (proc, lines):
        wait_for_line(lines, proc, "osc: listening on 127.0.0.1:%d" % port)
        osc = Osc(port)
        t0 = time.monotonic()
        sleep_until_stream_s(t0, 1.5)
        osc.send("/processors/0/bits", 3)
        osc.send("/processors/0/bits", 3.0)        # a float where the config needs an int
        osc.send("/no/such/address", 1)
        osc.send("/processors/7/bits", 3)
        status = osc.status()
        sleep_until_stream_s(t0, 3.0)
        osc.send("/bypass", 1)
        proc.wait(timeout=30)
        err = _drain(lines)
    assert proc.returncode == 0, err
    rep = json.loads(report_path.read_text())
    assert rep["stopped_by"] == "play end" and rep["error"] is None

    # /status answered with the monitor's current values
    assert status["budget_ms"] == pytest.approx(1e3 * 256 / SR)
    assert status["engine_samples"] == rep["latency"]["engine_samples"]
    assert 0 < status["p50_ms"] <= status["p99_ms"] <= status["max_ms"]

    c = rep["controls"]
    assert [e["address"] for e in c] == ["/processors/0/bits", "/processors/0/bits",
                                         "/no/such/address", "/processors/7/bits", "/status",
                                         "/bypass"]
    assert [e["result"] for e in c] == ["applied", "refused", "refused", "refused", "applied",
                                        "applied"]
    # refused exactly as the config refuses the same value, one line on stderr each
    from cosine_host.config.schema import ConfigError, load_config
    with pytest.raises(ConfigError) as config_error:
        load_config(overrides=["processors=[{type: quantize, bits: 3.0}]"])
    assert str(config_error.value) == c[1]["reason"]
    assert "unknown address" in c[2]["reason"] and "0..0" in c[3]["reason"]
    refused = [ln for ln in err.splitlines() if ": refused: " in ln]
    assert len(refused) == 3 and all(ln.startswith("osc: ") for ln in refused)
    for e in c:
        assert 0 < e["received_s"] < rep["duration_s"]
    bits, bypass = c[0], c[5]
    assert bits["applied_s"] >= bits["received_s"] and bypass["applied_s"] >= bypass["received_s"]
    assert bits["applied_callback"] < bypass["applied_callback"]
    assert bits["applied_frame"] == bits["applied_callback"] * 256

    record, rate = sf.read(rec_path, dtype="float32", always_2d=True)
    assert rate == SR
    lat = rep["latency"]["engine_samples"]
    assert rep["record"]["first_frame"] == 0 and rep["record"]["engine_latency_samples"] == lat
    assert record.shape == (play.shape[0] + lat, 2) and rep["record"]["dropped_frames"] == 0
    heard = record[lat:]                  # aligned with the played signal

    # quantizer bits 12 -> 3 at applied_frame: every frame after it is quantized to 3 bits
    a, b = bits["applied_frame"], bypass["applied_frame"]
    before = snr_db(play[SR // 4:a - N], heard[SR // 4:a - N])
    after = snr_db(play[a + N:b - lat - N], heard[a + N:b - lat - N])
    assert before > 50 and after < 25, (before, after)
    print(f"bits 12 -> 3 received {bits['received_s']:.3f} s, applied at callback "
          f"{bits['applied_callback']} ({bits['applied_s']:.3f} s): SNR {before:.1f} -> "
          f"{after:.1f} dB; /bypass 1 received {bypass['received_s']:.3f} s, applied at "
          f"callback {bypass['applied_callback']} ({bypass['applied_s']:.3f} s): bit-exact "
          f"play delayed by {lat} samples")
    # /bypass 1: from its block on, the played signal delayed by exactly the engine latency
    np.testing.assert_array_equal(record[b:], play[b - lat:])
    assert not np.array_equal(record[b - HOP:b], play[b - HOP - lat:b - lat])


# --- a checkpoint swap without a step ------------------------------------------------------------

def test_checkpoint_swap_crossfades_without_a_step(jack_server, tmp_path):
    import torch
    import cosine_host
    from cosine_host.models import LearnedCosine, save_checkpoint
    from cosine_host.engine.engine import Engine

    cfg = cosine_host.load_config(overrides=["model.device=cpu"])
    model = LearnedCosine(N, cfg.model.coefficients)
    with torch.no_grad():
        model.encoder.rest.mul_(0.5)        # tied decoder: the sine comes out at a quarter
    ckpt = tmp_path / "quiet.pt"
    save_checkpoint(model, ckpt)

    t = np.arange(4 * SR) / SR
    sine = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(tmp_path / "sine.wav", sine, SR, subtype="FLOAT")
    rec_path, report_path = tmp_path / "rec.wav", tmp_path / "r.json"
    port = free_udp_port()
    args = ["--play", tmp_path / "sine.wav", "--record", rec_path, "--report", report_path,
            "--osc", port, "--set", f"audio.samplerate={jack_server.samplerate}"]
    with _spawn_live(args) as (proc, lines):
        wait_for_line(lines, proc, "osc: listening")
        osc = Osc(port)
        time.sleep(1.0)
        osc.send("/model/checkpoint", str(tmp_path / "missing.pt"))
        osc.send("/model/checkpoint", str(ckpt))
        proc.wait(timeout=30)
        err = _drain(lines)
    assert proc.returncode == 0, err
    rep = json.loads(report_path.read_text())
    missing, swap = rep["controls"]
    assert missing["result"] == "refused" and "missing.pt" in missing["reason"]
    assert swap["result"] == "applied", swap
    record, _ = sf.read(rec_path, dtype="float32")
    record = record[:, 0]
    s = swap["applied_frame"]
    lat = rep["latency"]["engine_samples"]

    # before the switch the identity model's sine, long after it the quiet one's
    stereo = np.repeat(sine[:, None], 2, axis=1)
    old = Engine.from_config(cfg, blocksize=0, channels=2).render(stereo)[:, 0]
    quiet = Engine(model, HOP, cfg.frame.window, channels=2).render(stereo)[:, 0]
    np.testing.assert_allclose(record[lat:s], old[:s - lat], atol=1e-5)
    end = len(sine) + lat
    np.testing.assert_allclose(record[s + N + lat:end], quiet[s + N:len(sine)], atol=1e-5)

    # the step: the largest sample-to-sample jump across the switch against the sine's own
    own = float(np.abs(np.diff(old[SR:2 * SR])).max())
    across = float(np.abs(np.diff(record[s - HOP:s + 2 * N + lat])).max())
    # a hard switch from the old output to the quiet one at the worst sample of the region
    k = np.arange(s, s + 2 * N) - lat
    hard = float(np.abs(quiet[k] - old[k - 1]).max())
    assert hard > 5 * own           # the two models differ enough for a click to show
    assert across <= 1.05 * own, (across, own, hard)
    print(f"checkpoint swap at frame {s} (callback {swap['applied_callback']}, "
          f"{swap['applied_s']:.3f} s): largest jump {across:.5f}, the sine's own "
          f"{own:.5f} (ratio {across / own:.3f}); a hard switch: {hard:.4f}")


# --- the panel in a terminal --------------------------------------------------------------------

@pytest.mark.parametrize("cols, rows", [(80, 24), (200, 50)])
def test_panel_fits_the_terminal_and_never_scrolls(jack_server, tmp_path, cols, rows):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for the panel test (apt install tmux)")
    write_speech(tmp_path / "speech.wav", 3.0)
    sock = f"cosine-live-{os.getpid()}-{cols}"
    server = jack_server.name or "default"         # None: a server that already ran
    env = dict(os.environ, JACK_DEFAULT_SERVER=server)
    cmd = (f"cd {REPO} && JACK_DEFAULT_SERVER={server} {sys.executable} run.py live "
           f"--play {tmp_path / 'speech.wav'} --loop --duration 4 --osc 0 "
           f"--set audio.samplerate={jack_server.samplerate} "
           f"--set 'processors=[{{type: quantize, bits: 8}}]'; sleep 30")

    def tmux(*a):
        return subprocess.run(["tmux", "-L", sock, *a], capture_output=True, text=True,
                              env=env, timeout=20)
    r = tmux("new-session", "-d", "-x", str(cols), "-y", str(rows), cmd)
    assert r.returncode == 0, r.stderr
    try:
        end = time.monotonic() + 60
        while "compute " not in tmux("capture-pane", "-p").stdout and time.monotonic() < end:
            time.sleep(0.2)
        time.sleep(1.0)         # the panel has redrawn several times by now
        screen = tmux("capture-pane", "-p").stdout
        joined = tmux("capture-pane", "-p", "-J").stdout
        history = int(tmux("display", "-p", "#{history_size}").stdout.strip())
    finally:
        tmux("kill-server")
    lines = screen.rstrip("\n").splitlines()
    assert any(ln.startswith("compute ") for ln in lines), screen
    assert any(ln.startswith("latency ") for ln in lines), screen
    assert any(ln.startswith("play ") for ln in lines), screen
    assert screen.count("cosine-host live") == 1, screen      # redrawn in place
    assert history == 0, screen                               # nothing scrolled off the top
    # a wrapped line would come back joined, longer than the terminal is wide
    assert max(len(ln) for ln in joined.splitlines()) <= cols, joined
    assert joined == screen, joined

"""`run.py render`: latency-compensated file rendering, its report, atomic writes and errors.

Real files through soundfile, real YAML configs, the real CLI (click's CliRunner and a
subprocess). The default config is the identity DCT at N = 512, whose engine latency with
blocksize 0 is N - 1 = 511 samples and whose reconstruction is above 125 dB SNR.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

import cosine_host
from cosine_host.cli import cli
from cosine_host.errors import UserError
from cosine_host.offline.formats import check_size
from cosine_host.offline.jobs import plan_jobs
from cosine_host.offline.render import CHUNK_FRAMES, render_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTS = pathlib.Path(__file__).resolve().parent
DEFAULT_LATENCY = 511           # N - 1 for N = 512, blocksize 0
QUANTIZE_6 = "processors=[{type: quantize, bits: 6}]"


class FailAfter(torch.nn.Module):
    """Test plugin: passes coefficients through, then raises on forward call number ``calls``.

    ``interrupt: true`` raises KeyboardInterrupt (a Ctrl-C) instead of RuntimeError.
    """

    def __init__(self, calls: int = 2, interrupt: bool = False):
        super().__init__()
        self.calls, self.interrupt, self.seen = calls, interrupt, 0

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        self.seen += 1
        if self.seen >= self.calls:
            raise KeyboardInterrupt if self.interrupt else RuntimeError("injected failure")
        return coeffs


def fail_after(calls: int, interrupt: bool = False) -> str:
    return (f"processors=[{{type: 'test_render:FailAfter', calls: {calls}, "
            f"interrupt: {str(interrupt).lower()}}}]")


def noise(frames: int, channels: int, seed: int = 0, level: float = 0.25) -> np.ndarray:
    """Gaussian noise, independent per channel, float32 (frames, channels), clipped to |x| < 1."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0, level, (frames, channels)), -0.99, 0.99).astype(np.float32)


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((test - reference) ** 2))


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def one_error_line(result) -> str:
    """The single "error: ..." line of a failed command (and proof there is no traceback)."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def listing(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- alignment, length, rate, channels ---------------------------------------------------------

# first and last sample, both sides of the latency and of a chunk boundary
IMPULSES = [0, 1, 300, 511, 512, 4097, CHUNK_FRAMES - 1, CHUNK_FRAMES, 70000, 70999]
ISOLATED_IMPULSES = [0, 1000, 4097, CHUNK_FRAMES - 1, 70999]    # 400+ samples apart


def impulse_train(positions: list[int], frames: int = 71000) -> np.ndarray:
    x = np.zeros((frames, 1), np.float32)
    x[positions, 0] = 0.5
    return x


def test_impulse_train_stays_where_it_was(tmp_path):
    x = impulse_train(IMPULSES)
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    result = invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"))
    assert result.exit_code == 0, result.output
    y, sr = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    assert (y.shape, sr) == (x.shape, 48000)
    assert np.max(np.abs(y - x)) < 1e-5          # every impulse in place, nothing elsewhere
    assert sorted(np.argsort(np.abs(y[:, 0]))[-len(IMPULSES):]) == IMPULSES


def test_impulses_stay_in_place_through_a_quantizer(tmp_path):
    x = impulse_train(ISOLATED_IMPULSES)
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    result = invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                    "--set", "processors=[{type: quantize, bits: 4}]")
    assert result.exit_code == 0, result.output
    y = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)[0][:, 0]
    for p in ISOLATED_IMPULSES:
        lo = max(p - 200, 0)
        assert lo + int(np.argmax(np.abs(y[lo:p + 200]))) == p
        assert abs(y[p] - 0.5) < 0.05


@pytest.mark.parametrize("samplerate", [44100, 48000, 96000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_length_rate_channels_kept(tmp_path, samplerate, channels):
    frames = samplerate // 5 + 7          # not a multiple of the hop or the chunk
    x = noise(frames, channels, seed=channels)
    sf.write(tmp_path / "in.wav", x, samplerate, subtype="PCM_24")
    x = sf.read(tmp_path / "in.wav", dtype="float32", always_2d=True)[0]
    result = invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"))
    assert result.exit_code == 0, result.output
    info = sf.info(tmp_path / "out.wav")
    assert (info.frames, info.samplerate, info.channels, info.subtype) == \
        (frames, samplerate, channels, "PCM_24")
    y = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)[0]
    for c in range(channels):             # each channel is its own, not a neighbour's
        assert snr_db(x[:, c], y[:, c]) >= 90


def test_file_shorter_than_the_latency(tmp_path):
    x = noise(100, 2)
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    result = invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"))
    assert result.exit_code == 0, result.output
    y = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)[0]
    assert y.shape == (100, 2) and snr_db(x, y) >= 90


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_24"])
def test_identity_snr_from_24_bit(tmp_path, subtype):
    frames = CHUNK_FRAMES + 12345          # crosses a chunk boundary
    t = np.arange(frames) / 48000
    tone = 0.5 * np.sin(2 * np.pi * 997 * t)[:, None]
    sf.write(tmp_path / "in.wav", (tone + noise(frames, 2, level=0.1)).clip(-1, 1),
             48000, subtype="PCM_24")
    x = sf.read(tmp_path / "in.wav", dtype="float64", always_2d=True)[0]
    result = invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                    "--subtype", subtype, "--report", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    y = sf.read(tmp_path / "out.wav", dtype="float64", always_2d=True)[0]
    assert sf.info(tmp_path / "out.wav").subtype == subtype
    assert snr_db(x, y) >= 90
    assert json.loads((tmp_path / "r.json").read_text())["snr_db"] >= 90


# --- input formats and default subtypes --------------------------------------------------------

@pytest.mark.parametrize("name, subtype, expected", [
    ("in.wav", "PCM_16", "PCM_16"), ("in.wav", "FLOAT", "FLOAT"),
    ("in.wav", "PCM_32", "FLOAT"), ("in.flac", "PCM_24", "PCM_24"),
    ("in.ogg", "VORBIS", "FLOAT"), ("in.mp3", "MPEG_LAYER_III", "FLOAT"),
])
def test_reads_formats_and_picks_default_subtype(tmp_path, name, subtype, expected):
    sf.write(tmp_path / name, noise(30000, 2, level=0.1), 44100, subtype=subtype)
    frames = sf.info(tmp_path / name).frames
    result = invoke("render", str(tmp_path / name), str(tmp_path / "out.wav"))
    assert result.exit_code == 0, result.output
    info = sf.info(tmp_path / "out.wav")
    assert (info.frames, info.samplerate, info.channels, info.subtype) == \
        (frames, 44100, 2, expected)


def test_flac_output_keeps_24_bits_and_refuses_float(tmp_path):
    sf.write(tmp_path / "in.wav", noise(20000, 1), 48000, subtype="FLOAT")
    ok = invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "out.flac"))
    assert ok.exit_code == 0, ok.output
    assert sf.info(tmp_path / "out.flac").subtype == "PCM_24"
    bad = invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "f.flac"), "--subtype", "FLOAT")
    assert "FLAC files cannot hold FLOAT" in one_error_line(bad)
    assert not (tmp_path / "f.flac").exists()


# --- report, bitrate, clipping, progress -------------------------------------------------------

def test_report_fields_and_quantizer_bitrate(tmp_path):
    frames = 48000
    sf.write(tmp_path / "in.wav", noise(frames, 2), 48000, subtype="PCM_16")
    result = invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                    "--set", QUANTIZE_6, "--report", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    r = json.loads((tmp_path / "r.json").read_text())
    assert (r["input"], r["output"]) == (str(tmp_path / "in.wav"), str(tmp_path / "out.wav"))
    assert (r["samplerate"], r["channels"], r["frames"], r["subtype"]) == \
        (48000, 2, frames, "PCM_16")
    assert r["latency_samples"] == DEFAULT_LATENCY
    assert r["latency_ms"] == pytest.approx(DEFAULT_LATENCY / 48.0)
    assert r["seconds_audio"] == pytest.approx(1.0)
    assert r["realtime_factor"] == pytest.approx(r["seconds_audio"] / r["seconds_wall"])
    assert r["clipped_samples"] == 0 and r["nan_samples"] == 0
    assert r["config"]["processors"] == [{"type": "quantize", "bits": 6}]
    q = r["processors"][0]
    assert (q["type"], q["bits"]) == ("quantize", 6)
    # bitrate = (entropy bits x M + 16 side bits) per frame x frames per second x channels,
    # the entropy recomputed here from the coefficients the quantizer saw (README: the step is
    # the frame's peak, rounded up to float16, over 2**(bits-1) - 1)
    seen = coefficients_seen(tmp_path / "in.wav", [QUANTIZE_6])
    peak = np.abs(seen).max(axis=2, keepdims=True)
    scale = peak.astype(np.float16)
    scale = np.where(scale.astype(np.float64) < peak, np.nextafter(scale, np.float16(np.inf)),
                     scale).astype(np.float64)
    symbols = np.rint(seen / np.where(scale > 0, scale / 31, 1)).astype(np.int64).ravel()
    p = np.bincount(symbols - symbols.min()) / symbols.size
    entropy = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    assert q["entropy_bits"] == pytest.approx(entropy, rel=1e-6)
    expected = (entropy * 512 + 16) * (48000 / 256) * 2 / 1000
    assert r["bitrate_kbps"] == pytest.approx(expected, rel=1e-6)
    assert 15 < r["snr_db"] < 45                 # 6 bits: coarse but not silence
    assert "kbps" in result.stdout and "SNR" in result.stdout


def coefficients_seen(path, overrides) -> np.ndarray:
    """(frames, channels, M) float64: what the first processor receives when ``path`` renders
    with ``overrides`` (the contract: the same for any chunking)."""
    from helpers import recording_chain
    from cosine_host.engine.build import build_model
    from cosine_host.engine.engine import Engine
    cfg = cosine_host.load_config(None, ["model.device=cpu", *overrides])
    x = sf.read(path, dtype="float32", always_2d=True)[0]
    chain, recorder = recording_chain(m=cfg.model.coefficients)
    engine = Engine(build_model(cfg), cfg.frame.hop, cfg.frame.window, channels=x.shape[1],
                    processors=chain)
    engine.render(x)
    return recorder.coefficients(x.shape[1], cfg.model.coefficients).astype(np.float64)


def test_silence_costs_only_the_side_information(tmp_path):
    sf.write(tmp_path / "in.wav", np.zeros((24000, 2), np.float32), 48000, subtype="FLOAT")
    result = invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                    "--set", QUANTIZE_6, "--report", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["bitrate_kbps"] == pytest.approx(16 * 2 * (48000 / 256) / 1000)   # 6.0 kbps
    assert r["snr_db"] is None                   # undefined for a silent input
    assert not np.any(sf.read(tmp_path / "out.wav")[0])


@pytest.mark.parametrize("overrides", [[], ["model.coefficients=384"]], ids=["dct", "matrix"])
def test_streaming_snr_matches_the_files_and_any_chunking(tmp_path, overrides):
    cfg = cosine_host.load_config(None, [QUANTIZE_6, "model.device=cpu", *overrides])
    x = noise(100000, 2)
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    big = render_file(cfg, str(tmp_path / "in.wav"), str(tmp_path / "a.wav"))
    small = render_file(cfg, str(tmp_path / "in.wav"), str(tmp_path / "b.wav"), chunk_frames=10007)
    a = sf.read(tmp_path / "a.wav", dtype="float32")[0]
    b = sf.read(tmp_path / "b.wav", dtype="float32")[0]
    assert np.max(np.abs(a - b)) < 1e-6
    assert big["snr_db"] == pytest.approx(snr_db(x, a), abs=1e-3)
    assert small["snr_db"] == pytest.approx(big["snr_db"], abs=1e-3)
    assert small["bitrate_kbps"] == pytest.approx(big["bitrate_kbps"], rel=1e-6)


def test_pcm_output_clips_and_counts_float_keeps(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.choice(np.array([-0.8, -0.3, 0.3, 0.8], np.float32), size=(20000, 2))
    loud = int(np.count_nonzero(np.abs(x) == np.float32(0.8)))
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    gain = "processors=[{type: 'plugins_example:Gain', gain: 2.0}]"
    for subtype, clipped in (("PCM_16", loud), ("FLOAT", 0)):
        out = tmp_path / f"{subtype}.wav"
        result = invoke("render", str(tmp_path / "in.wav"), str(out), "--subtype", subtype,
                        "--set", gain, "--report", str(tmp_path / f"{subtype}.json"))
        assert result.exit_code == 0, result.output
        r = json.loads((tmp_path / f"{subtype}.json").read_text())
        y = sf.read(out, dtype="float32")[0]
        assert r["clipped_samples"] == clipped
        assert r["peak"] == pytest.approx(1.6, abs=1e-4)
        assert np.max(np.abs(y)) == pytest.approx(1.0 if clipped else 1.6, abs=1e-4)
        assert ("samples clipped" in result.stdout) == bool(clipped)


def test_progress_reaches_the_total(tmp_path):
    cfg = cosine_host.load_config(None, ["model.device=cpu"])
    sf.write(tmp_path / "in.wav", noise(150000, 1), 48000, subtype="FLOAT")
    calls = []
    render_file(cfg, str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                progress=lambda done, total: calls.append((done, total)))
    done = [d for d, _ in calls]
    assert len(calls) >= 3 and done == sorted(done)
    assert calls[-1] == (150000, 150000) and {t for _, t in calls} == {150000}


# --- atomic writes -----------------------------------------------------------------------------

def test_failure_mid_render_leaves_nothing_behind(tmp_path):
    cfg = cosine_host.load_config(None, [fail_after(3), "model.device=cpu"])
    sf.write(tmp_path / "in.wav", noise(5 * 48000, 2), 48000, subtype="FLOAT")
    before = listing(tmp_path)
    written = []
    with pytest.raises(UserError, match="RuntimeError: injected failure"):
        render_file(cfg, str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                    progress=lambda done, total: written.append(done))
    assert written                      # a chunk had been written to the temporary file
    assert listing(tmp_path) == before


@pytest.mark.parametrize("interrupt, code, message", [(False, 2, "injected failure"),
                                                      (True, 130, "interrupted")])
def test_failure_keeps_an_existing_output(tmp_path, interrupt, code, message):
    sf.write(tmp_path / "in.wav", noise(5 * 48000, 2), 48000, subtype="FLOAT")
    (tmp_path / "out.wav").write_bytes(b"the user's own file")
    before = listing(tmp_path)
    result = invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"), "--overwrite",
                    "--set", fail_after(3, interrupt))
    assert result.exit_code == code
    assert message in one_error_line(result)
    assert listing(tmp_path) == before


# --- errors for people -------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    """A good input, an existing output and the bad inputs of the error table."""
    sf.write(tmp_path / "good.wav", noise(4000, 2), 48000, subtype="PCM_16")
    (tmp_path / "exists.wav").write_bytes(b"keep me")
    (tmp_path / "text.wav").write_text("not audio at all\n")
    sf.write(tmp_path / "empty.wav", np.zeros((0, 2), np.float32), 48000)
    header = (tmp_path / "good.wav").read_bytes()[:30]    # cut inside the header: no data chunk
    (tmp_path / "corrupt.wav").write_bytes(header)
    (tmp_path / "folder.wav").mkdir()
    return tmp_path


@pytest.mark.parametrize("args, phrase", [
    (["missing.wav", "o.wav"], "input file not found"),
    (["text.wav", "o.wav"], "cannot read"),
    (["empty.wav", "o.wav"], "0 frames"),
    (["corrupt.wav", "o.wav"], "cannot read"),
    (["folder.wav", "o.wav"], "is a folder"),
    (["good.wav", "nowhere/o.wav"], "output folder missing"),
    (["good.wav", "o.wav", "--subtype", "PCM_8"], "PCM_16 | PCM_24 | FLOAT"),
    (["good.wav", "o.wav", "--set", "frame.hop=100"], "frame.hop"),
    (["good.wav", "o.wav", "--set", "nonsense"], "key.path=value"),
    (["good.wav", "exists.wav"], "--overwrite"),
    (["good.wav", "good.wav", "--overwrite"], "is the input file"),
    (["good.wav", "o.xyz"], "cannot tell the output format"),
    (["good.wav"], "INPUT OUTPUT"),
    (["good.wav", "a.wav", "b.wav"], "INPUT OUTPUT"),
    (["good.wav", "--out-dir", "nowhere"], "output folder missing"),
    (["good.wav", "--out-dir", "exists.wav"], "--out-dir 'exists.wav' is a file, not a folder"),
])
def test_bad_input_is_one_line(files, monkeypatch, args, phrase):
    monkeypatch.chdir(files)
    before = listing(files)
    line = one_error_line(invoke("render", *args))
    assert phrase in line
    assert listing(files) == before                # nothing written, nothing replaced


WRITE_ONLY = "/proc/sys/vm/compact_memory"      # mode 0200: unreadable even for root


@pytest.mark.skipif(not os.path.exists(WRITE_ONLY), reason="needs Linux /proc")
def test_unreadable_and_special_inputs(tmp_path):
    line = one_error_line(invoke("render", WRITE_ONLY, str(tmp_path / "o.wav")))
    assert line == f"error: cannot read {WRITE_ONLY!r}: Permission denied"
    line = one_error_line(invoke("render", os.devnull, str(tmp_path / "o.wav")))
    assert line == (f"error: input {os.devnull!r} is not a regular file; give an audio file "
                    f"(or '-' to read standard input)")
    assert list(tmp_path.iterdir()) == []


def test_subprocess_bad_input(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "render",
                           str(tmp_path / "missing.wav"), str(tmp_path / "o.wav")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == \
        [f"error: input file not found: {str(tmp_path / 'missing.wav')!r}; check the path"]


def test_subprocess_render_with_report(tmp_path):
    sf.write(tmp_path / "in.flac", noise(30000, 2, level=0.1), 96000, subtype="PCM_24")
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "render",
                           str(tmp_path / "in.flac"), str(tmp_path / "out.wav"),
                           "--set", QUANTIZE_6, "--set", "model.device=cpu",
                           "--report", str(tmp_path / "r.json")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert (r["frames"], r["samplerate"], r["channels"], r["subtype"]) == \
        (30000, 96000, 2, "PCM_24")
    assert r["bitrate_kbps"] > 0 and r["latency_samples"] == DEFAULT_LATENCY
    assert sf.info(tmp_path / "out.wav").frames == 30000
    assert done.stdout.startswith(f"{tmp_path / 'in.flac'} -> {tmp_path / 'out.wav'}: ")


def test_subprocess_plugin_failure_leaves_output_untouched(tmp_path):
    sf.write(tmp_path / "in.wav", noise(5 * 48000, 2), 48000, subtype="FLOAT")
    (tmp_path / "out.wav").write_bytes(b"the user's own file")
    before = listing(tmp_path)
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "render", str(tmp_path / "in.wav"),
                           str(tmp_path / "out.wav"), "--overwrite", "--set", fail_after(3),
                           "--set", "model.device=cpu"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == \
        [f"error: rendering {str(tmp_path / 'in.wav')!r} failed: RuntimeError: injected failure"]
    assert listing(tmp_path) == before


# --- several files -----------------------------------------------------------------------------

def test_batch_carries_on_past_a_bad_file(tmp_path):
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    sf.write(src / "a.wav", noise(3000, 1), 44100, subtype="PCM_16")
    sf.write(src / "b.flac", noise(5000, 2), 48000, subtype="PCM_24")
    sf.write(src / "c.ogg", noise(6000, 2, level=0.1), 48000)
    (src / "bad.wav").write_text("not audio")
    (src / "notes.txt").write_text("ignored: not an audio extension")
    (src / ".hidden.wav").write_text("ignored: hidden")
    sf.write(src / "nested" / "deep.wav", noise(1000, 1), 48000)   # not recursed into
    extra = tmp_path / "extra.wav"
    sf.write(extra, noise(2000, 6), 96000, subtype="FLOAT")
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("render", str(src), str(extra), "--out-dir", str(out),
                    "--report", str(tmp_path / "all.json"))
    assert result.exit_code == 1
    assert f"failed: {src / 'bad.wav'}: cannot read" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        f"error: 1 of 5 files failed: {src / 'bad.wav'}"
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.flac", "c.wav", "extra.wav"]
    for name, frames, sr, ch in [("a.wav", 3000, 44100, 1), ("b.flac", 5000, 48000, 2),
                                 ("c.wav", sf.info(src / "c.ogg").frames, 48000, 2),
                                 ("extra.wav", 2000, 96000, 6)]:
        info = sf.info(out / name)
        assert (info.frames, info.samplerate, info.channels) == (frames, sr, ch)
    summary = json.loads((tmp_path / "all.json").read_text())
    assert len(summary["rendered"]) == 4
    assert [f["input"] for f in summary["failed"]] == [str(src / "bad.wav")]


def test_plan_jobs_refuses_two_inputs_for_one_output(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "take.wav", noise(100, 1), 48000)
    (tmp_path / "out").mkdir()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="would both be written"):
        plan_jobs([str(tmp_path / "x"), str(tmp_path / "y")], str(tmp_path / "out"))
    with pytest.raises(UserError, match="has no audio files"):
        plan_jobs([str(tmp_path / "empty")], str(tmp_path / "out"))
    assert plan_jobs(["a.mp3", "b.aiff"], str(tmp_path / "out")) == [
        ("a.mp3", str(tmp_path / "out" / "a.wav")), ("b.aiff", str(tmp_path / "out" / "b.aiff"))]


def test_wav_beyond_4_gib_is_refused_before_rendering():
    six_gib_frames = 2 ** 28                    # x 6 channels x 4 bytes = 6 GiB of FLOAT
    with pytest.raises(UserError, match="4 GiB limit of WAV; name it .w64 or .rf64"):
        check_size("WAV", "FLOAT", six_gib_frames, 6, "big.wav")
    check_size("W64", "FLOAT", six_gib_frames, 6, "big.w64")
    check_size("WAV", "PCM_16", 2 ** 28, 2, "fits.wav")          # 1 GiB

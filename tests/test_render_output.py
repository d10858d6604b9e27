"""`run.py render`: output you can trust.

Bit-identical integer identity renders, dither only where bits are lost, the SNR of the file
that was written, warnings for truncated and NaN inputs, standard input/output, --format,
--recursive, --samplerate, --quality and tags. Real files through soundfile; the CLI through
click's CliRunner or a real subprocess. Expected values are computed here from the files.
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
from click.testing import CliRunner

import cosine_host
from cosine_host.cli import cli
from cosine_host.offline.readback import find_lag
from cosine_host.offline.render import render_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
CPU = ("--set", "model.device=cpu")


def noise(frames: int, channels: int, seed: int = 0, level: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0, level, (frames, channels)), -0.99, 0.99)


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((test - reference) ** 2))


def invoke(*args: str):
    return CliRunner().invoke(cli, [*args, *CPU])


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args, *CPU], input=stdin,
                          capture_output=True, cwd=ROOT, timeout=300)


def one_error_line(result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def report(path: pathlib.Path) -> dict:
    return json.loads(path.read_text())


# --- integers done right -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["in.wav", "in.aiff", "in.flac"])
def test_16_bit_identity_is_bit_identical(tmp_path, name):
    sf.write(tmp_path / name, noise(70000, 2), 44100, subtype="PCM_16")
    out = tmp_path / ("out" + pathlib.Path(name).suffix)
    result = invoke("render", str(tmp_path / name), str(out), "--report", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    x = sf.read(tmp_path / name, dtype="int16")[0]
    y = sf.read(out, dtype="int16")[0]
    assert sf.info(out).subtype == "PCM_16"
    assert np.array_equal(x, y)
    r = report(tmp_path / "r.json")
    assert r["dither"] == "none" and r["file_identical"] is True and r["file_snr_db"] is None
    assert "file SNR exact (bit-identical)" in result.stdout


@pytest.mark.parametrize("name", ["in.wav", "in.aiff", "in.flac"])
def test_24_bit_identity_within_the_float32_engine_and_unbiased(tmp_path, name):
    sf.write(tmp_path / name, noise(70000, 2), 48000, subtype="PCM_24")
    out = tmp_path / ("out" + pathlib.Path(name).suffix)
    result = invoke("render", str(tmp_path / name), str(out), "--report", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    x = sf.read(tmp_path / name, dtype="int32")[0] >> 8
    y = sf.read(out, dtype="int32")[0] >> 8
    d = (y - x).astype(np.int64)
    # float32 carries 24 bits: above half scale one float step is half an LSB, so the engine's
    # rounding error reaches 1-2 LSB on loud samples; never more, and never one-sided
    assert np.abs(d).max() <= 2
    assert np.mean(d != 0) < 0.1
    assert abs(d.mean()) < 0.01                                   # no DC offset
    assert np.abs(d[np.abs(x) < 2 ** 20]).max() <= 1              # within 1 LSB below -18 dBFS
    r = report(tmp_path / "r.json")
    expected = snr_db(x.astype(np.float64), y.astype(np.float64))
    assert r["file_snr_db"] == pytest.approx(expected, abs=0.01)
    assert r["dither"] == "none"


@pytest.mark.parametrize("name, subtype", [("o.wav", "PCM_16"), ("o.aiff", "PCM_16"),
                                           ("o.flac", "PCM_16"), ("o.wav", "PCM_24")])
def test_no_dc_offset_from_float_input(tmp_path, name, subtype):
    x = noise(60000, 2, seed=4).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    cfg = cosine_host.load_config(None, ["model.device=cpu"])
    for dither in ("none", "tpdf"):
        render_file(cfg, str(tmp_path / "in.wav"), str(tmp_path / name), subtype=subtype,
                    dither=dither, overwrite=True)
        bits = int(subtype[-2:])
        y = sf.read(tmp_path / name, dtype="float64")[0]
        error_lsb = (y - x.astype(np.float64)) * 2 ** (bits - 1)
        # truncation would give a mean near -0.5 LSB; rounding, with or without dither, ~0
        assert abs(error_lsb.mean()) < 0.02, dither
        # the float32 engine adds up to ~1.5 LSB of its own at 24 bits (see above)
        engine = 0.0 if bits == 16 else 1.5
        assert np.abs(error_lsb).max() <= (0.51 if dither == "none" else 1.51) + engine


def test_float_to_16_bit_dithers_reproducibly_whatever_the_chunking(tmp_path):
    x = noise(90000, 2, seed=5).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    cfg = cosine_host.load_config(None, ["model.device=cpu"])
    a = render_file(cfg, str(tmp_path / "in.wav"), str(tmp_path / "a.wav"), subtype="PCM_16")
    render_file(cfg, str(tmp_path / "in.wav"), str(tmp_path / "b.wav"), subtype="PCM_16",
                chunk_frames=7777)
    render_file(cfg, str(tmp_path / "in.wav"), str(tmp_path / "c.wav"), subtype="PCM_16",
                dither="none")
    assert a["dither"] == "tpdf"
    ya = sf.read(tmp_path / "a.wav", dtype="int16")[0]
    assert np.array_equal(ya, sf.read(tmp_path / "b.wav", dtype="int16")[0])
    yc = sf.read(tmp_path / "c.wav", dtype="int16")[0]
    assert not np.array_equal(ya, yc)
    # undithered: the nearest integers of the input, except where the input lies within the
    # engine's error (1e-6 of full scale is 0.03 LSB) of half-way between two
    scaled = x.astype(np.float64) * 32768
    clear = np.abs(scaled - np.floor(scaled) - 0.5) > 0.05
    assert clear.mean() > 0.85
    assert np.array_equal(yc[clear], np.rint(scaled[clear]).astype(np.int16))
    assert np.abs(yc - scaled).max() <= 0.55
    # dithered: within 1.5 LSB of the input, the noise of TPDF (variance 1/6 + 1/12 LSB^2)
    e = ya.astype(np.float64) - x.astype(np.float64) * 32768
    assert np.abs(e).max() <= 1.51
    assert np.var(e) == pytest.approx(1 / 4, rel=0.05)
    r = report_of(tmp_path, "in.wav", "d.wav", "--subtype", "PCM_16")
    assert r["dither"] == "tpdf"
    assert "TPDF dither" in r["_stdout"]


def report_of(tmp_path, source, target, *args) -> dict:
    path = tmp_path / f"{target}.json"          # one report per output: none is overwritten
    result = invoke("render", str(tmp_path / source), str(tmp_path / target), *args,
                    "--report", str(path))
    assert result.exit_code == 0, result.output
    r = report(path)
    r["_stdout"], r["_stderr"] = result.stdout, result.stderr
    return r


def test_24_to_16_bits_dithers_and_dither_none_does_not(tmp_path):
    sf.write(tmp_path / "in.flac", noise(30000, 1), 48000, subtype="PCM_24")
    assert report_of(tmp_path, "in.flac", "a.wav", "--subtype", "PCM_16")["dither"] == "tpdf"
    r = report_of(tmp_path, "in.flac", "b.wav", "--subtype", "PCM_16", "--dither", "none")
    assert r["dither"] == "none"
    x = sf.read(tmp_path / "in.flac", dtype="float64")[0] * 32768
    y = sf.read(tmp_path / "b.wav", dtype="int16")[0]
    clear = np.abs(x - np.floor(x) - 0.5) > 0.05      # not within the engine's error of a tie
    assert np.array_equal(y[clear], np.rint(x[clear]).astype(np.int16))
    assert np.abs(y - x).max() <= 0.55


# --- the SNR of the written file ---------------------------------------------------------------

def test_file_snr_of_a_quantized_16_bit_render_is_the_files(tmp_path):
    sf.write(tmp_path / "in.wav", noise(50000, 2), 48000, subtype="FLOAT")
    r = report_of(tmp_path, "in.wav", "o.wav", "--subtype", "PCM_16", "--dither", "none",
                  "--set", "processors=[{type: quantize, bits: 10}]")
    x = sf.read(tmp_path / "in.wav", dtype="float64")[0]
    y = sf.read(tmp_path / "o.wav", dtype="float64")[0]
    assert r["file_snr_db"] == pytest.approx(snr_db(x, y), abs=1e-6)
    assert r["file_snr_db"] < r["snr_db"] + 0.5 and r["file_identical"] is False
    assert f"file SNR {r['file_snr_db']:.1f} dB" in r["_stdout"]


@pytest.mark.parametrize("name", ["o.ogg", "o.mp3", "o.opus"])
def test_file_snr_of_lossy_outputs_is_measured_on_the_decoded_file(tmp_path, name):
    t = np.arange(48000) / 48000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1234 * t))[:, None]
    sf.write(tmp_path / "in.wav", np.repeat(x, 2, axis=1), 48000, subtype="PCM_24")
    r = report_of(tmp_path, "in.wav", name)
    reference = sf.read(tmp_path / "in.wav", dtype="float64")[0]
    decoded = sf.read(tmp_path / name, dtype="float64")[0]
    lag = r["file_lag_frames"]
    n = min(len(reference), len(decoded) - lag)
    expected = snr_db(reference[:n], decoded[lag:lag + n])
    assert r["file_snr_db"] == pytest.approx(expected, abs=1e-6)
    assert 5 < r["file_snr_db"] < r["snr_db"]            # lossy, but the same signal
    assert r["subtype"] in ("VORBIS", "MPEG_LAYER_III", "OPUS")


def test_find_lag_finds_a_codec_delay():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (20000, 2))
    for shift in (0, 1, 1105, -37, 4000):
        y = np.roll(x, shift, axis=0) + rng.normal(0, 0.02, x.shape)     # y[i] = x[i - shift]
        assert find_lag(x[5000:15000], y[5000:15000 + 4096]) == shift
    y = np.zeros((24096, 2))
    y[1105:1105 + 20000] = x
    assert find_lag(x, y) == 1105
    assert find_lag(y[1105:], x) == 0
    assert find_lag(x[1963:], x[2000:]) == -37       # decoded[i - 37] = reference[i]
    assert find_lag(np.zeros((100, 1)), x[:100, :1]) == 0


# --- never silent ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, keep", [("cut.flac", 2), ("cut.mp3", 3)])
def test_truncated_input_warns_with_the_missing_frames(tmp_path, name, keep):
    full = tmp_path / ("full" + pathlib.Path(name).suffix)
    sf.write(full, noise(200000, 2, level=0.1), 48000)
    data = full.read_bytes()
    (tmp_path / name).write_bytes(data[:len(data) // keep])       # header promises 200000
    promised = sf.info(tmp_path / name).frames
    r = report_of(tmp_path, name, "o.wav")
    written = sf.info(tmp_path / "o.wav").frames
    assert 0 < written < promised
    assert r["frames"] == written and r["frames_missing"] == promised - written
    warnings = [line for line in r["_stderr"].splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1
    assert f"{promised - written} frames missing" in warnings[0]
    assert f"promises {promised} frames" in warnings[0]


def test_nan_input_warns_with_the_count_and_all_nan_is_an_error(tmp_path):
    x = noise(30000, 2).astype(np.float32)
    x[100:110, 0] = np.nan
    x[5000, 1] = np.inf
    x[6000, 1] = -np.inf
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    r = report_of(tmp_path, "in.wav", "o.wav")
    assert r["nan_samples"] == 12
    assert "warning: " + str(tmp_path / "in.wav") + ": 12 NaN/Inf input samples were replaced " \
        "by 0" in r["_stderr"]
    y = sf.read(tmp_path / "o.wav", dtype="float32")[0]
    assert np.isfinite(y).all()
    clean = np.where(np.isfinite(x), x, 0)
    assert r["file_snr_db"] == pytest.approx(snr_db(clean, y), abs=1e-3) and r["file_snr_db"] > 90
    sf.write(tmp_path / "nan.wav", np.full((5000, 2), np.nan, np.float32), 48000, subtype="FLOAT")
    before = sorted(p.name for p in tmp_path.iterdir())
    line = one_error_line(invoke("render", str(tmp_path / "nan.wav"), str(tmp_path / "n.wav")))
    assert "NaN or Inf" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --- standard input and output -----------------------------------------------------------------

def test_pipe_in_pipe_out_gives_the_same_samples(tmp_path):
    sf.write(tmp_path / "a.wav", noise(40000, 2), 44100, subtype="PCM_16")
    piped = run_cli("render", "-", "-", "--format", "wav",
                    stdin=(tmp_path / "a.wav").read_bytes())
    assert piped.returncode == 0, piped.stderr
    (tmp_path / "piped.wav").write_bytes(piped.stdout)         # nothing but the file
    direct = run_cli("render", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"))
    assert direct.returncode == 0, direct.stderr
    a, rate = sf.read(tmp_path / "piped.wav", dtype="int16")
    b = sf.read(tmp_path / "b.wav", dtype="int16")[0]
    assert rate == 44100 and np.array_equal(a, b)
    assert np.array_equal(a, sf.read(tmp_path / "a.wav", dtype="int16")[0])
    assert piped.stderr.decode().startswith("- -> -: ")     # the summary went to stderr
    assert direct.stdout.decode().startswith(f"{tmp_path / 'a.wav'} -> ")


def test_pipe_formats_and_errors(tmp_path):
    sf.write(tmp_path / "a.flac", noise(20000, 1), 48000, subtype="PCM_24")
    done = run_cli("render", str(tmp_path / "a.flac"), "-", "--format", "flac")
    assert done.returncode == 0, done.stderr
    (tmp_path / "o.flac").write_bytes(done.stdout)
    assert sf.info(tmp_path / "o.flac").format == "FLAC"
    assert sf.info(tmp_path / "o.flac").frames == 20000
    no_format = run_cli("render", str(tmp_path / "a.flac"), "-")
    assert no_format.returncode == 2 and no_format.stdout == b""
    assert no_format.stderr.decode().strip().splitlines() == [
        "error: output '-' writes standard output: name its container with --format, e.g. "
        "--format wav"]
    empty = run_cli("render", "-", str(tmp_path / "x.wav"), stdin=b"")
    assert empty.returncode == 2 and b"standard input is empty" in empty.stderr
    assert not (tmp_path / "x.wav").exists()
    into_file = run_cli("render", "-", str(tmp_path / "y.wav"),
                        stdin=(tmp_path / "a.flac").read_bytes())
    assert into_file.returncode == 0, into_file.stderr
    assert sf.info(tmp_path / "y.wav").subtype == "PCM_24"


def test_format_names_the_container(tmp_path):
    sf.write(tmp_path / "a.wav", noise(20000, 1), 48000, subtype="PCM_16")
    result = invoke("render", str(tmp_path / "a.wav"), str(tmp_path / "noext"), "--format", "flac")
    assert result.exit_code == 0, result.output
    assert sf.info(tmp_path / "noext").format == "FLAC"
    line = one_error_line(invoke("render", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"),
                                 "--format", "flac"))
    assert "--format flac but" in line and ".wav" in line
    assert "unknown --format" in one_error_line(
        invoke("render", str(tmp_path / "a.wav"), str(tmp_path / "c"), "--format", "xyz"))
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("render", str(tmp_path / "a.wav"), "--out-dir", str(out), "--format", "flac")
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["a.flac"]
    assert sf.info(out / "a.flac").format == "FLAC"


# --- folders -----------------------------------------------------------------------------------

def test_recursive_mirrors_the_subfolders(tmp_path):
    src = tmp_path / "src"
    for sub in ("", "x", "y", "x/deep", ".hidden"):
        (src / sub).mkdir(parents=True, exist_ok=True)
        sf.write(src / sub / "take.wav", noise(2000, 1), 48000, subtype="PCM_16")
    sf.write(src / "x" / "other.ogg", noise(3000, 1, level=0.05), 48000)
    out = tmp_path / "out"
    out.mkdir()
    flat = invoke("render", str(src), "--out-dir", str(out))
    assert flat.exit_code == 0 and sorted(p.name for p in out.iterdir()) == ["take.wav"]
    result = invoke("render", str(src), "--out-dir", str(out), "--recursive", "--overwrite")
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["take.wav", "x/deep/take.wav", "x/other.wav", "x/take.wav", "y/take.wav"]
    for rel in ("take.wav", "x/deep/take.wav", "y/take.wav"):
        assert np.array_equal(sf.read(out / rel, dtype="int16")[0],
                              sf.read(src / rel, dtype="int16")[0])
    line = one_error_line(invoke("render", str(src), str(out)))
    assert "is a folder" in line
    line = one_error_line(invoke("render", str(src / "take.wav"), str(tmp_path / "o.wav"),
                                 "--recursive"))
    assert "--recursive renders folders into --out-dir" in line


def test_out_dir_that_is_a_file_says_so(tmp_path):
    sf.write(tmp_path / "a.wav", noise(2000, 1), 48000)
    (tmp_path / "taken").write_text("a file")
    line = one_error_line(invoke("render", str(tmp_path / "a.wav"), "--out-dir",
                                 str(tmp_path / "taken")))
    assert line == (f"error: --out-dir {str(tmp_path / 'taken')!r} is a file, not a folder; "
                    f"give a folder (or move the file away)")
    assert "mkdir" not in line


# --- resampling --------------------------------------------------------------------------------

def test_samplerate_resamples_with_soxr_vhq_on_the_way_in(tmp_path):
    import soxr
    x = noise(44100, 2, level=0.1).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, 44100, subtype="FLOAT")
    r = report_of(tmp_path, "in.wav", "o.wav", "--samplerate", "48000")
    y, rate = sf.read(tmp_path / "o.wav", dtype="float64")
    expected = soxr.resample(x, 44100, 48000, quality="VHQ")
    assert rate == 48000 and r["samplerate"] == 48000 and r["input_samplerate"] == 44100
    assert y.shape == expected.shape == (48000, 2)
    assert snr_db(expected, y) > 90                  # identity engine after the resampler
    assert r["resampled"] == {"from_hz": 44100, "to_hz": 48000, "resampler": "soxr VHQ"}
    assert "resampled from 44100 Hz (soxr VHQ)" in r["_stdout"]
    assert r["file_snr_db"] == pytest.approx(snr_db(expected, y), abs=0.01)
    same = report_of(tmp_path, "in.wav", "p.wav", "--samplerate", "44100")
    assert same["resampled"] is None


def test_codec_rates_are_checked_before_rendering(tmp_path):
    sf.write(tmp_path / "in.wav", noise(4000, 1), 44100)
    line = one_error_line(invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "o.opus")))
    assert "not 44100 Hz; add --samplerate 48000" in line
    assert not (tmp_path / "o.opus").exists()
    ok = invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "o.opus"), "--samplerate",
                "48000")
    assert ok.exit_code == 0, ok.output
    assert sf.info(tmp_path / "o.opus").samplerate == 48000
    assert "out of range" in one_error_line(
        invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "p.wav"), "--samplerate", "5"))


# --- lossy quality, tags, clip advice ----------------------------------------------------------

def test_quality_changes_the_lossy_file_and_is_refused_for_lossless(tmp_path):
    sf.write(tmp_path / "in.wav", noise(96000, 2, level=0.1), 48000, subtype="PCM_16")
    low = report_of(tmp_path, "in.wav", "low.ogg", "--quality", "0.1")
    high = report_of(tmp_path, "in.wav", "high.ogg", "--quality", "0.9")
    assert (tmp_path / "low.ogg").stat().st_size < (tmp_path / "high.ogg").stat().st_size
    assert low["file_snr_db"] < high["file_snr_db"]
    assert (low["quality"], high["quality"]) == (0.1, 0.9)
    cbr = report_of(tmp_path, "in.wav", "c.mp3", "--bitrate-mode", "constant")
    assert cbr["bitrate_mode"] == "constant"
    line = one_error_line(invoke("render", str(tmp_path / "in.wav"), str(tmp_path / "x.wav"),
                                 "--quality", "0.5"))
    assert "apply to OGG, Opus and MP3 outputs" in line


@pytest.mark.parametrize("name", ["o.wav", "o.flac", "o.ogg"])
def test_tags_are_copied(tmp_path, name):
    tags = {"title": "Take 3", "artist": "The Cosines", "album": "Transforms",
            "comment": "room mic", "date": "2024"}
    with sf.SoundFile(tmp_path / "in.flac", "w", 48000, 1, subtype="PCM_16") as f:
        for key, value in tags.items():
            setattr(f, key, value)
        f.write(noise(20000, 1))
    r = report_of(tmp_path, "in.flac", name)
    with sf.SoundFile(tmp_path / name) as f:
        written = f.copy_metadata()
    for key, value in tags.items():
        assert written.get(key) == value, key
    assert {k: r["tags"][k] for k in tags} == tags


def test_flac_clip_warning_suggests_what_flac_can_do(tmp_path):
    x = np.full((20000, 1), 0.8, np.float32)
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    gain = "processors=[{type: 'plugins_example:Gain', gain: 2.0}]"
    flac = report_of(tmp_path, "in.wav", "o.flac", "--set", gain)
    assert flac["clipped_samples"] == 20000
    line = flac["_stdout"]
    assert "FLAC has no float samples: lower the gain, or write a .wav with --subtype FLOAT" in line
    assert "use --subtype FLOAT to keep them" not in line
    wav = report_of(tmp_path, "in.wav", "o.wav", "--subtype", "PCM_16", "--set", gain)
    assert "use --subtype FLOAT to keep them" in wav["_stdout"]

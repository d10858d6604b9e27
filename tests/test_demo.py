"""`run.py demo`: synthesised material through the default config and every shipped preset."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from cosine_host.cli import cli
from cosine_host.lab.demo import PRESETS, run_demo
from cosine_host.lab.material import SAMPLERATE, SECONDS, synthesize_material
from cosine_host.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parent.parent
ROWS = ["default", *PRESETS]


def test_presets_are_complete_documented_yaml():
    for name in PRESETS:
        text = (ROOT / "configs" / f"{name}.yaml").read_text()
        first, second = text.splitlines()[:2]
        assert first.startswith("# ") and len(first) > 20        # `run.py presets` shows it
        assert second == f"# cosine-host preset: {name}"
        for section in ("audio:", "frame:", "model:", "processors:", "monitor:"):
            assert f"\n{section}" in text


def test_material_has_every_part():
    x = synthesize_material()
    frames = int(SECONDS * SAMPLERATE)
    quarter = frames // 4
    assert x.shape == (frames, 2) and x.dtype == np.float32
    assert 0.3 < np.max(np.abs(x)) < 0.6
    tones, sweep = x[:quarter], x[quarter:2 * quarter]
    silence = x[3 * quarter:3 * quarter + quarter // 2]
    assert not np.any(silence)
    assert np.array_equal(sweep[:, 0], sweep[:, 1])         # the sweep is on both channels
    assert not np.array_equal(tones[:, 0], tones[:, 1])     # 220 Hz left, 330 Hz right
    spectrum = np.abs(np.fft.rfft(tones[:, 0]))
    assert np.argmax(spectrum) * SAMPLERATE / quarter == pytest.approx(220.0, abs=1.0)
    assert np.array_equal(x, synthesize_material())          # deterministic


def test_demo_command_writes_files_and_a_row_per_preset(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    result = CliRunner().invoke(cli, ["demo", "--out-dir", str(out), "--set", "model.device=cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["preset", "SNR", "dB"]
    assert [line.split()[0] for line in lines[2:2 + len(ROWS)]] == ROWS
    assert lines[-1] == f"wrote {out}"
    assert (out / "notes.txt").read_text() == "the user's own file"

    material = sf.read(out / "demo-material.wav", dtype="float32", always_2d=True)[0]
    rows = {r["preset"]: r for r in json.loads((out / "demo-summary.json").read_text())["rows"]}
    assert list(rows) == ROWS
    for name in ROWS:
        info = sf.info(out / f"demo-{name}.wav")
        assert (info.frames, info.samplerate, info.channels, info.subtype) == \
            (material.shape[0], SAMPLERATE, 2, "FLOAT")
        report = json.loads((out / f"demo-{name}.json").read_text())
        assert report["snr_db"] == pytest.approx(rows[name]["snr_db"])
        assert rows[name]["latency_ms"] == pytest.approx(511 / 48.0)
        # the row's speed is the render's own: audio seconds over wall seconds, both reported
        assert report["seconds_audio"] == pytest.approx(material.shape[0] / SAMPLERATE)
        assert rows[name]["realtime_factor"] == pytest.approx(
            report["seconds_audio"] / report["seconds_wall"])
        assert report["seconds_wall"] > 0
    assert rows["default"]["snr_db"] >= 90                   # identity
    assert rows["default"]["bitrate_kbps"] is None and rows["default"]["kept_percent"] is None
    # 6 bits: at most log2(63) bits per coefficient + 16 side bits per frame, 187.5 frames/s, 2 ch
    assert 6.0 < rows["quantize-6bit"]["bitrate_kbps"] < (512 * np.log2(63) + 16) * 187.5 * 2 / 1000
    assert 20 < rows["quantize-6bit"]["snr_db"] < 60
    assert rows["sparse-topk"]["kept_percent"] == pytest.approx(100 * 32 / 512)
    assert 0 < rows["sparse-threshold"]["kept_percent"] < 100
    # the lowpass preset removes the sweep and noise above 12 kHz: clearly not the identity
    assert rows["lowpass"]["snr_db"] < rows["default"]["snr_db"] - 40
    y = sf.read(out / "demo-lowpass.wav", dtype="float32", always_2d=True)[0]
    high = np.fft.rfftfreq(material.shape[0], 1 / SAMPLERATE) > 14000
    kept_high = np.sum(np.abs(np.fft.rfft(y[:, 0]))[high] ** 2)
    assert kept_high < 1e-4 * np.sum(np.abs(np.fft.rfft(material[:, 0]))[high] ** 2)


def test_overrides_reach_every_preset_and_base_config(tmp_path):
    base = tmp_path / "mine.yaml"
    base.write_text("processors:\n  - {type: quantize, bits: 10}\n")
    progress = []
    result = run_demo(str(tmp_path / "d"), config_path=str(base),
                      overrides=["frame.size=256", "frame.hop=128", "model.coefficients=128",
                                 "model.device=cpu"],
                      progress=lambda done, total: progress.append((done, total)))
    rows = result["table"]["rows"]
    assert [r["preset"] for r in rows] == ["mine", *PRESETS]
    assert {r["latency_ms"] for r in rows} == {255 / 48.0}   # N - 1 with N = 256 everywhere
    assert rows[0]["bitrate_kbps"] > 0
    total = 5 * int(SECONDS * SAMPLERATE)
    done = [d for d, _ in progress]
    assert progress[-1] == (total, total) and done == sorted(done)
    assert result["out_dir"] == str(tmp_path / "d")


def test_a_preset_that_cannot_take_the_overrides_is_named(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--out-dir", str(tmp_path / "d"),
                                      "--set", "model.coefficients=16"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: preset sparse-topk: processors[0].k = 32: out of range; allowed: an integer "
        "in 1..16 (model.coefficients)"]
    assert not (tmp_path / "d").exists()          # configs are checked before anything is written


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("the user's own file")
    with pytest.raises(UserError, match="is a file; give a folder name"):
        run_demo(str(tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "the user's own file"


def test_demo_in_a_subprocess_needs_no_sound_card(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "demo", "--out-dir",
                           str(tmp_path / "d"), "--set", "model.device=cpu"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()[2:2 + len(ROWS)]] == ROWS
    assert len(list((tmp_path / "d").glob("demo-*.wav"))) == 1 + len(ROWS)
    # again into the same folder: its own files are refused, then replaced with --overwrite
    again = subprocess.run([sys.executable, str(ROOT / "run.py"), "demo", "--out-dir",
                            str(tmp_path / "d"), "--set", "model.device=cpu"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.startswith("error: --out-dir material ") and "pass --overwrite" in again.stderr
    replaced = subprocess.run([sys.executable, str(ROOT / "run.py"), "demo", "--out-dir",
                               str(tmp_path / "d"), "--set", "model.device=cpu", "--overwrite"],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert replaced.returncode == 0, replaced.stderr

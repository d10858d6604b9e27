"""`run.py evaluate`: rates, metrics, codecs, outputs (short signals, few settings)."""
import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from cosine_host.models.processors.registry import Quantize
from cosine_host.cli import cli
from cosine_host.lab import codecs
from cosine_host.lab import evaluate as lab
from cosine_host.lab import metrics
from cosine_host.lab.material import synthesize_material
from cosine_host.errors import UserError
from cosine_host.lab.speech import looks_like_speech, synthesize_speech

RATE = 48000


def speech(seconds=2.0):
    return {"name": "speech", "path": None, "signal": synthesize_speech(RATE, seconds),
            "samplerate": RATE, "speech": True}


def music(seconds=2.0):
    return {"name": "music", "path": None, "signal": synthesize_material(RATE, seconds),
            "samplerate": RATE, "speech": None}


def by_label(result):
    return {r["label"]: r for r in result["rows"]}


def test_quantize_rates_match_an_independent_count():
    torch.manual_seed(0)
    x = torch.randn(40, 2, 64) * torch.linspace(1.0, 0.02, 64)
    q = Quantize(5)
    q.prepare(RATE, 256, 64)
    with torch.inference_mode():
        y = q(x).numpy()
    levels = 15
    symbols = np.round(y / np.abs(y).max(-1, keepdims=True) * levels).astype(int)
    seconds = 40 * 256 / RATE
    side = 16 * 40 * 2

    def entropy_bits(values):
        _, counts = np.unique(values, return_counts=True)
        return float((counts * np.log2(counts.sum() / counts)).sum())
    bands = np.arange(64) * Quantize.BANDS // 64
    banded = sum(entropy_bits(symbols[..., bands == b]) for b in range(Quantize.BANDS))
    r = q.rates()
    assert r["kbps_fixed"] == pytest.approx((5 * symbols.size + side) / seconds / 1000)
    assert r["kbps_pooled"] == pytest.approx((entropy_bits(symbols) + side) / seconds / 1000)
    assert r["kbps_pooled"] == pytest.approx(q.stats()["bitrate_kbps"])
    assert r["kbps_entropy"] == pytest.approx((banded + side) / seconds / 1000)
    assert r["kbps_entropy"] < r["kbps_pooled"] < r["kbps_fixed"]
    assert "per band" in r["entropy_model"]


def test_rates_are_ordered_for_every_quantized_row():
    settings = lab.plan_settings(["quantize-6bit"], ["processors.0.bits=1,2,4,8,16"])
    settings += lab.plan_settings(
        [None], ["processors=[{type: topk, k: 32}, {type: quantize, bits: 6}]"])
    result = lab.evaluate([speech(1.0)], settings, ("snr_db",))
    assert len(result["rows"]) == 6
    for row in result["rows"]:
        assert row["kbps"] == row["kbps_entropy"]
        assert 0 < row["kbps_entropy"] <= row["kbps_pooled"] <= row["kbps_fixed"], row["label"]
    fixed = [r["kbps_fixed"] for r in result["rows"][:5]]
    assert fixed == sorted(fixed) and fixed[0] == fixed[1]      # bits 1 and 2: both ternary


def test_quality_rises_with_bits_on_speech():
    settings = lab.plan_settings(["quantize-6bit"], ["processors.0.bits=3,12"])
    result = lab.evaluate([speech(3.0)], settings, ("snr_db", "pesq", "stoi", "visqol"))
    low, high = (by_label(result)[f"quantize-6bit processors.0.bits={b}"] for b in (3, 12))
    for name in ("snr_db", "pesq", "stoi", "visqol"):
        assert low[name] is not None and high[name] is not None, (name, low["notes"])
        assert high[name] > low[name], name
    assert high["pesq"] > 4.0 and low["pesq"] < 3.0
    assert result["metrics"]["visqol"]["mode"].startswith("audio mode at 48 kHz")


def test_pesq_on_music_is_null_with_a_note():
    item = music()
    assert not looks_like_speech(item["signal"], RATE) and looks_like_speech(
        synthesize_speech(RATE, 2.0), RATE)
    inputs = lab.load_inputs([], "auto")
    assert [i["speech"] for i in inputs] == [True, False]
    item["speech"] = False
    result = lab.evaluate([item], lab.plan_settings(["quantize-6bit"], []), ("snr_db", "pesq"))
    row = result["rows"][0]
    assert row["pesq"] is None and row["snr_db"] is not None
    assert any(n.startswith("pesq: not speech") for n in row["notes"])


def test_identity_has_no_bitrate_and_a_note():
    result = lab.evaluate([speech(1.0)], lab.plan_settings([None], []), ("snr_db", "si_sdr_db",
                                                                         "lsd_db"))
    row = result["rows"][0]
    assert row["kbps"] is None and row["kbps_fixed"] is None
    assert row["snr_db"] > 100 and row["lsd_db"] < 0.01
    assert any(n.startswith("kbps: no quantizer") for n in row["notes"])


def test_hand_written_metrics_on_known_signals():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 0.1, (RATE, 2)).astype(np.float32)
    noisy = ref + rng.normal(0, 0.01, ref.shape).astype(np.float32)
    values, notes = metrics.measure(ref, noisy, RATE, metrics.CHEAP, True)
    assert values["snr_db"] == pytest.approx(20.0, abs=0.2)
    assert values["si_sdr_db"] == pytest.approx(20.0, abs=0.2)
    values2, _ = metrics.measure(ref, 0.5 * ref, RATE, metrics.CHEAP, True)
    assert values2["si_sdr_db"] is None or values2["si_sdr_db"] > 100    # scale-invariant
    assert values2["snr_db"] == pytest.approx(20 * math.log10(2), abs=1e-6)
    for name in ("lsd_db", "mel_distance", "stft_distance"):
        assert 0 < values[name]
        same, notes = metrics.measure(ref, ref, RATE, (name,), True)
        assert same[name] == pytest.approx(0.0, abs=1e-9), name
    silent = np.zeros((RATE, 1), np.float32)
    values, notes = metrics.measure(silent, silent, RATE, ("snr_db", "loudness_lu"), True)
    assert values == {"snr_db": None, "loudness_lu": None} and len(notes) == 2


def test_codec_rows_with_their_bitrates():
    settings = lab.plan_settings(["quantize-6bit"], ["processors.0.bits=4"])
    result = lab.evaluate([speech(2.0)], settings, ("snr_db",), ("opus", "vorbis", "mp3"))
    engine_kbps = result["rows"][0]["kbps"]
    for name in ("opus", "vorbis", "mp3"):
        rows = [r for r in result["rows"] if r["kind"] == "codec" and r["config"]["codec"] == name]
        assert rows, name
        for row in rows:
            assert row["kbps"] > 0 and row["snr_db"] is not None, row
            assert row["kbps_entropy"] is None and row["label"] == f"{name} {row['kbps']:.0f} kbps"
    opus = [r for r in result["rows"] if r["label"].startswith("opus")][0]
    assert abs(math.log(opus["kbps"] / engine_kbps)) < math.log(1.5)   # near the engine's rate


def test_codecs_and_metrics_names_are_checked():
    with pytest.raises(UserError, match="unknown codec 'aac'"):
        codecs.check_names("opus,aac")
    with pytest.raises(UserError, match="unknown metric 'mos'"):
        metrics.check_names("pesq,mos")
    with pytest.raises(UserError, match="expected key.path=v1,v2"):
        lab.parse_sweep("processors.0.bits")
    assert lab.split_values("2,[1, 2],{a: 1, b: 2}") == ["2", "[1, 2]", "{a: 1, b: 2}"]


def test_missing_extra_names_the_install_command(monkeypatch):
    import importlib
    real = importlib.import_module

    def refuse(name, *args):
        if name == "pesq":
            raise ImportError("no pesq")
        return real(name, *args)
    monkeypatch.setattr(importlib, "import_module", refuse)
    with pytest.raises(UserError, match=r"pip install 'cosine-host\[quality\]'"):
        metrics.check_available(("snr_db", "pesq"))


def test_cli_writes_json_csv_and_png(tmp_path):
    wav = tmp_path / "in.wav"
    sf.write(wav, synthesize_speech(16000, 1.5), 16000)
    paths = {k: tmp_path / f"lab.{k}" for k in ("json", "csv", "png")}
    args = ["evaluate", str(wav), "-c", "quantize-6bit", "--sweep", "processors.0.bits=3,8",
            "--codecs", "vorbis", "--metrics", "snr_db,pesq,loudness_lu", "--json",
            str(paths["json"]), "--csv", str(paths["csv"]), "--plot", str(paths["png"]),
            "--plot-metrics", "pesq,snr_db"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "PESQ" in result.output and "ViSQOL" not in result.output
    data = json.loads(paths["json"].read_text())
    assert set(data) == {"rows", "inputs", "metrics"} and set(data["metrics"]) == {
        "snr_db", "pesq", "loudness_lu"}
    assert {r["kind"] for r in data["rows"]} == {"engine", "codec"}
    for key in ("label", "kind", "config", "kbps", "kbps_fixed", "kbps_pooled", "kbps_entropy",
                "snr_db", "si_sdr_db", "lsd_db", "mel_distance", "stft_distance", "pesq",
                "stoi", "visqol", "loudness_lu", "notes"):
        assert key in data["rows"][0]
    assert data["inputs"][0]["content"] == "speech" and data["inputs"][0]["samplerate"] == 16000
    lines = list(csv.DictReader(paths["csv"].open()))
    assert len(lines) == len(data["rows"]) and float(lines[0]["kbps"]) > 0
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = CliRunner().invoke(cli, args)                       # refused before any work
    assert again.exit_code == 2 and "exists; pass --overwrite" in again.output
    assert len(again.output.strip().splitlines()) == 1


def test_cli_errors_are_one_line(tmp_path):
    for args, text in ((["--sweep", "processors.0.bits=3"], "processors.0"),
                       (["--codecs", "flac"], "unknown codec"),
                       (["missing.wav"], "input file not found"),
                       (["--json", str(tmp_path / "no" / "x.json")], "folder missing")):
        result = CliRunner().invoke(cli, ["evaluate", *args])
        assert result.exit_code == 2, result.output
        assert text in result.output and len(result.output.strip().splitlines()) == 1


def test_render_report_and_demo_give_kbps_entropy(tmp_path):
    from cosine_host.config.schema import load_config
    from cosine_host.offline.render import render_file, summary_line
    wav = tmp_path / "in.wav"
    sf.write(wav, synthesize_speech(RATE, 1.0), RATE)
    report = render_file(load_config("quantize-6bit"), str(wav), str(tmp_path / "out.wav"))
    assert 0 < report["kbps_entropy"] <= report["bitrate_kbps"]
    assert "kbps with a model per band" in summary_line(report)
    plain = render_file(load_config(None), str(wav), str(tmp_path / "plain.wav"))
    assert plain["kbps_entropy"] is None
    from cosine_host.lab.demo import COLUMNS
    assert "kbps_entropy" in [c[0] for c in COLUMNS]


def test_codec_targets_on_one_bitrate_give_one_row():
    signal = synthesize_speech(RATE, 1.0)
    rows = list(codecs.at_bitrates(signal, RATE, "mp3", [900.0, 1000.0, 2000.0]))
    assert len(rows) == 1 and "highest here" in rows[0][3]

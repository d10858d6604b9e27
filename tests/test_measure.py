"""Latency tests (cosine_host.measure.algorithmic, cosine_host.measure.roundtrip, cosine_host.measure.bench, cosine_host.measure.plots) on real parts:
the engine offline, a JACK dummy server's loopback for round trips (the ``jack_server``
fixture, tests/conftest.py), matplotlib for plots, and the CLI through click's runner."""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cosine_host.cli import cli as host_cli
from cosine_host.engine import latency as lat
from cosine_host.measure import bench
from cosine_host.measure import algorithmic as measure
from cosine_host.measure import plots
from cosine_host.measure import roundtrip
from cosine_host.config.schema import load_config
from cosine_host.engine.engine import Engine
from cosine_host.errors import UserError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ON_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_matplotlib():
    """matplotlib must be there on CI (the test extra installs it); locally its absence skips."""
    if ON_CI:
        import matplotlib  # noqa: F401
    else:
        pytest.importorskip("matplotlib")


def assert_png(path):
    data = open(path, "rb").read()
    assert len(data) > 1000 and data[:8] == PNG_SIGNATURE


def cli(*args):
    """Run the CLI in this process; (exit code, stdout, stderr)."""
    result = CliRunner().invoke(host_cli, list(args))
    return result.exit_code, result.stdout, result.stderr


# --- parse_blocksizes ----------------------------------------------------------------------------

def test_parse_blocksizes_keeps_order_and_drops_duplicates():
    assert measure.parse_blocksizes("32, 64,0,32,") == [32, 64, 0]
    assert measure.parse_blocksizes("441") == [441]


@pytest.mark.parametrize("text", ["", " , ", "32,x", "-1", "1.5"])
def test_parse_blocksizes_refuses_what_is_not_a_list_of_sizes(text):
    with pytest.raises(UserError, match="--blocksizes"):
        measure.parse_blocksizes(text)


# --- algorithmic ---------------------------------------------------------------------------------

# (config overrides, block sizes, expected latency per block size: N - gcd(B, H), N - 1 varying)
ALGORITHMIC_CASES = {
    "default N=512 H=256": ((), {1: 511, 32: 480, 100: 508, 256: 256, 441: 511, 4096: 256,
                                 0: 511}),
    "hop 128": (("frame.hop=128",), {32: 480, 100: 508, 256: 384, 0: 511}),
    "N=1024 H=512": (("frame.size=1024", "frame.hop=512", "model.coefficients=1024"),
                     {64: 960, 441: 1023, 512: 512, 1024: 512, 0: 1023}),
}


@pytest.mark.parametrize("case", list(ALGORITHMIC_CASES))
def test_algorithmic_measures_the_theoretical_minimum(case):
    overrides, expected = ALGORITHMIC_CASES[case]
    cfg = load_config(overrides=overrides)
    result = measure.algorithmic(cfg, list(expected))
    assert result["passed"] is True
    for row in result["rows"]:
        want = expected[row["blocksize"]]
        assert want == lat.latency_samples(cfg.frame.size, cfg.frame.hop, row["blocksize"])
        assert (row["measured_samples"], row["bypass_samples"], row["reported_samples"],
                row["minimum_samples"]) == (want, want, want, want)
        assert row["measured_range"] == [want, want] and row["result"] == "ok"
        assert row["latency_ms"] == pytest.approx(1e3 * want / cfg.audio.samplerate)
        assert row["blocks"] == (str(row["blocksize"]) if row["blocksize"] else "varying")
    assert [c[0] for c in result["table"]["columns"]][:3] == ["blocks", "measured_text",
                                                             "bypass_text"]


def test_impulses_sit_at_different_phases_and_responses_stay_apart():
    positions, window, total = measure.impulse_positions(512, 256, 100)
    assert [p % 100 for p in positions] == [0, 1, 50, 99, 33]
    assert positions[-1] + window <= total
    # the next impulse's response (at least N - 1 early) cannot reach this one's search window
    assert all(b - a >= window + 512 for a, b in zip(positions, positions[1:]))
    sizes = measure.block_sizes(0, 256, 10_000)
    assert sum(sizes) == 10_000 and max(sizes) <= 512 and sizes[3::4][:2] == [0, 1]


def test_algorithmic_judges_the_transform_and_shows_lossy_processors_apart():
    cfg = load_config(overrides=["processors=[{type: topk, k: 8}]"])
    result = measure.algorithmic(cfg, [256])
    row = result["rows"][0]
    assert result["passed"] and row["measured_samples"] == row["bypass_samples"] == 256
    # topk smears an impulse: shown as a range around the latency, not judged
    lo, hi = row["processors_range"]
    assert lo <= 256 <= hi
    assert "processors_text" in [c[0] for c in result["table"]["columns"]]
    assert result["processors"] == [{"type": "topk", "k": 8}]


def test_cli_algorithmic_prints_a_table_and_writes_json_and_plot(tmp_path):
    require_matplotlib()
    out, png = tmp_path / "alg.json", tmp_path / "alg.png"
    code, stdout, stderr = cli("latency", "algorithmic", "--blocksizes", "32,0",
                               "--json", str(out), "--plot", str(png))
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["blocksize", "measured", "bypass"]
    # measured, bypass, reported, minimum, algorithmic, buffering, ms, result
    assert lines[2].split() == ["32", "480", "480", "480", "480", "256", "224", "10.00", "ok"]
    assert lines[3].split() == ["varying", "511", "511", "511", "511", "256", "255", "10.65",
                                "ok"]
    data = json.loads(out.read_text())
    assert data["passed"] is True and [r["measured_samples"] for r in data["rows"]] == [480, 511]
    assert_png(png)


# --- GCC-PHAT ------------------------------------------------------------------------------------

def delayed(signal, delay, length, channels=2):
    out = np.zeros((length, channels), np.float32)
    out[delay:delay + len(signal), 0] = signal[:length - delay]
    return out


def test_gcc_phat_finds_the_delay_of_a_sweep_and_of_noise():
    sweep = roundtrip.log_sweep(48000, 0.25)
    assert sweep.dtype == np.float32 and sweep.shape == (12000,)
    assert np.abs(sweep).max() == pytest.approx(roundtrip.SWEEP_AMPLITUDE, rel=1e-3)
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(6000).astype(np.float32)
    for ref, delay in ((sweep, 777), (noise, 123)):
        rec = delayed(ref, delay, len(ref) + 4000)
        rec += 0.01 * rng.standard_normal(rec.shape).astype(np.float32)  # channel 1: noise only
        est = roundtrip.estimate_delay(ref, rec, max_lag=4000)
        assert est["delay_samples"] == delay and est["channel"] == 0
        assert est["peak_to_floor_db"] > roundtrip.MIN_PEAK_TO_FLOOR_DB
        assert est["channels"][1]["peak_to_floor_db"] < roundtrip.MIN_PEAK_TO_FLOOR_DB


def test_estimate_delay_refuses_silence_and_unrelated_noise():
    sweep = roundtrip.log_sweep(48000, 0.25)
    with pytest.raises(UserError, match="nothing came back"):
        roundtrip.estimate_delay(sweep, np.zeros((20000, 2), np.float32), max_lag=8000)
    noise = 0.1 * np.random.default_rng(2).standard_normal((20000, 2)).astype(np.float32)
    with pytest.raises(UserError, match="does not contain the test signal"):
        roundtrip.estimate_delay(sweep, noise, max_lag=8000)


# --- roundtrip on the JACK dummy server ----------------------------------------------------------

def live_config(jack_server, *overrides):
    return load_config(overrides=[f"audio.samplerate={jack_server.samplerate}", *overrides])


@pytest.mark.parametrize("bypass", [False, True], ids=["transform", "bypass"])
@pytest.mark.parametrize("blocksize", [256, 100])
def test_roundtrip_on_jack_loopback_is_engine_plus_device_latency(jack_server, blocksize, bypass):
    cfg = live_config(jack_server, f"audio.blocksize={blocksize}")
    result = roundtrip.roundtrip(cfg, repeats=3, bypass=bypass, jack_loopback=True)
    engine = lat.latency_samples(cfg.frame.size, cfg.frame.hop, blocksize)
    assert result["engine_samples"] == engine
    assert result["bypass"] is bypass
    assert result["expected_samples"] == result["device_samples"] + engine
    assert result["device_samples"] > 0
    assert len(result["repeats"]) == 3 and result["jack_loopback"]["pairs"]
    runs = [{k: r[k] for k in ("measured_samples", "expected_samples", "peak_to_floor_db",
                               "xruns")} for r in result["repeats"]]
    median = result["measured_samples"]["median"]
    # the median of three leaves room for one stream disturbed by a loaded machine
    assert sum(r["measured_samples"] == median for r in result["repeats"]) >= 2, runs
    if jack_server.dummy:
        # a JACK loopback's round trip is exactly what PortAudio reports, plus the engine
        assert median == result["expected_samples"], runs
        assert result["difference_samples"] == 0 and result["difference_ms"] == 0
    sr = jack_server.samplerate
    assert result["measured_ms"]["median"] == pytest.approx(
        1e3 * result["measured_samples"]["median"] / sr)
    table = result["table"]
    assert table["rows"][-1]["samples"] == result["difference_samples"]


def test_roundtrip_without_a_loopback_is_a_user_error(jack_server):
    # the dummy server's capture ports are silent; a real server's hear no sweep
    expected = ("nothing came back: the input recorded silence" if jack_server.dummy
                else "the recording does not contain the test signal")
    with pytest.raises(UserError, match=expected):
        roundtrip.roundtrip(live_config(jack_server), repeats=1)


def test_overload_counts_xruns_and_leaves_the_round_trip_unchanged(jack_server):
    """A loud tone between two sweeps makes the Sleepy plugin sleep 20 ms (about four budgets)
    in the calls that see it: xruns are counted, and the sweep after the overload comes back
    exactly as late as the one before (no hop added per underrun)."""
    from cosine_host.live.session import LiveSession
    sr, blocksize = jack_server.samplerate, 256
    sleepy = '{type: "plugins_sleepy:Sleepy", sleep_ms: 20, above: 5.0}'
    cfg = live_config(jack_server, f"audio.blocksize={blocksize}", f"processors=[{sleepy}]")
    sweep = roundtrip.log_sweep(sr, 0.25)
    t = np.arange(int(0.05 * sr)) / sr
    tone = (0.9 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)   # coefficients up to ~9
    gap = np.zeros(int(0.2 * sr), np.float32)
    signal = np.concatenate([sweep, gap, tone, gap, sweep])
    second = len(signal) - len(sweep)
    tail = sr // 2

    # The engine sees the same blocks offline: count the calls the tone makes sleep.
    offline = Engine.from_config(cfg.replace("processors.0.sleep_ms=0"), blocksize=blocksize,
                                 channels=cfg.audio.channels)
    padded = np.zeros((len(signal) + tail + (-(len(signal) + tail)) % blocksize, 2), np.float32)
    padded[:len(signal)] = signal[:, None]
    measure.run_blocks(offline, padded, measure.block_sizes(blocksize, cfg.frame.hop, len(padded)))
    sleeps = offline.stats()["processors"][0]["sleeps"]
    assert sleeps >= 5

    session = LiveSession(cfg, jack_loopback=True)
    recording = session.play_record(signal, tail_samples=tail)
    report = session.last_report
    assert report["engine"]["processors"][0]["sleeps"] == sleeps
    # every overlong call leaves the next callback flagged (the dummy adds a few of its own)
    assert report["xruns"]["total"] >= sleeps
    before = np.zeros(len(signal), np.float32)
    before[:len(sweep)] = sweep
    after = np.zeros(len(signal), np.float32)
    after[second:] = sweep
    # lags searched stay below the sweeps' distance, so each reference finds only its own sweep
    assert tail < second
    d_before = roundtrip.estimate_delay(before, recording, max_lag=tail)["delay_samples"]
    d_after = roundtrip.estimate_delay(after, recording, max_lag=tail)["delay_samples"]
    assert d_after == d_before
    if jack_server.dummy:
        assert d_before == report["latency"]["total_samples"], (d_before, report["latency"])
    assert report["latency"]["engine_samples"] == lat.latency_samples(512, 256, blocksize)


def test_cli_roundtrip_writes_json_and_plot_and_fails_in_one_line(jack_server, tmp_path):
    require_matplotlib()
    out, png = tmp_path / "rt.json", tmp_path / "rt.png"
    rate = f"audio.samplerate={jack_server.samplerate}"
    code, stdout, stderr = cli("latency", "roundtrip", "--set", rate, "--jack-loopback",
                               "--repeats", "1", "--json", str(out), "--plot", str(png))
    assert code == 0, stderr
    data = json.loads(out.read_text())
    for key in ("measured_samples", "expected_samples", "difference_samples", "device_samples",
                "engine_samples"):
        assert key in data
    assert set(data["measured_samples"]) == {"min", "median", "max"}
    assert data["difference_samples"] == data["measured_samples"]["median"] - \
        data["expected_samples"]
    assert "difference: median - expected" in stdout
    assert_png(png)

    code, stdout, stderr = cli("latency", "roundtrip", "--set", rate, "--repeats", "1")
    assert code == 2
    # status lines while the stream ran, then exactly one error line
    errors = [line for line in stderr.splitlines() if line.startswith("error")]
    assert errors == [stderr.splitlines()[-1]]
    assert "nothing came back" in errors[0] or "does not contain the test signal" in errors[0]
    assert "Traceback" not in stderr


# --- bench ---------------------------------------------------------------------------------------

def test_bench_reports_the_distribution_and_says_which_devices_are_unavailable():
    cfg = load_config(overrides=["model.device=cpu"])
    devices = ["cpu", "cuda"]
    result = bench.bench(cfg, [64, 256], devices, seconds=0.1)
    sr = cfg.audio.samplerate
    assert result["devices"]["cpu"] == {"available": True, "reason": None}
    cuda = torch.cuda.is_available()
    assert result["devices"]["cuda"]["available"] is cuda
    measured = ["cpu", "cuda"] if cuda else ["cpu"]
    assert [(r["device"], r["blocksize"]) for r in result["rows"]] == \
        [(d, b) for d in measured for b in (64, 256)] + [(d, None) for d in devices
                                                          if d not in measured]
    for row in result["rows"]:
        if not result["devices"][row["device"]]["available"]:
            assert row["status"] == "unavailable" and row["safe_text"] == "unavailable"
            assert row["safe"] is None and row["note"] == result["devices"][row["device"]]["reason"]
            continue
        budget = 1e3 * row["blocksize"] / sr
        assert row["budget_ms"] == pytest.approx(budget)
        assert row["status"] == "ok"
        assert row["calls"] == math.ceil(0.1 * sr / row["blocksize"])
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert 0 < row["mean_ms"] <= row["max_ms"]
        assert row["p99_pct_of_budget"] == pytest.approx(100 * row["p99_ms"] / budget)
        assert row["safe"] is (row["p99_ms"] < budget / 2)
        assert row["latency_samples"] == lat.latency_samples(512, 256, row["blocksize"])
    for device in devices:
        fits = [r["blocksize"] for r in result["rows"] if r["device"] == device and r["safe"]]
        assert result["smallest_safe_blocksize"][device] == (min(fits) if fits else None)
    with pytest.raises(UserError, match="fixed block sizes"):
        bench.bench(cfg, [0, 64], ["cpu"], seconds=0.1)


def test_bench_unknown_device_is_one_line_not_a_row(tmp_path):
    out = tmp_path / "bench.json"
    code, stdout, stderr = cli("latency", "bench", "--blocksizes", "128", "--device", "cpu,tpu",
                               "--seconds", "0.05", "--json", str(out))
    assert code == 2 and stdout == ""
    assert stderr == "error: --device: unknown device 'tpu'; allowed: cpu, cuda (comma-separated, " \
                     "e.g. --device cpu,cuda)\n"
    assert not out.exists()


def test_cli_bench_writes_strict_json_and_a_plot(tmp_path):
    require_matplotlib()
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    code, stdout, stderr = cli("latency", "bench", "--blocksizes", "128", "--device", "cpu,cuda",
                               "--seconds", "0.05", "--json", str(out), "--plot", str(png))
    assert code == 0, stderr
    data = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert set(data["smallest_safe_blocksize"]) == {"cpu", "cuda"}
    assert data["rows"][0]["device"] == "cpu" and data["rows"][0]["calls"] == 19
    if not torch.cuda.is_available():
        cuda_rows = [line.split() for line in stdout.splitlines() if line.startswith("cuda")]
        assert cuda_rows == [["cuda"] + ["-"] * 8 + ["unavailable", "-", "no", "CUDA", "device",
                                                     "(torch.cuda.is_available()", "is",
                                                     "False)"]]
    assert_png(png)


# --- plots ---------------------------------------------------------------------------------------

def test_plot_without_matplotlib_says_how_to_install_it(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)   # import now fails
    result = measure.algorithmic(load_config(), [256])
    with pytest.raises(UserError, match=r"pip install matplotlib .*\.\[plots\]"):
        plots.plot_latency("algorithmic", result, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_into_a_missing_folder_is_a_user_error(tmp_path):
    require_matplotlib()
    result = measure.algorithmic(load_config(), [256])
    with pytest.raises(UserError, match="cannot write the plot"):
        plots.plot_latency("algorithmic", result, tmp_path / "no" / "x.png")

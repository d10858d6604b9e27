"""Bad inputs and hard stops: worker counts, stops during worker start-up, bench sizes, what a
codec cannot encode, YAML 1.1 numbers, truncated inputs, training data out of range.

Real files through soundfile; real `python run.py` subprocesses where the case is a command line.
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from cosine_host.errors import UserError
from cosine_host.offline import batch
from helpers import slow_batch

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTS = pathlib.Path(__file__).resolve().parent
CPU = ["--set", "model.device=cpu"]


def noise(frames: int, channels: int, seed: int = 0, level: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0, level, (frames, channels)), -0.99, 0.99).astype(np.float32)


def run_cli(*args: str, env=None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args, *CPU],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=env)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.strip().splitlines() if line]


def leftovers(folder: pathlib.Path) -> list[str]:
    """Temporary files (cosine_host.files.atomic_path names them .NAME.*) left in ``folder``."""
    return [str(p) for p in folder.rglob(".*")]


# --- --jobs bounds ----------------------------------------------------------------------------

def test_check_workers_warns_above_the_cores_and_refuses_past_four_times():
    assert batch.check_workers(2, total_cores=2) is None
    warning = batch.check_workers(3, total_cores=2)
    assert warning == ("--jobs 3 is more than this machine's 2 cores: the workers take turns "
                       "on them, so each file renders slower (--jobs auto: 2)")
    assert batch.check_workers(8, total_cores=2) is not None
    with pytest.raises(UserError, match=r"^--jobs 9: at most 8 worker processes on this "
                                        r"machine \(4 x its 2 cores\)"):
        batch.check_workers(9, total_cores=2)


def test_jobs_1000_is_refused_in_one_line_before_any_worker_starts(tmp_path):
    (tmp_path / "out").mkdir()
    sf.write(tmp_path / "in.wav", noise(1000, 1), 48000)
    done = run_cli("render", str(tmp_path / "in.wav"), "--out-dir", str(tmp_path / "out"),
                   "--jobs", "1000")
    limit = 4 * batch.cores()
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        f"error: --jobs 1000: at most {limit} worker processes on this machine (4 x its "
        f"{batch.cores()} cores); more only take turns on the cores and each loads torch "
        f"(hundreds of MB). Use --jobs auto ({batch.cores()})"]
    assert not list((tmp_path / "out").iterdir())


def test_workers_are_capped_at_the_files_and_warned_above_the_cores(tmp_path):
    """--jobs 4 x cores with cores + 1 files: cores + 1 workers (one per file, the rest never
    start), with a warning that they are more than the cores; with one file, no warning."""
    cores = batch.cores()
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for i in range(cores + 1):
        sf.write(src / f"f{i}.wav", noise(4000, 1, i), 48000)
    done = run_cli("render", str(src), "--out-dir", str(out), "--jobs", str(4 * cores),
                   "--report", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["workers"] == cores + 1
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: --jobs {cores + 1} is more than this machine's {cores} "
                        f"cores: the workers take turns on them, so each file renders slower "
                        f"(--jobs auto: {cores})"]
    assert len(list(out.glob("*.wav"))) == cores + 1
    one = tmp_path / "one"
    one.mkdir()
    done = run_cli("render", str(src / "f0.wav"), "--out-dir", str(one), "--jobs",
                   str(4 * cores))
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr


def test_plan_caps_workers_at_the_files_to_render(tmp_path):
    from cosine_host.config.schema import load_config
    from cosine_host.offline.plan import plan_render
    out = tmp_path / "out"
    out.mkdir()
    sf.write(tmp_path / "a.wav", noise(1000, 1), 48000)
    sf.write(tmp_path / "b.wav", noise(1000, 1), 48000)
    cfg = load_config(overrides=("model.device=cpu",))
    plan = plan_render(cfg, [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")], str(out),
                       workers=batch.cores() * 4)
    assert plan.workers == 2


@pytest.mark.parametrize("delay_s", [0.5, 1.5, 3.0])
def test_sigterm_during_worker_start_up_is_a_clean_stop(tmp_path, delay_s):
    """SIGTERM while the worker processes are still importing torch (or the driver is): the
    one-line stop, exit 143, no C++ abort text from a worker, no temporary file left."""
    args, env, out = slow_batch(tmp_path, 4, 4)
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(delay_s)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "terminate called" not in stderr and "Traceback" not in stderr, stderr
    lines = [line for line in error_lines(stderr) if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: terminated by SIGTERM"), stderr
    assert leftovers(out) == []


# --- latency bench --seconds ------------------------------------------------------------------

def test_bench_seconds_beyond_memory_is_one_line():
    done = run_cli("latency", "bench", "--blocksizes", "32", "--seconds", "1e9")
    assert done.returncode == 2
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: --seconds 1e+09: 1500000000000 calls of block size 32 at "
                               "48000 Hz need 12000.0 GB to hold their times but ")
    assert lines[0].endswith("GB are available; give fewer seconds (a few seconds give stable "
                             "percentiles; default 2)")


def test_bench_seconds_not_finite_is_refused():
    from cosine_host.measure.bench import check_seconds
    for bad in (float("inf"), float("nan")):
        with pytest.raises(UserError, match="give a finite number of audio seconds"):
            check_seconds(bad, 32, 48000)
    check_seconds(2.0, 32, 48000, available=1 << 30)
    with pytest.raises(UserError, match="give fewer seconds"):
        check_seconds(2.0, 32, 48000, available=1000)


def test_bench_table_has_no_empty_note_column_without_an_unavailable_device():
    from cosine_host.config.schema import load_config
    from cosine_host.measure import bench
    cfg = load_config(overrides=("model.device=cpu",))
    result = bench.bench(cfg, [256], ["cpu"], seconds=0.05)
    assert "note" not in [c[0] for c in result["table"]["columns"]]


# --- what a codec cannot encode ---------------------------------------------------------------

def test_mp3_quality_0_says_what_the_encoder_cannot_do(tmp_path):
    sf.write(tmp_path / "in.wav", noise(4800, 2), 48000)
    done = run_cli("render", str(tmp_path / "in.wav"), str(tmp_path / "out.mp3"),
                   "--quality", "0")
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        f"error: MPEG_LAYER_III ({str(tmp_path / 'out.mp3')!r}) cannot be encoded at --quality "
        f"0 (the MP3 encoder has no setting below it); give --quality 0.01 for the smallest "
        f"MP3"]
    assert not (tmp_path / "out.mp3").exists() and leftovers(tmp_path) == []
    done = run_cli("render", str(tmp_path / "in.wav"), str(tmp_path / "out.mp3"),
                   "--quality", "0.01")
    assert done.returncode == 0, done.stderr


def test_six_channels_to_mp3_says_mp3_is_stereo_at_most(tmp_path):
    sf.write(tmp_path / "in.wav", noise(4800, 6), 48000)
    done = run_cli("render", str(tmp_path / "in.wav"), str(tmp_path / "out.mp3"))
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        f"error: MPEG_LAYER_III ({str(tmp_path / 'out.mp3')!r}) holds at most 2 channels, not "
        f"6; write a .wav or .flac file (or mix the input down first)"]
    assert "free" not in done.stderr
    assert not (tmp_path / "out.mp3").exists() and leftovers(tmp_path) == []


def test_six_channel_opus_notes_the_lfe(tmp_path):
    sf.write(tmp_path / "in.wav", noise(9600, 6), 48000)
    out = tmp_path / "out.opus"
    done = run_cli("render", str(tmp_path / "in.wav"), str(out))
    assert done.returncode == 0, done.stderr
    assert (f"warning: {out}: Opus codes 6 channels as 5.1 surround: channel 6 is the LFE, "
            f"low-passed to bass only; write .flac or .wav to keep it whole") in done.stderr
    sf.write(tmp_path / "two.wav", noise(9600, 2), 48000)
    done = run_cli("render", str(tmp_path / "two.wav"), str(tmp_path / "two.opus"))
    assert done.returncode == 0 and "LFE" not in done.stderr


# --- numbers YAML 1.1 reads as text -----------------------------------------------------------

def test_number_as_text_says_how_to_write_the_number():
    from cosine_host.errors import number_as_text
    assert number_as_text("1.0e9") == (" (YAML reads 1.0e9 as text, not a number: write "
                                       "1.0e+9 or 1000000000)")
    assert number_as_text("1e3", whole=True) == (" (YAML reads 1e3 as text, not a number: "
                                                 "write 1000)")
    assert number_as_text("1e-3") == " (YAML reads 1e-3 as text, not a number: write 1.0e-3)"
    for not_a_number_as_text in ("loud", "12", "2.5e-7", "inf", 3, 1.5, None, "["):
        assert number_as_text(not_a_number_as_text) == ""


def test_yaml_1_1_numbers_in_a_config_file_are_explained(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("frame:\n  kbd_alpha: 1.0e9\naudio:\n  blocksize: 1e3\n")
    done = run_cli("info", "--config", str(config))
    assert done.returncode == 2
    assert error_lines(done.stderr)[-1].endswith(
        "(YAML reads 1e3 as text, not a number: write 1000)"), done.stderr
    config.write_text("frame:\n  kbd_alpha: 1.0e9\n")
    done = run_cli("info", "--config", str(config))
    assert done.returncode == 2
    assert "YAML reads 1.0e9 as text, not a number: write 1.0e+9 or 1000000000" in \
        error_lines(done.stderr)[-1], done.stderr


def test_yaml_1_1_numbers_in_stage_and_processor_entries_are_explained():
    done = run_cli("info", "--set", "processors=[{type: quantize, bits: 1e1}]")
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        "error: processors[0].bits = '1e1': not an integer; allowed: an integer in 1..24 (YAML "
        "reads 1e1 as text, not a number: write 1.0e+1 or 10)"]
    done = run_cli("info", "--set", "audio.latency=1e-1")
    assert error_lines(done.stderr) == [
        "error: audio.latency = '1e-1': not allowed; allowed: low | high | seconds > 0 (YAML "
        "reads 1e-1 as text, not a number: write 1.0e-1)"]


# --- train: audio out of range, mixed rates, rd without a rate term ---------------------------

def test_train_on_audio_peaking_at_6e29_names_the_peak(tmp_path):
    data = noise(8000, 1)
    data[100, 0] = 6e29
    sf.write(tmp_path / "loud.wav", data, 48000, subtype="FLOAT")
    done = run_cli("train", str(tmp_path / "loud.wav"), "--steps", "2", "--out",
                   str(tmp_path / "m.pt"), "--set", "model.coefficients=256")
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        f"error: audio file {str(tmp_path / 'loud.wav')!r} peaks at 6e+29, out of range for "
        f"training (full scale is 1.0; at most 1000 is taken): normalise it to full scale, or "
        f"leave it out"]
    assert "learning rate" not in done.stderr and not (tmp_path / "m.pt").exists()


def test_train_refuses_mixed_sample_rates_among_files_and_val(tmp_path):
    sf.write(tmp_path / "a.wav", noise(8000, 1, 1), 48000)
    sf.write(tmp_path / "b.wav", noise(8000, 1, 2), 44100)
    sf.write(tmp_path / "v.wav", noise(8000, 1, 3), 16000)
    done = run_cli("train", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--steps", "2",
                   "--out", str(tmp_path / "m.pt"), "--set", "model.coefficients=256")
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        f"error: the audio files have different sample rates: 48000 Hz ({tmp_path / 'a.wav'}), "
        f"44100 Hz ({tmp_path / 'b.wav'}); training learns at one rate: resample them to one "
        f"rate first"]
    done = run_cli("train", str(tmp_path / "a.wav"), "--val", str(tmp_path / "v.wav"),
                   "--steps", "2", "--out", str(tmp_path / "m.pt"),
                   "--set", "model.coefficients=256")
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        f"error: the audio files have different sample rates: 48000 Hz ({tmp_path / 'a.wav'}), "
        f"16000 Hz ({tmp_path / 'v.wav'}); training learns at one rate: resample them to one "
        f"rate first"]
    assert not (tmp_path / "m.pt").exists()


def test_train_rd_with_rate_weight_0_is_refused(tmp_path):
    sf.write(tmp_path / "a.wav", noise(8000, 1, 1), 48000)
    done = run_cli("train", str(tmp_path / "a.wav"), "--steps", "2", "--out",
                   str(tmp_path / "m.pt"), "--objective", "rd",
                   "--set", "processors=[{type: learned_quantize}]")
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        "error: --objective rd with --rate-weight 0 has no rate term: nothing holds the bitrate "
        "down while the quantizer's steps learn; give --rate-weight LAMBDA > 0 (e.g. 0.01; "
        "larger: fewer bits), or use --objective mse"]
    assert not (tmp_path / "m.pt").exists()


# --- truncated inputs -------------------------------------------------------------------------

def test_truncated_wav_warns_how_much_its_header_promised(tmp_path):
    sf.write(tmp_path / "full.wav", noise(48000, 2), 48000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:44 + 4 * 30000])       # 30000 frames of 48000
    assert sf.info(tmp_path / "cut.wav").frames == 30000
    done = run_cli("render", str(tmp_path / "cut.wav"), str(tmp_path / "out.wav"))
    assert done.returncode == 0, done.stderr
    assert (f"warning: {tmp_path / 'cut.wav'}: its header promises 48000 frames but the file "
            f"holds 30000: 18000 frames (0.375 s) missing (truncated file); rendered what is "
            f"there") in done.stderr.splitlines()
    assert sf.info(tmp_path / "out.wav").frames == 30000
    done = run_cli("render", str(tmp_path / "full.wav"), str(tmp_path / "out2.wav"))
    assert done.returncode == 0 and "warning" not in done.stderr


def test_promised_frames_reads_the_data_chunk_size(tmp_path):
    from cosine_host.offline.riff import promised_frames
    for subtype, fmt in (("PCM_24", "WAV"), ("FLOAT", "WAV"), ("PCM_16", "WAVEX")):
        sf.write(tmp_path / "a.wav", noise(1235, 3), 44100, subtype=subtype, format=fmt)
        assert promised_frames(str(tmp_path / "a.wav")) == 1235
    sf.write(tmp_path / "a.flac", noise(1235, 3), 44100)
    assert promised_frames(str(tmp_path / "a.flac")) is None
    (tmp_path / "short.wav").write_bytes(b"RIFF\x00")
    assert promised_frames(str(tmp_path / "short.wav")) is None


def decodable_frames(path) -> int:
    """Frames a decoder gives reading 256 at a time from the start, until it fails."""
    frames = 0
    with sf.SoundFile(path) as f:
        while True:
            try:
                chunk = f.read(256)
            except sf.SoundFileError:
                return frames
            if not len(chunk):
                return frames
            frames += len(chunk)


def test_truncated_flac_renders_as_far_as_the_decoder_goes(tmp_path):
    from cosine_host.config.schema import load_config
    from cosine_host.offline.render import CHUNK_FRAMES, render_file
    full = tmp_path / "full.flac"
    sf.write(full, noise(4 * CHUNK_FRAMES, 2), 48000, subtype="PCM_16")
    data = full.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[:int(len(data) * 0.6)])
    decodable = decodable_frames(cut)
    assert decodable % CHUNK_FRAMES > 1024      # a whole chunk read would lose these
    cfg = load_config(overrides=("model.device=cpu",))
    report = render_file(cfg, str(cut), str(tmp_path / "out.wav"))
    assert report["frames"] >= decodable - 1024
    assert sf.info(tmp_path / "out.wav").frames == report["frames"]
    assert report["frames_missing"] == 4 * CHUNK_FRAMES - report["frames"]
    assert any("truncated file" in w for w in report["warnings"])
    out = sf.read(tmp_path / "out.wav", dtype="float32")[0]
    ref = sf.read(full, dtype="float32", frames=report["frames"])[0]
    assert np.abs(out - ref).max() < 1e-3          # the identity chain: the same samples


# --- batch: the --report summary survives a stop ----------------------------------------------

def test_sigterm_mid_batch_writes_the_report_of_what_finished(tmp_path):
    report = tmp_path / "r.json"
    args, env, out = slow_batch(tmp_path, 6, 2, "--report", str(report))
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # the stop comes once the driver has reported a file (its line on stdout): a file on
        # disk alone may be one whose outcome is still on its way from the worker
        import select
        ready, _, _ = select.select([proc.stdout], [], [], 240)
        assert ready, "the batch never got going"
        first = proc.stdout.readline()
        assert f" -> {out}{os.sep}f" in first, (first, proc.communicate())
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert error_lines(stderr) == [
        "error: terminated by SIGTERM; outputs finished so far are complete; run again with "
        f"--skip-existing to render the rest; --report {str(report)!r} lists what finished and "
        "what is left"], stderr
    summary = json.loads(report.read_text())
    finished = {p.name for p in out.glob("f*.wav")}
    assert 1 <= len(finished) < 6
    rendered = {pathlib.Path(r["output"]).name for r in summary["rendered"]}
    left = {pathlib.Path(r["output"]).name for r in summary["not_rendered"]}
    # a file whose worker renamed it into place as the stop came is complete on disk but was
    # never reported: it is listed as not rendered (--skip-existing then skips it)
    assert 1 <= len(rendered) and rendered <= finished
    assert rendered | left == {f"f{i}.wav" for i in range(6)} and not rendered & left
    assert len(finished - rendered) <= 2
    assert summary["failed"] == [] and summary["stopped"] == "terminated by SIGTERM"
    assert leftovers(tmp_path) == []


# --- small ones -------------------------------------------------------------------------------

def test_a_nan_osc_value_is_logged_as_nan_not_null():
    from cosine_host.config.schema import load_config
    from cosine_host.engine.engine import Engine
    from cosine_host.live.control import Controls
    cfg = load_config(overrides=("model.device=cpu",
                                 "processors=[{type: quantize, bits: 6}]"))
    controls = Controls(Engine.from_config(cfg), cfg, time.perf_counter_ns())
    entry = controls.handle("/processors/0/bits", (float("nan"),))
    assert entry["result"] == "refused" and entry["value"] == "nan"
    entry = controls.handle("/processors/0/bits", (float("-inf"), 3))
    assert entry["value"] == ["-inf", 3]
    written = json.loads(json.dumps(controls.report(), allow_nan=False))
    assert [e["value"] for e in written] == ["nan", ["-inf", 3]]


def test_a_huge_peak_is_printed_in_a_few_digits(tmp_path):
    data = noise(4800, 1)
    data[1000, 0] = 1e30
    sf.write(tmp_path / "in.wav", data, 48000, subtype="FLOAT")
    done = run_cli("render", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                   "--subtype", "PCM_16")
    assert done.returncode == 0, done.stderr
    assert "samples clipped (peak 1e+30; " in done.stdout, done.stdout
    assert "000000000000" not in done.stdout


@pytest.mark.parametrize("command", [["render"], ["train"], ["latency", "bench"],
                                     ["latency", "roundtrip"], ["live"], ["evaluate"], ["demo"]])
def test_help_names_paths_and_lists_not_text(command):
    from click.testing import CliRunner
    from cosine_host.cli import cli
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert " TEXT " not in result.output, result.output


def test_non_ascii_tags_to_mp3_warn_that_id3v1_garbles_them(tmp_path):
    with sf.SoundFile(tmp_path / "in.flac", "w", 48000, 2) as f:
        f.title, f.artist = "Café – 東京", "Bjork"
        f.write(noise(4800, 2))
    done = run_cli("render", str(tmp_path / "in.flac"), str(tmp_path / "out.mp3"))
    assert done.returncode == 0, done.stderr
    assert (f"warning: {tmp_path / 'out.mp3'}: MP3 tags are written as ID3v1 (Latin-1, 30 bytes "
            f"a field): title holds non-ASCII or longer text that other players show garbled or "
            f"cut; write .flac, .ogg or .opus to keep them, or retag the MP3"
            ) in done.stderr.splitlines(), done.stderr
    done = run_cli("render", str(tmp_path / "in.flac"), str(tmp_path / "out.ogg"))
    assert done.returncode == 0 and "ID3v1" not in done.stderr


# --- --jobs auto ------------------------------------------------------------------------------

def test_auto_workers_pick_one_for_a_small_batch_or_a_busy_machine():
    assert batch.auto_workers(4, batch.AUTO_MIN_AUDIO_S - 1, busy=0.0) == 1
    assert batch.auto_workers(4, batch.AUTO_MIN_AUDIO_S, busy=0.0) == 4
    assert batch.auto_workers(4, 10 * batch.AUTO_MIN_AUDIO_S, busy=2.2) == 2
    assert batch.auto_workers(2, 10 * batch.AUTO_MIN_AUDIO_S, busy=2.0) == 1
    assert batch.auto_workers(2, 10 * batch.AUTO_MIN_AUDIO_S, busy=0.3) == 2


def test_busy_cores_sees_a_busy_process():
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat on this platform")
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert batch.busy_cores(0.5) >= 0.7
    finally:
        spin.kill()
        spin.wait()


def test_jobs_auto_on_a_small_batch_starts_no_worker(tmp_path):
    from cosine_host.offline.plan import start_workers
    out = tmp_path / "out"
    out.mkdir()
    for i in range(3):
        sf.write(tmp_path / f"f{i}.wav", noise(4800, 1, i), 48000)
    paths = [str(tmp_path / f"f{i}.wav") for i in range(3)]
    before = list(batch._prestarted)      # earlier in-process renders may have left some
    assert start_workers("auto", str(out), None, paths) == 1
    assert batch._prestarted == before    # none started for this batch
    done = run_cli("render", *paths, "--out-dir", str(out), "--jobs", "auto",
                   "--report", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["workers"] == 1


# --- non-finite output ------------------------------------------------------------------------

def test_a_stage_that_makes_inf_is_counted_and_named_not_written(tmp_path):
    pytest.importorskip("pedalboard")
    sf.write(tmp_path / "in.wav", noise(9600, 1), 48000, subtype="FLOAT")
    done = run_cli("render", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"),
                   "--set", "post=[{type: pedalboard.Gain, gain_db: 1000}]")
    assert done.returncode == 0, done.stderr
    assert "RuntimeWarning" not in done.stderr
    notes = [line for line in done.stderr.splitlines() if "NaN/Inf samples" in line]
    assert len(notes) == 1, done.stderr
    assert notes[0].startswith(f"warning: {tmp_path / 'in.wav'}: the engine's output held ")
    assert ("samples, written as 0: the chain (post[0] pedalboard.Gain) made them from "
            "finite input (peak 0.") in notes[0]
    assert notes[0].endswith("); check its gains and parameters")
    assert np.isfinite(sf.read(tmp_path / "out.wav")[0]).all()


def test_input_near_the_float32_limit_names_the_overflow(tmp_path):
    data = noise(9600, 1)
    data[3000:3100, 0] = 3e38
    sf.write(tmp_path / "in.wav", data, 48000, subtype="FLOAT")
    done = run_cli("render", str(tmp_path / "in.wav"), str(tmp_path / "out.wav"))
    assert done.returncode == 0, done.stderr
    assert "RuntimeWarning" not in done.stderr
    notes = [line for line in done.stderr.splitlines() if "NaN/Inf samples" in line]
    assert len(notes) == 1, done.stderr
    assert notes[0].endswith("written as 0: the input's values near float32's limit (peak "
                             "3e+38; the limit is 3.4e+38) overflow in the transform; scale "
                             "the input down"), notes[0]
    assert np.isfinite(sf.read(tmp_path / "out.wav")[0]).all()


# --- NaN input: the rule of render for live --play ---------------------------------------------

def test_play_file_with_some_nan_counts_and_warns(tmp_path):
    from cosine_host.live import playback
    data = noise(4800, 2)
    data[10:20, 0] = np.nan
    data[30, 1] = np.inf
    sf.write(tmp_path / "some.wav", data, 48000, subtype="FLOAT")
    signal, info = playback.load(str(tmp_path / "some.wav"), 48000, 2)
    assert np.isfinite(signal).all() and info["nan_samples"] == 11
    assert info["warnings"] == [f"--play {str(tmp_path / 'some.wav')!r}: 11 NaN/Inf samples "
                                f"were replaced by 0"]


def test_play_file_of_nothing_but_nan_is_refused_in_one_line(tmp_path):
    sf.write(tmp_path / "nan.wav", np.full((4800, 1), np.nan, np.float32), 48000,
             subtype="FLOAT")
    done = run_cli("live", "--play", str(tmp_path / "nan.wav"), "--duration", "1")
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        f"error: --play {str(tmp_path / 'nan.wav')!r}: every sample is NaN or Inf: nothing to "
        f"play; check how the file was made"]


# --- evaluate --plot: never an empty chart, never PNG bytes under another name -------------------

def _evaluate_input(tmp_path):
    path = tmp_path / "in.wav"
    sf.write(path, noise(9600, 1), 48000)
    return str(path)


def test_evaluate_plot_needs_a_png_name(tmp_path):
    done = run_cli("evaluate", _evaluate_input(tmp_path), "--metrics", "snr_db",
                   "--plot", str(tmp_path / "chart.txt"))
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        f"error: --plot {str(tmp_path / 'chart.txt')!r}: the plot is a PNG image; give a file "
        f"name ending in .png"]
    assert not (tmp_path / "chart.txt").exists()


def test_evaluate_plot_panels_must_be_computed(tmp_path):
    done = run_cli("evaluate", _evaluate_input(tmp_path), "--metrics", "snr_db",
                   "--plot-metrics", "snr_db,lsd_db", "--plot", str(tmp_path / "p.png"))
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        "error: --plot: lsd_db would be drawn but --metrics does not compute it (snr_db); add it "
        "to --metrics, or choose --plot-metrics among those"]
    assert not (tmp_path / "p.png").exists()


def test_evaluate_plot_without_any_bitrate_writes_no_chart(tmp_path):
    # the default config is the identity: no quantizer, no codec, so no kbps on any row
    done = run_cli("evaluate", _evaluate_input(tmp_path), "--metrics", "snr_db",
                   "--plot", str(tmp_path / "p.png"), "--json", str(tmp_path / "rows.json"))
    assert done.returncode == 2
    assert error_lines(done.stderr)[-1] == (
        "error: --plot: no row has a bitrate for the kbps axis (no quantizer or codec in the "
        "settings and no --codecs); add one, or leave --plot out")
    assert not (tmp_path / "p.png").exists()
    assert json.loads((tmp_path / "rows.json").read_text())["rows"]     # the table's data is kept


def test_evaluate_plot_leaves_out_a_panel_without_values_and_says_so(tmp_path):
    # music-like noise: PESQ applies to speech only, so its panel has nothing to draw
    done = run_cli("evaluate", _evaluate_input(tmp_path), "--content", "audio",
                   "--set", "processors=[{type: quantize, bits: 6}]",
                   "--metrics", "snr_db,pesq", "--plot-metrics", "snr_db,pesq",
                   "--plot", str(tmp_path / "p.png"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "warning: --plot: pesq left out: no row has a value at a bitrate" in \
        done.stderr.splitlines()


# --- evaluate: NaN input follows render's rule --------------------------------------------------

def test_evaluate_input_with_some_nan_counts_and_warns(tmp_path):
    data = noise(9600, 1)
    data[100:110, 0] = np.nan
    data[200, 0] = -np.inf
    path = tmp_path / "some.wav"
    sf.write(path, data, 48000, subtype="FLOAT")
    done = run_cli("evaluate", str(path), "--metrics", "snr_db", "--json",
                   str(tmp_path / "rows.json"))
    assert done.returncode == 0, done.stderr
    assert f"warning: input {str(path)!r}: 11 NaN/Inf samples were replaced by 0" in \
        done.stderr.splitlines()
    data = json.loads((tmp_path / "rows.json").read_text())
    assert data["inputs"][0]["nan_samples"] == 11
    assert all(np.isfinite(row["snr_db"]) for row in data["rows"])


def test_evaluate_input_of_nothing_but_nan_is_refused_in_one_line(tmp_path):
    path = tmp_path / "nan.wav"
    sf.write(path, np.full((4800, 1), np.nan, np.float32), 48000, subtype="FLOAT")
    done = run_cli("evaluate", str(path), "--metrics", "snr_db")
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        f"error: input {str(path)!r}: every sample is NaN or Inf: nothing to measure; check how "
        f"the file was made"]


# --- evaluate --at-kbps: codecs encoded at the target, a table that fits a terminal -----------

def _speech(seconds: float = 2.0):
    from cosine_host.lab.speech import synthesize_speech
    return synthesize_speech(48000, seconds)


@pytest.mark.parametrize("target", [24.0, 64.0, 100.0])
def test_opus_is_encoded_within_one_percent_of_the_target(target):
    from cosine_host.lab import codecs
    rows = list(codecs.at_bitrates(_speech(), 48000, "opus", [target]))
    assert len(rows) == 1 and rows[0][3] is None, rows
    decoded, kbps, level, _ = rows[0]
    assert abs(kbps - target) <= codecs.KBPS_TOLERANCE * target, (kbps, level)
    assert decoded.shape == (96000, 1)


def test_constant_bitrate_steps_give_rows_on_either_side_of_the_target():
    from cosine_host.lab import codecs
    from cosine_host.lab.evaluate import curves_at
    rows = list(codecs.at_bitrates(_speech(), 48000, "mp3", [105.0]))
    rates = [kbps for _, kbps, _, _ in rows]
    assert len(rows) == 2 and rates[0] < 105.0 < rates[1], rates      # 96 and 112 kbps CBR
    assert "span it" in rows[0][3]
    result = {"rows": [{"label": f"mp3 {k:.0f}", "input": "x", "kbps": k, "snr_db": float(k)}
                       for k in rates], "groups": {f"mp3 {k:.0f}": "mp3" for k in rates}}
    assert curves_at(result, (105.0,), ("snr_db",))["rows"][0]["snr_db@105"] is not None


def test_a_curve_end_within_the_tolerance_is_read_at_the_target():
    from cosine_host.lab.evaluate import curves_at
    result = {"rows": [{"label": "opus 64", "input": "x", "kbps": 64.0, "snr_db": 10.0},
                       {"label": "opus 99", "input": "x", "kbps": 99.4, "snr_db": 14.0}],
              "groups": {"opus 64": "opus", "opus 99": "opus"}}
    read = curves_at(result, (100.0, 110.0), ("snr_db",))["rows"][0]
    assert read["snr_db@100"] == 14.0 and read["snr_db@110"] is None


def test_at_kbps_fills_the_codec_cells_and_fits_a_terminal(tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, _speech(), 48000)
    metrics = "snr_db,si_sdr_db,lsd_db,mel_distance,stft_distance,loudness_lu"
    done = run_cli("evaluate", str(path), "-c", "codec", "--codecs", "opus,vorbis,mp3",
                   "--metrics", metrics, "--at-kbps", "32,64,100", "--json",
                   str(tmp_path / "rows.json"))
    assert done.returncode == 0, done.stderr
    at = done.stdout.split("at equal bitrates")[1].splitlines()[1:]
    assert max(len(line) for line in at) <= 80, "\n".join(at)
    header = at[0].split()
    assert header[:3] == ["curve", "input", "metric"] and header[3:] == [
        "@32", "kbps", "@64", "kbps", "@100", "kbps"]
    for codec in ("opus", "vorbis", "mp3"):
        lines = [line.split() for line in at if line.split()[:1] == [codec]]
        assert len(lines) == 6, at                        # one per metric
        assert all(cell != "-" for line in lines for cell in line[-2:]), lines    # 64 and 100
    data = json.loads((tmp_path / "rows.json").read_text())
    opus = next(r for r in data["at_kbps"] if r["curve"] == "opus")
    assert opus["snr_db@100"] is not None and opus["snr_db@64"] is not None


# --- live: the engine's non-finite output, the closing summary's width -------------------------

def test_the_callback_recorder_zeroes_and_counts_nonfinite_output():
    from cosine_host.live import monitor
    rec = monitor.CallbackRecorder(capacity=8, max_frames=4, channels=2)
    indata = np.full((4, 2), 0.25, np.float32)
    out = np.full((4, 2), 0.5, np.float32)
    rec.zero_nonfinite(indata, out, 4)
    assert rec.output_nonfinite_samples == 0 and (out == 0.5).all()
    out[1, 0], out[2, 1], out[3, 1] = np.nan, np.inf, -np.inf
    rec.zero_nonfinite(indata, out, 4)
    rec.zero_nonfinite(indata[:2], out[:2], 2)             # already clean: nothing more
    assert rec.output_nonfinite_samples == 3 and rec.output_nonfinite_events == 1
    assert np.isfinite(out).all() and out[1, 0] == 0 and out[0, 0] == 0.5
    assert rec.nonfinite_input_peak == 0.25
    big = np.full((4, 2), 3e38, np.float32)                 # finite, its sum of squares is not
    rec.zero_nonfinite(indata, big, 4)
    assert rec.output_nonfinite_samples == 3 and (big == np.float32(3e38)).all()
    assert rec.snapshot()["output_nonfinite_samples"] == 3


def test_live_output_made_inf_by_a_stage_is_played_as_zero_and_named(jack_server, tmp_path):
    sf.write(tmp_path / "in.wav", noise(48000, 2), 48000)
    report, record = tmp_path / "r.json", tmp_path / "rec.wav"
    done = run_cli("live", "--play", str(tmp_path / "in.wav"), "--duration", "1.5",
                   "--report", str(report), "--record", str(record),
                   "--set", f"audio.samplerate={jack_server.samplerate}",
                   "--set", "post=[{type: pedalboard.Gain, gain_db: 1000}]", timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    assert data["output_nonfinite_samples"] > 0 and data["output_nonfinite_events"] > 0
    assert data["peaks_dbfs"]["output"] is None or np.isfinite(data["peaks_dbfs"]["output"])
    warning = [line for line in done.stderr.splitlines() if line.startswith("warning: live:")]
    assert warning == [f"warning: {data['warnings'][0]}"]
    assert "NaN/Inf samples, played as 0: the chain (post[0] pedalboard.Gain) made them" in \
        warning[0]
    assert "RuntimeWarning" not in done.stderr
    assert np.isfinite(sf.read(record)[0]).all()
    summary = done.stdout.strip().splitlines()
    assert max(len(line) for line in summary) <= 80, summary
    assert any(f"NaN/Inf out {data['output_nonfinite_samples']}" in line for line in summary)


def test_live_summary_fits_80_columns_at_its_widest():
    from cosine_host.live import monitor
    report = {"duration_s": 86400.0, "stopped_by": "signal end", "callbacks": 10**9,
              "frames": 10**12, "samplerate": 192000, "blocksize": 0, "budget_ms": 5.333,
              "processing_ms": {k: 1234.567 for k in ("p50", "p95", "p99", "max", "mean")},
              "xruns": {"input_underflow": 123456, "input_overflow": 123456,
                        "output_underflow": 123456, "output_overflow": 123456,
                        "priming_output": 123456, "total": 493824}, "xrun_events": 99999,
              "latency": {"total_ms": 1234.56, "total_samples": 1234567,
                          "device_input_ms": 123.45, "device_output_ms": 123.45,
                          "engine_ms": 123.45, "engine_samples": 65535,
                          "algorithmic_samples": 65535, "buffering_samples": 65535},
              "peaks_dbfs": {"input": -120.5, "output": None}, "clipped_samples": 10**9,
              "nan_events": 10**6, "output_nonfinite_samples": 10**9, "report_path": "r.json"}
    lines = monitor.summary(report).splitlines()
    assert max(len(line) for line in lines) <= monitor.SUMMARY_WIDTH, lines
    text = " ".join(line.strip() for line in lines)
    for part in ("stopped by signal end", "(input_underflow 123456, input_overflow 123456, "
                 "output_underflow 123456, output_overflow 123456, priming_output 123456)",
                 "buffering 65535",
                 "NaN/Inf out 1000000000", "report: r.json"):
        assert part in text


# --- --ray: an unreachable address --------------------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_an_unreachable_ray_address_is_one_line_without_rays_log(tmp_path, address):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    sf.write(tmp_path / "in" / "a.wav", noise(4800, 1), 48000)
    done = run_cli("render", str(tmp_path / "in"), "--out-dir", str(tmp_path / "out"),
                   f"--ray={address}", timeout=60)
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        f"error: cannot reach the Ray cluster at {address!r} (connection refused at "
        f"127.0.0.1:1); check the address (ray status on the head node shows it), or use --ray "
        f"alone for a local instance"]
    assert not list((tmp_path / "out").iterdir())


def test_reachable_checks_a_listening_port_and_the_address_form_not_local_or_auto():
    import socket
    from cosine_host.offline import cluster
    with socket.socket() as listener:      # accepts into its backlog: a host that answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        cluster.check_reachable(f"127.0.0.1:{listener.getsockname()[1]}", timeout_s=2)
    with pytest.raises(UserError, match=r"--ray 'head': expected host:port"):
        cluster.check_reachable("head")
    cluster.check_reachable("auto")
    cluster.check_reachable("local")


def test_busy_share_counts_programs_not_the_kernels_writeback():
    #          user nice system idle iowait irq softirq steal
    before = [1000, 0, 500, 8000, 100, 0, 0, 0]
    writing = [1010, 0, 1400, 8080, 500, 0, 10, 0]    # a core of kernel time and I/O wait
    assert batch.busy_share(before, writing) < 0.01
    rendering = [1900, 50, 550, 8000, 100, 0, 0, 0]   # a program on the cores: 950 of 1000
    assert batch.busy_share(before, rendering) == pytest.approx(0.95)
    stolen = [1000, 0, 500, 8500, 100, 0, 0, 500]     # the hypervisor took half
    assert batch.busy_share(before, stolen) == pytest.approx(0.5)
    assert batch.busy_share(before, before) == 0.0

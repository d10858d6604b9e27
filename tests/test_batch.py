"""Batch rendering: `render --jobs N` worker processes, `--ray` actors, `--skip-existing` and
`--report-dir`.

Real files through soundfile; the CLI in-process (click's CliRunner) where its output is what
is checked, a real `python run.py` subprocess where signals and imports matter. Ray runs as one
small local instance (2 CPUs) for the whole test session.
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
from click.testing import CliRunner

from cosine_host.cli import cli
from cosine_host.offline import batch
from cosine_host.errors import UserError
from cosine_host.offline.jobs import complete_output, expected_output
from cosine_host.offline.render import render_file
from cosine_host.config.schema import load_config
from helpers import slow_batch

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTS = pathlib.Path(__file__).resolve().parent
CPU = ["--set", "model.device=cpu"]
# a non-trivial render: 6-bit coefficients, so equal outputs mean equal computation
QUANTIZE = ["--set", "processors=[{type: quantize, bits: 6}]"]


def noise(frames: int, channels: int, seed: int = 0, level: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0, level, (frames, channels)), -0.99, 0.99).astype(np.float32)


def invoke(*args: str):
    return CliRunner().invoke(cli, [*args, *CPU])


def run_cli(*args: str, env=None, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args, *CPU],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=env,
                          **kwargs)


def make_tree(src: pathlib.Path) -> list[str]:
    """A folder of assorted audio files (rates, channels, sample formats, a same-named file in
    two subfolders); returns their paths below ``src``."""
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    files = {"one.wav": (noise(30000, 2, 1), 48000, "PCM_16"),
             "two.flac": (noise(20000, 1, 2), 44100, "PCM_24"),
             "three.wav": (noise(9000, 3, 3), 32000, "FLOAT"),
             "four.wav": (noise(70000, 2, 4), 48000, "PCM_16"),        # longer than a chunk
             "a/take.wav": (noise(12000, 2, 5), 48000, "PCM_16"),
             "b/take.wav": (noise(15000, 2, 6), 48000, "PCM_16")}
    for name, (data, rate, subtype) in files.items():
        sf.write(src / name, data, rate, subtype=subtype)
    return sorted(files)


def outputs(folder: pathlib.Path) -> dict[str, tuple]:
    """{path below ``folder``: (format, subtype, rate, channels, frames, the samples' bytes)}.
    Samples are read as int32 (integer files) or float64 (float files): both hold every sample
    exactly. (Whole-file bytes are no measure: libsndfile stamps float WAVs' PEAK chunk with
    the time of writing.)"""
    found = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            info = sf.info(p)
            dtype = "int32" if info.subtype.startswith("PCM") else "float64"
            found[str(p.relative_to(folder))] = (
                info.format, info.subtype, info.samplerate, info.channels, info.frames,
                sf.read(p, dtype=dtype)[0].tobytes())
    return found


def leftovers(folder: pathlib.Path) -> list[str]:
    """Temporary files (cosine_host.files.atomic_path names them .NAME.*) left in ``folder``."""
    return [str(p) for p in folder.rglob(".*")]


# --- helpers ---------------------------------------------------------------------------------

def test_jobs_values_and_threads_per_worker():
    assert batch.parse_jobs(None) == 1
    assert batch.parse_jobs("3") == 3
    assert batch.parse_jobs("auto") == batch.cores() >= 1
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(UserError, match="--jobs"):
            batch.parse_jobs(bad)
    assert batch.threads_per_worker(1, 2) == 2
    assert batch.threads_per_worker(2, 2) == 1
    assert batch.threads_per_worker(3, 2) == 1
    assert batch.threads_per_worker(2, 16) == 8


def test_bad_jobs_is_one_line(tmp_path):
    (tmp_path / "out").mkdir()
    sf.write(tmp_path / "in.wav", noise(1000, 1), 48000)
    result = invoke("render", str(tmp_path / "in.wav"), "--out-dir", str(tmp_path / "out"),
                    "--jobs", "none")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --jobs 'none': give a whole number of worker processes >= 1, or auto (this "
        f"machine's {batch.cores()} cores)"]
    assert not list((tmp_path / "out").iterdir())


def test_worker_processes_run_their_share_of_threads():
    """A spawned worker sees the BLAS/OpenMP variables set for it and limits torch to them."""
    code = ("import os, torch, cosine_host.offline.batch as b; b.limit_torch_threads(1); "
            "print(os.environ['OMP_NUM_THREADS'], torch.get_num_threads())")
    before = {name: os.environ.get(name) for name in batch.THREAD_VARIABLES}
    with batch.thread_environment(1):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
    assert done.stdout.split() == ["1", "1"], done.stderr
    assert {name: os.environ.get(name) for name in batch.THREAD_VARIABLES} == before


# --- --jobs ----------------------------------------------------------------------------------

def test_jobs_2_is_bit_identical_to_jobs_1(tmp_path):
    src = tmp_path / "src"
    names = make_tree(src)
    for n in ("1", "2"):
        (tmp_path / f"out{n}").mkdir()
        (tmp_path / f"rep{n}").mkdir()
        result = invoke("render", str(src), "--out-dir", str(tmp_path / f"out{n}"),
                        "--recursive", "--jobs", n, "--report-dir", str(tmp_path / f"rep{n}"),
                        "--report", str(tmp_path / f"all{n}.json"), *QUANTIZE)
        assert result.exit_code == 0, result.output
        assert "6 rendered, 0 skipped, 0 failed" in result.stderr
    one, two = outputs(tmp_path / "out1"), outputs(tmp_path / "out2")
    assert sorted(one) == [n.replace("/", os.sep) for n in names]
    assert one == two                                      # every sample of every file
    # and equal to a render with an engine of its own (workers reuse theirs, reset)
    (tmp_path / "fresh").mkdir()
    render_file(load_config(None, ["model.device=cpu", "processors=[{type: quantize, bits: 6}]"]),
                str(src / "b" / "take.wav"), str(tmp_path / "fresh" / "take.wav"))
    assert outputs(tmp_path / "fresh")["take.wav"] == two[os.path.join("b", "take.wav")]
    # PCM files are equal byte for byte
    assert (tmp_path / "out1" / "one.wav").read_bytes() == (tmp_path / "out2" / "one.wav").read_bytes()
    # one report per output, mirrored: the two take.wav do not collide
    reports = sorted(str(p.relative_to(tmp_path / "rep2")) for p in (tmp_path / "rep2").rglob("*.json"))
    assert reports == [n.replace("/", os.sep) + ".json" for n in names]
    take_b = json.loads((tmp_path / "rep2" / "b" / "take.wav.json").read_text())
    assert take_b["input"] == str(src / "b" / "take.wav") and take_b["frames"] == 15000
    summary = json.loads((tmp_path / "all2.json").read_text())
    assert [r["input"] for r in summary["rendered"]] == [str(src / n) for n in
                                                         ["four.wav", "one.wav", "three.wav",
                                                          "two.flac", "a/take.wav",
                                                          "b/take.wav"]]
    assert summary["skipped"] == [] and summary["failed"] == []
    assert not leftovers(tmp_path)


def test_format_in_parallel(tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    (tmp_path / "out").mkdir()
    result = invoke("render", str(src), "--out-dir", str(tmp_path / "out"), "--jobs", "2",
                    "--format", "flac")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "four.flac", "one.flac", "three.flac", "two.flac"]
    info = sf.info(tmp_path / "out" / "three.flac")
    assert (info.frames, info.samplerate, info.channels) == (9000, 32000, 3)


def test_corrupt_file_among_good_ones(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        sf.write(src / f"good{i}.wav", noise(8000, 2, i), 48000, subtype="PCM_16")
    (src / "bad.wav").write_text("not audio at all")
    sf.write(src / "short.flac", noise(5000, 1), 44100)
    data = (src / "short.flac").read_bytes()
    (src / "cut.flac").write_bytes(data[:60])              # a header and hardly anything else
    (tmp_path / "out").mkdir()
    result = invoke("render", str(src), "--out-dir", str(tmp_path / "out"), "--jobs", "2",
                    "--report", str(tmp_path / "all.json"))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert f"failed: {src / 'bad.wav'}: cannot read" in result.stderr
    assert lines[-1].startswith("error: ") and "files failed: " in lines[-1]
    assert str(src / "bad.wav") in lines[-1]
    assert "Traceback" not in result.output
    summary = json.loads((tmp_path / "all.json").read_text())
    failed = {f["input"]: f["error"] for f in summary["failed"]}
    assert str(src / "bad.wav") in failed and "Format not recognised" in failed[str(src / "bad.wav")]
    rendered = {pathlib.Path(r["output"]).name for r in summary["rendered"]}
    assert {"good0.wav", "good1.wav", "good2.wav", "good3.wav", "short.flac"} <= rendered
    for i in range(4):
        assert sf.info(tmp_path / "out" / f"good{i}.wav").frames == 8000
    assert not (tmp_path / "out" / "bad.wav").exists()
    assert not leftovers(tmp_path / "out")


# --- --skip-existing -------------------------------------------------------------------------

def test_complete_output_checks_what_the_render_would_write(tmp_path):
    source = tmp_path / "in.wav"
    sf.write(source, noise(4000, 2), 48000, subtype="PCM_16")
    target = tmp_path / "out.wav"
    assert complete_output(str(source), str(target)) == (False, "missing")
    assert expected_output(str(source), str(target)) == {
        "frames": 4000, "samplerate": 48000, "channels": 2, "format": "WAV",
        "subtype": "PCM_16"}
    sf.write(target, noise(4000, 2), 48000, subtype="PCM_16")
    done, why = complete_output(str(source), str(target))
    assert done and why == "complete: 4000 frames, 48000 Hz, 2 ch, WAV PCM_16"
    for data, rate, subtype, wrong in [(noise(3999, 2), 48000, "PCM_16", "frames 3999"),
                                       (noise(4000, 2), 44100, "PCM_16", "samplerate 44100"),
                                       (noise(4000, 1), 48000, "PCM_16", "channels 1"),
                                       (noise(4000, 2), 48000, "FLOAT", "subtype FLOAT")]:
        sf.write(target, data, rate, subtype=subtype)
        done, why = complete_output(str(source), str(target))
        assert not done and why.startswith(wrong), why
    target.write_text("not audio")
    assert complete_output(str(source), str(target)) == (False, "not readable as audio")
    # options change what is expected: --samplerate, --subtype, --format
    assert expected_output(str(source), str(tmp_path / "x.flac"), samplerate=44100,
                           subtype="pcm_24")["frames"] == 3675
    assert expected_output(str(source), str(tmp_path / "x"), format="flac")["format"] == "FLAC"


def test_skip_existing_refuses_an_incomplete_output_without_overwrite(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    sf.write(src / "a.wav", noise(4000, 2), 48000, subtype="PCM_16")
    sf.write(src / "b.wav", noise(5000, 2), 48000, subtype="PCM_16")
    out = tmp_path / "out"
    out.mkdir()
    sf.write(out / "a.wav", noise(100, 2), 48000, subtype="PCM_16")     # someone else's file
    result = invoke("render", str(src), "--out-dir", str(out), "--skip-existing")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: output {str(out / 'a.wav')!r} exists but is not what this render writes "
        f"(frames 100 instead of 4000); pass --overwrite to render it again"]
    assert sf.info(out / "a.wav").frames == 100 and not (out / "b.wav").exists()
    result = invoke("render", str(src), "--out-dir", str(out), "--skip-existing", "--overwrite")
    assert result.exit_code == 0, result.output
    assert sf.info(out / "a.wav").frames == 4000
    result = invoke("render", str(src), "--out-dir", str(out), "--skip-existing", "--jobs", "2",
                    "--report", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    assert "0 rendered, 2 skipped, 0 failed" in result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["skipped"] == [
        {"input": str(src / n), "output": str(out / n),
         "reason": f"complete: {f} frames, 48000 Hz, 2 ch, WAV PCM_16"}
        for n, f in (("a.wav", 4000), ("b.wav", 5000))]


def test_sigterm_mid_batch_leaves_no_temporary_files_and_skip_existing_finishes(tmp_path):
    """A real `run.py render --jobs 2` stopped by SIGTERM while workers are writing, then run
    again with --skip-existing."""
    args, env, out = slow_batch(tmp_path, 8, 2)
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        # wait for one finished output and one in the making (a temporary file)
        while not (list(out.glob("f*.wav")) and leftovers(out)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the batch never got going"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert stderr.strip().splitlines() == [
        "error: terminated by SIGTERM; outputs finished so far are complete; run again with "
        "--skip-existing to render the rest"], stderr
    assert leftovers(out) == []
    finished = sorted(p.name for p in out.iterdir())
    assert 1 <= len(finished) < 8
    for name in finished:                                   # only complete files remain
        assert sf.info(out / name).frames == 3 * 65536
    done = subprocess.run([*args, "--skip-existing", "--report", str(tmp_path / "r.json")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "r.json").read_text())
    assert sorted(pathlib.Path(s["output"]).name for s in summary["skipped"]) == finished
    assert len(summary["rendered"]) == 8 - len(finished) and summary["failed"] == []
    assert sorted(p.name for p in out.iterdir()) == [f"f{i}.wav" for i in range(8)]
    for i in range(8):
        assert sf.info(out / f"f{i}.wav").frames == 3 * 65536


# --- --ray -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs) for this module's tests; `--ray` reuses it.

    Started once per test run, and shut down before the live tests: Ray's idle daemons wake
    every few milliseconds, enough on a 2-core machine to make a JACK callback miss its period.
    """
    import logging

    import ray
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_renders_a_folder_identically(tmp_path, ray_local):
    src = tmp_path / "src"
    names = make_tree(src)
    (src / "bad.wav").write_text("not audio")
    for name, extra in (("one", ["--jobs", "1"]), ("ray", ["--ray"])):
        (tmp_path / name).mkdir()
        result = invoke("render", str(src), "--recursive", "--out-dir", str(tmp_path / name),
                        "--report", str(tmp_path / f"{name}.json"), *QUANTIZE, *extra)
        assert result.exit_code == 1, result.output
        assert result.stderr.strip().splitlines()[-1] == \
            f"error: 1 of 7 files failed: {src / 'bad.wav'}"
    assert outputs(tmp_path / "one") == outputs(tmp_path / "ray")
    assert sorted(outputs(tmp_path / "ray")) == [n.replace("/", os.sep) for n in names]
    summary = json.loads((tmp_path / "ray.json").read_text())
    assert summary["ray"]["actors"] == 2 and summary["ray"]["cpus"] == 2
    assert summary["ray"]["startup_s"] > 0
    assert [f["input"] for f in summary["failed"]] == [str(src / "bad.wav")]
    assert len(summary["rendered"]) == 6
    assert ray_local.is_initialized()                     # the module's instance, still up
    assert not leftovers(tmp_path)


def test_missing_ray_is_one_line(tmp_path):
    """`import ray` fails (a shim package on PYTHONPATH stands in for a machine without Ray)."""
    shim = tmp_path / "shim" / "ray"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    sf.write(tmp_path / "in.wav", noise(1000, 1), 48000)
    (tmp_path / "out").mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shim")}
    done = run_cli("render", str(tmp_path / "in.wav"), "--out-dir", str(tmp_path / "out"),
                   "--ray", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --ray needs Ray, an optional extra: pip install 'cosine-host[cluster]' "
        "(or pip install ray)"]
    assert not list((tmp_path / "out").iterdir())


def test_ray_address_that_is_a_path_says_how_to_write_it(tmp_path):
    sf.write(tmp_path / "in.wav", noise(1000, 1), 48000)
    (tmp_path / "out").mkdir()
    result = invoke("render", str(tmp_path / "in.wav"), "--ray", str(tmp_path / "in.wav"),
                    "--out-dir", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "is not a Ray address" in result.stderr and "--ray=ADDRESS" in result.stderr

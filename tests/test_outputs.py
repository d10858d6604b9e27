"""Output you can trust: every file a command writes follows one rule (stream/outputs.py), and
SIGTERM / SIGHUP stop a command like Ctrl-C, leaving no temporary file behind."""

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
from cosine_host.config.schema import load_config
from cosine_host.outputs import OutputError, check_outputs, protected_paths

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
CPU = ["--set", "model.device=cpu"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error_line(result, phrase):
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)          # handled: no traceback
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert phrase in result.stderr, result.stderr


def tone(path, seconds=0.2, samplerate=16000, channels=1):
    t = np.arange(int(seconds * samplerate)) / samplerate
    x = (0.3 * np.sin(2 * np.pi * 440 * t))[:, None].repeat(channels, axis=1)
    sf.write(str(path), x.astype(np.float32), samplerate, subtype="FLOAT")
    return path


def snapshot(folder):
    return {p.name: p.read_bytes() for p in pathlib.Path(folder).iterdir() if p.is_file()}


# --- the rule, as a function ---------------------------------------------------------------------

def test_check_outputs_rule(tmp_path):
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    config = tmp_path / "my.yaml"
    config.write_text("frame: {hop: 128}\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(config)
    protected = [("config file", str(config))]
    # fine: new files, None and "-" (standard output) skipped, an existing file with overwrite
    assert check_outputs([("--report", tmp_path / "new.json"), ("--plot", None), ("out", "-")],
                         protected) == [("--report", str(tmp_path / "new.json"))]
    check_outputs([("--report", existing)], protected, overwrite=True)
    cases = [
        ([("--report", existing)], False, "exists; pass --overwrite to replace it"),
        ([("--report", config)], True, "is the config file"),
        ([("--report", link)], True, "is the config file"),           # through a symlink
        ([("--report", tmp_path / "." / "my.yaml")], True, "is the config file"),
        ([("--json", tmp_path / "a.json"), ("--plot", tmp_path / "a.json")], False,
         "--json and --plot are the same file"),
        ([("--report", tmp_path)], False, "is a folder"),
        ([("--report", tmp_path / "nowhere" / "r.json")], False, "does not exist"),
        ([("--report", "/dev/null")], True, "not a regular file"),
    ]
    for outputs, overwrite, phrase in cases:
        with pytest.raises(OutputError, match=phrase):
            check_outputs(outputs, protected, overwrite=overwrite)
    assert config.read_text() == "frame: {hop: 128}\n" and existing.read_text() == "{}"


def test_hard_link_to_an_input_is_the_input(tmp_path):
    source = tone(tmp_path / "in.wav")
    os.link(source, tmp_path / "alias.wav")
    with pytest.raises(OutputError, match="is the input"):
        check_outputs([("output", tmp_path / "alias.wav")], [("input", str(source))],
                      overwrite=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused_up_front(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="is not writable"):
            check_outputs([("--report", folder / "r.json")])
    finally:
        folder.chmod(0o755)


def test_protected_paths_name_the_config_and_the_checkpoint(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: {checkpoint: m.pt}\n")
    cfg = load_config(config)
    assert protected_paths(cfg, [("input", "in.wav"), ("input", "-")]) == [
        ("input", "in.wav"), ("config file", str(config)),
        ("checkpoint in use (model.checkpoint)", str(tmp_path / "m.pt"))]


# --- every command ----------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    source = tone(tmp_path / "in.wav")
    config = tmp_path / "my.yaml"
    config.write_text("frame: {size: 64, hop: 32}\nmodel: {coefficients: 64, device: cpu}\n")
    ckpt = tmp_path / "model.pt"
    trained = invoke("train", source, "-c", config, "--set", "model.coefficients=32",
                     "--steps", "2", "--batch", "2", "--out", ckpt)
    assert trained.exit_code == 0, trained.output
    using = tmp_path / "using.yaml"
    using.write_text("frame: {size: 64, hop: 32}\n"
                     "model: {coefficients: 32, device: cpu, checkpoint: model.pt}\n")
    return {"in": source, "config": config, "using": using, "ckpt": ckpt, "tmp": tmp_path}


@pytest.mark.parametrize("argv, phrase", [
    # the config in use, replaced by a report, even with --overwrite
    (["render", "{in}", "{tmp}/out.wav", "-c", "{config}", "--report", "{config}",
      "--overwrite"], "is the config file"),
    # the checkpoint in use
    (["render", "{in}", "{tmp}/out.wav", "-c", "{using}", "--report", "{ckpt}", "--overwrite"],
     "is the checkpoint in use"),
    (["render", "{in}", "{tmp}/out.wav", "-c", "{config}", "--report", "{in}", "--overwrite"],
     "is the input"),
    (["render", "{in}", "{ckpt}", "-c", "{using}", "--overwrite"], "is the checkpoint in use"),
    # a bad --report folder is found before the render
    (["render", "{in}", "{tmp}/out.wav", "-c", "{config}", "--report", "{tmp}/no/r.json"],
     "does not exist"),
    (["render", "{in}", "{tmp}/out.wav", "-c", "{config}", "--report", "{tmp}/out.wav"],
     "are the same file"),
    (["latency", "algorithmic", "-c", "{config}", "--blocksizes", "32", "--json", "{config}",
      "--overwrite"], "is the config file"),
    (["latency", "algorithmic", "-c", "{using}", "--blocksizes", "32", "--json", "{ckpt}",
      "--overwrite"], "is the checkpoint in use"),
    (["latency", "algorithmic", "-c", "{config}", "--blocksizes", "32", "--json", "{in}"],
     "exists; pass --overwrite"),
    (["latency", "bench", "-c", "{config}", "--blocksizes", "32", "--seconds", "0.01",
      "--json", "{tmp}/b.json", "--plot", "{tmp}/b.json"], "are the same file"),
    (["train", "{in}", "-c", "{config}", "--set", "model.coefficients=32", "--out", "{ckpt}"],
     "exists; pass --overwrite"),
    (["train", "{in}", "-c", "{using}", "--out", "{ckpt}", "--overwrite"],
     "is the checkpoint in use"),
    (["train", "{in}", "-c", "{config}", "--set", "model.coefficients=32", "--out",
      "{tmp}/n.pt", "--log", "{config}", "--overwrite"], "is the config file"),
    (["live", "-c", "{config}", "--report", "{config}", "--overwrite"], "is the config file"),
    (["live", "-c", "{config}", "--report", "{in}"], "exists; pass --overwrite"),
    (["demo", "-c", "{config}", "--out-dir", "{tmp}", "--overwrite"], None),
])
def test_commands_refuse_before_any_work(files, argv, phrase):
    if argv[0] == "demo":
        # the config file inside the demo folder, named like one of the demo's reports
        files["config"].rename(files["tmp"] / "demo-summary.json")
        argv = ["demo", "-c", "{tmp}/demo-summary.json", "--out-dir", "{tmp}", "--overwrite"]
        phrase = "is the config file"
    before = snapshot(files["tmp"])
    result = invoke(*[a.format(**files) for a in argv])
    one_error_line(result, phrase)
    assert snapshot(files["tmp"]) == before      # nothing written, replaced or left behind


def test_overwrite_replaces_only_with_the_flag(files):
    report = files["tmp"] / "alg.json"
    report.write_text("keep me\n")
    args = ["latency", "algorithmic", "-c", files["config"], "--blocksizes", "32",
            "--json", report]
    one_error_line(invoke(*args), "exists; pass --overwrite to replace it")
    assert report.read_text() == "keep me\n"
    done = invoke(*args, "--overwrite")
    assert done.exit_code == 0, done.output
    assert json.loads(report.read_text())["passed"] is True


def test_demo_refuses_its_own_files_without_overwrite(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "demo-summary.json").write_text("mine\n")
    result = invoke("demo", "--out-dir", out, *CPU)
    one_error_line(result, "demo-summary.json' exists; pass --overwrite")
    assert snapshot(out) == {"demo-summary.json": b"mine\n"}


def test_relative_checkpoint_in_a_yaml_file_is_that_folders(files, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(files["using"])
    assert cfg.model.checkpoint == str(files["ckpt"])
    # --set paths are the current folder's
    assert load_config(files["using"], ["model.checkpoint=x.pt"]).model.checkpoint == "x.pt"
    result = invoke("info", "-c", files["using"])
    assert result.exit_code == 0, result.output
    assert f"checkpoint {files['ckpt']}:" in result.output


def test_info_shows_the_checkpoint_metadata(files):
    result = invoke("info", "-c", files["using"], "--json")
    assert result.exit_code == 0, result.output
    ck = json.loads(result.output)["checkpoint"]
    assert ck["path"] == str(files["ckpt"])
    assert ck["metadata"]["frame_size"] == 64 and ck["metadata"]["coefficients"] == 32
    assert ck["extra"]["steps"] == 2 and ck["extra"]["files"] == [str(files["in"])]
    text = invoke("info", "-c", files["using"])
    assert "metadata:" in text.output and "snr_after_db:" in text.output
    assert json.loads(invoke("info", "--json", *CPU).output)["checkpoint"] is None


def test_checkpoint_permissions_are_those_of_other_outputs(files):
    mask = os.umask(0o022)
    os.umask(mask)
    assert files["ckpt"].stat().st_mode & 0o777 == 0o666 & ~mask
    files["ckpt"].chmod(0o640)
    again = invoke("train", files["in"], "-c", files["config"], "--set", "model.coefficients=32",
                   "--steps", "2", "--batch", "2", "--out", files["ckpt"], "--overwrite")
    assert again.exit_code == 0, again.output
    assert files["ckpt"].stat().st_mode & 0o777 == 0o640       # kept, as atomic_path keeps it


# --- click's own usage errors --------------------------------------------------------------------

@pytest.mark.parametrize("argv, phrase", [
    (["render"], "missing argument 'INPUT [OUTPUT] | INPUT... --out-dir DIR'"),
    (["info", "--bogus"], "no such option '--bogus'"),
    (["latency", "bench", "--seconds", "x"], "invalid value for '--seconds'"),
    (["train", "a.wav", "--steps", "0"], "invalid value for '--steps'"),
    (["nosuch"], "no such command 'nosuch'"),
])
def test_usage_errors_are_one_line(argv, phrase):
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *argv], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + phrase), proc.stderr
    assert lines[0].endswith(" --help)")


# --- signals -------------------------------------------------------------------------------------

def _start(argv, cwd, **kwargs):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), *map(str, argv)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            **kwargs)


def _wait_for(condition, proc, what):
    deadline = time.monotonic() + 240
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited ({proc.returncode}) before {what}: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} after 240 s")
        time.sleep(0.02)


@pytest.mark.parametrize("signum, code, words", [
    (signal.SIGTERM, 143, "terminated by SIGTERM"),
    (signal.SIGHUP, 129, "terminated by SIGHUP"),
    (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
])
def test_signal_mid_render_leaves_no_temporary_file(tmp_path, signum, code, words):
    # a long file through a plugin that sleeps 1 s per engine call of loud audio: the render
    # takes many seconds, and the signal comes while the output's temporary file is open
    rng = np.random.default_rng(0)
    sf.write(str(tmp_path / "long.wav"), rng.uniform(-0.5, 0.5, (16 * 65536, 1)).astype(
        np.float32), 16000, subtype="FLOAT")
    proc = _start(["render", "long.wav", "out.wav", *CPU, "--set",
                   "processors=[{type: 'plugins_sleepy:Sleepy', sleep_ms: 1000, above: 0.01}]"],
                  cwd=tmp_path)
    _wait_for(lambda: any(p.name.startswith(".out.wav.") for p in tmp_path.iterdir()), proc,
              "the temporary output file")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err == f"error: {words}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav"]

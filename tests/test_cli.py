import json
import os
import pathlib
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cosine_host.cli import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMMANDS = [["info"], ["demo"], ["render"], ["devices"], ["live"], ["train"], ["evaluate"],
            ["presets"], ["encode"], ["decode"], ["latency"], ["latency", "algorithmic"],
            ["latency", "roundtrip"], ["latency", "bench"]]
WITHOUT_CONFIG = (["latency"], ["presets"])     # no -c/--set: a group, and the preset list


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], capture_output=True,
                          text=True, cwd=kwargs.pop("cwd", ROOT), timeout=300, **kwargs)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_of_every_command(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    if command != ["latency"]:
        assert "Example:" in result.output and "python run.py" in result.output
    if command not in WITHOUT_CONFIG:
        assert "--config" in result.output and "--set" in result.output


def test_every_command_is_in_the_help_test():
    """COMMANDS above covers each command and subcommand the CLI has."""
    listed = {tuple(c) for c in COMMANDS}
    names = set()
    for name, command in cli.commands.items():
        names.add((name,))
        names |= {(name, sub) for sub in getattr(command, "commands", {})}
    assert names == listed


def test_top_level_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines()
              if line.strip()]
    assert listed == sorted(cli.commands) and len(listed) == 11


def test_info_reports_model_and_latency():
    result = CliRunner().invoke(cli, ["info", "--set", "frame.hop=128", "--set",
                                      "audio.blocksize=100", "--set", "model.device=cpu"])
    assert result.exit_code == 0, result.output
    assert "N=512 M=512 H=128" in result.output
    # N - gcd(100, 128) = 508 samples at 48 kHz
    assert "508 samples = 10.58 ms" in result.output
    assert "algorithmic 384 + buffering 124" in result.output


def test_info_json_is_machine_readable():
    result = CliRunner().invoke(cli, ["info", "--json", "--set", "model.coefficients=256"])
    data = json.loads(result.output)
    assert data["model"]["coefficients"] == 256
    assert data["model"]["parameters"] == 2 + 256 + 2   # a1, a2, w; a3, a4 (tied decoder)
    assert data["latency"]["engine_samples"] == 256
    assert data["config"]["frame"]["hop"] == 256
    assert data["device"] in ("cpu", "cuda")


def test_bad_config_is_one_line_without_traceback(tmp_path):
    proc = run_cli("info", "--set", "frame.hop=300")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: frame.hop = 300: must divide frame.size (512); allowed: a divisor of 512 that "
        "the sqrt_hann window reconstructs at, e.g. 256, 128, 64, 32"]
    assert "Traceback" not in proc.stderr
    missing = run_cli("info", "-c", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "not found" in missing.stderr


def test_debug_flag_shows_traceback():
    proc = run_cli("--debug", "info", "--set", "model.init=bad")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "model.init" in proc.stderr


def test_console_script_runs_the_same_cli():
    script = pathlib.Path(sys.executable).parent / "cosine-host"
    if not script.exists():
        pytest.fail("the cosine-host console script is not installed; run `make test`")
    proc = subprocess.run([str(script), "info", "--json"], capture_output=True, text=True,
                          timeout=120, cwd=os.path.expanduser("~"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"]["frame_size"] == 512


def test_a_plugin_constructor_that_fails_is_one_line(tmp_path):
    (tmp_path / "boom_plugin.py").write_text(
        "import torch\n\n\nclass Boom(torch.nn.Module):\n"
        "    def __init__(self, level: int = 1):\n"
        "        super().__init__()\n"
        "        raise RuntimeError('no device for level %d' % level)\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, str(ROOT / "run.py"), "info", "--set",
                        "processors=[{type: 'boom_plugin:Boom', level: 3}]"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("error: processors: type = 'boom_plugin:Boom': Boom(level=3) failed")
    assert "no device for level 3" in lines[0]

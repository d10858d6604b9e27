"""Device listing and resolution (stream/live/devices.py), and running without PortAudio."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cosine_host.live.devices import find_device
from cosine_host.errors import UserError

REPO = Path(__file__).resolve().parent.parent


def _dev(index, name, hostapi="ALSA", ins=2, outs=2, din=False, dout=False):
    return {"index": index, "name": name, "hostapi": hostapi, "max_input_channels": ins,
            "max_output_channels": outs, "default_samplerate": 48000.0, "default_input": din,
            "default_output": dout}


# A device table as query_devices() returns it (plain data: resolution is pure).
DEVICES = [
    _dev(0, "HDA Intel PCH: ALC257 Analog (hw:0,0)", ins=2, outs=2),
    _dev(1, "HDA Intel PCH: HDMI 0 (hw:0,3)", ins=0, outs=8),
    _dev(2, "USB Audio CODEC: Audio (hw:1,0)", ins=1, outs=2),
    _dev(3, "pulse", ins=32, outs=32),
    _dev(4, "default", ins=32, outs=32, din=True, dout=True),
    _dev(5, "system", hostapi="JACK Audio Connection Kit", ins=2, outs=2),
]


@pytest.mark.parametrize("spec, kind, index", [
    (None, "input", 4),                 # the system default
    (2, "input", 2),                    # an index
    ("3", "output", 3),                 # an index given as text (from the command line)
    ("usb", "input", 2),                # part of a name, any case
    ("HDMI", "output", 1),
    ("default", "output", 4),           # an exact name wins over names that contain it
    ("jack", "input", 5),               # no name matches: the host API name does
])
def test_resolve_device_finds_what_people_type(spec, kind, index):
    assert find_device(spec, kind, DEVICES)["index"] == index


def test_resolve_device_ambiguous_lists_the_candidates():
    with pytest.raises(UserError) as e:
        find_device("hda", "output", DEVICES)
    msg = str(e.value)
    assert "matches 2 output devices" in msg
    assert "0: HDA Intel PCH: ALC257" in msg and "1: HDA Intel PCH: HDMI 0" in msg
    assert "\n" not in msg


def test_resolve_device_not_found_or_wrong_direction():
    with pytest.raises(UserError, match=r"no input device matches 'hdmi'; input devices: 0: "):
        find_device("hdmi", "input", DEVICES)      # HDMI has outputs only
    with pytest.raises(UserError, match=r"device 1 .* has no input channels"):
        find_device(1, "input", DEVICES)
    with pytest.raises(UserError, match="no audio device with index 42"):
        find_device(42, "output", DEVICES)
    with pytest.raises(UserError, match="no default input device; choose one with -i"):
        find_device(None, "input", [_dev(0, "x")])
    with pytest.raises(UserError, match="PortAudio sees no input device.*start the JACK server"):
        find_device("x", "input", [_dev(0, "x", ins=0)])


def test_query_devices_lists_the_jack_device(jack_server):
    from cosine_host.live.devices import query_devices
    rows = query_devices()
    jack = [r for r in rows if r["hostapi"].startswith("JACK")]
    assert jack, rows
    d = jack[0]
    assert set(d) == {"index", "name", "hostapi", "max_input_channels", "max_output_channels",
                      "default_samplerate", "default_input", "default_output"}
    assert d["max_input_channels"] >= 2 and d["max_output_channels"] >= 2
    assert d["default_samplerate"] == jack_server.samplerate
    assert isinstance(d["default_input"], bool)
    assert find_device("jack", "input", rows)["index"] == d["index"]


def test_devices_command_prints_the_table(jack_server):
    r = subprocess.run([sys.executable, "run.py", "devices"], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    header, rule, *rows = r.stdout.splitlines()
    for column in ("#", "name", "host API", "in", "out", "rate", "default"):
        assert column in header
    assert any("JACK Audio Connection Kit" in row and str(jack_server.samplerate) in row
               for row in rows), r.stdout


# --- without PortAudio -------------------------------------------------------------------------

def _without_portaudio(tmp_path) -> dict:
    """An environment where `import sounddevice` fails the way it does when libportaudio is not
    installed (sounddevice raises OSError('PortAudio library not found'))."""
    shim = tmp_path / "no_portaudio"
    shim.mkdir()
    (shim / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join([str(shim), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_without_portaudio_devices_and_live_say_what_to_install(tmp_path):
    env = _without_portaudio(tmp_path)
    for args in (["devices"], ["live", "--duration", "1"]):
        r = subprocess.run([sys.executable, "run.py", *args], cwd=REPO, capture_output=True,
                           text=True, timeout=60, env=env)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: PortAudio is not available")
        assert "libportaudio2" in lines[0]


def test_stream_modules_do_not_import_sounddevice(tmp_path):
    """Offline rendering and training must work without PortAudio: importing the stream
    package, the live modules included, never imports sounddevice."""
    code = textwrap.dedent("""
        import sys
        import cosine_host, cosine_host.live.devices, cosine_host.live.session
        import cosine_host.live.monitor
        assert "sounddevice" not in sys.modules, "sounddevice imported at module import"
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=60, env=_without_portaudio(tmp_path))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_devices_with_no_device_prints_the_hint_live_gives():
    # no JACK server under this name, and none started for us: on a machine without a sound card
    # PortAudio then sees no device at all
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"cosine-host-none-{os.getpid()}",
           "JACK_NO_START_SERVER": "1"}
    run = Path(__file__).resolve().parent.parent / "run.py"
    listed = subprocess.run([sys.executable, str(run), "devices"], capture_output=True,
                            text=True, timeout=120, env=env)
    if listed.returncode != 0 or not listed.stdout.startswith("PortAudio sees no audio device"):
        pytest.skip(f"PortAudio sees devices here or is missing: {listed.stdout}{listed.stderr}")
    live = subprocess.run([sys.executable, str(run), "live", "--duration", "1"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert live.returncode == 2
    hint = live.stderr.strip().split("; ", 1)[1]
    assert hint.startswith("connect one, or start the JACK server")
    assert listed.stdout == f"PortAudio sees no audio device; {hint}\n"

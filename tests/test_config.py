import pytest
import yaml

from cosine_host.config.schema import DEFAULT_CONFIG, Config, ConfigError, load_config


def test_default_config_loads_with_documented_values():
    cfg = load_config()
    assert (cfg.audio.samplerate, cfg.audio.blocksize, cfg.audio.channels) == (48000, 256, 2)
    assert (cfg.audio.input_device, cfg.audio.output_device, cfg.audio.latency) == (None, None, "low")
    assert (cfg.frame.size, cfg.frame.hop, cfg.frame.window) == (512, 256, "sqrt_hann")
    assert (cfg.model.coefficients, cfg.model.init, cfg.model.decoder) == (512, "dct", "tied")
    assert (cfg.model.checkpoint, cfg.model.device, cfg.model.dtype) == (None, "auto", "float32")
    assert cfg.processors == ()
    assert cfg.monitor.report is None and cfg.monitor.refresh_s == 0.25
    # The file agrees with the schema's defaults: nothing in it is dead.
    assert load_config().to_dict() == Config().to_dict()


def test_overrides_parse_yaml_values():
    cfg = load_config(overrides=["frame.hop=128", "audio.latency=0.02", "audio.input_device=sys",
                                 "processors=[{type: quantize, bits: 6}]",
                                 "processors.0.bits=4", "model.checkpoint=null"])
    assert cfg.frame.hop == 128
    assert cfg.audio.latency == 0.02
    assert cfg.audio.input_device == "sys"
    assert cfg.processors == ({"type": "quantize", "bits": 4},)


def test_partial_file_is_completed_from_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("frame: {size: 1024, hop: 512}\nmodel: {coefficients: 256}\n")
    cfg = load_config(path)
    assert (cfg.frame.size, cfg.frame.hop, cfg.model.coefficients) == (1024, 512, 256)
    assert cfg.audio.samplerate == 48000
    assert cfg.source == str(path)


def test_replace_returns_new_validated_config():
    cfg = load_config()
    assert cfg.replace("frame.hop=64").frame.hop == 64
    assert cfg.frame.hop == 256
    with pytest.raises(ConfigError, match="frame.hop"):
        cfg.replace("frame.hop=3")


@pytest.mark.parametrize("override,message", [
    ("audio.samplerate=0", r"audio.samplerate = 0: out of range; allowed: an integer >= 1"),
    ("audio.samplerate=-48000", r"audio.samplerate = -48000: out of range"),
    ("audio.samplerate=48000.5", r"audio.samplerate = 48000.5: must be an integer"),
    ("audio.samplerate=true", r"audio.samplerate = True: must be an integer"),
    ("audio.blocksize=-1", r"audio.blocksize = -1: out of range; allowed: an integer >= 0"),
    ("audio.channels=0", r"audio.channels = 0: out of range"),
    ("audio.channels=two", r"audio.channels = 'two': must be an integer"),
    ("audio.latency=medium", r"audio.latency = 'medium': not allowed; allowed: low \| high \| seconds"),
    ("audio.latency=-0.1", r"audio.latency = -0.1: must be a number of seconds > 0"),
    ("audio.input_device=-2", r"audio.input_device = -2: must be null"),
    ("frame.hop=300", r"frame.hop = 300: must divide frame.size \(512\)"),
    ("frame.hop=1024", r"frame.hop = 1024: must divide frame.size"),
    ("frame.size=1", r"frame.size = 1: out of range"),
    ("frame.window=kaiser", r"frame.window = 'kaiser': not allowed; allowed: sqrt_hann \| hann \| rectangular"),
    ("frame.hop=512", r"frame.window = 'sqrt_hann' cannot reconstruct at hop 512"),
    ("model.coefficients=513", r"model.coefficients = 513: must be <= frame.size \(512\); allowed: 1..512"),
    ("model.coefficients=0", r"model.coefficients = 0: out of range"),
    ("model.init=random", r"model.init = 'random': not allowed; allowed: dct \| lowpass"),
    ("model.decoder=tied2", r"model.decoder = 'tied2': not allowed; allowed: tied \| free \| pinv"),
    ("model.device=tpu", r"model.device = 'tpu': not allowed; allowed: auto \| cpu \| cuda"),
    ("model.dtype=float16", r"model.dtype = 'float16': not allowed; allowed: float32 \| float64"),
    ("model.checkpoint=5", r"model.checkpoint = 5: must be null or a file path"),
    ("monitor.refresh_s=0", r"monitor.refresh_s = 0: must be a number of seconds > 0"),
    ("monitor.report=[]", r"monitor.report = \[\]: must be null or a file path"),
    ("model.colour=red", r"model.colour: unknown key; allowed: coefficients, init, decoder"),
    ("modle.init=dct", r"modle: unknown section; allowed: audio, frame, model, monitor, control, processors"),
    ("processors={type: quantize}", r"processors = \{'type': 'quantize'\}: must be a list"),
    ("processors=[{type: quantize, bits: 0}]", r"processors\[0\]\.bits = 0"),
    ("processors=[{type: wobble}]", r"processors\[0\]\.type = 'wobble'"),
    ("processors=[{type: topk, k: 600}]", r"processors\[0\]\.k = 600"),
    ("frame=3", r"frame = 3: must be a mapping"),
])
def test_bad_values_name_key_and_allowed_values(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_window_reconstruction_depends_on_hop():
    assert load_config(overrides=["frame.window=rectangular", "frame.hop=512"]).frame.hop == 512
    assert load_config(overrides=["frame.window=hann", "frame.hop=128"]).frame.window == "hann"
    with pytest.raises(ConfigError, match="cannot reconstruct"):
        load_config(overrides=["frame.window=hann", "frame.hop=512"])


@pytest.mark.parametrize("override,message", [
    ("frame.hop", r"expected key.path=value"),
    ("=3", r"expected key.path=value"),
    ("frame.hop=[1", r"the value is not valid YAML"),
    ("processors.3.bits=4", r"processors.3 is not an index of a list of 0 items"),
    ("audio.samplerate.x=1", r"audio.samplerate is not a section"),
])
def test_bad_override_syntax(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("frame: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(scalar)


def test_safe_load_refuses_python_objects(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("frame: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)


def test_every_shipped_preset_loads():
    for path in sorted(DEFAULT_CONFIG.parent.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        assert isinstance(data, dict), path
        load_config(path)


# --- duplicate keys, presets by name, memory, hop suggestions, plugin types ---------------------

import os                                     # noqa: E402
import pathlib                                # noqa: E402
import resource                               # noqa: E402
import subprocess                             # noqa: E402
import sys                                    # noqa: E402

from cosine_host.config import schema as config_module  # noqa: E402
from cosine_host.config import memory  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text, line", [
    ("frame:\n  size: 1024\n  hop: 128\n  size: 256\n", 4),
    ("frame: {hop: 128}\nmodel: {}\nframe: {hop: 64}\n", 3),
    ("processors:\n  - {type: quantize, bits: 4, bits: 8}\n", 2),
])
def test_duplicate_keys_are_an_error(tmp_path, text, line):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"found duplicate key .* line {line}"):
        load_config(path)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(overrides=["processors=[{type: quantize, bits: 4, bits: 8}]"])


def test_strict_loader_keeps_safe_load_semantics():
    text = ("a: 1\nb: [1, 2.5, null, true, '3']\nc: {d: 2020-01-02}\n"
            "base: &b {x: 1}\nmerged: {<<: *b, y: 2}\n")
    assert config_module.parse_yaml(text) == yaml.safe_load(text)
    with pytest.raises(yaml.YAMLError):
        config_module.parse_yaml("x: !!python/object/apply:os.system ['echo pwned']\n")


def test_presets_by_name_from_any_folder(tmp_path):
    for name in ("quantize-6bit", "quantize-6bit.yaml"):
        proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "info", "--json", "-c", name],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert '"bits": 6' in proc.stdout
    # a file of that name in the current folder wins over the preset
    (tmp_path / "lowpass").write_text("frame: {hop: 128}\n")
    assert load_config(tmp_path / "lowpass").frame.hop == 128
    with pytest.raises(ConfigError, match=r"not found; give an existing YAML file or a preset "
                                          r"name \(default, codec, low-latency, lowpass, "
                                          r"mdct, quantize-6bit"):
        load_config("no-such-preset")


def test_presets_command_lists_every_preset_with_its_description():
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "presets"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == ["default", "codec", "low-latency", "lowpass", "mdct", "quantize-6bit",
                     "sparse-threshold", "sparse-topk"]
    for line, preset in zip(lines, config_module.presets()):
        first = pathlib.Path(preset["path"]).read_text().splitlines()[0]
        assert first.startswith("# ") and line.endswith(first[2:])
        assert len(first[2:]) > 20


def test_frame_size_is_bounded_where_it_stops_being_useful():
    load_config(overrides=["frame.size=16384", "frame.hop=8192", "model.coefficients=16"])
    with pytest.raises(ConfigError, match=r"frame.size = 32768: out of range.*2\.\.16384"):
        load_config(overrides=["frame.size=32768", "frame.hop=16384"])


def test_memory_estimate_refuses_what_does_not_fit():
    need = memory.memory_needed_bytes(8192, 8192)
    assert 5e9 < need < 6e9           # measured: about 5 GB for N = M = 8192
    memory.check_memory(8192, 8192, available=need)
    with pytest.raises(ConfigError, match=r"frame.size = 8192 with model.coefficients = 8192 "
                                          r"needs about 5.4 GB .* but 1.0 GB are available"):
        memory.check_memory(8192, 8192, available=10 ** 9)


def test_memory_estimate_counts_the_engine_buffers():
    small = memory.memory_needed_bytes(512, 512)
    assert memory.memory_needed_bytes(512, 512, blocksize=256, channels=2) > small
    assert memory.memory_needed_bytes(512, 512, 256, 2, "float64") > \
        memory.memory_needed_bytes(512, 512, 256, 2, "float32")
    with pytest.raises(ConfigError, match=r"audio.blocksize = 1099511627776 with audio.channels "
                                          r"= 2 needs about 70368.8 GB .*smaller audio.blocksize"):
        load_config(overrides=[f"audio.blocksize={1 << 40}"])


def _limit_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


def test_a_config_too_big_for_the_memory_limit_is_one_line():
    # under `ulimit -v` of 6 GiB: N = M = 16384 would need about 21 GB
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "info", "--set",
                           "frame.size=16384", "--set", "frame.hop=8192", "--set",
                           "model.coefficients=16384", "--set", "model.device=cpu"],
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_address_space)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "needs about 21.5 GB of memory" in lines[0], proc.stderr
    assert "GB are available" in lines[0]


@pytest.mark.parametrize("n", [511, 509, 513, 1000, 3, 2, 97 * 89])
@pytest.mark.parametrize("window", ["sqrt_hann", "hann", "rectangular"])
def test_hop_suggestion_is_accepted(n, window):
    bad_hop = n + 1
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[f"frame.size={n}", f"frame.hop={bad_hop}", f"frame.window={window}",
                               "model.coefficients=1"])
    message = str(info.value)
    if "e.g." in message:
        suggested = [int(v) for v in message.split("e.g. ")[1].split(", ")]
        assert suggested
        for hop in suggested:
            load_config(overrides=[f"frame.size={n}", f"frame.hop={hop}", f"frame.window={window}",
                                   "model.coefficients=1"])
    else:   # no hop of this size reconstructs with the window: the suggested change does
        size, hop = (int(v) for v in message.split("use frame.size ")[1].split(" with frame.hop "))
        load_config(overrides=[f"frame.size={size}", f"frame.hop={hop}",
                               f"frame.window={window}", "model.coefficients=1"])
        load_config(overrides=[f"frame.size={n}", f"frame.hop={n}", "frame.window=rectangular",
                               "model.coefficients=1"])


def test_plugin_keyword_of_the_wrong_type_is_one_line(tmp_path):
    import subprocess as sp
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = sp.run([sys.executable, str(ROOT / "run.py"), "info", "--set",
                   "processors=[{type: 'plugins_example:Gain', gain: loud}]"],
                  capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert proc.stderr == ("error: processors[0].gain = 'loud': must be a number for "
                           "plugins_example:Gain\n")
    for good in ("gain: 2", "gain: 0.5"):
        load_config(overrides=[f"processors=[{{type: 'plugins_example:Gain', {good}}}]"])
    with pytest.raises(ConfigError, match=r"hop = 2.5: must be an integer"):
        load_config(overrides=["processors=[{type: 'plugins_example:OneFrameLookahead', "
                               "hop: 2.5}]"])

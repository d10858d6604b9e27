import pytest
import yaml

from stream.config import DEFAULT_CONFIG, Config, ConfigError, load_config


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
    ("modle.init=dct", r"modle: unknown section; allowed: audio, frame, model, monitor, processors"),
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

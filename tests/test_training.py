"""Training (run.py train): the loss runs the engine's chain, training raises the validation SNR,
checkpoints round-trip through render, the same seed gives the same checkpoint, and bad input is
one line through the CLI."""

import csv
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from scipy.signal import lfilter

from cosine_host.models import LearnedCosine, read_checkpoint
from cosine_host.models.processors import registry as P
from cosine_host.models import training as T
from cosine_host.cli import cli
from cosine_host.config.schema import load_config
from cosine_host.engine.build import build_model
from cosine_host.engine.engine import Engine
from cosine_host.train.fit import train_files
from cosine_host.train.log import LOG_COLUMNS
from cosine_host.engine.windows import window_pair

ROOT = Path(__file__).resolve().parent.parent
SR = 16000
SMALL = ("frame.size=64", "frame.hop=32", "model.coefficients=32")   # fast: N = 64, M = N/2


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The steps here are small matrix products: with one thread this file took 18 s on a busy
    2-core machine, with torch's default of one per core 200 s (threads waiting on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def resonant_noise(seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """float32 (frames, channels): white noise through a resonance at about SR/12 (an AR(2)
    filter, poles at radius 0.89), peak 0.5. Its energy sits in a band, as a formant's does."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((int(seconds * SR), channels))
    x = lfilter([1.0], [1.0, -1.6, 0.8], e, axis=0)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def write(path: Path, data: np.ndarray, subtype: str = "FLOAT") -> str:
    sf.write(str(path), data, SR, subtype=subtype)
    return str(path)


def config(*overrides: str):
    return load_config(None, ("model.device=cpu", *overrides))


def sets(*overrides: str) -> list[str]:
    return [a for o in ("model.device=cpu", *overrides) for a in ("--set", o)]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def snr_db(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.astype(np.float64), y.astype(np.float64)
    return 10 * math.log10((x * x).sum() / ((x - y) ** 2).sum())


def random_model(n: int, m: int, decoder: str = "tied", seed: int = 0) -> LearnedCosine:
    """A model away from its init: offsets up to +-0.5 bins, gains off by up to 10 %."""
    g = torch.Generator().manual_seed(seed)
    model = LearnedCosine(n, m, decoder=decoder)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.rand(p.shape, generator=g, dtype=p.dtype) - 0.5
            p.add_(noise if name.endswith("freq_offset_bins") else 0.2 * noise * p)
    return model


# ----------------------------------------------------------------------------- the loss chain

@pytest.mark.parametrize("n, hop, window, m, decoder, procs", [
    (64, 32, "sqrt_hann", 48, "tied", []),
    (64, 16, "hann", 64, "free", [{"type": "band", "lo": 3, "hi": 40}]),
    (32, 32, "rectangular", 16, "pinv", [{"type": "topk", "k": 5}]),
])
def test_training_chain_equals_the_engine(n, hop, window, m, decoder, procs):
    # A signal with exactly one segment position: the sampler's padding is the engine's, so the
    # training output on that segment is the rendered file, sample for sample.
    x = resonant_noise(T.INTERIOR_FRAMES * n / SR, seed=1)[:, 0]
    model = random_model(n, m, decoder)
    chain = P.build_chain([P.check_spec(p, m) for p in procs])
    sampler = T.SegmentSampler([torch.from_numpy(x)], n, hop)
    segment = sampler.draw(1, torch.Generator().manual_seed(0))
    wa, ws = (torch.as_tensor(w, dtype=torch.float32) for w in window_pair(window, n, hop))
    with torch.no_grad():
        trained_view = T.reconstruct(model, chain, segment, wa, ws, hop)[0].numpy()
    np.testing.assert_array_equal(T.interior(segment, n, hop)[0].numpy(), x)
    rendered = Engine(model, hop, window, channels=1, processors=chain).render(x[:, None])[:, 0]
    assert trained_view.shape == x.shape
    np.testing.assert_allclose(trained_view, rendered, rtol=0, atol=2e-6)
    assert snr_db(x, rendered) < 40          # a model that really changes the signal


def test_sampler_draws_whole_segments_from_one_signal_uniformly():
    n, hop = 16, 8
    a, b = torch.full((300,), 1.0), torch.full((100,), 2.0)
    sampler = T.SegmentSampler([a, b], n, hop)
    assert sampler.length == T.segment_samples(n, hop) == 4 * 16 + 2 * 8
    assert sampler.power == pytest.approx((300 * 1 + 100 * 4) / 400)
    segments = sampler.draw(4000, torch.Generator().manual_seed(0))
    assert segments.shape == (4000, 80)
    values = [set(s[s != 0].tolist()) for s in segments]
    assert all(v in ({1.0}, {2.0}) for v in values)            # never across two signals
    # positions: 300 + 16 - 80 + 1 = 237 in a, 100 + 16 - 80 + 1 = 37 in b
    share_b = sum(v == {2.0} for v in values) / len(values)
    assert share_b == pytest.approx(37 / 274, abs=0.02)


def test_frequencies_are_clamped_inside_zero_to_pi():
    n, m, hop = 32, 16, 16
    model = LearnedCosine(n, m)
    with torch.no_grad():       # push the lowest frequency below 0, the highest above pi
        model.encoder.freq_offset_bins[0] = -5.0
        model.encoder.freq_offset_bins[-1] = 5.0
    sampler = T.SegmentSampler([torch.from_numpy(resonant_noise(0.2)[:, 0])], n, hop)
    wa, ws = window_pair("sqrt_hann", n, hop)
    T.train(model, P.build_chain([]), sampler, window_analysis=wa, window_synthesis=ws,
            hop=hop, steps=1, batch=2, lr=1e-6)
    w = model.encoder.frequencies
    eps = T.MIN_FREQ_BINS * math.pi / n
    assert w.min().item() == pytest.approx(eps, rel=1e-4)
    assert w.max().item() == pytest.approx(math.pi - eps, rel=1e-6)
    assert torch.all((w > 0) & (w < math.pi))


def test_a_frozen_model_has_nothing_to_learn():
    model = LearnedCosine(32, 16)
    model.requires_grad_(False)
    sampler = T.SegmentSampler([torch.from_numpy(resonant_noise(0.1)[:, 0])], 32, 16)
    wa, ws = window_pair("sqrt_hann", 32, 16)
    with pytest.raises(T.TrainingError, match="no trainable parameters"):
        T.train(model, P.build_chain([]), sampler, window_analysis=wa, window_synthesis=ws,
                hop=16, steps=1, batch=1, lr=1e-2)


# ----------------------------------------------------------------------------- training works

def test_three_db_over_the_seed_init_at_m_half_n(tmp_path):
    # The seed's init: "dct" grid (2m+1) pi / (2M), tied decoder, M = N/2; 200 steps.
    audio = write(tmp_path / "train.wav", resonant_noise(6.0))
    out = tmp_path / "model.pt"
    overrides = ("frame.size=256", "frame.hop=128", "model.coefficients=128")
    result = invoke("train", audio, *sets(*overrides), "--steps", "200", "--out", str(out))
    assert result.exit_code == 0, result.output
    extra = read_checkpoint(out)["extra"]
    assert extra["snr_after_db"] - extra["snr_before_db"] >= 3.0, extra
    assert f"{extra['snr_before_db']:.2f} dB before, {extra['snr_after_db']:.2f} dB after" \
        in result.output
    assert extra["freq_shift_bins"] > 0.1          # the frequencies moved, not just the gains
    # the reported SNR is what the checkpoint gives on the held-out last 10 %, through the engine
    data = sf.read(audio, dtype="float32", always_2d=True)[0]
    held_out = data[len(data) - len(data) // 10:]
    cfg = config(*overrides, f"model.checkpoint={out}")
    rendered = Engine.from_config(cfg, blocksize=0, channels=1).render(held_out)
    assert snr_db(held_out, rendered) == pytest.approx(extra["snr_after_db"], abs=1e-6)
    trained = build_model(cfg).encoder.frequencies
    fresh = LearnedCosine(256, 128).encoder.frequencies
    shift = ((trained - fresh).abs().mean() / (math.pi / 256)).item()
    assert shift == pytest.approx(extra["freq_shift_bins"], rel=1e-5)


def _four_bit_training(tmp_path, m: int, lr: float, steps: int):
    audio = write(tmp_path / "train.wav", resonant_noise(4.0, seed=2))
    out = tmp_path / "q.pt"
    result = train_files(config("frame.size=256", "frame.hop=128", f"model.coefficients={m}",
                                "processors=[{type: quantize, bits: 4}]"),
                         [audio], steps=steps, batch=32, lr=lr, out_path=str(out), seed=0)
    return result, read_checkpoint(out)["state_dict"]


def test_training_that_loses_on_validation_writes_the_start(tmp_path):
    # a learning rate far too large: every step makes the transform worse, whatever the CPU
    result, written = _four_bit_training(tmp_path, 256, lr=10.0, steps=50)
    before, trained, after = (result[k] for k in ("snr_before_db", "snr_trained_db",
                                                   "snr_after_db"))
    assert result["kept"] == "start" and trained < before - 10 and after == before
    fresh = LearnedCosine(256, 256).state_dict()
    assert all(torch.equal(written[k], fresh[k]) for k in fresh)


def test_four_bit_quantizer_training_raises_snr_below_m_equal_n(tmp_path):
    # below M = N the straight-through gradient finds real gains (about +4.7 dB here)
    result, written = _four_bit_training(tmp_path, 128, lr=1e-2, steps=200)
    before, trained, after = (result[k] for k in ("snr_before_db", "snr_trained_db",
                                                   "snr_after_db"))
    assert result["kept"] == "trained" and after == trained and after - before >= 3.0, result
    fresh = LearnedCosine(256, 128).state_dict()
    assert not all(torch.equal(written[k], fresh[k]) for k in fresh)


def test_checkpoint_round_trips_through_render(tmp_path):
    stereo = resonant_noise(1.0, channels=2, seed=3)
    audio = write(tmp_path / "train.wav", stereo)
    overrides = (*SMALL, "processors=[{type: quantize, bits: 6}]")
    calls = []
    result = train_files(config(*overrides), [audio], steps=30, batch=8, lr=1e-2,
                         out_path=str(tmp_path / "model.pt"), seed=1,
                         progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 30) for i in range(1, 31)]
    assert result["train_samples"] == 2 * (SR - SR // 10)      # each channel is an example
    assert result["validation_samples"] == 2 * (SR // 10)
    rendered = tmp_path / "out.wav"
    done = invoke("render", audio, str(rendered), "--subtype", "FLOAT",
                  *sets(*overrides, f"model.checkpoint={result['checkpoint']}"))
    assert done.exit_code == 0, done.output
    from_file = sf.read(str(rendered), dtype="float32", always_2d=True)[0]
    in_memory = Engine(result["model"], 32, "sqrt_hann", channels=2,
                       processors=P.build_chain(config(*overrides).processors),
                       samplerate=SR).render(stereo)
    # the same coefficients (the contract); the file was rendered in other chunks, so the
    # decoder's float32 sums may differ in their last bits
    np.testing.assert_allclose(from_file, in_memory, atol=1e-6, rtol=0)
    assert not np.array_equal(in_memory, Engine(LearnedCosine(64, 32), 32, channels=2,
                                                processors=P.build_chain(
                                                    config(*overrides).processors)).render(stereo))


def test_same_seed_same_checkpoint(tmp_path):
    audio = write(tmp_path / "train.wav", resonant_noise(1.0, seed=4))
    paths = [tmp_path / name for name in ("a.pt", "b.pt", "c.pt")]
    for path, seed in zip(paths, (7, 7, 8)):
        train_files(config(*SMALL), [audio], steps=20, batch=4, lr=1e-2, out_path=str(path),
                    seed=seed)
    a, b, c = (read_checkpoint(p) for p in paths)
    assert a["extra"] == b["extra"] and a["metadata"] == b["metadata"]
    assert a["extra"]["seed"] == 7 and a["extra"]["steps"] == 20
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert not torch.equal(a["state_dict"]["encoder.freq_offset_bins"],
                           c["state_dict"]["encoder.freq_offset_bins"])


def test_continue_from_a_checkpoint_into_a_new_one(tmp_path):
    audio = write(tmp_path / "train.wav", resonant_noise(1.0, seed=5))
    ckpt = str(tmp_path / "model.pt")
    first = train_files(config(*SMALL), [audio], steps=20, batch=4, lr=1e-2, out_path=ckpt)
    before = Path(ckpt).read_bytes()
    # the checkpoint in use is never the output, not even with --overwrite
    for flags in ([], ["--overwrite"]):
        result = invoke("train", audio, *sets(*SMALL, f"model.checkpoint={ckpt}"), "--out", ckpt,
                        "--steps", "3", *flags)
        assert result.exit_code == 2 and "is the checkpoint in use" in result.stderr
        assert Path(ckpt).read_bytes() == before
    again = str(tmp_path / "model2.pt")
    second = train_files(config(*SMALL, f"model.checkpoint={ckpt}"), [audio], steps=20,
                         batch=4, lr=1e-2, out_path=again)
    # the same held-out audio through the same engine: it starts where the first run ended
    assert second["snr_before_db"] == first["snr_after_db"]
    assert read_checkpoint(again)["extra"]["snr_after_db"] == second["snr_after_db"]


def test_an_existing_out_needs_overwrite(tmp_path):
    audio = write(tmp_path / "train.wav", resonant_noise(1.0, seed=5))
    out = tmp_path / "model.pt"
    assert invoke("train", audio, *sets(*SMALL), "--out", str(out), "--steps", "3").exit_code == 0
    first = out.read_bytes()
    refused = invoke("train", audio, *sets(*SMALL), "--out", str(out), "--steps", "3",
                     "--seed", "1")
    assert refused.exit_code == 2, refused.output
    assert "exists; pass --overwrite" in refused.stderr and out.read_bytes() == first
    replaced = invoke("train", audio, *sets(*SMALL), "--out", str(out), "--steps", "3",
                      "--seed", "1", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert read_checkpoint(out)["extra"]["seed"] == 1


def test_log_csv_and_progress_with_the_loss(tmp_path):
    audio = write(tmp_path / "train.wav", resonant_noise(1.0, seed=6))
    log = tmp_path / "loss.csv"
    notes = []
    result = train_files(config(*SMALL), [audio], steps=15, batch=4, lr=2e-2,
                         out_path=str(tmp_path / "m.pt"), log_path=str(log),
                         progress=lambda done, total, note="": notes.append((done, total, note)))
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == LOG_COLUMNS
    assert [int(r["step"]) for r in rows] == list(range(1, 16))
    for r in rows:
        assert float(r["snr_db"]) == pytest.approx(-10 * math.log10(float(r["loss"])))
        assert float(r["lr"]) == 2e-2 and float(r["lr_freq"]) == 2e-2 * T.FREQ_LR_RATIO
    assert float(rows[-1]["loss"]) == result["final_loss"]
    assert float(rows[-1]["freq_shift_bins"]) == pytest.approx(result["freq_shift_bins"])
    assert [(d, t) for d, t, _ in notes] == [(i, 15) for i in range(1, 16)]
    assert notes[-1][2] == f"loss {result['final_loss']:.4g} ({float(rows[-1]['snr_db']):.2f} dB)"


def test_plot_png(tmp_path):
    audio = write(tmp_path / "train.wav", resonant_noise(1.0))
    plot = tmp_path / "loss.png"
    result = invoke("train", audio, *sets(*SMALL), "--steps", "5", "--batch", "2",
                    "--out", str(tmp_path / "m.pt"), "--plot", str(plot))
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    # None in sys.modules makes every `import matplotlib...` fail, as on a machine without it.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    audio = write(tmp_path / "train.wav", resonant_noise(1.0))
    out = tmp_path / "m.pt"
    result = invoke("train", audio, *sets(*SMALL), "--out", str(out), "--plot",
                    str(tmp_path / "loss.png"))
    assert result.exit_code == 2
    assert "pip install matplotlib" in result.stderr
    assert not out.exists()                  # refused before training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trains_on_cuda_and_loads_on_cpu(tmp_path):
    audio = write(tmp_path / "train.wav", resonant_noise(2.0))
    out = tmp_path / "model.pt"
    result = train_files(config(*SMALL, "model.device=cuda"), [audio], steps=100, batch=16,
                         lr=1e-2, out_path=str(out))
    assert result["device"].startswith("cuda")
    assert result["snr_after_db"] > result["snr_before_db"]
    cpu = build_model(config(*SMALL, f"model.checkpoint={out}"))
    assert torch.equal(cpu.encoder.freq_offset_bins, result["model"].encoder.freq_offset_bins.cpu())


# ----------------------------------------------------------------------------- bad input

@pytest.fixture
def files(tmp_path):
    return {"audio": write(tmp_path / "train.wav", resonant_noise(0.5)),
            "short": write(tmp_path / "short.wav", resonant_noise(63 / SR)),
            "silent": write(tmp_path / "silent.wav", np.zeros((4000, 1), np.float32)),
            "text": str(tmp_path / "notes.wav"), "folder": str(tmp_path),
            "out": str(tmp_path / "model.pt"), "tmp": tmp_path}


@pytest.mark.parametrize("args, phrase", [
    (["{missing}"], "not found"),
    (["{text}"], "cannot read audio file"),
    (["{folder}"], "is a folder"),
    (["{short}"], "shorter than one frame (frame.size = 64)"),
    (["{silent}"], "validation audio (--val, else the last 10 % of each file) is silent"),
    (["{silent}", "--val", "{audio}"], "the training audio is silent"),
    (["{audio}", "--val", "{short}"], "shorter than one frame"),
    (["{audio}", "--set", "model.coefficients=64"], "nothing to learn"),
    (["{audio}", "--set", "model.decoder=pinv", "--set", "model.coefficients=64"],
     "nothing to learn"),
    (["{audio}", "--set", "processors=[{{type: 'plugins_example:Gain', gain: 0.0}}]"],
     "no gradient reaches"),
    (["{audio}", "--lr", "1e30"], "training diverged"),
    (["{audio}", "--out", "{audio}"], "is the audio file"),
    (["{audio}", "--out", "{text}"], "exists; pass --overwrite to replace it"),
    (["{audio}", "--out", "{text}", "--overwrite"], "is not a cosine-host checkpoint"),
    (["{audio}", "--out", "{tmp}/nowhere/m.pt"], "does not exist"),
    (["{audio}", "--log", "{audio}"], "never overwritten, not even with --overwrite"),
    (["{audio}", "--log", "{audio}", "--overwrite"], "is the audio file"),
    (["{audio}", "--out", "{tmp}"], "is a folder"),
    (["{audio}", "--log", "{out}"], "same file"),
])
def test_bad_input_is_one_line(files, args, phrase):
    Path(files["text"]).write_text("not audio\n")
    before = {p: p.read_bytes() for p in files["tmp"].iterdir() if p.is_file()}
    names = {**files, "missing": str(files["tmp"] / "missing.wav")}
    argv = [a.format(**names) for a in args]
    if "--out" not in argv:
        argv += ["--out", files["out"]]
    result = invoke("train", *sets(*SMALL), *argv, "--steps", "3", "--batch", "2")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)          # handled: no traceback
    assert phrase in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    after = {p: p.read_bytes() for p in files["tmp"].iterdir() if p.is_file()}
    assert after == before                                   # nothing written or replaced


def test_no_audio_files_is_a_usage_error():
    result = invoke("train")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: missing argument 'AUDIO...' (see ")
    assert result.stderr.endswith(" train --help)\n") and result.stderr.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_without_one(files):
    result = invoke("train", files["audio"], "--set", "model.device=cuda", "--out", files["out"])
    assert result.exit_code == 2 and "no CUDA device is available" in result.stderr


def test_checkpoint_that_does_not_fit_the_config(files, tmp_path):
    train_files(config(*SMALL), [files["audio"]], steps=2, batch=2, lr=1e-2,
                out_path=files["out"])
    for command in (["info"], ["render", files["audio"], str(tmp_path / "o.wav")]):
        result = invoke(*command, *sets("frame.size=64", "frame.hop=32", "model.coefficients=64",
                                        f"model.checkpoint={files['out']}"))
        assert result.exit_code == 2, result.output
        assert "has coefficients = 32 but the config asks for 64" in result.stderr
    assert not (tmp_path / "o.wav").exists()


def test_subprocess_error_is_one_line_without_traceback(files):
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "train", files["short"],
                           "--out", files["out"], *sets(*SMALL)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: audio file") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- keeping what it learned

def test_nan_in_training_audio_is_an_error_naming_the_file(tmp_path):
    data = resonant_noise(0.5)
    data[1234, 0] = np.nan
    data[2000, 0] = np.inf
    bad = write(tmp_path / "bad.wav", data)
    good = write(tmp_path / "good.wav", resonant_noise(0.5, seed=1))
    for argv in ([good, bad], [good, "--val", bad]):
        result = invoke("train", *argv, *sets(*SMALL), "--out", str(tmp_path / "m.pt"),
                        "--steps", "3")
        assert result.exit_code == 2, result.output
        assert result.stderr == (f"error: audio file {bad!r} has 2 NaN or infinite samples (the "
                                 f"first at frame 1234); repair or re-export it, or leave it "
                                 f"out\n")
    assert not (tmp_path / "m.pt").exists()


def test_save_every_writes_the_best_checkpoint_while_training(tmp_path):
    audio = write(tmp_path / "train.wav", resonant_noise(1.0, seed=2))
    out = tmp_path / "m.pt"
    log = tmp_path / "loss.csv"
    seen = {}

    def progress(done, total):
        # what a person would find on disk after each step
        seen[done] = (read_checkpoint(out)["extra"] if out.exists() else None,
                      log.read_text())
    result = train_files(config(*SMALL), [audio], steps=10, batch=4, lr=2e-2,
                         out_path=str(out), log_path=str(log), save_every=4,
                         progress=progress)
    assert seen[1][0] is None and seen[3][0] is None
    for step in (4, 8):
        extra = seen[step][0]
        assert extra["steps_done"] == step
        assert extra["kept_step"] in (0, 4, 8) and extra["kept_step"] <= step
        assert extra["snr_after_db"] >= extra["snr_before_db"]
    for step, (_, text) in seen.items():
        lines = text.splitlines()
        assert text.endswith("\n") and len(lines) == step + 1       # the header, one per step
        assert lines[0] == ",".join(LOG_COLUMNS)
    final = read_checkpoint(out)["extra"]
    assert final["steps_done"] == 10 and final["interrupted"] is None
    assert final["snr_after_db"] == result["snr_after_db"] >= seen[8][0]["snr_after_db"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("signum, code, words", [
    (signal.SIGTERM, 143, "terminated by SIGTERM"),
    (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
])
def test_signal_during_training_writes_the_best_checkpoint_so_far(tmp_path, signum, code, words):
    audio = write(tmp_path / "train.wav", resonant_noise(1.0, seed=3))
    out, log = tmp_path / "m.pt", tmp_path / "loss.csv"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "train", audio, *sets(*SMALL),
                             "--steps", "1000000", "--batch", "4", "--out", str(out),
                             "--log", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def steps_logged() -> int:
        return log.read_text().count("\n") - 1 if log.exists() else 0
    deadline = time.monotonic() + 240
    while steps_logged() < 5:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no training steps logged"
        time.sleep(0.02)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == code, stderr
    extra = read_checkpoint(out)["extra"]
    assert stderr == (f"error: {words}; wrote the best checkpoint so far to {str(out)!r} "
                      f"(step {extra['kept_step']} of 1000000, validation SNR "
                      f"{extra['snr_before_db']:.2f} -> {extra['snr_after_db']:.2f} dB)\n")
    assert extra["interrupted"] == words and extra["steps_done"] >= 5
    assert extra["snr_after_db"] >= extra["snr_before_db"]
    text = log.read_text()
    rows = list(csv.DictReader(text.splitlines()))
    # every finished step is in the log (one more when the signal came just after its line)
    assert text.endswith("\n") and len(rows) - extra["steps_done"] in (0, 1)
    assert [int(r["step"]) for r in rows] == list(range(1, len(rows) + 1))
    # the checkpoint loads and renders
    assert invoke("render", audio, str(tmp_path / "o.wav"),
                  *sets(*SMALL, f"model.checkpoint={out}")).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.csv", "m.pt", "o.wav", "train.wav"]

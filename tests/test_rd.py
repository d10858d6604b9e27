"""Rate-distortion training: the learned quantizer (models/processors/learned_quantize.py), its entropy
model (models/processors/entropy.py), `train --objective rd`, and checkpoints that carry the learned
steps
to render, evaluate, info and live identically."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from cosine_host.models import read_checkpoint
from cosine_host.models.processors import registry as P
from cosine_host.models.processors.entropy import FactorizedEntropy
from cosine_host.models.processors.learned_quantize import INIT_STEP, LearnedQuantize
from cosine_host.cli import cli
from cosine_host.config.schema import load_config
from cosine_host.engine.engine import Engine
from cosine_host.lab.speech import synthesize_speech
from cosine_host.train.fit import train_files

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_V1 = ROOT / "tests" / "fixtures" / "checkpoint-v1.pt"
SR = 16000
LEARNED = "processors=[{type: learned_quantize}]"
SMALL = ("model.device=cpu", "frame.size=64", "frame.hop=32", "model.coefficients=64", LEARNED)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small matrix products: one thread is much faster on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def entropy_bits(symbols: np.ndarray) -> float:
    """Bits to code ``symbols`` at the empirical entropy of their one histogram."""
    _, counts = np.unique(symbols, return_counts=True)
    return float((counts * np.log2(counts.sum() / counts)).sum())


def speech_file(tmp_path, name="speech.wav", seconds=3.0, seed=1, voice="low") -> str:
    path = tmp_path / name
    sf.write(str(path), synthesize_speech(SR, seconds, seed=seed, voice=voice), SR,
             subtype="FLOAT")
    return str(path)


# --- the quantizer ------------------------------------------------------------------------------

def quantizer(m: int, seed: int = 0) -> LearnedQuantize:
    q = P.build(P.check_spec({"type": "learned_quantize"}, m))
    q.prepare(48000, 32, m)
    with torch.no_grad():       # steps that differ per index, as trained ones do
        q.log_step.copy_(torch.linspace(math.log(0.003), math.log(0.05), m))
    return q


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_and_torch_routes_give_the_same_bits(dtype):
    q = quantizer(24)
    x = (torch.randn(40, 2, 24, generator=torch.Generator().manual_seed(0)) * 0.1).to(dtype)
    numpy_out = q(x)                    # CPU, no grad: the numpy route
    torch_out = q._torch(x)
    assert torch.equal(numpy_out, torch_out)
    steps = q.steps().to(dtype)
    assert torch.equal(torch_out, torch.round(x * (1 / q.steps()).to(dtype)) * steps)
    assert (torch_out - x).abs().max() <= steps.max() / 2 * (1 + 1e-6)


def test_bitrate_is_the_entropy_of_the_symbols():
    m, frames, hop, rate = 32, 300, 32, 48000
    q = quantizer(m)
    x = torch.randn(frames, 1, m, generator=torch.Generator().manual_seed(1)) * 0.05
    q(x)
    symbols = np.rint(x.numpy() * (1 / q.steps()).numpy().astype(np.float32))
    seconds = frames * hop / rate
    pooled = entropy_bits(symbols.ravel())
    bands = sum(entropy_bits(symbols[..., idx]) for idx in
                np.array_split(np.arange(m), LearnedQuantize.BANDS))
    assert q.stats()["bitrate_kbps"] == pytest.approx(pooled / seconds / 1000, rel=1e-9)
    rates = q.rates()
    assert rates["kbps_pooled"] == pytest.approx(pooled / seconds / 1000, rel=1e-9)
    assert rates["kbps_entropy"] == pytest.approx(bands / seconds / 1000, rel=1e-9)
    assert rates["kbps_fixed"] is None          # no fixed range, no fixed-length code


def test_scale_multiplies_the_steps_and_is_checked():
    q = quantizer(8)
    before = q.steps()
    q.scale = 2.0
    assert torch.allclose(q.steps(), 2 * before)
    with pytest.raises(ValueError, match="scale = -1"):
        q.scale = -1
    with pytest.raises(ValueError, match="scale = 0"):
        P.check_spec({"type": "learned_quantize", "scale": 0}, 8)


def test_relaxed_routes_carry_gradients_to_steps_and_entropy_model():
    q = quantizer(16)
    x = (torch.randn(20, 3, 16, generator=torch.Generator().manual_seed(2)) * 0.1)
    for mode in ("noise", "ste"):
        q.zero_grad()
        q.relax(mode, torch.Generator().manual_seed(0))
        xg = x.clone().requires_grad_()
        y = q(xg)
        (q.rate_bits + 100 * (y - x).pow(2).sum()).backward()
        assert q.log_step.grad.abs().min() > 0, mode
        assert q.entropy.logits.grad.abs().sum() > 0, mode
        assert xg.grad.abs().sum() > 0, mode
        noise = (y - x).detach() / q.steps().float()
        assert noise.abs().max() <= 0.5 + 1e-5 and noise.abs().max() > 0.1, mode
    q.relax(None)
    assert q.stats()["frames"] == 0        # training calls count no statistics


def test_entropy_model_probabilities_sum_to_one():
    model = FactorizedEntropy(3)
    with torch.no_grad():
        model.means.copy_(torch.tensor([[0.0, 1.0, -2.0]] * 3))
    z = torch.arange(-2000, 2001, dtype=torch.float64)[:, None].expand(-1, 3)
    total = model.probability(z).sum(0)
    assert torch.allclose(total, torch.ones(3, dtype=torch.float64), atol=1e-6)
    # far in the tails a symbol still has a finite cost (the floor), never inf
    assert torch.isfinite(model.bits(torch.full((1, 3), 1e9))).all()


# --- training -------------------------------------------------------------------------------------

def test_rd_training_lowers_the_rate_and_the_validation_loss(tmp_path):
    audio = speech_file(tmp_path)
    cfg = load_config(None, SMALL)
    out = tmp_path / "rd.pt"
    result = train_files(cfg, [audio], steps=80, batch=8, lr=2e-2, out_path=str(out),
                         objective="rd", rate_weight=0.05, relaxation="ste",
                         log_path=str(tmp_path / "rd.csv"), save_every=40)
    rows = list(np.genfromtxt(tmp_path / "rd.csv", delimiter=",", names=True))
    first = np.mean([r["rate_bits"] for r in rows[:5]])
    last = np.mean([r["rate_bits"] for r in rows[-5:]])
    assert last < 0.8 * first, (first, last)                 # the rate term went down
    assert result["kept"] == "trained"
    assert result["loss_after"] < result["loss_before"], result
    assert result["kbps_after"] < result["kbps_before"], result
    payload = read_checkpoint(out)
    assert payload["version"] == 3                    # 3: the state_dict holds n0
    [entry] = payload["processors"]
    assert entry["type"] == "learned_quantize"
    steps = torch.exp(entry["state_dict"]["log_step"].double())
    assert steps.shape == (64,) and not torch.allclose(steps, torch.full_like(steps, INIT_STEP))
    assert payload["extra"]["objective"] == "rd"

    # the engine built from the config loads those steps; its bitrate is what training
    # validated (the same audio: the last 10 % of the file)
    engine = Engine.from_config(load_config(None, (*SMALL, f"model.checkpoint={out}")),
                                blocksize=0, channels=1, samplerate=SR)
    [q] = list(engine.processors)
    assert torch.equal(q.log_step.detach(), entry["state_dict"]["log_step"])


def test_mse_objective_leaves_the_learned_steps_alone(tmp_path):
    audio = speech_file(tmp_path)
    cfg = load_config(None, SMALL)
    out = tmp_path / "mse.pt"
    train_files(cfg, [audio], steps=5, batch=4, out_path=str(out))
    [entry] = read_checkpoint(out)["processors"]
    assert torch.equal(entry["state_dict"]["log_step"],
                       torch.full((64,), math.log(INIT_STEP), dtype=torch.float32))


def test_rd_needs_a_learned_quantizer_and_sane_weights(tmp_path):
    audio = speech_file(tmp_path, seconds=1.0)
    runner = CliRunner()
    base = ["train", audio, "--set", "model.device=cpu", "--steps", "2",
            "--out", str(tmp_path / "x.pt"), "--objective", "rd"]
    r = runner.invoke(cli, base)
    assert r.exit_code == 2 and "learned_quantize" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, [*base, "--set", LEARNED, "--rate-weight", "-1"])
    assert r.exit_code == 2 and "--rate-weight" in r.output
    r = runner.invoke(cli, ["train", audio, "--rate-weight", "0.1", "--out",
                            str(tmp_path / "y.pt")])
    assert r.exit_code == 2 and "--objective rd" in r.output
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()


def test_learned_quantize_with_a_checkpoint_without_steps_is_one_line(tmp_path):
    wav = speech_file(tmp_path, seconds=0.5)
    r = CliRunner().invoke(cli, ["render", wav, str(tmp_path / "o.wav"), "--set",
                                 "model.device=cpu", "--set", "frame.size=16", "--set",
                                 "frame.hop=8", "--set", "model.coefficients=8", "--set",
                                 "model.decoder=free", "--set", LEARNED, "--set",
                                 f"model.checkpoint={FIXTURE_V1}"])
    assert r.exit_code == 2, r.output
    assert "holds no learned state" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o.wav").exists()


# --- one path for every command --------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint with learned steps (N = 512, M = 256, 48 kHz, a few rd steps)."""
    folder = tmp_path_factory.mktemp("rd")
    path = folder / "speech48.wav"
    sf.write(str(path), synthesize_speech(48000, 2.0, seed=3), 48000, subtype="FLOAT")
    overrides = ("model.device=cpu", "model.coefficients=256", LEARNED)
    val = folder / "val48.wav"
    sf.write(str(val), synthesize_speech(48000, 1.0, seed=4), 48000, subtype="FLOAT")
    out = folder / "rd48.pt"
    train_files(load_config(None, overrides), [str(path)], steps=6, batch=4, out_path=str(out),
                val_path=str(val), objective="rd", rate_weight=0.05)
    return {"overrides": (*overrides, f"model.checkpoint={out}"), "path": out}


def test_info_shows_the_learned_steps(trained):
    args = ["info", "--json"]
    for o in trained["overrides"]:
        args += ["--set", o]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["checkpoint"]["format_version"] == 3
    [learned] = data["checkpoint"]["processors"]
    assert learned["type"] == "learned_quantize" and learned["coefficients"] == 256
    steps = torch.exp(read_checkpoint(trained["path"])["processors"][0]["state_dict"]["log_step"]
                      .double())
    assert learned["step_min"] == pytest.approx(float(steps.min()))
    assert learned["step_max"] == pytest.approx(float(steps.max()))


def test_evaluate_reports_the_entropy_of_the_trained_symbols(trained, tmp_path):
    from cosine_host.lab.evaluate import render_setting
    cfg = load_config(None, trained["overrides"])
    signal = synthesize_speech(48000, 1.0, seed=5, voice="high")
    out, rates = render_setting(cfg, signal, 48000)
    # the same symbols, from the engine's coefficients, counted by hand
    engine = Engine.from_config(cfg, blocksize=0, channels=1, samplerate=48000)
    [q] = list(engine.processors)
    seen = []
    q.register_forward_hook(lambda mod, inp, outp: seen.append(
        np.rint(inp[0].numpy() * (1 / q.steps()).numpy().astype(np.float32))))
    again = engine.render(signal)
    assert np.array_equal(out, again)
    symbols = np.concatenate([s.reshape(-1, 256) for s in seen])
    seconds = symbols.shape[0] * engine.hop / 48000
    bands = sum(entropy_bits(symbols[:, idx]) for idx in
                np.array_split(np.arange(256), LearnedQuantize.BANDS))
    assert rates["kbps_entropy"] == pytest.approx(bands / seconds / 1000, rel=1e-9)


def test_render_and_live_give_the_same_output(trained, jack_server, tmp_path):
    """The checkpoint's steps reach live exactly as render: the loopback recording of a live
    session on the JACK dummy equals the rendered file, sample for sample within float32."""
    from cosine_host.live.session import LiveSession
    assert jack_server.dummy                    # its round trip is the reported latency
    sr = jack_server.samplerate
    cfg = load_config(None, (*trained["overrides"], f"audio.samplerate={sr}",
                             "audio.blocksize=256"))
    signal = np.repeat(synthesize_speech(sr, 1.0, seed=7, voice="high"), cfg.audio.channels, 1)
    rendered = Engine.from_config(cfg, blocksize=0, channels=signal.shape[1],
                                  samplerate=sr).render(signal)
    assert float(np.abs(rendered - signal).max()) > 1e-3     # the quantizer is in the path

    session = LiveSession(cfg, jack_loopback=True)
    # an xrun shifts what the loopback records; on a shared machine one may come from
    # elsewhere (tests/test_live.py's margin): up to five tries for a clean recording
    for _ in range(5):
        recorded = session.play_record(signal)
        report = session.last_report
        if report["xrun_events"] == 0:
            break
    assert report["xrun_events"] == 0, report["xruns"]
    delay = report["latency"]["total_samples"]
    live = recorded[delay:delay + signal.shape[0]]
    assert live.shape == rendered.shape
    assert np.abs(live - rendered).max() <= 1e-6, np.abs(live - rendered).max()


# --- evaluate: curves read at equal bitrates ---------------------------------------------------------

def test_curves_are_read_at_equal_bitrates_in_log_kbps():
    from cosine_host.lab.evaluate import curves_at, parse_kbps
    rows = [{"label": f"a {k}", "kind": "engine", "input": "x", "kbps": k, "pesq": v}
            for k, v in ((20.0, 2.0), (80.0, 4.0))]
    rows.append({"label": "opus 48 kbps", "kind": "codec", "input": "x", "kbps": 48.0,
                 "pesq": 4.2})
    result = {"rows": rows, "groups": {"a 20.0": "a", "a 80.0": "a", "opus 48 kbps": "opus"}}
    table = curves_at(result, parse_kbps("40,10,48"), ("pesq",))
    a, opus = table["rows"]
    assert a["curve"] == "a" and a["pesq@40"] == pytest.approx(3.0)   # halfway in log kbps
    assert a["pesq@10"] is None                                       # never extrapolated
    assert opus["pesq@48"] == pytest.approx(4.2) and opus["pesq@40"] is None
    assert [c[0] for c in table["columns"]] == ["curve", "input", "pesq@40", "pesq@10",
                                                "pesq@48"]
    from cosine_host.errors import UserError
    with pytest.raises(UserError, match="--at-kbps"):
        parse_kbps("32,fast")


def test_render_reports_the_learned_quantizers_bitrates(trained, tmp_path):
    wav = tmp_path / "in.wav"
    sf.write(str(wav), synthesize_speech(48000, 1.0, seed=6, voice="high"), 48000,
             subtype="FLOAT")
    args = ["render", str(wav), str(tmp_path / "out.wav"), "--report", str(tmp_path / "r.json")]
    for o in trained["overrides"]:
        args += ["--set", o]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "r.json").read_text())
    from cosine_host.lab.evaluate import render_setting
    signal, _ = sf.read(str(wav), dtype="float32", always_2d=True)
    _, rates = render_setting(load_config(None, trained["overrides"]), signal, 48000)
    assert report["bitrate_kbps"] == pytest.approx(rates["kbps_pooled"], rel=1e-9)
    assert report["kbps_entropy"] == pytest.approx(rates["kbps_entropy"], rel=1e-9)

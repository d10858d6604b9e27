"""What several test modules (and the benchmarks) need: signals, SNR, parameter perturbation, a
coefficient-recording processor, engines from the default config, block-wise streaming and a
slow batch to stop midway."""
from __future__ import annotations

import math
import os
import pathlib
import sys

import numpy as np
import torch


def snr_db(reference, estimate) -> float:
    """10 log10(|reference|^2 / |reference - estimate|^2) in float64 (inf when equal)."""
    reference = np.asarray(reference, dtype=np.float64)
    error = ((reference - np.asarray(estimate, dtype=np.float64)) ** 2).sum()
    return math.inf if error == 0 else 10 * math.log10((reference ** 2).sum() / error)


def noise(frames: int, channels: int, seed: int = 0, level: float = 1.0) -> np.ndarray:
    """Uniform noise in [-level, level), float32 (frames, channels)."""
    rng = np.random.default_rng(seed)
    return (level * rng.uniform(-1, 1, (frames, channels))).astype(np.float32)


def perturb(model, scale: float = 1e-3, seed: int = 0) -> None:
    """'Trained' parameters: every parameter moved a little off its init (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


class Recorder(torch.nn.Module):
    """A processor plugin that keeps a copy of every coefficient tensor it sees (an engine's
    reset does not clear them)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, coeffs):
        self.seen.append(coeffs.detach().cpu().clone().numpy())
        return coeffs

    def coefficients(self, channels: int, m: int) -> np.ndarray:
        """Everything seen, as (frames, channels, M)."""
        return np.concatenate(self.seen) if self.seen else np.zeros((0, channels, m))


def make_engine(blocksize: int = 0, channels: int = 1, overrides=(), processors=None,
                trained: bool = False, **kwargs):
    """An engine from the default config plus ``overrides`` (CPU); ``processors`` replaces the
    config's chain; ``trained`` perturbs the parameters (the matrix path). Keyword arguments go
    to Engine."""
    import cosine_host
    from cosine_host.models.processors import registry as registry
    from cosine_host.engine.build import build_model
    from cosine_host.engine.engine import Engine
    cfg = cosine_host.load_config(overrides=("model.device=cpu", *overrides))
    model = build_model(cfg)
    if trained:
        perturb(model)
    chain = processors if processors is not None else registry.build_chain(cfg.processors)
    return Engine(model, cfg.frame.hop, cfg.frame.window, blocksize=blocksize, channels=channels,
                  processors=chain, samplerate=cfg.audio.samplerate,
                  synthesis_size=cfg.frame.synthesis_samples, kbd_alpha=cfg.frame.kbd_alpha,
                  **kwargs)


def recording_chain(*specs, m: int = 512):
    """(chain, recorder): a Recorder first, then the built-in ``specs`` (dicts)."""
    from cosine_host.models.processors import registry as registry
    recorder = Recorder()
    checked = [registry.check_spec(spec, m) for spec in specs]
    chain = registry.Chain([registry.Plugin(recorder, "recorder")]
                           + [registry.build(spec) for spec in checked],
                           types=["recorder"] + [spec["type"] for spec in checked])
    return chain, recorder


def stream_blocks(engine, signal: np.ndarray, sizes) -> np.ndarray:
    """``signal`` through ``engine.process`` in blocks of ``sizes`` (cycled); the raw output,
    latency included."""
    out, pos, i = [], 0, 0
    sizes = list(sizes)
    while pos < signal.shape[0]:
        size = sizes[i % len(sizes)] or 1
        out.append(engine.process(np.ascontiguousarray(signal[pos:pos + size])).copy())
        pos += size
        i += 1
    return np.concatenate(out)


def assert_impulse_at(output: np.ndarray, position: int) -> None:
    """``output`` (frames, 2): channel 0 holds the unit impulse whole at ``position`` and
    nothing else above 1e-5; channel 1 (silent input) is exactly zero."""
    peak = int(np.argmax(np.abs(output[:, 0])))
    assert peak == position
    assert abs(output[peak, 0] - 1.0) < 1e-5
    assert np.abs(np.delete(output[:, 0], peak)).max() < 1e-5
    assert np.abs(output[:, 1]).max() == 0.0


def render_in_blocks(engine, signal: np.ndarray, sizes) -> np.ndarray:
    """The aligned render of ``signal`` fed in blocks of ``sizes`` (cycled), through the
    engine's one latency-compensation function (Engine.render_chunks)."""
    def pieces():
        pos, i = 0, 0
        while pos < signal.shape[0]:
            size = max(1, sizes[i % len(sizes)])
            yield np.ascontiguousarray(signal[pos:pos + size])
            pos += size
            i += 1
    return np.concatenate(list(engine.render_chunks(pieces(), signal.shape[0])))


ROOT = pathlib.Path(__file__).resolve().parent.parent


def slow_batch(folder: pathlib.Path, files: int, jobs: int, *options: str
               ) -> tuple[list[str], dict, pathlib.Path]:
    """A batch to stop midway: ``files`` stereo 48 kHz PCM_16 noise WAVs of 3 x 65536 frames in
    ``folder/src``, rendered into ``folder/out`` by ``run.py render --jobs JOBS`` on the CPU
    through the test plugin Sleepy (tests/plugins_sleepy.py: 0.3 s per engine call, about 1 s
    per file), plus ``options``. Returns (command line, environment, output folder) for
    subprocess.Popen or run, with ``cwd=ROOT``."""
    import soundfile as sf
    src, out = folder / "src", folder / "out"
    src.mkdir()
    out.mkdir()
    for i in range(files):
        rng = np.random.default_rng(i)
        sf.write(src / f"f{i}.wav", np.clip(rng.normal(0, 0.2, (3 * 65536, 2)), -0.99, 0.99)
                 .astype(np.float32), 48000, subtype="PCM_16")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    args = [sys.executable, str(ROOT / "run.py"), "render", str(src), "--out-dir", str(out),
            "--jobs", str(jobs), "--set",
            'processors=[{type: "plugins_sleepy:Sleepy", sleep_ms: 300, above: 0}]',
            "--set", "model.device=cpu", *options]
    return args, env, out

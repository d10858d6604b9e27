"""Checkpoint format versions: a checkpoint written before learned quantizer steps existed
(format version 1, tests/fixtures/checkpoint-v1.pt: N = 16, M = 8, free decoder, parameters
moved off their init) still loads, into the model and through the engine."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cosine_host.models import LearnedCosine, load_checkpoint, read_checkpoint
from cosine_host.config.schema import load_config
from cosine_host.engine.engine import Engine

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "checkpoint-v1.pt"
# the values the fixture was written with (torch.manual_seed(0), init + 0.01 * randn)
V1_ENCODER_FIRST = 1.0154099464416504
V1_DECODER_REST = 1.4160338640213013
V1_ENCODER_OFFSET_0 = -0.021787893027067184


def test_version_1_checkpoint_loads():
    payload = read_checkpoint(FIXTURE)
    assert payload["version"] == 1
    model = LearnedCosine(16, 8, init="dct", decoder="free")
    info = load_checkpoint(model, FIXTURE)
    assert info["metadata"]["coefficients"] == 8
    assert model.encoder.first.item() == pytest.approx(V1_ENCODER_FIRST, abs=0)
    assert model.decoder.basis.rest.item() == pytest.approx(V1_DECODER_REST, abs=0)
    assert model.encoder.freq_offset_bins[0].item() == pytest.approx(V1_ENCODER_OFFSET_0, abs=0)
    assert not model.at_init()


def test_version_1_checkpoint_renders():
    cfg = load_config(None, ("model.device=cpu", "frame.size=16", "frame.hop=8",
                             "model.coefficients=8", "model.decoder=free",
                             f"model.checkpoint={FIXTURE}"))
    engine = Engine.from_config(cfg, blocksize=0, channels=1, samplerate=16000)
    x = np.random.default_rng(0).standard_normal((400, 1)).astype(np.float32) * 0.1
    y = engine.render(x)
    assert y.shape == x.shape and np.isfinite(y).all()
    # M = N/2 with trained parameters: not the identity, but close to the input's band
    assert 0 < float(np.abs(y - x).max())
    assert engine.transform == "matmul"

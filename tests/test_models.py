import math
import re

import numpy as np
import pytest
import scipy.fft
import torch

from cosine_host.models import (CheckpointError, CosineDecoder, CosineEncoder, LearnedCosine,
                    load_checkpoint, read_checkpoint, save_checkpoint)


def snr_db(reference, estimate) -> float:
    reference = np.asarray(reference, dtype=np.float64)
    error = reference - np.asarray(estimate, dtype=np.float64)
    return 10 * math.log10((reference ** 2).sum() / (error ** 2).sum())


def test_seed_notebook_frequencies():
    # The notebook prints w = [3.06796166e-03, 9.20388475e-03, 1.53398076e-02, ...] for M = 512.
    enc = CosineEncoder(512, 512)
    w = enc.frequencies.numpy()
    np.testing.assert_allclose(w[:4], [3.06796166e-03, 9.20388475e-03, 1.53398076e-02,
                                       2.14757305e-02], rtol=1e-7)


def test_seed_notebook_matrix_entries():
    # W1 and W2_1 as the notebook prints them (without the 1/sqrt(N) factor), to its 4 digits;
    # the notebook's float32 phase is off by up to 1e-4 in the last columns.
    enc = CosineEncoder(512, 512)
    dec = CosineDecoder(512, 512, encoder=enc)
    with torch.no_grad():
        w1 = (enc.matrix() * math.sqrt(512)).double().numpy()
        w2 = (dec.matrix() * math.sqrt(512)).double().numpy().T   # the seed's W2_1, (N, M)
    r2 = math.sqrt(2)
    np.testing.assert_allclose(w1[0, :3], [1.0, r2, r2], atol=1e-4)
    np.testing.assert_allclose(w1[0, -3:], [0.0130, 0.0087, 0.0043], atol=1.1e-4)
    np.testing.assert_allclose(w1[1, :3], [1.0, 1.4142, 1.4140], atol=1e-4)
    np.testing.assert_allclose(w1[1, -3:], [-0.0390, -0.0260, -0.0130], atol=1.1e-4)
    np.testing.assert_allclose(w1[2, :3], [1.0, 1.4140, 1.4135], atol=1e-4)
    np.testing.assert_allclose(w1[-1, :3], [1.0, -r2, r2], atol=1e-4)
    np.testing.assert_allclose(w1[-1, -3:], [-0.0131, 0.0087, -0.0044], atol=1.1e-4)
    np.testing.assert_allclose(w1[-3, -3:], [-0.0651, 0.0433, -0.0218], atol=1.1e-4)
    np.testing.assert_allclose(w2[0, :3], [1.0, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(w2[1, :3], [r2, r2, 1.4140], atol=1e-4)
    np.testing.assert_allclose(w2[-1, :3], [0.0043, -0.0130, 0.0217], atol=1.1e-4)
    np.testing.assert_allclose(w2, w1.T, atol=1e-6)  # tied decoder, same gains at init


@pytest.mark.parametrize("n", [8, 64, 512])
def test_encoder_is_scipy_dct3_and_decoder_dct2(n):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (16, n))
    enc = CosineEncoder(n, n, dtype=torch.float64)
    dec = CosineDecoder(n, n, encoder=enc, dtype=torch.float64)
    with torch.no_grad():
        coeffs = enc(torch.from_numpy(x)).numpy()
        back = dec(torch.from_numpy(coeffs)).numpy()
    np.testing.assert_allclose(coeffs, scipy.fft.dct(x, type=3, norm="ortho", axis=-1), atol=1e-12)
    np.testing.assert_allclose(back, scipy.fft.dct(coeffs, type=2, norm="ortho", axis=-1),
                               atol=1e-12)


@pytest.mark.parametrize("dtype,target_db", [(torch.float32, 120.0), (torch.float64, 250.0)])
def test_identity_precision(dtype, target_db):
    torch.manual_seed(0)
    x = torch.rand(256, 512, dtype=dtype) * 2 - 1
    model = LearnedCosine(512, 512, dtype="float32" if dtype == torch.float32 else "float64")
    with torch.no_grad():
        y = model(x)
    assert snr_db(x.numpy(), y.numpy()) >= target_db


def test_seed_float32_construction_is_worse_than_ours():
    # The notebook's float32 w * n phase: what our exact phase improves on.
    n = 512
    w = ((2 * np.arange(n) + 1) / (2 * n) * np.pi).astype(np.float32)
    phase = torch.from_numpy(w)[:, None] * torch.arange(n, dtype=torch.float32)[None, :]
    w1 = torch.cos(phase) * math.sqrt(2)
    w1[:, 0] = 1
    w1 = w1 / math.sqrt(n)
    x = torch.rand(256, n) * 2 - 1
    seed_db = snr_db(x.numpy(), (x @ w1.T @ w1).numpy())
    ours_db = snr_db(x.numpy(), LearnedCosine(n, n)(x).detach().numpy())
    assert seed_db < 100 < 120 < ours_db


def test_lowpass_init_keeps_first_dct_rows_and_pinv_projects():
    n, m = 64, 16
    model = LearnedCosine(n, m, init="lowpass", decoder="pinv", dtype="float64")
    full = CosineEncoder(n, n, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(model.encoder.matrix().numpy(), full.matrix()[:m].numpy(),
                                   atol=1e-12)
        # A signal inside the kept band comes back exactly; pinv of orthonormal rows = transpose.
        coeffs = torch.randn(5, m, dtype=torch.float64)
        x = coeffs @ full.matrix()[:m]
        np.testing.assert_allclose(model(x).numpy(), x.numpy(), atol=1e-12)


def test_decoder_modes_parameters():
    enc = CosineEncoder(32, 16)
    assert {n for n, _ in CosineDecoder(16, 32, mode="tied", encoder=enc).named_parameters()} \
        == {"first", "rest"}
    assert {n for n, _ in CosineDecoder(16, 32, mode="free").named_parameters()} \
        == {"basis.first", "basis.rest", "basis.freq_offset_bins"}
    assert list(CosineDecoder(16, 32, mode="pinv", encoder=enc).parameters()) == []
    with pytest.raises(ValueError, match="needs the encoder"):
        CosineDecoder(16, 32, mode="tied")
    with pytest.raises(ValueError, match=re.escape("allowed: tied | free | pinv")):
        CosineDecoder(16, 32, mode="other", encoder=enc)


@pytest.mark.parametrize("decoder", ["tied", "free", "pinv"])
def test_gradients_reach_every_parameter(decoder):
    model = LearnedCosine(64, 32, decoder=decoder)
    x = torch.randn(8, 64)
    loss = ((model(x) - x) ** 2).mean() + model.encoder(x).abs().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_cache_reused_and_invalidated_after_optimiser_step():
    model = LearnedCosine(64, 64, decoder="free")
    with torch.no_grad():
        first = model.encoder.matrix()
        assert model.encoder.matrix() is first            # cached while nothing changed
        dec_first = model.decoder.matrix()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):                                     # gradients on every step
        opt.zero_grad()
        x = torch.randn(4, 64)
        loss = ((model(x) - 0.5 * x) ** 2).sum()
        loss.backward()
        assert model.encoder.freq_offset_bins.grad.abs().sum() > 0
        opt.step()
    with torch.no_grad():
        rebuilt = model.encoder.matrix()
        assert rebuilt is not first
        assert not torch.equal(rebuilt, first)
        torch.testing.assert_close(rebuilt, model.encoder.build())
        assert not torch.equal(model.decoder.matrix(), dec_first)


def test_tied_decoder_follows_encoder_frequencies():
    model = LearnedCosine(32, 32)
    with torch.no_grad():
        before = model.decoder.matrix().clone()
        model.encoder.freq_offset_bins.add_(0.25)
        after = model.decoder.matrix()
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after / model.decoder.rest * model.encoder.rest,
                               model.encoder.matrix())


def test_at_init():
    model = LearnedCosine(32, 32)
    assert model.at_init()
    with torch.no_grad():
        model.encoder.rest.mul_(1.01)
    assert not model.at_init()


def test_checkpoint_round_trip(tmp_path):
    model = LearnedCosine(64, 32, init="lowpass", decoder="free")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = tmp_path / "m.pt"
    save_checkpoint(model, path, extra={"steps": 7})
    fresh = LearnedCosine(64, 32, init="lowpass", decoder="free")
    info = load_checkpoint(fresh, path)
    assert info["extra"] == {"steps": 7}
    assert info["metadata"]["coefficients"] == 32
    for (name, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.randn(3, 64)
    torch.testing.assert_close(model(x), fresh(x), rtol=0, atol=0)
    assert read_checkpoint(path)["format"] == "cosine-host-checkpoint"


def test_checkpoint_shape_mismatch_is_clear(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(LearnedCosine(64, 32), path)
    with pytest.raises(CheckpointError, match=r"coefficients = 32 but the config asks for 64; "
                                              r"set model.coefficients"):
        load_checkpoint(LearnedCosine(64, 64), path)
    with pytest.raises(CheckpointError, match="frame_size = 64"):
        load_checkpoint(LearnedCosine(128, 32), path)


def test_checkpoint_refuses_non_checkpoints(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match="not a cosine-host checkpoint"):
        read_checkpoint(plain)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_init_must_match(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(LearnedCosine(64, 32, init="dct"), path)
    with pytest.raises(CheckpointError, match="init = 'dct' but the config asks for 'lowpass'; "
                                              "set model.init"):
        load_checkpoint(LearnedCosine(64, 32, init="lowpass"), path)


def test_checkpoint_bytes_are_reproducible(tmp_path):
    model = LearnedCosine(32, 32)
    save_checkpoint(model, tmp_path / "a.pt")
    save_checkpoint(model, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()

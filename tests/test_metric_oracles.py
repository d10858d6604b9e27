"""The hand-written spectral measures against independent implementations: the multi-resolution
STFT distance (training loss and evaluate metric, one definition) against auraloss, the mel
filter bank against librosa, the log-spectral distance against a direct numpy formula."""
from __future__ import annotations

import auraloss
import librosa
import numpy as np
import pytest
import torch

from cosine_host.lab import metrics
from cosine_host.models import training
from cosine_host.models.spectral import mr_stft_distance

RATE = 48000


def _signals(seconds=0.5, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.normal(0, 0.2, (int(seconds * RATE), channels))
    ref[:, 0] += 0.3 * np.sin(2 * np.pi * 440 * np.arange(ref.shape[0]) / RATE)
    deg = ref + rng.normal(0, 0.02, ref.shape)
    deg[: RATE // 20] = 0.0                       # a silent stretch: the floor matters there
    return ref.astype(np.float32), deg.astype(np.float32)


def _auraloss(resolutions):
    ffts, hops = [n for n, _ in resolutions], [h for _, h in resolutions]
    return auraloss.freq.MultiResolutionSTFTLoss(fft_sizes=ffts, hop_sizes=hops,
                                                 win_lengths=ffts, w_sc=1.0, w_log_mag=1.0,
                                                 w_lin_mag=0.0, w_phs=0.0, eps=1e-8)


def test_stft_distance_metric_is_auraloss_mr_stft():
    ref, deg = _signals()
    value, note = metrics.stft_distance(ref.astype(np.float64), deg.astype(np.float64), RATE)
    assert note is None
    oracle = _auraloss(metrics.STFT_RESOLUTIONS)
    expected = oracle(torch.from_numpy(deg.T[None].astype(np.float64)),
                      torch.from_numpy(ref.T[None].astype(np.float64)))
    assert value == pytest.approx(float(expected), rel=1e-6)   # its window is float32
    assert value > 0.05                                      # the noise is seen, not floored


@pytest.mark.parametrize("frame_size", [64, 512])
def test_training_loss_is_auraloss_mr_stft_at_its_resolutions(frame_size):
    ref, deg = _signals(seconds=0.2, channels=3, seed=frame_size)
    out, target = torch.from_numpy(deg.T.copy()), torch.from_numpy(ref.T.copy())
    resolutions = training.stft_resolutions(frame_size)
    assert resolutions == [(frame_size // 2, frame_size // 8), (frame_size, frame_size // 4),
                           (2 * frame_size, frame_size // 2)]
    oracle = _auraloss(resolutions)(out[:, None], target[:, None])
    assert float(training.mr_stft(out, target, frame_size)) == pytest.approx(float(oracle),
                                                                            rel=1e-5)


def test_mr_stft_is_zero_for_identity_and_has_a_gradient():
    ref, _ = _signals(seconds=0.1, channels=1)
    target = torch.from_numpy(ref.T.astype(np.float64))
    assert float(mr_stft_distance(target, target, [(256, 64)])) == 0.0
    output = (target * 0.9).requires_grad_()
    mr_stft_distance(output, target, [(256, 64)]).backward()
    assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0


@pytest.mark.parametrize("rate,n_fft,bands", [(48000, 2048, 80), (16000, 512, 40)])
def test_mel_filter_bank_is_librosas_htk_bank(rate, n_fft, bands):
    ours = metrics.mel_filter_bank(rate, n_fft, bands)
    theirs = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=bands, fmin=0.0, fmax=rate / 2,
                                 htk=True, norm=None, dtype=np.float64)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_lsd_matches_a_direct_formula():
    ref, deg = _signals(seconds=0.3, channels=1)
    value, _ = metrics.lsd_db(ref.astype(np.float64), deg.astype(np.float64), RATE)
    # independent: scipy.signal.stft's one-sided power with the same frames, per frame the RMS
    # over frequency of the dB difference, then the mean
    import scipy.signal as sig
    pr, pd = (np.abs(sig.stft(x[:, 0].astype(np.float64), nperseg=2048, noverlap=1536, window="hann",
                              boundary=None, padded=True)[2]) ** 2 for x in (ref, deg))
    floor = 1e-10 * pr.max()
    diff = 10 * np.log10((pr + floor) / (pd + floor))
    expected = np.mean(np.sqrt(np.mean(diff ** 2, axis=0)))
    assert value == pytest.approx(expected, rel=1e-9)
    assert 0.5 < value < 40

"""Quality metrics of a processed signal against its reference (`run.py evaluate`).

Each metric takes the reference and the processed signal, float32 ``(frames, channels)`` at one
sample rate and aligned sample for sample, and gives a number, or None and a note saying why it
cannot apply. Written here only what no package does: SNR, SI-SDR, log-spectral distance, mel
distance and multi-resolution STFT distance (numpy and scipy). The perceptual ones come from
the ``quality`` extra, imported only when asked for:

    pesq         ITU-T P.862.2 wide band (package pesq), mono mix resampled to 16 kHz (soxr);
                 speech only
    stoi         short-time objective intelligibility (package pystoi, which resamples to
                 10 kHz itself), mono mix; speech only
    visqol       ViSQOL v3 audio mode (package visqol-python, SVR model) on the mono mix
                 resampled to 48 kHz, on the first VISQOL_SECONDS seconds only (about 1-2 s of
                 compute per second of audio)
    loudness_lu  integrated loudness (ITU-R BS.1770, package pyloudnorm) of the processed
                 signal minus the reference's, in LU

``NAMES`` is the order of the columns; ``CHEAP`` those that need no extra.
"""
from __future__ import annotations

import importlib
import importlib.metadata

import numpy as np
from scipy import signal as sig

from cosine_host.errors import UserError

NAMES = ("snr_db", "si_sdr_db", "lsd_db", "mel_distance", "stft_distance", "pesq", "stoi",
         "visqol", "loudness_lu")
CHEAP = NAMES[:5]
SPEECH_ONLY = ("pesq", "stoi")
EXTRA_HINT = "pip install 'cosine-host[quality]'"
VISQOL_SECONDS = 8.0
PESQ_RATE = 16000
VISQOL_RATE = 48000
STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))   # (n_fft, hop) for stft_distance
MEL_BANDS = 80

MODES = {
    "snr_db": ("numpy", "10 log10 of reference energy over error energy, all channels"),
    "si_sdr_db": ("numpy", "scale-invariant SDR per channel, averaged"),
    "lsd_db": ("scipy", "log-spectral distance, 2048-point STFT, hop 512, RMS over frequency, "
                        "mean over frames and channels"),
    "mel_distance": ("scipy", f"mean |log10 mel| difference, {MEL_BANDS} mel bands, 2048-point "
                              f"STFT, hop 512"),
    "stft_distance": ("torch", "multi-resolution STFT distance: spectral convergence + mean "
                               "|ln magnitude| difference, averaged over n_fft 512/1024/2048 "
                               "(hop a quarter), the training loss's definition"),
    "pesq": ("pesq", "wide band (P.862.2) at 16 kHz, mono mix; speech only"),
    "stoi": ("pystoi", "STOI (not extended), mono mix; speech only"),
    "visqol": ("visqol-python", f"audio mode at 48 kHz (SVR model), mono mix, first "
                                f"{VISQOL_SECONDS:g} s"),
    "loudness_lu": ("pyloudnorm", "integrated loudness BS.1770, processed minus reference, LU"),
}
_MODULES = {"pesq": "pesq", "pystoi": "pystoi", "visqol-python": "visqol",
            "pyloudnorm": "pyloudnorm"}


def check_names(text: str | None) -> tuple[str, ...]:
    """The metric names in a comma-separated ``--metrics`` value (None: all), in NAMES order."""
    if text is None:
        return NAMES
    asked = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in asked if t not in NAMES]
    if unknown or not asked:
        raise UserError(f"--metrics {text!r}: unknown metric {unknown[0] if unknown else ''!r}; "
                        f"allowed: a comma-separated list of {', '.join(NAMES)}")
    return tuple(n for n in NAMES if n in asked)


def _module(package: str):
    try:
        return importlib.import_module(_MODULES[package])
    except ImportError:
        raise UserError(f"the metrics need the package {package}, which is not installed: "
                        f"{EXTRA_HINT}") from None


def check_available(names) -> None:
    """UserError naming the extra when a metric's package is missing (before any work)."""
    for name in names:
        package = MODES[name][0]
        if package in _MODULES:
            _module(package)


def describe(names) -> dict:
    """``{name: {"package", "version", "mode"}}`` for the metrics ``names``."""
    out = {}
    for name in names:
        package, mode = MODES[name]
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = None
        out[name] = {"package": package, "version": version, "mode": mode}
    return out


def measure(reference: np.ndarray, processed: np.ndarray, samplerate: int, names,
            speech: bool) -> tuple[dict, list[str]]:
    """Every metric in ``names`` of ``processed`` against ``reference``.

    Returns ({name: float or None}, notes): a metric that cannot apply is None with one note
    ``"name: why"``; ``speech`` False makes the speech-only metrics None with a note.
    """
    ref = np.asarray(reference, np.float64)
    deg = np.asarray(processed, np.float64)
    values, notes = {}, []
    for name in names:
        if name in SPEECH_ONLY and not speech:
            values[name] = None
            notes.append(f"{name}: not speech; {name} applies to speech only")
            continue
        try:
            value, note = _FUNCTIONS[name](ref, deg, samplerate)
        except UserError:
            raise
        except Exception as e:      # a package's refusal is a note, not an abort
            value, note = None, f"{type(e).__name__}: {' '.join(str(e).split()) or 'failed'}"
        if value is not None and not np.isfinite(value):
            value, note = None, note or "not finite"
        values[name] = None if value is None else float(value)
        if note:
            notes.append(f"{name}: {note}")
    return values, notes


# --- by hand ----------------------------------------------------------------------------------

def snr_db(ref, deg, samplerate):
    signal, error = float(np.square(ref).sum()), float(np.square(deg - ref).sum())
    if signal == 0:
        return None, "the reference is silent"
    if error == 0:
        return None, "identical to the reference (infinite)"
    return 10 * np.log10(signal / error), None


def si_sdr_db(ref, deg, samplerate):
    values = []
    for c in range(ref.shape[1]):
        r, d = ref[:, c] - ref[:, c].mean(), deg[:, c] - deg[:, c].mean()
        energy = float(r @ r)
        if energy == 0:
            continue
        target = (d @ r) / energy * r
        noise = d - target
        if float(noise @ noise) == 0:
            return None, "identical to the reference (infinite)"
        values.append(10 * np.log10(float(target @ target) / float(noise @ noise)))
    if not values:
        return None, "the reference is silent"
    return float(np.mean(values)), None


def _spectra(x, n_fft, hop):
    """|STFT| of every channel: (channels, bins, frames)."""
    _, _, z = sig.stft(x.T, nperseg=n_fft, noverlap=n_fft - hop, window="hann", boundary=None,
                       padded=True)
    return np.abs(z)


def lsd_db(ref, deg, samplerate):
    if ref.shape[0] < 2048:
        return None, "shorter than one 2048-sample frame"
    pr, pd = (np.square(_spectra(x, 2048, 512)) for x in (ref, deg))
    floor = 1e-10 * max(pr.max(), 1e-20)
    diff = 10 * np.log10(pr + floor) - 10 * np.log10(pd + floor)
    return float(np.sqrt(np.mean(diff ** 2, axis=1)).mean()), None


def mel_filter_bank(samplerate, n_fft, bands):
    """Triangular filters on the HTK mel scale from 0 Hz to rate / 2, unnormalised: (bands,
    n_fft // 2 + 1) weights for an n_fft-point spectrum at ``rate`` Hz (librosa.filters.mel
    with htk=True, norm=None)."""
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)
    edges = hz(np.linspace(mel(0), mel(samplerate / 2), bands + 2))
    freqs = np.linspace(0, samplerate / 2, n_fft // 2 + 1)
    bank = np.zeros((bands, freqs.size))
    for i in range(bands):
        lo, mid, hi = edges[i:i + 3]
        bank[i] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return bank


def mel_distance(ref, deg, samplerate):
    if ref.shape[0] < 2048:
        return None, "shorter than one 2048-sample frame"
    bank = mel_filter_bank(samplerate, 2048, MEL_BANDS)
    mr, md = (np.einsum("mb,cbt->cmt", bank, _spectra(x, 2048, 512)) for x in (ref, deg))
    return float(np.abs(np.log10(mr + 1e-5) - np.log10(md + 1e-5)).mean()), None


def stft_distance(ref, deg, samplerate):
    """cosine_host.models.spectral.mr_stft_distance at STFT_RESOLUTIONS, in float64, over the
    resolutions whose n_fft fits the signal."""
    import torch
    from cosine_host.models.spectral import mr_stft_distance
    resolutions = [(n_fft, hop) for n_fft, hop in STFT_RESOLUTIONS if ref.shape[0] >= n_fft]
    if not resolutions:
        return None, "shorter than one 512-sample frame"
    if not np.any(ref):
        return None, "the reference is silent"
    r, d = (torch.from_numpy(np.ascontiguousarray(x.T, np.float64)) for x in (ref, deg))
    return float(mr_stft_distance(d, r, resolutions)), None


# --- from packages ----------------------------------------------------------------------------

def _mono(x, samplerate, to_rate):
    import soxr
    mono = x.mean(axis=1)
    return mono if samplerate == to_rate else soxr.resample(mono, samplerate, to_rate, quality="VHQ")


def pesq(ref, deg, samplerate):
    module = _module("pesq")
    r, d = _mono(ref, samplerate, PESQ_RATE), _mono(deg, samplerate, PESQ_RATE)
    if r.size < PESQ_RATE // 4:
        return None, "shorter than 0.25 s"
    return module.pesq(PESQ_RATE, r.astype(np.float32), d.astype(np.float32), "wb"), None


def stoi(ref, deg, samplerate):
    module = _module("pystoi")
    r, d = ref.mean(axis=1), deg.mean(axis=1)
    return module.stoi(r, d, samplerate, extended=False), None


_VISQOL = {}


def visqol(ref, deg, samplerate):
    module = _module("visqol-python")
    api = _VISQOL.get("audio")
    if api is None:
        api = _VISQOL["audio"] = module.VisqolApi()
        api.create(mode="audio")
    r, d = _mono(ref, samplerate, VISQOL_RATE), _mono(deg, samplerate, VISQOL_RATE)
    limit = int(VISQOL_SECONDS * VISQOL_RATE)
    note = None
    if r.size > limit:
        r, d = r[:limit], d[:limit]
        note = f"first {VISQOL_SECONDS:g} s measured"
    if r.size < VISQOL_RATE:
        return None, "shorter than 1 s"
    return api.measure_from_arrays(r, d, VISQOL_RATE).moslqo, note


def loudness_lu(ref, deg, samplerate):
    module = _module("pyloudnorm")
    if ref.shape[0] < int(0.4 * samplerate):
        return None, "shorter than one 400 ms gating block"
    meter = module.Meter(samplerate)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = meter.integrated_loudness(ref), meter.integrated_loudness(deg)
    if not (np.isfinite(a) and np.isfinite(b)):
        return None, "silent (loudness -inf)"
    return b - a, None


_FUNCTIONS = {"snr_db": snr_db, "si_sdr_db": si_sdr_db, "lsd_db": lsd_db,
              "mel_distance": mel_distance, "stft_distance": stft_distance, "pesq": pesq,
              "stoi": stoi, "visqol": visqol, "loudness_lu": loudness_lu}

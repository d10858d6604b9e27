"""The engine's numeric contract: what processors receive depends on the signal and the
parameters only, not on how the signal was cut into calls (1-sample blocks, varying blocks, a
whole-signal render), on the kernel, the CPU or the BLAS library; outputs after the decoder
agree within 1e-6 at full scale (with processors the decoder sums in float64 and rounds once, so
they agree to the last bit or so). Matrix and DCT paths, float32 and float64."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import make_engine, noise, recording_chain, render_in_blocks
from cosine_host.engine.exact import ExactEncoder, TorchExactEncoder, slice_bits

PATHS = {"matrix": True, "dct": False}          # name -> trained (matrix path) or at init (DCT)
QUANTIZE = {"type": "quantize", "bits": 6}


def recorded_render(path, dtype, signal, sizes=None, chunk=1 << 19, backend="auto",
                    blocksize=0, specs=(QUANTIZE,)):
    """(output, coefficients seen) of ``signal`` rendered in blocks of ``sizes`` (None: one
    whole-signal render in ``chunk``-frame pieces)."""
    chain, recorder = recording_chain(*specs)
    engine = make_engine(blocksize, signal.shape[1], (f"model.dtype={dtype}",), chain,
                         trained=PATHS[path], backend=backend)
    assert engine.transform == ("matmul" if PATHS[path] or backend == "torch" else "dct")
    if sizes is None:
        out = engine.render(signal, chunk_frames=chunk)
    else:
        out = render_in_blocks(engine, signal, sizes)
    seen = recorder.coefficients(signal.shape[1], engine.model.m)
    # every frame of the signal and its latency flush, each seen once
    assert seen.shape[0] == (signal.shape[0] + engine.latency_samples) // engine.hop
    return out, seen


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=12, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=1500), min_size=1, max_size=12),
       seed=st.integers(min_value=0, max_value=2 ** 31))
def test_coefficients_do_not_depend_on_the_partition(path, dtype, sizes, seed):
    signal = noise(3000 + seed % 2000, 2, seed)
    whole, seen_whole = recorded_render(path, dtype, signal)
    parted, seen_parted = recorded_render(path, dtype, signal, sizes)
    assert seen_whole.shape == seen_parted.shape
    np.testing.assert_array_equal(seen_parted, seen_whole)
    np.testing.assert_allclose(parted, whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", PATHS)
def test_one_sample_blocks_and_small_chunks(path, dtype):
    signal = noise(1700, 1, seed=3)
    whole, seen_whole = recorded_render(path, dtype, signal)
    for sizes, chunk in (([1], None), ([1, 2, 3, 300, 7], None), (None, 257), (None, 4096)):
        out, seen = recorded_render(path, dtype, signal, sizes, chunk=chunk or 1 << 19)
        np.testing.assert_array_equal(seen, seen_whole)
        np.testing.assert_allclose(out, whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("blocksize", [64, 256, 441])
def test_live_blocks_equal_offline(blocksize):
    """A live engine (fixed blocks) sees what the offline render sees, frame for frame."""
    signal = noise(blocksize * 40, 2, seed=blocksize)
    _, seen_offline = recorded_render("matrix", "float32", signal)
    chain, recorder = recording_chain(QUANTIZE)
    engine = make_engine(blocksize, 2, processors=chain, trained=True)
    for i in range(0, signal.shape[0], blocksize):
        engine.process(signal[i:i + blocksize])
    live = recorder.coefficients(2, 512)
    # the live engine has computed the frames whose last sample has arrived
    np.testing.assert_array_equal(live, seen_offline[:live.shape[0]])
    assert live.shape[0] >= seen_offline.shape[0] - 3


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_kernel_sees_the_same_coefficients(dtype):
    """The CUDA code path, run on the CPU with another BLAS (torch's), sees the same bits."""
    signal = noise(5000, 2, seed=8)
    out_np, seen_np = recorded_render("matrix", dtype, signal, [256])
    out_torch, seen_torch = recorded_render("matrix", dtype, signal, [256], backend="torch")
    np.testing.assert_array_equal(seen_torch, seen_np)
    np.testing.assert_allclose(out_torch, out_np, atol=1e-6 if dtype == "float32" else 1e-12,
                               rtol=0)


def test_quantizer_decisions_do_not_flip():
    """The failure the contract prevents: a quantizer step decided differently by partition."""
    signal = noise(6000, 1, seed=4)
    specs = ({"type": "quantize", "bits": 8},)
    whole, _ = recorded_render("matrix", "float32", signal, specs=specs)
    for sizes in ([1], [22], [32], [3, 1000]):
        parted, _ = recorded_render("matrix", "float32", signal, sizes, specs=specs)
        np.testing.assert_allclose(parted, whole, atol=1e-6, rtol=0)


# --- the exact encoder, against independent arithmetic ------------------------------------------

def _rounded(values: np.ndarray, axis: int, bits: int, slices: int) -> np.ndarray:
    """``values`` kept to ``slices`` x ``bits`` bits below the power of two above the peak along
    ``axis`` (the exact encoder's fixed point), computed here with Python integers."""
    peaks = np.abs(values).max(axis=axis, keepdims=True)
    exponents = np.frexp(peaks)[1]
    out = np.zeros_like(values, dtype=np.float64)
    for index in np.ndindex(values.shape):
        e = int(exponents[tuple(0 if k == axis else i for k, i in enumerate(index))])
        scaled = float(values[index]) * 2.0 ** (bits - e)
        kept = 0.0
        for s in range(slices):
            part = round(scaled)                      # Python rounds half to even, like rint
            kept += part * 2.0 ** (-bits * s)
            scaled = (scaled - part) * 2.0 ** bits
        out[index] = kept * 2.0 ** (e - bits)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_encoder_is_the_correctly_rounded_product(dtype):
    """Against math.fsum over the fixed-point frames and matrix: a float32 model's coefficients
    are the correctly rounded exact products, bit for bit; a float64 model's keep every bit of
    frames and matrix and are within a few float64 units of the exact sum."""
    rng = np.random.default_rng(0)
    n, m = 64, 16
    enc_t = (rng.standard_normal((n, m)) / 8).astype(dtype)
    frames = rng.uniform(-1, 1, (9, n)).astype(dtype)
    frames[3] *= 1e-6                       # a quiet frame keeps its own precision
    frames[4] = 0                           # silence stays exactly zero
    got = np.empty((9, m), dtype)
    ExactEncoder(enc_t, dtype)(frames, got)
    bits = slice_bits(n)
    slices = 1 if dtype == np.float32 else 3
    x, e = _rounded(frames, 1, bits, slices), _rounded(enc_t, 0, bits, slices)
    if dtype == np.float64:
        np.testing.assert_array_equal(x, frames)
        np.testing.assert_array_equal(e, enc_t)
    want = np.array([[math.fsum(x[i] * e[:, j]) for j in range(m)] for i in range(9)])
    if dtype == np.float32:
        np.testing.assert_array_equal(got, want.astype(np.float32))
    else:
        # nine slice products summed in float64: a few units of the row's largest value
        assert np.all(np.abs(got - want) <= 4 * np.spacing(np.abs(want).max(axis=1, keepdims=True)))
    assert not got[4].any()
    # the fixed point costs about what float32 products cost
    plain = frames.astype(np.float64) @ enc_t.astype(np.float64)
    assert np.abs(got - plain).max() <= 16 * np.finfo(np.float32).eps * np.abs(plain).max()


@pytest.mark.parametrize("dtype,torch_dtype", [(np.float32, torch.float32),
                                               (np.float64, torch.float64)])
def test_exact_encoder_numpy_equals_torch(dtype, torch_dtype):
    rng = np.random.default_rng(1)
    enc_t = (rng.standard_normal((512, 300)) / 20).astype(dtype)
    frames = (rng.standard_normal((7, 2, 512)) * rng.uniform(1e-8, 10, (7, 2, 1))).astype(dtype)
    got = np.empty((7, 2, 300), dtype)
    ExactEncoder(enc_t, dtype)(frames, got)
    other = TorchExactEncoder(enc_t, torch_dtype, torch.device("cpu"))(torch.from_numpy(frames))
    np.testing.assert_array_equal(other.numpy(), got)


def test_slices_stay_exact_in_float64():
    for n in (16, 512, 4096, 65536):
        bits = slice_bits(n)
        assert n * 2.0 ** (2 * bits) <= 2.0 ** 53         # every partial sum is an exact integer
        assert 3 * bits >= 53                             # three slices hold float64's 53 bits

"""Coefficient processors: quantizer, masks, spec checking, plugins, chain."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cosine_host.models.processors import plugins
from cosine_host.models.processors import registry as P
from cosine_host.models.processors.registry import Band, Quantize, Threshold, TopK, build, build_chain, check_spec

# plugins_example lives next to this file; plugin specs name it as "plugins_example:Gain"
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

M = 64
SAMPLERATE, HOP = 48000, 256
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gaussian(frames=50, channels=2, m=M, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(frames, channels, m, generator=g, dtype=dtype).to(device)


def float16_up(peak: torch.Tensor) -> torch.Tensor:
    """The smallest float16 >= peak, computed independently of the library (via numpy)."""
    p = peak.double().cpu().numpy()
    h = p.astype(np.float16)
    h = np.where(h.astype(np.float64) < p, np.nextafter(h, np.float16(np.inf)), h)
    return torch.from_numpy(h.astype(np.float64))


# ----------------------------------------------------------------------------- quantize

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8, 12, 16, 17, 20, 24])
def test_quantize_error_at_most_half_a_step(bits, dtype):
    g = torch.Generator().manual_seed(bits)
    # frame scales from 1e-3 to 1e3, so the per-frame scale matters
    scales = 10.0 ** (torch.rand(40, 2, 1, generator=g, dtype=torch.float64) * 6 - 3)
    x = (torch.randn(40, 2, M, generator=g, dtype=torch.float64) * scales).to(dtype)
    y = Quantize(bits)(x)
    assert y.shape == x.shape and y.dtype == dtype

    levels = max(1, 2 ** (bits - 1) - 1)
    step = float16_up(x.abs().amax(-1, keepdim=True)) / levels
    err = (y.double() - x.double()).abs()
    rounding = 4 * torch.finfo(dtype).eps * x.double().abs()   # the arithmetic itself, not the quantizer
    assert (err <= step / 2 + rounding).all()
    # outputs sit on the grid of the float16 scale: integer multiples of step, within +-levels
    symbols = y.double() / step
    assert (symbols - symbols.round()).abs().max() < 1e-6 * levels + 1e-9
    assert symbols.round().abs().max() <= levels


def test_quantize_is_mid_tread():
    x = torch.tensor([[[0.0, 1.0, -1.0, 0.0, 0.4 / 127, -0.4 / 127, 0.6 / 127]]])
    y = Quantize(8)(x)
    assert y[0, 0, 0] == 0 and y[0, 0, 3] == 0                  # zero maps to zero
    assert y[0, 0, 4] == 0 and y[0, 0, 5] == 0                  # within half a step of zero
    assert y[0, 0, 6] == pytest.approx(1 / 127, rel=1e-3)       # one step
    assert y[0, 0, 1] == 1.0 and y[0, 0, 2] == -1.0             # the peak (a float16) is a level
    silent = Quantize(8)(torch.zeros(3, 2, M))
    assert torch.equal(silent, torch.zeros(3, 2, M))            # all-zero frame: no NaN


def test_quantize_levels_per_frame():
    x = gaussian(frames=20, m=512)
    for bits, most in [(1, 3), (2, 3), (3, 7), (4, 15)]:
        y = Quantize(bits)(x)
        distinct = max(len(torch.unique(y[f, c])) for f in range(20) for c in range(2))
        assert distinct <= most


def test_quantize_straight_through_gradient():
    x = gaussian().requires_grad_(True)
    weights = gaussian(seed=1)
    y = Quantize(4)(x)
    (y * weights).sum().backward()
    assert torch.equal(x.grad, weights)                          # d y / d x = identity
    with torch.no_grad():
        assert torch.equal(y.detach(), Quantize(4)(x))           # same values as without grad


def test_quantize_bitrate():
    x = gaussian(frames=400, channels=2, m=M)
    frame_rate = SAMPLERATE / HOP
    rates = {}
    for bits in (2, 8):
        q = Quantize(bits)
        q.prepare(SAMPLERATE, HOP, M)
        y = q(x)
        s = q.stats()
        assert s["bits"] == bits and s["frames"] == 400
        # the entropy is the empirical entropy of the symbols, computed here independently
        _, counts = np.unique(np.round(y.numpy() / np.abs(y.numpy()).max(-1, keepdims=True)
                                       * max(1, 2 ** (bits - 1) - 1)), return_counts=True)
        p = counts / counts.sum()
        assert s["entropy_bits"] == pytest.approx(-(p * np.log2(p)).sum(), rel=1e-9)
        expected = (s["entropy_bits"] * M + 16) * frame_rate * 2 / 1000
        assert s["bitrate_kbps"] == pytest.approx(expected, rel=1e-9)
        assert 0 < s["bitrate_kbps"] <= (bits * M + 16) * frame_rate * 2 / 1000
        rates[bits] = s["bitrate_kbps"]
    assert rates[2] < rates[8] / 3


def test_quantize_bitrate_above_16_bits_is_a_tight_upper_bound():
    x = gaussian(frames=200, m=M)
    q = Quantize(24)
    q.prepare(SAMPLERATE, HOP, M)
    y = q(x)
    levels = 2 ** 23 - 1
    symbols = np.round(y.double().numpy() / np.abs(y.double().numpy()).max(-1, keepdims=True) * levels)
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    exact = -(p * np.log2(p)).sum()
    s = q.stats()
    assert exact <= s["entropy_bits"] <= 24
    # high-rate theory for a Gaussian: h(X) - log2(step), with step = peak / levels (~3 sigma)
    assert s["entropy_bits"] > 20
    assert q._hist.numel() <= 2 ** 16 + 1                        # bounded memory at 24 bits


def test_quantize_memory_is_bounded_over_time():
    q = Quantize(8)
    q.prepare(SAMPLERATE, HOP, M)
    for seed in range(200):
        q(gaussian(frames=1, seed=seed))
    assert q._hist.numel() == 255 and q.stats()["frames"] == 200


def test_quantize_bits_change_between_calls():
    q = Quantize(8)
    q.prepare(SAMPLERATE, HOP, M)
    x = gaussian(frames=10, channels=1)
    assert len(torch.unique(q(x)[0, 0])) > 30
    q.bits = 2
    assert len(torch.unique(q(x)[0, 0])) <= 3
    s = q.stats()
    assert s["bits"] == 2 and s["frames"] == 20
    # the entropy covers both settings, each over its own symbols
    alone = {}
    for bits in (8, 2):
        fresh = Quantize(bits)
        fresh(x)
        alone[bits] = fresh.stats()["entropy_bits"]
    assert s["entropy_bits"] == pytest.approx((alone[8] + alone[2]) / 2, rel=1e-12)
    with pytest.raises(ValueError, match=r"^bits = 30: out of range"):
        q.bits = 30
    assert q.bits == 2


def test_quantize_survives_nan_and_huge_values():
    x = gaussian(frames=2)
    x[0, 0, 3] = math.nan
    x[1, 1, :] *= 1e6                                             # beyond float16: saturates
    q = Quantize(8)
    q.prepare(SAMPLERATE, HOP, M)
    y = q(x)
    assert torch.isnan(y[0, 0]).any() and torch.isfinite(y[1]).all()
    assert y[1, 1].abs().max() == 65504.0
    assert q.stats()["frames"] == 2


def test_quantize_reset_and_unprepared_stats():
    q = Quantize(8)
    assert q.stats()["bitrate_kbps"] is None                     # frame rate unknown before prepare
    q.prepare(SAMPLERATE, HOP, M)
    assert q.stats() == {"bitrate_kbps": 0.0, "entropy_bits": 0.0, "bits": 8, "frames": 0}
    q(gaussian())
    q.reset()
    assert q.stats()["frames"] == 0 and q.stats()["bitrate_kbps"] == 0.0


# ----------------------------------------------------------------------------- masks

def test_band_keeps_exactly_lo_to_hi():
    x = gaussian()
    band = Band(lo=5, hi=20)
    y = band(x)
    assert torch.equal(y[..., 5:20], x[..., 5:20])
    assert (y[..., :5] == 0).all() and (y[..., 20:] == 0).all()
    assert band.stats()["kept_fraction"] == pytest.approx(15 / M)
    band.lo, band.hi = 0, M                                      # changed between calls
    assert torch.equal(band(x), x)
    assert band.stats()["kept_fraction"] == pytest.approx((15 / M + 1) / 2)


def test_topk_keeps_the_k_largest_per_frame_and_channel():
    x = gaussian()
    k = 7
    topk = TopK(k)
    y = topk(x)
    nonzero = y != 0
    assert (nonzero.sum(-1) == k).all()
    assert torch.equal(y[nonzero], x[nonzero])
    # every kept magnitude is >= every dropped one in the same frame and channel
    smallest_kept = torch.where(nonzero, x.abs(), math.inf).amin(-1)
    largest_dropped = torch.where(nonzero, -math.inf, x.abs()).amax(-1)
    assert (smallest_kept >= largest_dropped).all()
    assert topk.stats()["kept_fraction"] == pytest.approx(k / M)
    topk.k = M
    assert torch.equal(topk(x), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("route", ["torch", "numpy"])
def test_topk_keeps_the_lowest_indices_among_ties_and_nan_above_inf(route, dtype):
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, size=(3, 2, 40)).astype(dtype)        # ties at every magnitude
    x[1, 0, [9, 30]] = np.nan
    x[1, 0, [3, 31]] = [np.inf, -np.inf]
    x[2, 1, :] = 0
    for k in (1, 2, 3, 5, 17, 40):
        topk = TopK(k)
        t = torch.from_numpy(x.copy())
        if route == "torch":
            y = topk._torch(t).numpy()
        else:
            with torch.inference_mode():
                y = topk(t).numpy()
        for f, ch in np.ndindex(3, 2):
            row = x[f, ch]
            # rank: NaN first, then by magnitude (inf included), then by index
            rank = sorted(range(40), key=lambda i: (not math.isnan(row[i]),
                                                    0 if math.isnan(row[i]) else -abs(row[i]), i))
            kept = rank[:k]
            expected = np.zeros(40, dtype)
            expected[kept] = row[kept]
            assert np.array_equal(y[f, ch], expected, equal_nan=True), (k, f, ch)


def test_threshold_gates_below_peak_minus_db():
    x = gaussian()
    gate = Threshold(db=-6.0)
    y = gate(x)
    floor = x.abs().amax(-1, keepdim=True) * 10 ** (-6.0 / 20)
    keep = x.abs() >= floor
    assert torch.equal(y[keep], x[keep]) and (y[~keep] == 0).all()
    assert 0 < keep.float().mean() < 1
    assert gate.stats()["kept_fraction"] == pytest.approx(keep.float().mean().item())
    gate.db = 0.0                                                # only the peak survives
    assert ((gate(x) != 0).sum(-1) == 1).all()
    gate.reset()
    assert gate.stats()["kept_fraction"] == 0.0


@pytest.mark.parametrize("proc", [Band(3, 30), TopK(5), Threshold(-3.0)], ids=["band", "topk", "threshold"])
def test_masks_pass_gradient_to_kept_only(proc):
    x = gaussian().requires_grad_(True)
    y = proc(x)
    y.sum().backward()
    kept = (y != 0).to(x.dtype)
    assert torch.equal(x.grad, kept)


# ----------------------------------------------------------------------------- every built-in

ALL_SPECS = [{"type": "quantize", "bits": 6}, {"type": "band", "lo": 2, "hi": 9},
             {"type": "topk", "k": 4}, {"type": "threshold", "db": -20}]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s["type"])
def test_shapes_dtypes_empty_frames(spec, dtype, device):
    proc = build(check_spec(spec, M))
    proc.prepare(SAMPLERATE, HOP, M)
    empty = torch.zeros(0, 2, M, dtype=dtype, device=device)
    out = proc(empty)
    assert out.shape == (0, 2, M) and out.dtype == dtype and out.device == empty.device
    x = gaussian(dtype=dtype, device=device)
    out = proc(x)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert proc.latency_samples == 0
    stats = proc.stats()
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in stats.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s["type"])
def test_forward_does_not_synchronise_the_gpu(spec):
    proc = build(check_spec(spec, M))
    proc.prepare(SAMPLERATE, HOP, M)
    x = gaussian(device="cuda")
    proc(x)                                                      # first call allocates
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            proc(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ----------------------------------------------------------------------------- check_spec

def test_check_spec_fills_defaults():
    assert check_spec({"type": "quantize"}, M) == {"type": "quantize", "bits": 8}
    assert check_spec({"type": "band"}, M) == {"type": "band", "lo": 0, "hi": M}
    assert check_spec({"type": "band", "lo": 4}, M) == {"type": "band", "lo": 4, "hi": M}
    assert check_spec({"type": "threshold"}, M) == {"type": "threshold", "db": -60.0}
    assert check_spec({"type": "threshold", "db": -10}, M) == {"type": "threshold", "db": -10.0}
    assert check_spec({"type": "topk", "k": M}, M) == {"type": "topk", "k": M}
    assert type(check_spec({"type": "quantize"}, M)) is dict


@pytest.mark.parametrize("spec, message", [
    ({"type": "foo"}, "type = 'foo': unknown processor; allowed: quantize | learned_quantize | "
                      "band | topk | threshold | codec | package.module:ClassName"),
    ({"bits": 8}, "type: missing; allowed: quantize"),
    ({"type": 3}, "type = 3: not a string"),
    ({"type": "quantize", "bits": "8"}, "bits = '8': not an integer; allowed: an integer in 1..24"),
    ({"type": "quantize", "bits": 8.0}, "bits = 8.0: not an integer"),
    ({"type": "quantize", "bits": True}, "bits = True: a boolean, not an integer"),
    ({"type": "quantize", "bits": 30}, "bits = 30: out of range; allowed: an integer in 1..24"),
    ({"type": "quantize", "bits": 0}, "bits = 0: out of range"),
    ({"type": "topk", "k": 3, "q": 1}, "q: unknown key for topk; allowed: type, k"),
    ({"type": "topk"}, "k: missing for topk"),
    ({"type": "topk", "k": M + 1}, f"k = {M + 1}: out of range; allowed: an integer in 1..{M}"),
    ({"type": "topk", "k": 0}, "k = 0: out of range"),
    ({"type": "band", "lo": 10, "hi": 10}, "lo = 10: must be below hi (10); allowed: an integer in 0..9"),
    ({"type": "band", "hi": M + 1}, f"hi = {M + 1}: out of range; allowed: an integer in 1..{M}"),
    ({"type": "band", "lo": -1}, "lo = -1: out of range"),
    ({"type": "threshold", "db": 3}, "db = 3: out of range; allowed: a finite number <= 0"),
    ({"type": "threshold", "db": float("-inf")}, "db = -inf: out of range"),
    ({"type": "threshold", "db": "-6"}, "db = '-6': not a number"),
    ({"type": "threshold", "db": False}, "db = False: a boolean, not a number"),
    ("quantize", "type: missing, the entry 'quantize' is not a mapping"),
    ([{"type": "quantize"}], "type: missing, the entry [{'type': 'quantize'}] is not a mapping"),
])
def test_check_spec_errors(spec, message):
    with pytest.raises((ValueError, TypeError)) as info:
        check_spec(spec, M)
    assert str(info.value).startswith(message)
    assert "; allowed: " in str(info.value)


# ----------------------------------------------------------------------------- plugins

def test_plugin_gain_with_only_forward():
    spec = check_spec({"type": "plugins_example:Gain", "gain": 0.5}, M)
    assert spec == {"type": "plugins_example:Gain", "gain": 0.5}
    proc = build(spec)
    proc.prepare(SAMPLERATE, HOP, M)                             # missing methods default
    proc.reset()
    x = gaussian()
    assert torch.equal(proc(x), x * 0.5)
    assert proc.stats() == {} and proc.latency_samples == 0
    proc.gain = 2.0                                              # reaches the plugin
    assert proc.inner.gain == 2.0 and torch.equal(proc(x), x * 2.0)
    assert isinstance(proc, torch.nn.Module)


def test_plugin_full_surface_is_forwarded():
    chain = build_chain([check_spec({"type": "plugins_example:PeakMeter", "latency": 32}, M),
                         check_spec({"type": "quantize", "bits": 8}, M)])
    chain.prepare(SAMPLERATE, HOP, M)
    assert chain[0].prepared == (SAMPLERATE, HOP, M)
    assert chain.latency_samples == 32
    x = gaussian()
    chain(x)
    meter = chain.stats()[0]
    assert meter == {"type": "plugins_example:PeakMeter", "peak": pytest.approx(x.abs().max().item())}
    assert type(meter["peak"]) is float                          # tensor turned into a plain float
    chain.reset()
    assert chain.stats()[0]["peak"] == 0.0


def test_plugin_that_changes_shape_fails_with_its_name():
    proc = build(check_spec({"type": "plugins_example:Truncate"}, M))
    with pytest.raises(RuntimeError, match="'plugins_example:Truncate' returned"):
        proc(gaussian())


@pytest.mark.parametrize("spec, error, message", [
    ({"type": "no_such_module_xyz:Gain"}, ValueError,
     "type = 'no_such_module_xyz:Gain': cannot import module 'no_such_module_xyz'"),
    ({"type": "plugins_example:Missing"}, ValueError,
     "type = 'plugins_example:Missing': module 'plugins_example' has no 'Missing'"),
    ({"type": "plugins_example:NotAModule"}, TypeError,
     "type = 'plugins_example:NotAModule': 'NotAModule' is a class, not a torch.nn.Module subclass"),
    ({"type": "plugins_example:make_gain"}, TypeError,
     "type = 'plugins_example:make_gain': 'make_gain' is a function, not a torch.nn.Module"),
    ({"type": "plugins_example:Gain", "volume": 2}, ValueError,
     "volume: unknown key for plugins_example:Gain; allowed: type, gain"),
    ({"type": "plugins_example:Gain", 3: 2}, TypeError, "3: not a keyword name"),
    ({"type": "plugins_example:"}, ValueError,
     "type = 'plugins_example:': malformed plugin reference; allowed: package.module:ClassName"),
    ({"type": "torch.nn:Linear", "in_features": 4}, TypeError,
     "type = 'torch.nn:Linear': arguments do not fit Linear"),
])
def test_plugin_spec_errors(spec, error, message):
    with pytest.raises(error) as info:
        check_spec(spec, M)
    assert str(info.value).startswith(message)


# ----------------------------------------------------------------------------- chain

def test_chain_applies_in_order_and_fans_out():
    specs = [check_spec(s, M) for s in ({"type": "band", "lo": 0, "hi": 16}, {"type": "quantize", "bits": 4})]
    chain = build_chain(specs)
    assert len(chain) == 2 and bool(chain) and chain.latency_samples == 0
    chain.prepare(SAMPLERATE, HOP, M)
    x = gaussian()
    y = chain(x)
    assert torch.equal(y, Quantize(4)(Band(0, 16)(x)))
    stats = chain.stats()
    assert [s["type"] for s in stats] == ["band", "quantize"]
    assert stats[0]["kept_fraction"] == pytest.approx(0.25) and stats[1]["frames"] == 50
    chain.reset()
    assert chain.stats()[1]["frames"] == 0 and chain.stats()[0]["kept_fraction"] == 0.0
    assert chain[1].bits == 4


def test_empty_chain_is_identity_and_falsy():
    chain = build_chain([])
    x = gaussian()
    assert not chain and len(chain) == 0 and chain.stats() == [] and chain.latency_samples == 0
    assert chain(x) is x


def test_registry_names():
    assert P.REGISTRY == {"quantize": Quantize, "learned_quantize": P.LearnedQuantize,
                          "band": Band, "topk": TopK, "threshold": Threshold,
                          "codec": P.Codec}


# ----------------------------------------------------------------------------- numpy route

def _hard_inputs(dtype, seed):
    """(frames, channels, M) coefficients that stress both routes: frame scales from 1e-8 to
    1e6 (float16 subnormal and saturated peaks), ties, zeros, silent frames, NaN and inf; 0-3
    frames (live calls) for seeds 0-3, 40 frames (render calls) from seed 4."""
    rng = np.random.default_rng(seed)
    out = []
    for kind in range(8):
        frames = int(rng.integers(0, 4)) if kind == 0 else int(rng.integers(1, 4))
        if seed >= 4:
            frames = 40                                             # render-sized calls
        x = rng.standard_normal((frames, 2, M)) * 10.0 ** rng.uniform(-8, 6, size=(frames, 2, 1))
        if kind == 1:
            x = rng.standard_normal((frames, 2, M)) * 10.0 ** rng.uniform(-4, 4, size=(frames, 2, 1))
        if kind == 2:
            x = np.round(x * 4) / 4                                 # ties at every magnitude
        if kind == 3:
            x = rng.integers(-3, 4, size=x.shape).astype(float)     # ties at the k-th place
        if kind == 4:
            x[..., rng.random(M) < 0.7] = 0                         # fewer than k nonzero
        if kind == 5:
            x[:, int(rng.integers(0, 2))] = 0                       # a silent channel
            x[0, 0, 1] = -0.0
            if seed % 2:
                x[:] = 0                                            # silent frames
            if seed % 3 == 2:
                x[-1, -1] *= 1e-6                                   # and a float16-subnormal peak
        if kind == 6:
            x[0, 0, 5], x[-1, -1, 7] = math.nan, math.inf
        if kind == 7:                                               # peaks exactly on float16
            x[..., 0] = np.float16(rng.uniform(1, 2)) * 2.0 ** rng.integers(-14, 15)
        out.append(torch.from_numpy(x.astype(dtype)))
    return out


def test_quantizer_scales_in_python_floats_round_as_float32_arithmetic():
    """The numpy route computes 1/scale and scale/levels in float64 and rounds once to float32;
    for every normal float16 scale and every level count of bits 1..16 that equals float32's
    own division."""
    halves = np.arange(0x0400, 0x7C00, dtype=np.uint16).view(np.float16)    # normal, positive
    scale32, scale64 = halves.astype(np.float32), halves.astype(np.float64)
    assert np.array_equal(np.float32(1) / scale32, (1.0 / scale64).astype(np.float32))
    for bits in range(1, 17):
        levels = Quantize.levels(bits)
        assert np.array_equal(scale32 / np.float32(levels),
                              (scale64 / levels).astype(np.float32)), bits


def test_compiled_quickselect_finds_the_kth_smallest():
    from cosine_host.models.processors.compiled import kth_smallest
    rng = np.random.default_rng(1)
    for _ in range(500):
        values = rng.integers(0, rng.integers(1, 20), size=rng.integers(1, 80))
        n = int(rng.integers(0, values.size))
        assert kth_smallest(values.copy(), n) == sorted(values.tolist())[n]


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit patterns (so -0.0 != 0.0), NaN in the same places (payloads may differ)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    as_int = torch.int32 if a.dtype == torch.float32 else torch.int64
    nan = torch.isnan(a)
    return torch.equal(nan, torch.isnan(b)) and torch.equal(a.view(as_int)[~nan], b.view(as_int)[~nan])


ROUTE_SPECS = [{"type": "quantize", "bits": b} for b in (1, 2, 4, 8, 12, 16, 17, 24)] + [
    {"type": "topk", "k": k} for k in (1, 5, 32, M)] + [
    {"type": "band", "lo": 0, "hi": M}, {"type": "band", "lo": 7, "hi": 40},
    {"type": "threshold", "db": 0}, {"type": "threshold", "db": -20}, {"type": "threshold"}]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("spec", ROUTE_SPECS, ids=lambda s: "-".join(map(str, s.values())))
def test_numpy_route_is_bit_identical_to_the_torch_route(spec, dtype):
    general, fast = build(check_spec(spec, M)), build(check_spec(spec, M))
    for p in (general, fast):
        p.prepare(SAMPLERATE, HOP, M)
    for seed in range(6):
        for x in _hard_inputs(dtype, seed):
            expected = general._torch(x)
            with torch.inference_mode():
                got = fast(x)
            assert _same_bits(got, expected), (spec, seed)
    assert fast.stats() == general.stats()


def test_numpy_route_only_where_it_is_safe():
    x = gaussian()
    assert plugins._numpy_route(x) and plugins._numpy_route(x.double())
    assert not plugins._numpy_route(x.clone().requires_grad_(True))      # autograd: torch route
    assert not plugins._numpy_route(x.half())
    with torch.inference_mode():
        assert plugins._numpy_route(torch.from_numpy(x.numpy()))
    # gradients still flow on the torch route, the numpy route never sees a grad-requiring input
    y = x.clone().requires_grad_(True)
    assert Quantize(8)(y).requires_grad and TopK(3)(y).requires_grad


def test_numpy_route_emits_no_warnings():
    import warnings
    chain = build_chain([check_spec(s, M) for s in ROUTE_SPECS])
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("error")
        for x in _hard_inputs(np.float32, 0):
            chain(x)


def test_chain_hands_numpy_between_builtins_and_tensors_to_plugins():
    specs = [{"type": "quantize", "bits": 6}, {"type": "plugins_example:Gain", "gain": 0.5},
             {"type": "topk", "k": 9}, {"type": "band", "lo": 2, "hi": 40}]
    fast, general = (build_chain([check_spec(s, M) for s in specs]) for _ in range(2))
    x = gaussian(frames=3)
    expected = x
    for p in general:
        expected = p._torch(expected) if hasattr(p, "_torch") else p(expected)
    with torch.inference_mode():
        got = fast(x)
    assert type(got) is torch.Tensor and _same_bits(got, expected)
    assert fast.stats() == [{"type": t, **p.stats()} for t, p in zip(general.types, general)]
    assert not torch.equal(got, torch.zeros_like(got))
    calls = []
    fast[2].register_forward_hook(lambda *args: calls.append(1))   # a hook: called the usual way
    with torch.inference_mode():
        assert _same_bits(fast(x), expected)
    assert calls == [1]


# ----------------------------------------------------------------------------- plugin values

class Typed(torch.nn.Module):
    """A plugin whose constructor annotates every simple type a YAML value can have; ``anything``
    is checked by its default's type (an integer default takes any number), ``free`` is not."""

    def __init__(self, gain: float = 1.0, taps: int = 3, mode: str = "soft", on: bool = True,
                 weights: list[float] | None = None, extra: dict | None = None,
                 limit: "Optional[int]" = None, anything=0, tensor: torch.Tensor = None,
                 free=None):
        super().__init__()
        self.gain = gain

    def forward(self, coeffs):
        return coeffs * self.gain


class Exploding(torch.nn.Module):
    """A plugin whose constructor fails: the message has two lines on purpose."""

    def __init__(self, level: int = 1):
        super().__init__()
        raise RuntimeError(f"level {level} is too loud\nsee the manual")


from typing import Optional  # noqa: E402  (Typed's string annotation resolves against it)


@pytest.mark.parametrize("params", [
    {"gain": 2}, {"gain": 0.5}, {"taps": 4}, {"mode": "hard"}, {"on": False},
    {"weights": [1, 2]}, {"weights": None}, {"extra": {"a": 1}}, {"limit": None}, {"limit": 3},
    {"anything": 2}, {"anything": 0.5}, {"free": object()},
    {"tensor": "not checked: not a YAML type"}])
def test_plugin_values_that_fit_their_annotations(params):
    spec = check_spec({"type": "test_processors:Typed", **params}, M)
    assert spec == {"type": "test_processors:Typed", **params}


@pytest.mark.parametrize("params, message", [
    ({"gain": "loud"}, "gain = 'loud': must be a number for test_processors:Typed"),
    ({"gain": True}, "gain = True: must be a number for test_processors:Typed"),
    ({"taps": 2.5}, "taps = 2.5: must be an integer for test_processors:Typed"),
    ({"mode": 3}, "mode = 3: must be a string for test_processors:Typed"),
    ({"on": "yes"}, "on = 'yes': must be true or false for test_processors:Typed"),
    ({"weights": 1.0}, "weights = 1.0: must be a list or null for test_processors:Typed"),
    ({"extra": [1]}, "extra = [1]: must be a mapping or null for test_processors:Typed"),
    ({"limit": "3"}, "limit = '3': must be an integer or null for test_processors:Typed"),
    ({"anything": "x"}, "anything = 'x': must be a number for test_processors:Typed"),
])
def test_plugin_value_of_the_wrong_type_is_one_line(params, message):
    with pytest.raises(TypeError) as info:
        check_spec({"type": "test_processors:Typed", **params}, M)
    assert str(info.value) == message


def test_plugin_constructor_failure_is_one_line_naming_the_plugin():
    spec = check_spec({"type": "test_processors:Exploding", "level": 3}, M)
    with pytest.raises(ValueError) as info:
        build_chain([spec])
    assert str(info.value) == ("type = 'test_processors:Exploding': Exploding(level=3) failed: "
                               "RuntimeError: level 3 is too loud | see the manual")
    assert isinstance(info.value.__cause__, RuntimeError)            # --debug can still show it


def test_plugin_module_keeps_its_home_and_its_old_names():
    from cosine_host.models.processors import plugins
    assert P.Plugin is plugins.Plugin and P.Processor is plugins.Processor
    assert issubclass(P.Plugin, P.Processor) and P.PLUGIN_FORM == "package.module:ClassName"


def test_chain_of_plain_modules_and_builtins():
    chain = P.Chain([torch.nn.Identity(), Quantize(8), torch.nn.Identity()])
    x = gaussian()
    with torch.inference_mode():
        assert torch.equal(chain(x), Quantize(8)._torch(x))
    assert P.Chain is __import__("cosine_host.models.processors.plugins", fromlist=["Chain"]).Chain


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_jit_trace_records_the_torch_route():
    gate, x, y = Threshold(-6.0), gaussian(seed=1), gaussian(seed=2)
    with torch.no_grad():
        traced = torch.jit.trace(gate, x, check_trace=False)
        assert torch.equal(traced(y), gate._torch(y))            # not x's result baked in

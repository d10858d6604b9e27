"""The learned cosine encoder/decoder pair of the seed notebook, vectorised and precise.

Encoder (analysis), frame length N, M coefficients, phase offset n0 (samples)::

    W1[m, 0] = a1 * cos(w[m] * n0),   W1[m, n] = a2 * cos(w[m] * (n + n0))   (n = 1..N-1)
    X = W1 @ x / sqrt(N)

Decoder (synthesis)::

    W2[0, m] = a3 * cos(v[m] * n0),   W2[n, m] = a4 * cos(v[m] * (n + n0))
    y = W2 @ X / sqrt(N)

With n0 = 0 (inits "dct" and "lowpass", and every checkpoint written before n0 existed) this is
the seed notebook's family. Init "mdct" is its critically sampled point: M = N/2,
w[m] = (2m+1) pi / (2M), n0 = 1/2 + M/2 and a1 = a2 = a3 = a4 = 2, i.e. X[m] = sqrt(2/M)
sum_n x[n] cos(pi/M (n + 1/2 + M/2)(m + 1/2)), the orthonormal MDCT; with hop M and a
Princen-Bradley window pair the overlap-add cancels its time-domain aliasing (TDAC). Its
encoder also has per-coefficient gains ``exp(coefficient_log_gain[m])`` that the tied decoder
divides out again, so they can learn (ahead of a quantizer) without breaking the TDAC; n0 is a
buffer (stored in checkpoints, never trained).

Frequencies are stored as a fixed grid ``(2m+1) * pi / (2K)`` plus a learned offset in units of
``pi / N`` (one DCT bin at M = N). The grid's phase ``(2m+1) * (2n + p) * pi / (4K)``, with
p = 2 n0 rounded to an integer (n0 on the half-sample grid, as the MDCT's is), is reduced
exactly in integers (mod 8K) before the cosine; the offset's phase (and n0's remainder off the
half-sample grid, if any) is added in float64, so the matrices are accurate to the last bit
of their dtype: float32 identity reconstruction reaches about 127 dB SNR instead of the 92 dB
of a float32 ``w * n``. Measuring the offset in bins also
keeps its gradient (which grows with n up to N - 1) on the same scale as the gains'.
"""
from __future__ import annotations

import math

import torch
from torch import nn

INITS = ("dct", "lowpass", "mdct")
DECODER_MODES = ("tied", "free", "pinv")


def grid_denominator(n: int, m: int, init: str) -> int:
    """K of the init grid w[m] = (2m+1) pi / (2K): M for "dct" and "mdct", N for "lowpass"."""
    if init in ("dct", "mdct"):
        return m
    if init == "lowpass":
        return n
    raise ValueError(f"init {init!r} unknown; allowed: {' | '.join(INITS)}")


def initial_phase_offset(n: int, m: int, init: str) -> float:
    """n0 at init, in samples: 1/2 + M/2 for "mdct", 0 otherwise."""
    return 0.5 + m / 2 if init == "mdct" else 0.0


def initial_gains(init: str) -> tuple[float, float]:
    """(a1, a2) at init (the decoder's a3, a4 alike): 2, 2 for "mdct" (the orthonormal MDCT
    with the 1/sqrt(N) factor, N = 2M), else 1, sqrt(2) (the orthonormal DCT)."""
    return (2.0, 2.0) if init == "mdct" else (1.0, math.sqrt(2.0))


def check_mdct_shape(n: int, m: int) -> None:
    """Init "mdct" needs M = N/2 (critical sampling at hop N/2); ValueError otherwise."""
    if n % 2 or 2 * m != n:
        raise ValueError(f"init 'mdct' needs an even frame size N and M = N/2 coefficients; "
                         f"got N = {n}, M = {m}")


def parameter_key(params) -> tuple:
    """Changes whenever any of ``params`` changes (in place, replaced, moved or cast): the one
    change detector behind every cached matrix, the model's and the engine's."""
    return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)


def _grid_phase(n: int, m: int, k: int, half_samples: int = 0, device=None) -> torch.Tensor:
    """Exact phase (2i+1) * (2j + p) * pi / (4K) mod 2 pi, float64 of shape (m, n): the grid
    frequency (2i+1) pi / (2K) at sample j + p/2 (p = ``half_samples``, 2 n0). For p = 0 these
    are the same bits as the residue (2i+1) j mod 4K times pi / (2K)."""
    odd = 2 * torch.arange(m, dtype=torch.int64, device=device) + 1
    j = 2 * torch.arange(n, dtype=torch.int64, device=device) + half_samples
    residue = torch.remainder(odd[:, None] * j[None, :], 8 * k)
    return residue.to(torch.float64) * (math.pi / (4 * k))


def cosine_matrix(grid_phase: torch.Tensor, offset_bins: torch.Tensor, first: torch.Tensor,
                  rest: torch.Tensor, phase_offset: float = 0.0,
                  row_gain: torch.Tensor | None = None) -> torch.Tensor:
    """(M, N) matrix ``[first * cos(w[m] n0), rest * cos(w[m] (n + n0)) for n >= 1] / sqrt(N)``
    in ``rest``'s dtype, each row times ``row_gain[m]`` when given.

    grid_phase: exact (M, N) float64 phase of the init grid at n + n0 (:func:`_grid_phase`);
    offset_bins: (M,) frequency offsets in units of pi/N; phase_offset: n0 in samples (the
    offsets turn with n + n0). The phase is summed and the cosine taken in float64.
    """
    m, n = grid_phase.shape
    j = torch.arange(n, dtype=torch.float64, device=grid_phase.device)
    if phase_offset:
        j = j + phase_offset
    offset = offset_bins.to(torch.float64) * (math.pi / n)
    cos = torch.cos(grid_phase + offset[:, None] * j[None, :]).to(rest.dtype)
    scale = 1.0 / math.sqrt(n)
    # at n0 = 0, cos[:, 0] is exactly 1: column 0 is the seed's a1 / sqrt(N), bit for bit
    first_column = (cos[:, :1] * (first * scale) if phase_offset
                    else (first * scale).expand(m, 1))
    matrix = torch.cat([first_column, cos[:, 1:] * (rest * scale)], dim=1)
    return matrix if row_gain is None else matrix * row_gain[:, None]


class _CosineBasis(nn.Module):
    """Shared part of encoder and decoder: gains (first, rest) and learnable frequencies.

    Builds the (M, N) matrix ``B[m, 0] = first, B[m, n] = rest * cos(w[m] n)``, scaled by
    1/sqrt(N), caches it and rebuilds only after a parameter changed. While autograd records
    (training), it is rebuilt on every call so that every step gets gradients.
    """

    def __init__(self, n: int, m: int, init: str, dtype: torch.dtype = torch.float32):
        super().__init__()
        if not 1 <= m <= n:
            raise ValueError(f"coefficients M = {m} must be in 1..N (N = {n})")
        if init == "mdct":
            check_mdct_shape(n, m)
        self.n, self.m, self.init = n, m, init
        self.grid_k = grid_denominator(n, m, init)
        first, rest = initial_gains(init)
        self.first = nn.Parameter(torch.tensor(first, dtype=dtype))
        self.rest = nn.Parameter(torch.tensor(rest, dtype=dtype))
        self.freq_offset_bins = nn.Parameter(torch.zeros(m, dtype=dtype))
        n0 = initial_phase_offset(n, m, init)
        # n0 is part of the family but never trained (moving it breaks the MDCT's TDAC): a
        # persistent buffer, so checkpoints store it; float64 holds every half-integer exactly
        self.register_buffer("phase_offset", torch.tensor(n0, dtype=torch.float64))
        self._grid_half = round(2 * n0)
        self.register_buffer("grid_phase", _grid_phase(n, m, self.grid_k, self._grid_half),
                             persistent=False)
        self._cache: torch.Tensor | None = None
        self._cache_key = None

    @property
    def n0(self) -> float:
        """The phase offset n0 in samples (a float)."""
        return float(self.phase_offset)

    def phase(self) -> tuple[torch.Tensor, float]:
        """(exact (M, N) float64 grid phase at n + n0, n0): the grid is rebuilt when a loaded
        n0 lies on another half-sample than the init's; a remainder off the half-sample grid
        is folded into the phase in float64."""
        n0 = self.n0
        half = round(2 * n0)
        if half != self._grid_half:
            self._grid_half = half
            self.grid_phase = _grid_phase(self.n, self.m, self.grid_k, half,
                                          self.grid_phase.device)
        rest = n0 - half / 2
        if rest:
            return self.grid_phase + self.grid_frequencies()[:, None] * rest, n0
        return self.grid_phase, n0

    def grid_frequencies(self) -> torch.Tensor:
        """The init grid (2m+1) pi / (2K), float64 of shape (M,)."""
        k = torch.arange(self.m, dtype=torch.float64, device=self.grid_phase.device)
        return (2 * k + 1) * (math.pi / (2 * self.grid_k))

    def cache_tensors(self) -> list:
        """What the cached matrix depends on: the parameters and n0."""
        return list(self.parameters()) + [self.phase_offset]

    @property
    def frequencies(self) -> torch.Tensor:
        """Frequencies in radians per sample, shape (M,), float64 (no gradient)."""
        grid = self.grid_frequencies()
        return grid + self.freq_offset_bins.detach().to(torch.float64) * (math.pi / self.n)

    def row_gain(self) -> torch.Tensor | None:
        """Per-coefficient gains (M,) of the encoder rows, None where there are none."""
        return None

    def build(self) -> torch.Tensor:
        """The (M, N) matrix including the 1/sqrt(N) factor, in the parameters' dtype."""
        phase, n0 = self.phase()
        return cosine_matrix(phase, self.freq_offset_bins, self.first, self.rest, n0,
                             self.row_gain())

    def matrix(self) -> torch.Tensor:
        """The cached (M, N) matrix; rebuilt after any parameter changed, fresh under autograd."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return self.build()
        return _cached(self, parameter_key(self.cache_tensors()))

    def _apply(self, fn, *args, **kwargs):
        self._cache = None
        return super()._apply(fn, *args, **kwargs)


def _cached(module, key) -> torch.Tensor:
    """``module.build()``, rebuilt only when ``key`` changed."""
    if module._cache is None or key != module._cache_key:
        with torch.no_grad():
            module._cache = module.build()
        module._cache_key = key
    return module._cache


class CosineEncoder(_CosineBasis):
    """Learned cosine analysis: frames [..., N] -> coefficients [..., M].

    At init "dct" with M = N this is the orthonormal DCT-III
    (``scipy.fft.dct(x, type=3, norm="ortho")``); at init "mdct" (M = N/2) the orthonormal MDCT.
    Parameters: a1 (``first``), a2 (``rest``), the frequencies w (``freq_offset_bins``, in units
    of pi/N from the init grid) and, at init "mdct" only, the per-coefficient gains
    (``coefficient_log_gain``, (M,), natural log, 0 at init). At init "mdct" a1, a2 and the
    frequencies are frozen (``requires_grad`` False): only the gains keep the pair exact.
    """

    def __init__(self, n: int, m: int, init: str = "dct", dtype: torch.dtype = torch.float32):
        super().__init__(n, m, init, dtype)
        if init == "mdct":
            self.coefficient_log_gain = nn.Parameter(torch.zeros(m, dtype=dtype))
            for p in (self.first, self.rest, self.freq_offset_bins):
                p.requires_grad_(False)

    def row_gain(self) -> torch.Tensor | None:
        log_gain = getattr(self, "coefficient_log_gain", None)
        return None if log_gain is None else torch.exp(log_gain)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames @ self.matrix().T


class CosineDecoder(nn.Module):
    """Learned cosine synthesis: coefficients [..., M] -> frames [..., N].

    Modes:
        tied: W2[n, m] = a4 cos(w[m] n) with the encoder's frequencies w (the seed's W2_1);
            at init "dct" with M = N this is the orthonormal DCT-II, the exact inverse.
        free: its own frequencies v, initialised like the encoder's (the seed's W2_2).
        pinv: the least-squares inverse of the encoder matrix (the right decoder for M < N);
            it has no parameters of its own and follows the encoder.
    Parameters a3 (``first``) and a4 (``rest``) exist in tied and free modes.
    """

    def __init__(self, m: int, n: int, init: str = "dct", mode: str = "tied",
                 encoder: CosineEncoder | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        if mode not in DECODER_MODES:
            raise ValueError(f"decoder mode {mode!r} unknown; allowed: {' | '.join(DECODER_MODES)}")
        if init == "mdct" and mode != "tied":
            raise ValueError(f"init 'mdct' needs decoder 'tied' (the TDAC pair), not {mode!r}")
        if mode in ("tied", "pinv"):
            if encoder is None:
                raise ValueError(f"decoder mode {mode!r} needs the encoder")
            if (encoder.n, encoder.m) != (n, m):
                raise ValueError(f"encoder is {encoder.m}x{encoder.n}, decoder wants {m}x{n}")
        self.n, self.m, self.mode = n, m, mode
        # A plain tuple keeps the encoder out of this module's parameters and state_dict.
        self._encoder = (encoder,)
        if mode == "free":
            self.basis = _CosineBasis(n, m, init, dtype)
        elif mode == "tied":
            first, rest = initial_gains(init)
            self.first = nn.Parameter(torch.tensor(first, dtype=dtype))
            self.rest = nn.Parameter(torch.tensor(rest, dtype=dtype))
            if init == "mdct":       # the encoder's gains are divided out instead
                self.first.requires_grad_(False)
                self.rest.requires_grad_(False)
        self._cache: torch.Tensor | None = None
        self._cache_key = None

    @property
    def encoder(self) -> CosineEncoder | None:
        return self._encoder[0]

    def build(self) -> torch.Tensor:
        """The (M, N) synthesis matrix B, used as y = X @ B (the transpose of the seed's W2)."""
        if self.mode == "free":
            return self.basis.build()
        if self.mode == "tied":
            enc = self.encoder
            phase, n0 = enc.phase()
            gain = enc.row_gain()
            return cosine_matrix(phase, enc.freq_offset_bins, self.first, self.rest, n0,
                                 None if gain is None else 1.0 / gain)
        w1 = self.encoder.matrix()
        return torch.linalg.pinv(w1.to(torch.float64)).T.to(w1.dtype)

    def matrix(self) -> torch.Tensor:
        params = list(self.parameters()) + list(self.encoder.parameters() if self.encoder else [])
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return self.build()
        phases = [b.phase_offset for b in (self.encoder, getattr(self, "basis", None))
                  if b is not None]
        return _cached(self, parameter_key(params + phases))

    def _apply(self, fn, *args, **kwargs):
        self._cache = None
        return super()._apply(fn, *args, **kwargs)

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        return coeffs @ self.matrix()

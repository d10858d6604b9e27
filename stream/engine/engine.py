"""The streaming block engine: framing, encoder -> processors -> decoder, overlap-add.

One engine serves live streams (blocks from a sound device callback), file rendering and latency
tests. Its latency is the minimum a frame-based host can reach (cosine_host.engine.latency) and
stays constant for its whole life, bypass included.

Two kinds of frame, kept apart by name: an audio block's ``frames`` are its rows (one sample
per channel, as sounddevice and soundfile count them: ``samples`` here), an *analysis frame* is
N samples of one channel that the encoder transforms (``F`` of them per call,
``frames_processed`` counts them).

Data path per call, all channels as one batch::

    block (samples, C) float32 --> input queue (C, .) --> every ready analysis frame at once,
    read in place (F, C, N) --> encoder --> coefficients (F, C, M) --> processors --> decoder
    (the synthesis part: the last S samples of each frame) --> overlap-add of F hops into the
    output queue --> block, ``latency_samples`` later

The contract: what processors receive depends on the signal and the parameters only, not on how the
signal was cut into calls, on the CPU or on the BLAS library (their encoder product is exact,
cosine_host.engine.exact; the DCT path's pocketfft computes each frame alone); outputs after the
decoder agree within float rounding (1e-6) however the signal was cut.

Two kernels do the work: cosine_host.engine.kernel_numpy on CPU (numpy and BLAS with preallocated
buffers; its routes are listed there) and cosine_host.engine.kernel_torch on CUDA (queues on the
device, one synchronisation per call). The transform is re-chosen whenever a parameter changed
(cosine_host.models.cosine.parameter_key, checked on every call in about a microsecond): matrix
products with the windows folded in, or, while the model is exactly the DCT pair at its init
(LearnedCosine.dct_pair), pocketfft's DCT on CPU, or, while it is exactly the MDCT pair at init
"mdct" (LearnedCosine.mdct_pair), the fold and pocketfft's DCT-IV on CPU (cosine_host.engine.mdct).
"""
from __future__ import annotations

import numpy as np
import torch

from cosine_host.models import LearnedCosine
from cosine_host.models.cosine import parameter_key
from cosine_host.models.processors import registry as processor_registry
from cosine_host.engine import latency as lat
from cosine_host.engine.build import build_model, build_processors, resolve_device
from cosine_host.errors import UserError
from cosine_host.engine.kernel_numpy import NumpyKernel
from cosine_host.engine.kernel_torch import TorchKernel
from cosine_host.engine.dct import matrices_match
from cosine_host.engine import mdct
from cosine_host.engine import effects
from cosine_host.engine.windows import window_pair
from cosine_host.engine.finite import all_finite

FAST_PATHS = ("auto", "off")
BACKENDS = ("auto", "numpy", "torch")
FLUSH_FRAMES = 4096          # zeros per call when a render pushes the latency out


class EngineInputError(UserError, ValueError):
    """A block handed to the engine has the wrong dtype, rank, channel count or size."""


class Engine:
    """Streaming encoder/processor/decoder engine with constant, minimal latency.

    Args:
        model: the learned cosine transform (moved to ``device``). hop: H in samples; must divide
        the model's frame size N. window: window name (cosine_host.engine.windows.WINDOWS).
        blocksize: frames per call B; 0 = any size per call (latency N - 1). channels: channel count
        C of every block. processors: ordered coefficient processors
        (cosine_host.models.processors.registry.Chain). samplerate: Hz, for processor statistics
        (bitrate) and ms conversions. pre, post: (keyword) time-domain stages
        (cosine_host.engine.effects.EffectChain) run on each block
            before framing and after the overlap-add; None = none.
        device: torch device for the tensors; CUDA uses pinned host buffers.
        fast_path: (keyword) "auto": pocketfft's DCT on CPU whenever the model is exactly the
            DCT pair, its DCT-IV MDCT whenever it is exactly the MDCT pair; "off": always
            matrix products.
        backend: (keyword) "auto": numpy on CPU, torch elsewhere; "torch" on CPU runs the CUDA
            code path on the CPU (tests).
        synthesis_size: (keyword) S in samples, the synthesis window's nonzero span at the end
            of the frame (cosine_host.engine.windows: a multiple of H from 2H to N); None (default)
            = N, the symmetric pair.
        kbd_alpha: (keyword) the kbd window's alpha (default 4; the other windows ignore it).

    Latency: ``latency_samples = algorithmic_latency_samples + buffering_latency_samples
    + processor_latency_samples + effects_latency_samples`` = (S - H) + (H - gcd(B, H)) + what
    the processors report (0 for the built-ins) + the pre and post stages' delays, S = N for
    symmetric pairs (cosine_host.engine.latency); an impulse at input sample t comes out at
    t + latency_samples. Bypass passes the input through at the same latency, around the
    stages too.
    ``transform`` names the transform in use ("matmul", "dct" or "mdct") and
    ``transform_reason`` why.
    """

    def __init__(self, model: LearnedCosine, hop: int, window: str = "sqrt_hann",
                 blocksize: int = 0, channels: int = 1, processors=None,
                 samplerate: int = 48000, device: str | torch.device = "cpu", *,
                 fast_path: str = "auto", backend: str = "auto",
                 synthesis_size: int | None = None, pre=None, post=None,
                 kbd_alpha: float = 4.0):
        n = model.n
        if hop <= 0 or n % hop:
            raise ValueError(f"hop {hop} must divide the frame size {n}")
        synthesis = n if synthesis_size is None else int(synthesis_size)
        if blocksize < 0 or channels < 1:
            raise ValueError("blocksize must be >= 0 and channels >= 1")
        if fast_path not in FAST_PATHS:
            raise ValueError(f"fast_path {fast_path!r} unknown; allowed: {' | '.join(FAST_PATHS)}")
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r} unknown; allowed: {' | '.join(BACKENDS)}")
        self.device = torch.device(device)
        if backend == "auto":
            backend = "numpy" if self.device.type == "cpu" else "torch"
        if backend == "numpy" and self.device.type != "cpu":
            raise ValueError("the numpy backend runs on cpu only")
        self.model = model.to(self.device).eval()
        self.dtype = model.dtype
        self.frame_size, self.hop, self.blocksize, self.channels = n, hop, blocksize, channels
        self.samplerate = samplerate
        self.fast_path = fast_path
        self.processors = processors if processors is not None else processor_registry.build_chain([])
        self.processors.to(self.device)
        self.processors.prepare(samplerate, hop, model.m)
        if self.device.type == "cpu" and any(getattr(p, "COMPILED", False)
                                             for p in self.processors):
            from cosine_host.models.processors import compiled  # compiled now, not in the first block
            compiled.warm_up(np.float64 if self.dtype == torch.float64 else np.float32)
        if model.init == "mdct":
            problem = mdct.mdct_problem(n, hop, model.m, window, synthesis, model.decoder_mode)
            if problem:
                raise ValueError(problem)
        self._window_analysis, self._window_synthesis = window_pair(
            window, n, hop, synthesis, kbd_alpha)
        self.synthesis_size = synthesis

        self.algorithmic_latency_samples = lat.algorithmic_latency_samples(n, hop, synthesis)
        self.buffering_latency_samples = lat.buffering_latency_samples(hop, blocksize)
        # what processors add (lookahead, say) delays the wet path; the dry path must match it
        self.processor_latency_samples = int(self.processors.latency_samples)
        self.pre = pre if pre is not None else effects.EffectChain()
        self.post = post if post is not None else effects.EffectChain()
        for chain in (self.pre, self.post):
            chain.prepare(samplerate, blocksize, channels)
        self.effects_latency_samples = self.pre.latency_samples + self.post.latency_samples
        # the kernel's own lag; the stages add theirs around it
        self._kernel_latency_samples = (self.algorithmic_latency_samples
                                        + self.buffering_latency_samples
                                        + self.processor_latency_samples)
        self.latency_samples = self._kernel_latency_samples + self.effects_latency_samples
        self._staged = bool(len(self.pre) or len(self.post))
        self._dry = effects.DelayLine(self.latency_samples if self._staged else 0, channels)

        args = (channels, n, model.m, hop, self.dtype, blocksize, self.processors)
        self._kernel = (NumpyKernel(*args, synthesis_size=synthesis) if backend == "numpy"
                        else TorchKernel(*args, self.device, synthesis_size=synthesis))
        self.backend = backend
        # walking the module tree for its parameters on every call costs more than comparing
        # their keys: the list is taken once (a parameter is changed in place, or its .data
        # replaced, both of which the key sees)
        self._params = self._watched(self.model)
        self._params_key = None
        self.transform = "matmul"
        self.transform_reason = ""
        self.bypass = False
        self._refresh()
        self.reset()

    @classmethod
    def from_config(cls, cfg, blocksize: int | None = None, channels: int | None = None,
                    samplerate: int | None = None, device: str | None = None) -> "Engine":
        """Build from a cosine_host.config.schema.Config; arguments left None come from cfg.audio / cfg.model."""
        model = build_model(cfg)
        chain = build_processors(cfg)
        try:
            stages = {where: effects.build_chain(getattr(cfg, where), where)
                      for where in effects.SECTIONS}
        except effects.EffectError as e:
            raise UserError(str(e)) from None
        return cls(model, cfg.frame.hop, cfg.frame.window,
                   blocksize=cfg.audio.blocksize if blocksize is None else blocksize,
                   channels=cfg.audio.channels if channels is None else channels,
                   processors=chain,
                   samplerate=cfg.audio.samplerate if samplerate is None else samplerate,
                   device=resolve_device(device or cfg.model.device),
                   synthesis_size=cfg.frame.synthesis_samples,
                   kbd_alpha=cfg.frame.kbd_alpha, **stages)

    # --- state ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget all signal history (as if freshly built); statistics restart at zero."""
        self._kernel.reset(lat.input_prefill_samples(self.frame_size, self.hop),
                           self.buffering_latency_samples, self._kernel_latency_samples)
        for stage in (self.pre, self.post, self._dry):
            stage.reset()
        self.samples_in = 0
        self.nan_events = 0
        self.nan_samples = 0
        self._finite_scratch = np.zeros((), np.float32)    # all_finite's result, per call
        self.calls = 0
        self.frames_processed = 0
        self.processors.reset()

    def stats(self) -> dict:
        """JSON-ready statistics since the last reset."""
        return {"calls": self.calls, "samples_in": self.samples_in,
                "frames_processed": self.frames_processed, "nan_events": self.nan_events,
                "nan_samples": self.nan_samples, "processors": self.processors.stats(),
                "effects": {"pre": self.pre.describe(), "post": self.post.describe()}}

    def latency_report(self) -> dict:
        """Latency in samples and ms, split into its algorithmic and buffering parts, with the
        window spans it follows from (frame, hop, synthesis)."""
        ms = 1000.0 / self.samplerate
        return {"engine_samples": self.latency_samples,
                "algorithmic_samples": self.algorithmic_latency_samples,
                "frame_size": self.frame_size, "hop": self.hop,
                "synthesis_size": self.synthesis_size,
                "buffering_samples": self.buffering_latency_samples,
                "processor_samples": self.processor_latency_samples,
                "pre_samples": self.pre.latency_samples, "post_samples": self.post.latency_samples,
                "engine_ms": self.latency_samples * ms, "blocksize": self.blocksize,
                "samplerate": self.samplerate}

    # --- transform choice ----------------------------------------------------------------------

    def _refresh(self) -> None:
        """Fold the windows into the model's (cached) matrices and choose the transform; runs at
        construction and whenever a parameter changed."""
        self._params_key = parameter_key(self._params)
        with torch.no_grad():
            enc = self.model.encoder.matrix().detach().cpu().to(torch.float64).numpy()
            dec = self.model.decoder.matrix().detach().cpu().to(torch.float64).numpy()
        wa, ws = self._window_analysis, self._window_synthesis
        kind, reason = "matmul", "fast path off"
        if self.fast_path == "auto":
            kind, reason = self._choose(enc, dec)
        self._kernel.set_transform(kind, (enc * wa).T, dec * ws, wa, ws)
        self.transform, self.transform_reason = kind, reason

    @staticmethod
    def _watched(model) -> list:
        """What the transform depends on: the parameters and the phase offsets (buffers)."""
        return list(model.parameters()) + [b for name, b in model.named_buffers()
                                           if name.endswith("phase_offset")]

    def _choose(self, enc: np.ndarray, dec: np.ndarray) -> tuple[str, str]:
        if self.model.init == "mdct":
            return self._choose_mdct(enc, dec)
        ok, reason = self.model.dct_pair()
        if not ok:
            return "matmul", reason
        if self.backend != "numpy":
            # the DCT measured faster on CPU only; cuBLAS keeps the products on the GPU
            return "matmul", reason + f"; no DCT measured faster on {self.device.type}"
        if not matrices_match(enc, dec, str(self.dtype).removeprefix("torch.")):
            return "matmul", "the model's matrices differ from the DCT pair"
        return "dct", reason

    def _choose_mdct(self, enc: np.ndarray, dec: np.ndarray) -> tuple[str, str]:
        ok, reason = self.model.mdct_pair()
        if not ok:
            return "matmul", reason
        if self.backend != "numpy":
            return "matmul", reason + f"; no DCT-IV measured faster on {self.device.type}"
        if self.model.m % 2:
            return "matmul", reason + "; the DCT-IV fold needs an even M"
        if not mdct.matrices_match(enc, dec, str(self.dtype).removeprefix("torch.")):
            return "matmul", "the model's matrices differ from the MDCT pair"
        return "mdct", reason

    # --- processing ----------------------------------------------------------------------------

    def _check_array(self, block, what: str = "block") -> None:
        if not isinstance(block, np.ndarray):
            raise EngineInputError(f"{what} must be a numpy array, got {type(block).__name__}")
        if block.dtype != np.float32:
            raise EngineInputError(f"{what} dtype is {block.dtype}; the engine takes float32 "
                                   f"(convert with {what}.astype(np.float32))")
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise EngineInputError(f"{what} shape is {block.shape}; expected (frames, "
                                   f"{self.channels}) for this {self.channels}-channel engine")

    def _check(self, block) -> np.ndarray:
        self._check_array(block)
        if block.shape[0] and not lat.boundary_ok(self.frame_size, self.hop, self.blocksize,
                                                  self.samples_in + block.shape[0]):
            raise EngineInputError(
                f"a block of {block.shape[0]} frames breaks this engine's schedule for blocksize "
                f"{self.blocksize}; give blocks of {self.blocksize} frames or build the engine "
                f"with blocksize=0 for varying sizes")
        if not all_finite(block, self._finite_scratch):
            bad = ~np.isfinite(block)
            if bad.any():
                self.nan_events += 1
                self.nan_samples += int(bad.sum())
                block = np.where(bad, np.float32(0), block)
        return block

    def process(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Process one block.

        Args:
            block: float32 array (samples, channels): audio frames, as sounddevice counts them;
                their number may be 0, and may vary when blocksize=0.
                NaN and Inf samples are replaced by 0 and counted (``nan_events``).
            out: optional float32 array of the same shape to write into (no allocation).
        Returns:
            ``out`` (or a new array): the output block, ``latency_samples`` behind the input.
        """
        block = self._check(block)
        samples = block.shape[0]
        if out is None:
            out = np.empty_like(block)
        elif out.shape != block.shape:
            raise EngineInputError(f"out has shape {out.shape}; it must have the block's shape "
                                   f"{block.shape}")
        if samples == 0:
            return out
        if parameter_key(self._params) != self._params_key:
            self._refresh()
        if self._staged:
            count = self._process_staged(block, out)
        elif self._kernel.name == "torch":
            with torch.inference_mode():
                count = self._kernel.process(block, out, self.bypass)
        else:
            count = self._kernel.process(block, out, self.bypass)
        self.samples_in += samples
        self.frames_processed += count * self.channels       # analysis frames, all channels
        self.calls += 1
        return out

    def _process_staged(self, block: np.ndarray, out: np.ndarray) -> int:
        """pre -> kernel -> post, with the input delayed alongside for bypass. Both paths run
        on every call, so that bypass switches without a gap and the stages' state stays live."""
        wet_in = self.pre.process(block)
        wet_in = np.ascontiguousarray(wet_in)
        if self._kernel.name == "torch":
            with torch.inference_mode():
                count = self._kernel.process(wet_in, out, False)
        else:
            count = self._kernel.process(wet_in, out, False)
        wet = self.post.process(out)
        dry = self._dry.process(block)
        out[...] = dry if self.bypass else wet
        return count

    # --- whole signals -------------------------------------------------------------------------

    def render(self, signal: np.ndarray, chunk_frames: int = 1 << 19,
               out: np.ndarray | None = None) -> np.ndarray:
        """Process a whole (frames, channels) float32 signal; the output is aligned with the
        input (latency removed) and has its length (:meth:`render_chunks` over
        ``chunk_frames``-frame pieces). Working memory is bounded by ``chunk_frames`` (about 100
        bytes per frame and channel), not by the signal's length. Large chunks make large
        matrix products, which multithreaded BLAS runs more efficiently.

        ``out``: optional float32 array of the signal's shape to write into (a fresh one
        otherwise); reusing one spares the page faults of new memory on every call.
        """
        if chunk_frames < 1:
            raise ValueError("chunk_frames must be >= 1")
        self._check_array(signal, "signal")
        total = signal.shape[0]
        if out is None:
            out = np.empty_like(signal)
        elif not isinstance(out, np.ndarray) or out.shape != signal.shape \
                or out.dtype != signal.dtype or np.may_share_memory(out, signal):
            got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
            raise EngineInputError(f"out must be a new {signal.dtype} array of shape "
                                   f"{signal.shape}, got {got}")
        # the first piece is just the latency's worth, so that every later one lands in place
        first = min(total, self.latency_samples)
        pieces = [signal[:first]] + [signal[i:i + chunk_frames]
                                     for i in range(first, total, chunk_frames)]
        for _ in self.render_chunks(pieces, total, out=out):
            pass
        return out

    def render_chunks(self, chunks, total_frames: int, out: np.ndarray | None = None):
        """Aligned rendering of a stream of (frames, channels) float32 chunks: the one place
        that removes the engine's latency.

        Yields output chunks that together have exactly ``total_frames`` frames, output[i]
        aligned with input[i] (zeros are fed after the input to push the latency out). With
        ``out`` ((total_frames, channels) float32) every chunk is written into its place there,
        and the chunks yielded are views of it; pieces that land entirely in place are
        processed straight into ``out``. Needs an engine with blocksize 0; the engine is reset
        before and after.
        """
        if self.blocksize != 0:
            raise ValueError("render needs an engine built with blocksize=0")
        self.reset()
        skip = self.latency_samples       # output rows still to discard
        emitted = 0
        flush = np.zeros((min(FLUSH_FRAMES, self.latency_samples) or 1, self.channels),
                         np.float32)

        def feed(piece):
            nonlocal skip, emitted
            b = piece.shape[0]
            if out is not None and not skip and emitted + b <= total_frames:
                done = self.process(piece, out=out[emitted:emitted + b])
            else:
                done = self.process(piece)
                cut = min(skip, b)
                skip -= cut
                done = done[cut:cut + total_frames - emitted]
                if out is not None:
                    out[emitted:emitted + done.shape[0]] = done
                    done = out[emitted:emitted + done.shape[0]]
            emitted += done.shape[0]
            return done

        for piece in chunks:
            done = feed(piece)
            if done.shape[0]:
                yield done
        while emitted < total_frames:
            done = feed(flush[:max(1, min(flush.shape[0], total_frames - emitted + skip))])
            if done.shape[0]:
                yield done
        self.reset()

    # --- live model swap -----------------------------------------------------------------------

    def prepare_model_swap(self, model: LearnedCosine):
        """Build, off the audio thread, everything needed to run ``model`` in this engine; return
        ``commit()``, which switches to it between two :meth:`process` calls by rebinding
        attributes only (no array allocation, no I/O: callable from the audio callback). It
        returns what it replaced: drop that off the audio thread (freeing the old matrices
        there would cost the callback time).

        Frames computed after ``commit()`` use the new model; those already overlap-added in
        the output queue keep the old one, so the synthesis windows' overlap crossfades the two
        over N - H samples (at least one hop). The processors, the queues and the latency are
        untouched. ``model`` must have this engine's frame size, coefficient count and dtype.
        Assumes the kernel's ``set_transform`` only rebinds attributes (it builds new arrays).
        """
        import copy
        if (model.n, model.m, model.dtype) != (self.frame_size, self.model.m, self.dtype):
            raise ValueError(f"the new model has N={model.n}, M={model.m}, {model.dtype}; this "
                             f"engine runs N={self.frame_size}, M={self.model.m}, {self.dtype}")
        spare = copy.copy(self)                 # shares queues and processors with self
        spare._kernel = copy.copy(self._kernel)
        spare.model = model.to(self.device).eval()
        spare._params = self._watched(spare.model)
        # only what _refresh rebinds is taken: counters the callback moves meanwhile are not
        before, kernel_before = dict(vars(spare)), dict(vars(spare._kernel))
        spare._refresh()                        # the new transform lands on the copies only
        kernel = {k: v for k, v in vars(spare._kernel).items() if kernel_before.get(k) is not v}
        engine = {k: v for k, v in vars(spare).items() if before.get(k) is not v}
        engine.update(model=spare.model, _params=spare._params)

        def commit() -> tuple:
            replaced = ([self._kernel.__dict__.get(k) for k in kernel],
                        [self.__dict__.get(k) for k in engine])
            self._kernel.__dict__.update(kernel)
            self.__dict__.update(engine)
            return replaced
        return commit

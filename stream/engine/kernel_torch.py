"""The engine's per-call work in torch on any device (CUDA; CPU for tests).

Queues and buffers live on the device; on CUDA the host side uses pinned staging buffers and each
call synchronises once. The transform is always the two matrix products (cuBLAS); with processors
the encoder's product is the exact one (cosine_host.engine.exact), so processors see the same
coefficients as on the CPU kernel's matrix path, bit for bit. As there, the decoder computes only
the synthesis part of each frame (its last S samples) for the overlap-add.
"""
from __future__ import annotations

import numpy as np
import torch

from cosine_host.engine.exact import TorchExactEncoder
from cosine_host.engine.frames import check_processed, overlap_add
from cosine_host.engine.queues import Queue, initial_capacity


class TorchKernel:
    """Args as cosine_host.engine.kernel_numpy.NumpyKernel, plus ``device``."""

    name = "torch"

    def __init__(self, channels: int, n: int, m: int, hop: int, dtype: torch.dtype,
                 blocksize: int, processors, device: torch.device,
                 synthesis_size: int | None = None):
        self.c, self.n, self.m, self.hop = channels, n, m, hop
        self.s = n if synthesis_size is None else synthesis_size
        self.r = self.s // hop           # output hops each frame's synthesis part spans
        self.dtype, self.device = dtype, device
        self.cuda = device.type == "cuda"
        self.processors = processors
        cap = initial_capacity(n, blocksize)
        self.inq = Queue(torch.zeros(channels, cap, dtype=dtype, device=device))
        self.outq = Queue(torch.zeros(channels, cap, dtype=dtype, device=device),
                          pending=self.s - hop)
        # the dry signal stays on the host: bypass then costs no device round trip
        self.dry = Queue(np.zeros((channels, cap), np.float32))
        self._stage_cap = 0
        if self.cuda:
            self._stage(max(blocksize, 1))
        self.kind = "matmul"

    def _stage(self, frames: int) -> None:
        """Pinned host and device staging buffers (frames, C) float32 for the copies."""
        self._stage_cap = frames
        shape = (frames, self.c)
        self.host_in = torch.zeros(shape, dtype=torch.float32).pin_memory()
        self.host_out = torch.zeros(shape, dtype=torch.float32).pin_memory()
        self.host_in_np = self.host_in.numpy()
        self.host_out_np = self.host_out.numpy()
        self.dev_in = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self.dev_out = torch.zeros(shape, dtype=torch.float32, device=self.device)

    def set_transform(self, kind: str, enc_t: np.ndarray, dec: np.ndarray, wa: np.ndarray,
                      ws: np.ndarray) -> None:
        if kind != "matmul":
            raise ValueError("the torch kernel runs matrix products only")
        # rounded to the model's dtype first, as the CPU kernel does: the same exact products
        np_dtype = np.float64 if self.dtype == torch.float64 else np.float32
        enc_t = np.ascontiguousarray(enc_t, np_dtype)
        self.enc_t = torch.from_numpy(enc_t).to(self.device)
        # the synthesis window is zero before the last S columns
        dec = np.ascontiguousarray(dec[:, self.n - self.s:], np_dtype)
        self.dec = torch.from_numpy(dec).to(self.device)
        self.exact = TorchExactEncoder(enc_t, self.dtype, self.device)
        self.dec64 = self.dec.to(torch.float64)

    def reset(self, frame_prefill: int, out_prefill: int, dry_prefill: int) -> None:
        with torch.inference_mode():
            self.inq.reset(frame_prefill)
            self.outq.reset(out_prefill)
        self.dry.reset(dry_prefill)
        if self.cuda:
            torch.cuda.current_stream(self.device).synchronize()

    def process(self, block: np.ndarray, out: np.ndarray, bypass: bool) -> int:
        b = block.shape[0]
        self.dry.write(block)
        if self.cuda:
            if b > self._stage_cap:
                self._stage(2 * b)
            np.copyto(self.host_in_np[:b], block)
            dev_in = self.dev_in[:b]
            dev_in.copy_(self.host_in[:b], non_blocking=True)
        else:
            dev_in = torch.from_numpy(block)
        q = self.inq
        q.write(dev_in)
        count = q.ready_frames(self.n, self.hop)
        if count:
            self._frames(count)
            q.start += count * self.hop
        o, d = self.outq, self.dry
        head = o.buf[:, o.start:o.start + b].T
        if self.cuda:
            if not bypass:
                self.dev_out[:b].copy_(head)
                self.host_out[:b].copy_(self.dev_out[:b], non_blocking=True)
            # the one synchronisation of the call: also makes the staging buffers reusable
            torch.cuda.current_stream(self.device).synchronize()
            if not bypass:
                np.copyto(out, self.host_out_np[:b])
        elif not bypass:
            torch.from_numpy(out).copy_(head)
        if bypass:
            np.copyto(out, d.buf[:, d.start:d.start + b].T)
        o.start += b
        d.start += b
        return count

    def _frames(self, count: int) -> None:
        c, n, hop, r = self.c, self.n, self.hop, self.r
        buf = self.inq.buf
        view = buf.as_strided((count, c, n), (hop, buf.stride(0), 1),
                              buf.storage_offset() + self.inq.start)
        if self.processors:
            coeffs = self.exact(view)
            coeffs = check_processed(self.processors(coeffs), coeffs)
            # float64 decoder, as on the CPU kernel: one rounding per decoded sample
            decoded = torch.matmul(coeffs.to(torch.float64), self.dec64).to(self.dtype)
        else:
            decoded = torch.matmul(torch.matmul(view, self.enc_t), self.dec)
        o = self.outq
        o.reserve(count * hop)
        hops = o.buf[:, o.end:o.end + (count + r - 1) * hop].view(c, count + r - 1, hop)
        overlap_add(decoded.view(count, c, r, hop), hops)
        o.end += count * hop

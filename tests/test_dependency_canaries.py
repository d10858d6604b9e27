"""Canaries: every private API of a dependency that the code (or its tests) relies on, each
checked for what the code expects of it. When an upgrade removes or changes one, this file says
which, instead of a live stream or a fast path failing (or going slow) somewhere else.

    sounddevice._libname          stream/live/jack.py: the PortAudio library sounddevice loaded
    sounddevice._exit_handler     stream/live/lifecycle.py: unregistered while a hung stream is
                                  abandoned, so the interpreter can exit
    sounddevice._terminate, _initialize, _initialized
                                  tests/conftest.py, tests/jackserver.py, benchmarks/live.py:
                                  make PortAudio list devices again (a JACK server started late)
    scipy.fft._pocketfft.pypocketfft.dct
                                  stream/engine/dct.py: the DCT fast path without scipy's
                                  argument handling (falls back to scipy.fft.dct if it changes)
    torch._C._get_tracing_state   models/processors/plugins.py: no numpy route while jit traces
    pythonosc SimpleUDPClient._sock
                                  tests/test_live_control.py: the reply socket of a test client
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch


def test_sounddevice_private_names():
    sd = pytest.importorskip("sounddevice")
    assert isinstance(sd._libname, str)
    lib = ctypes.CDLL(sd._libname)
    assert hasattr(lib, "Pa_GetVersion")
    assert callable(sd._terminate) and callable(sd._initialize)
    assert isinstance(sd._initialized, int)
    assert callable(sd._exit_handler)


def test_sounddevice_reinitialises():
    sd = pytest.importorskip("sounddevice")
    before = sd._initialized
    sd._initialize()
    assert sd._initialized == before + 1
    sd._terminate()
    assert sd._initialized == before


def test_raw_pocketfft_dct_matches_scipy():
    import scipy.fft as sfft
    from scipy.fft._pocketfft import pypocketfft as raw
    x = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    got = raw.dct(x, 3, (1,), 1, np.empty_like(x), 1)
    np.testing.assert_allclose(got, sfft.dct(x, type=3, norm="ortho"), rtol=1e-5, atol=1e-6)


def test_the_engine_uses_the_raw_pocketfft_path():
    from cosine_host.engine.dct import ScipyDCT
    assert ScipyDCT()._raw is not None


def test_torch_tracing_state():
    assert torch._C._get_tracing_state() is None
    seen = []

    def f(x):
        seen.append(torch._C._get_tracing_state() is not None)
        return x * 2
    torch.jit.trace(f, torch.ones(2))
    assert any(seen)                   # set while tracing (trace also runs f untraced to check)


def test_python_osc_client_socket():
    from pythonosc.udp_client import SimpleUDPClient
    client = SimpleUDPClient("127.0.0.1", 9)
    assert hasattr(client._sock, "settimeout") and hasattr(client._sock, "recvfrom")
    client._sock.close()

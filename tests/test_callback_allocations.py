"""The audio callback allocates no arrays: 1000 callbacks of a live stream's AudioCallback,
with each built-in processor, the matrix and DCT paths, bypass, and effect stages, counted by a
numpy data-memory handler that counts every array buffer numpy allocates
(tests/numpy_alloc_counter.c, numpy's documented PyDataMem_SetHandler). The processors' numpy
route writes in place, the engine's input check, the monitor's levels, the queues' moves and
the stages' FIFOs use preallocated memory. The one exception: a pedalboard plugin returns a new
array from every process() (its API has no output argument), counted here beside the engine's
callbacks and required to be all there is.

The callback gets PortAudio's arguments as plain stand-ins (status flags, time stamps): the
stream itself is tested on the JACK dummy server in test_live.py."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest

SOURCE = Path(__file__).resolve().parent / "numpy_alloc_counter.c"
CALLS = 1000

CASES = {
    "identity (DCT path)": [],
    "quantize": ["processors=[{type: quantize, bits: 6}]"],
    "topk": ["processors=[{type: topk, k: 64}]"],
    "band": ["processors=[{type: band, lo: 8, hi: 100}]"],
    "threshold": ["processors=[{type: threshold, db: -40}]"],
    "learned_quantize": ["processors=[{type: learned_quantize}]"],
    "chain, M < N": ["model.coefficients=256", "model.init=lowpass",
                     "processors=[{type: quantize, bits: 8}, {type: topk, k: 32}]"],
    "float64 model": ["model.dtype=float64", "processors=[{type: quantize, bits: 8}]"],
    "hop 128": ["frame.hop=128", "processors=[{type: threshold, db: -30}]"],
    "mdct": ["model.init=mdct", "model.coefficients=256", "frame.window=sine"],
    "mdct, kbd, quantize": ["model.init=mdct", "model.coefficients=256", "frame.window=kbd",
                            "processors=[{type: quantize, bits: 6}]"],
}
STAGES = {
    "pre and post stages": ["pre=[{type: pedalboard.Gain, gain_db: 1}]",
                            "post=[{type: pedalboard.Compressor, threshold_db: -20}]"],
}

PROBE = textwrap.dedent("""
    import json, sys, types
    import numpy as np
    import numpy_alloc_counter as counter
    from cosine_host import load_config, Engine
    from cosine_host.live.callback import AudioCallback
    from cosine_host.live.control import Controls
    from cosine_host.live.monitor import CallbackRecorder

    B, C, CALLS = 256, 2, int(sys.argv[2])
    status = types.SimpleNamespace(_flags=0)
    stamps = types.SimpleNamespace(inputBufferAdcTime=0.0, outputBufferDacTime=0.0,
                                   currentTime=0.0)
    counter.install()
    counts = {}
    for name, sets in json.loads(sys.argv[1]).items():
        cfg = load_config(overrides=["model.device=cpu", *sets])
        engine = Engine.from_config(cfg, blocksize=B, channels=C)
        rec = CallbackRecorder(max_frames=B, channels=C)
        controls = Controls(engine, cfg, 0, on_status=dict, on_message=print)
        callback = AudioCallback(engine, rec, controls, None, None, None, RuntimeError)
        rng = np.random.default_rng(0)
        blocks = [rng.normal(0, 0.3, (B, C)).astype(np.float32) for _ in range(8)]
        blocks[3][:, 0] = 1.5                  # clipped samples: the monitor counts them
        out = np.zeros((B, C), np.float32)
        for i in range(64):                    # warm: first calls may size their buffers
            callback.handle(blocks[i % 8], out, B, stamps, status)
        counter.start()
        for i in range(CALLS):
            engine.bypass = i % 100 >= 90      # the dry path too, switched while running
            callback.handle(blocks[i % 8], out, B, stamps, status)
        counts[name] = counter.stop()
        assert callback.error is None, callback.error
        plugins = [s.plugin for chain in (engine.pre, engine.post) for s in chain.stages]
        given = [np.ascontiguousarray(b.T) for b in blocks]
        counter.start()
        for i in range(CALLS):
            for plugin in plugins:
                plugin.process(given[i % 8], 48000, reset=False)
        counts[name + " (the plugins alone)"] = counter.stop()
    print(json.dumps(counts))
""")


@pytest.fixture(scope="module")
def counter_folder(tmp_path_factory):
    """numpy_alloc_counter built as an extension module for this interpreter."""
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    assert compiler, "a C compiler (cc or gcc) is needed to build tests/numpy_alloc_counter.c"
    folder = tmp_path_factory.mktemp("alloc_counter")
    target = folder / ("numpy_alloc_counter" + sysconfig.get_config_var("EXT_SUFFIX"))
    built = subprocess.run([compiler, "-O2", "-shared", "-fPIC",
                            f"-I{sysconfig.get_paths()['include']}", f"-I{np.get_include()}",
                            "-o", str(target), str(SOURCE)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return folder


def _count(folder, cases: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder),
                                                        os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cases), str(CALLS)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_counter_sees_array_allocations(counter_folder):
    code = ("import numpy as np, numpy_alloc_counter as c; c.install(); a = np.ones(8); "
            "c.start(); b = a + a; d = np.empty(3); a += a; print(c.stop())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(counter_folder)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"               # b and d; the in-place add allocates none


def test_callbacks_allocate_no_arrays(counter_folder):
    counts = _count(counter_folder, CASES)
    assert {k: v for k, v in counts.items() if "plugins alone" not in k} == \
        {name: 0 for name in CASES}


def test_stages_allocate_only_what_the_plugins_return(counter_folder):
    pytest.importorskip("pedalboard")
    counts = _count(counter_folder, STAGES)
    for name in STAGES:
        alone = counts[name + " (the plugins alone)"]
        assert alone >= 2 * CALLS                   # two plugins, a new array each call at least
        assert counts[name] == alone

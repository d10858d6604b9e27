"""`live` with its extras running: does the audio callback keep its timing?

    .venv/bin/python benchmarks/live.py [--duration 60] [--blocksizes 32,256] [--rounds 1]
        [--processors YAML] [--trained] [--variants NAME,NAME]

    # issue 13's case: B = 64, quantize + top-k, on the matrix path, against the empty callback
    .venv/bin/python benchmarks/live.py --blocksizes 64 --trained \
        --processors "[{type: quantize, bits: 8}, {type: topk, k: 128}]" \
        --variants "empty callback,engine,engine short"

On a JACK dummy server (the one JACK_DEFAULT_SERVER names if it answers, else a private one
started here with real-time scheduling where allowed), for each block size, one stream per
variant, in a shuffled order each round:

- *empty callback*: a duplex stream that does nothing (tests/jackserver.py), the baseline;
- *engine*: `live` with a quantizer (or the ``--processors`` chain), nothing else, the
  interpreter's GIL switch interval (5 ms by default); ``--trained`` perturbs the model's
  parameters (saved as a checkpoint) so the engine runs its matrix products, not the DCT;
- *+ panel*: the rich panel redrawn every 0.25 s (into /dev/null as an 80x24 terminal);
- *+ osc*: the OSC server, with a client (another process) sending ``/status`` and a quantizer
  change every 50 ms;
- *+ record*: recording to a WAV file;
- *all*: panel, OSC (as above), playing a file and recording; with the default switch interval
  and with the one `live` sets (cosine_host.live.lifecycle.switch_interval_s).

Columns: xrun events and flagged callbacks, engine time per callback p50/p99/max (ms) and the
whole callback's max. Target (issue 14): with everything running, xrun events no more than the
empty callback's and p99/max no worse than *engine* with the shortened switch interval.
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from benchmarks.timing import machine_line  # noqa: E402


OSC_CLIENT = """
import sys, time
from pythonosc.udp_client import SimpleUDPClient
client = SimpleUDPClient("127.0.0.1", int(sys.argv[1]))
period_s, k = float(sys.argv[2]), 0
while True:
    time.sleep(period_s)
    client.send_message("/status", [])
    client.send_message("/processors/0/bits", 8 + k % 2)
    k += 1
"""


def osc_client(port: int, stop: threading.Event, period_s: float = 0.05) -> threading.Thread:
    """A controller in a process of its own (as a real one is: its Python does not compete
    for this interpreter's GIL), sending /status and a quantizer change (8 <-> 9 bits) every
    ``period_s``; stopped with ``stop``."""
    proc = subprocess.Popen([sys.executable, "-c", OSC_CLIENT, str(port), str(period_s)])

    def reap():
        stop.wait()
        proc.kill()
        proc.wait()
    t = threading.Thread(target=reap, daemon=True)
    t.start()
    return t


def panel_display():
    from rich.console import Console
    from cosine_host.live.panel import Panel
    panel = Panel(io.StringIO())
    panel.console = Console(file=open(os.devnull, "w"), force_terminal=True, width=80,
                            height=24)
    return panel


def run_variant(name: str, blocksize: int, duration_s: float, play_path: str,
                folder: str, overrides: list[str]) -> dict:
    import jackserver
    import cosine_host
    from cosine_host.live.session import LiveSession
    if name == "empty callback":
        r = jackserver.empty_stream(duration_s, blocksize, 2, 48000)
        return {"xrun_events": r["xrun_events"], "flagged": r["xruns"]["total"], "p50": None,
                "p99": None, "max": None, "cb_max": None}
    parts = set(name.replace(",", " ").split())
    everything = "all" in parts
    cfg = cosine_host.load_config(overrides=[f"audio.blocksize={blocksize}", "audio.samplerate=48000",
                                        "model.device=cpu", *overrides])
    record = os.path.join(folder, f"rec-{time.monotonic_ns()}.wav") \
        if everything or "record" in parts else None
    osc = everything or "osc" in parts
    session = LiveSession(cfg, play=play_path if everything else None, loop=True,
                          record=record, osc_port=0 if osc else None,
                          switch_interval=None if "short" in parts else 0)
    display = panel_display() if everything or "panel" in parts else None
    stop = threading.Event()
    client = []
    if osc:
        # the server's port is known once the stream starts: wait for it, then send
        def start_client():
            while getattr(session, "_osc", None) is None and not stop.is_set():
                time.sleep(0.01)
            if session._osc is not None:
                client.append(osc_client(session._osc.address[1], stop))
        threading.Thread(target=start_client, daemon=True).start()
    try:
        if display is not None:
            with display:
                rep = session.run(duration_s=duration_s, on_status=display)
        else:
            rep = session.run(duration_s=duration_s)
    finally:
        stop.set()
        if record and os.path.exists(record):
            os.unlink(record)
    p = rep["processing_ms"]
    return {"xrun_events": rep["xrun_events"], "flagged": rep["xruns"]["total"],
            "p50": p["p50"], "p99": p["p99"], "max": p["max"],
            "cb_max": rep["callback_ms"]["max"],
            "controls": len(rep["controls"])}


VARIANTS = ("empty callback", "engine", "engine short", "+ panel", "+ osc", "+ record",
            "all", "all short")


def trained_checkpoint(folder: str) -> str:
    """A checkpoint of the default model with every parameter perturbed (tests.helpers)."""
    import cosine_host
    from cosine_host.models import save_checkpoint
    from cosine_host.engine.build import build_model
    from tests.helpers import perturb
    model = build_model(cosine_host.load_config(overrides=["model.device=cpu"]))
    perturb(model)
    path = os.path.join(folder, "trained.pt")
    save_checkpoint(model, path)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per stream")
    ap.add_argument("--blocksizes", default="32,256")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--processors", default="[{type: quantize, bits: 8}]",
                    help="the processors of every engine variant (YAML list)")
    ap.add_argument("--trained", action="store_true",
                    help="perturbed parameters: the engine's matrix path instead of the DCT")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; allowed: {', '.join(VARIANTS)}")
    import jackserver
    import soundfile as sf
    from cosine_host.live.lifecycle import switch_interval_s
    from cosine_host.lab.speech import synthesize_speech

    print(machine_line("live"))
    server = None
    if not jackserver.server_answers(os.environ.get("JACK_DEFAULT_SERVER") or None):
        server = jackserver.start_dummy(48000, 256)
        os.environ["JACK_DEFAULT_SERVER"] = server.name
    try:
        with tempfile.TemporaryDirectory() as folder:
            play = os.path.join(folder, "speech.wav")
            sf.write(play, synthesize_speech(48000, 4.0), 48000, subtype="FLOAT")
            overrides = [f"processors={args.processors}"]
            if args.trained:
                overrides.append(f"model.checkpoint={trained_checkpoint(folder)}")
            rng = np.random.default_rng(0)
            for b in (int(x) for x in args.blocksizes.split(",")):
                rows = {v: [] for v in variants}
                for _ in range(args.rounds):
                    for i in rng.permutation(len(variants)):
                        v = variants[i]
                        rows[v].append(run_variant(v, b, args.duration, play, folder, overrides))
                print(f"\nblocksize {b} at 48 kHz: budget {1e3 * b / 48000:.2f} ms, "
                      f"{args.duration:.0f} s per stream, {args.rounds} round(s); short switch "
                      f"interval {1e3 * switch_interval_s(b, 48000):.2f} ms, default "
                      f"{1e3 * sys.getswitchinterval():.1f} ms; processors {args.processors}, "
                      f"{'trained (matrix path)' if args.trained else 'DCT init (DCT path)'}")
                print(f"{'variant':<16} {'xrun ev':>7} {'flagged':>7} {'p50 ms':>7} "
                      f"{'p99 ms':>7} {'max ms':>7} {'cb max':>7}")
                for v in variants:
                    r = rows[v]
                    ev = max(x["xrun_events"] for x in r)
                    fl = max(x["flagged"] for x in r)

                    def col(key):
                        vals = [x[key] for x in r if x[key] is not None]
                        return f"{np.median(vals):7.3f}" if vals else f"{'-':>7}"
                    print(f"{v:<16} {ev:>7} {fl:>7} {col('p50')} {col('p99')} {col('max')} "
                          f"{col('cb_max')}")
    finally:
        if server is not None:
            # PortAudio's JACK client goes before its server (else PortAudio aborts at exit)
            import sounddevice as sd
            while getattr(sd, "_initialized", 0) > 0:
                sd._terminate()
            server.stop()
    print(f"\n# load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

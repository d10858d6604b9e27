"""A real audio device for tests: a JACK server with its dummy backend.

The dummy backend paces itself in real time without any sound card, so PortAudio streams on it
behave like streams on a real device (callbacks at the real rate, real xruns). Used by the
``jack_server`` fixture in tests/conftest.py, and runnable by hand::

    python tests/jackserver.py empty-stream --duration 3 --blocksize 256

runs a duplex stream with an empty callback (the xrun baseline) and prints a JSON line.

Facts this relies on (see docs/live.md):
- PortAudio lists devices when it initialises (``import sounddevice``): start the server first,
  or call ``sounddevice._terminate(); sounddevice._initialize()`` afterwards.
- jack_* tools would start a server on their own unless JACK_NO_START_SERVER is set; every
  call here sets it, so only :func:`start_dummy` ever starts one.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

JACKD = "jackd"


def jack_env(server: str | None = None) -> dict:
    """Environment for JACK tools and clients: no auto-started servers; ``server`` selects a
    named server (JACK_DEFAULT_SERVER) when given."""
    env = dict(os.environ)
    env["JACK_NO_START_SERVER"] = "1"
    if server:
        env["JACK_DEFAULT_SERVER"] = server
    return env


def server_answers(server: str | None = None, timeout_s: float = 5.0) -> bool:
    """Whether a JACK server (the default one, or ``server``) answers ``jack_lsp``."""
    if shutil.which("jack_lsp") is None:
        return False
    try:
        r = subprocess.run(["jack_lsp"], capture_output=True, timeout=timeout_s,
                           env=jack_env(server))
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


def server_property(tool: str, server: str | None = None) -> int | None:
    """An int printed by ``jack_samplerate`` / ``jack_bufsize`` (None if it cannot be read)."""
    if shutil.which(tool) is None:
        return None
    r = subprocess.run([tool], capture_output=True, text=True, timeout=5, env=jack_env(server))
    for word in r.stdout.split():
        if word.isdigit():
            return int(word)
    return None


class JackServer:
    """A JACK server the tests use.

    Attributes:
        name: server name (JACK_DEFAULT_SERVER value), None for the default server.
        started: True when this object started jackd (and so will stop it).
        dummy: True when it is known to be the dummy backend with default (asynchronous)
            settings, for which a loopback round trip equals sum(stream.latency) * samplerate.
        samplerate: Hz; period: frames per JACK cycle.
        realtime: True when it runs with real-time scheduling (None: not known).
    """

    def __init__(self, name, process, log_path, samplerate, period, dummy):
        self.name = name
        self.process = process
        self.log_path = log_path
        self.started = process is not None
        self.samplerate = samplerate
        self.period = period
        self.dummy = dummy
        self.realtime = None

    def log(self) -> str:
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop jackd if we started it (SIGTERM, then SIGKILL after ``timeout_s``)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        self.process = None
        if self.log_path:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass


def start_dummy(samplerate: int = 48000, period: int = 256, name: str | None = None,
                realtime: bool = True, timeout_s: float = 15.0) -> JackServer:
    """Start ``jackd [--realtime | --no-realtime] -d dummy -r samplerate -p period`` and wait
    until it answers.

    Args:
        name: server name (jackd -n); None picks a private one (cosine-host-test-<pid>) so
            that two test sessions on one machine never stop each other's server.
        realtime: ask for real-time scheduling (SCHED_FIFO) for the server and its clients'
            process threads, as a desktop JACK runs. Where the system does not allow it,
            jackd says "Cannot use real-time scheduling" and runs without it (``realtime``
            of the result tells). With it, a machine busy with other work still runs the
            audio on time (measured on 2 cores at load 6: no xruns, engine p99 0.3 ms at
            blocksize 256, against dozens of xruns and 13 ms without it).
    Raises:
        FileNotFoundError: jackd is not installed.
        RuntimeError: it exited or did not answer within ``timeout_s`` (its log is included).
    """
    if shutil.which(JACKD) is None:
        raise FileNotFoundError("jackd not found; install the JACK server (Debian/Ubuntu: "
                                "`sudo apt install jackd2`)")
    name = name or f"cosine-host-test-{os.getpid()}"
    fd, log_path = tempfile.mkstemp(prefix="jackd-", suffix=".log")
    log = os.fdopen(fd, "w")
    cmd = [JACKD, "-n", name, "--realtime" if realtime else "--no-realtime", "-d", "dummy",
           "-r", str(samplerate), "-p", str(period)]
    # start_new_session: Ctrl-C in the test terminal goes to pytest, which then stops jackd in
    # the fixture's teardown (after the streams are closed), not to jackd directly.
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env=jack_env(None), start_new_session=True)
    log.close()
    server = JackServer(name, process, log_path, samplerate, period, dummy=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = server.log()
            server.stop()
            raise RuntimeError(f"jackd exited with {process.returncode}: {' '.join(cmd)}\n{text}")
        if server_answers(name, timeout_s=2.0):
            server.realtime = realtime and "Cannot use real-time scheduling" not in server.log()
            return server
        time.sleep(0.1)
    text = server.log()
    server.stop()
    raise RuntimeError(f"jackd did not answer jack_lsp within {timeout_s} s\n{text}")


def running_dummy(server: str | None = None) -> bool:
    """Whether a jackd process for ``server`` (None: JACK_DEFAULT_SERVER or "default") runs the
    dummy backend in the default asynchronous mode (Linux: read from /proc/*/cmdline)."""
    want = server or os.environ.get("JACK_DEFAULT_SERVER") or "default"
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if not args or os.path.basename(args[0]) not in ("jackd", "jackdmp"):
            continue
        name = "default"
        for i, a in enumerate(args):
            if a in ("-n", "--name") and i + 1 < len(args):
                name = args[i + 1]
            elif a.startswith("--name="):
                name = a.split("=", 1)[1]
        if name != want:
            continue
        driver = args.index("-d") if "-d" in args else -1
        sync = any(a in ("-S", "--sync") for a in args[:driver if driver >= 0 else None])
        return driver >= 0 and driver + 1 < len(args) and args[driver + 1] == "dummy" and not sync
    return False


def use_or_start(samplerate: int = 48000, period: int = 256,
                 realtime: bool = True) -> JackServer:
    """Use a JACK server that already runs (JACK_DEFAULT_SERVER or the default one), else start
    a private dummy server and point this process (and its children) at it via
    JACK_DEFAULT_SERVER and JACK_NO_START_SERVER."""
    existing = os.environ.get("JACK_DEFAULT_SERVER") or None
    if server_answers(existing):
        sr = server_property("jack_samplerate", existing) or samplerate
        per = server_property("jack_bufsize", existing) or period
        return JackServer(existing, None, None, sr, per, dummy=running_dummy(existing))
    server = start_dummy(samplerate, period, realtime=realtime)
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    os.environ["JACK_NO_START_SERVER"] = "1"
    return server


# --- the xrun baseline: an empty-callback duplex stream ---------------------------------------

def empty_stream(duration_s: float, blocksize: int, channels: int, samplerate: int,
                 device=None) -> dict:
    """Run a duplex float32 stream whose callback only zeroes its output, for ``duration_s``.

    Returns: {"callbacks", "frames", "duration_s", "xruns": {kind: count, "total"},
    "xrun_events", "latency": [input_s, output_s]}, counted as in a live report.
    """
    import numpy as np  # noqa: F401  (sounddevice wants it; keeps import errors early)
    import sounddevice as sd
    kinds = ("input_underflow", "input_overflow", "output_underflow", "output_overflow",
             "priming_output")
    counts = [0] * len(kinds)
    state = {"callbacks": 0, "frames": 0, "events": 0, "prev": 0}

    def callback(indata, outdata, frames, t, status):
        flags = status._flags
        if flags:
            for bit in range(5):
                if flags & (1 << bit):
                    counts[bit] += 1
            if not state["prev"]:
                state["events"] += 1   # counted as cosine_host.live.monitor does: runs of flagged calls
        state["prev"] = flags
        outdata.fill(0)
        state["callbacks"] += 1
        state["frames"] += frames

    with sd.Stream(samplerate=samplerate, blocksize=blocksize, channels=channels,
                   dtype="float32", device=device, latency="low", callback=callback) as s:
        t0 = time.monotonic()
        time.sleep(duration_s)
        elapsed = time.monotonic() - t0
        latency = list(s.latency)
    xruns = dict(zip(kinds, counts))
    xruns["total"] = sum(v for k, v in xruns.items() if k != "priming_output")
    return {"callbacks": state["callbacks"], "frames": state["frames"], "duration_s": elapsed,
            "xruns": xruns, "xrun_events": state["events"], "latency": latency}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("empty-stream", help="xrun baseline: a duplex stream with an empty "
                                            "callback; prints one JSON line")
    e.add_argument("--duration", type=float, default=3.0, help="seconds")
    e.add_argument("--blocksize", type=int, default=256, help="frames per callback (0 = any)")
    e.add_argument("--channels", type=int, default=2)
    e.add_argument("--samplerate", type=int, default=48000, help="Hz")
    s = sub.add_parser("serve", help="start a dummy JACK server and keep it until Ctrl-C")
    s.add_argument("--samplerate", type=int, default=48000)
    s.add_argument("--period", type=int, default=256)
    s.add_argument("--name", default=None)
    s.add_argument("--no-realtime", action="store_true", help="jackd --no-realtime")
    args = ap.parse_args(argv)
    if args.cmd == "empty-stream":
        print(json.dumps(empty_stream(args.duration, args.blocksize, args.channels,
                                      args.samplerate)))
        return 0
    server = start_dummy(args.samplerate, args.period, args.name,
                         realtime=not args.no_realtime)
    print(f"JACK dummy server {server.name!r} running; use it with "
          f"JACK_DEFAULT_SERVER={server.name}; Ctrl-C stops it", flush=True)
    try:
        while server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

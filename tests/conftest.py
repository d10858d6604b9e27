"""Shared fixtures. ``jack_server``: a real audio device for the live tests.

A JACK server with the dummy backend (``jackd --realtime -d dummy -r 48000 -p 256``) is a
real, real-time-paced device on machines without a sound card (CI included). The fixture uses
a JACK server that already runs, else starts a private one (see tests/jackserver.py) and points
this process and its children at it (JACK_DEFAULT_SERVER). It asks for real-time scheduling,
which jackd silently goes without where the system forbids it; COSINE_JACK_NO_REALTIME=1 makes
it start with --no-realtime, as design.md's command line does. Without jackd the live tests are
skipped, except on CI (CI=true), where they fail: CI must test live audio.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import jackserver  # noqa: E402  (tests/ on sys.path just above)


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture(scope="session")
def jack_server():
    """A running JACK server (jackserver.JackServer: name, samplerate, period, started, dummy).

    Started before this process imports sounddevice where possible (PortAudio lists devices
    when it initialises); if sounddevice was imported already, PortAudio is re-initialised so
    that it sees the server. Stopped (if started here) after the session, once PortAudio in
    this process has let go of it.
    """
    if shutil.which("jackd") is None and not jackserver.server_answers(
            os.environ.get("JACK_DEFAULT_SERVER") or None):
        message = ("jackd not found: the live-audio tests need a JACK server (Debian/Ubuntu: "
                   "`sudo apt install jackd2 libportaudio2`)")
        if _on_ci():
            pytest.fail(message + " -- required on CI (CI=true)", pytrace=False)
        pytest.skip(message)
    try:
        server = jackserver.use_or_start(
            samplerate=48000, period=256,
            realtime=os.environ.get("COSINE_JACK_NO_REALTIME", "") in ("", "0"))
    except (RuntimeError, FileNotFoundError) as e:
        pytest.fail(f"cannot start the JACK dummy server: {e}", pytrace=False)
    if "sounddevice" in sys.modules:
        import sounddevice as sd
        sd._terminate()   # documented way to make PortAudio list devices again
        sd._initialize()
    try:
        yield server
    finally:
        if server.started and "sounddevice" in sys.modules:
            # Close PortAudio's JACK client in this process before its server goes away;
            # sounddevice's exit handler then has nothing left to do.
            import sounddevice as sd
            while getattr(sd, "_initialized", 0) > 0:
                sd._terminate()
        server.stop()

"""JACK tooling: the client name PortAudio registered, the server's port graph through the JACK
command-line tools (jack_lsp, jack_connect, jack_disconnect; Debian package jackd2), and the
wiring of a stream's own outputs to its inputs for a true loopback."""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import time

from cosine_host.errors import UserError

TOOLS = ("jack_lsp", "jack_connect", "jack_disconnect")


def require_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise UserError(f"jack_loopback needs the JACK command-line tools ({', '.join(missing)} "
                        f"not found); install them (Debian/Ubuntu: `sudo apt install jackd2`)")


def _env() -> dict:
    env = dict(os.environ)
    env["JACK_NO_START_SERVER"] = "1"  # never let a helper tool start a server by accident
    return env


def client_name(sd) -> str:
    """The JACK client name that PortAudio registered for this process ("PortAudio", or
    "PortAudio-01" etc. when several processes use PortAudio on one server)."""
    lib = ctypes.CDLL(sd._libname)  # the library sounddevice loaded: same handle, same state
    fn = lib.PaJack_GetClientName
    fn.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    fn.restype = ctypes.c_int
    name = ctypes.c_char_p()
    if fn(ctypes.byref(name)) != 0 or not name.value:
        raise UserError("jack_loopback: PortAudio has no JACK client; is the JACK server "
                        "running and was it running before the program started?")
    return name.value.decode()


def run_tool(args: list[str], attempts: int = 4) -> subprocess.CompletedProcess:
    """Run a JACK command-line tool; retried because opening its JACK client can fail
    transiently on a busy machine ("Cannot open ... client")."""
    r = None
    for attempt in range(attempts):
        try:
            r = subprocess.run(args, capture_output=True, text=True, timeout=10,
                               env=_env())
        except (OSError, subprocess.TimeoutExpired) as e:
            raise UserError(f"{args[0]} failed ({e}); is the JACK server running?") from None
        if r.returncode == 0:
            return r
        time.sleep(0.2 * (attempt + 1))
    return r


def jack_connections() -> dict[str, list[str]]:
    """{port: [ports it is connected to]} for every port on the JACK server (``jack_lsp -c``)."""
    out = run_tool(["jack_lsp", "-c"])
    if out.returncode != 0:
        raise UserError("jack_lsp cannot reach the JACK server; start it (e.g. `jackd "
                        "--no-realtime -d dummy -r 48000 -p 256 &`)")
    ports: dict[str, list[str]] = {}
    current = None
    for line in out.stdout.splitlines():
        if not line.strip():
            continue
        if line[0].isspace():
            if current is not None:
                ports[current].append(line.strip())
        else:
            current = line.strip()
            ports[current] = []
    return ports


def client_ports(client: str) -> set[str]:
    return {p for p in jack_connections() if p.startswith(client + ":")}


def _port_number(port: str) -> int:
    m = re.search(r"(\d+)$", port)
    return int(m.group(1)) if m else -1


def wire_loopback(client: str, ports_before: set[str], channels: int) -> dict:
    """Connect this stream's output port k to its input port k, and disconnect every other
    source of its input ports. Returns {"client", "pairs": [[out, in], ...]}."""
    conns = jack_connections()
    new = [p for p in conns if p.startswith(client + ":") and p not in ports_before]
    ins = sorted((p for p in new if p.split(":", 1)[1].startswith("in_")), key=_port_number)
    outs = sorted((p for p in new if p.split(":", 1)[1].startswith("out_")), key=_port_number)
    if len(ins) != channels or len(outs) != channels:
        raise UserError(f"jack_loopback: expected {channels} new input and output ports of JACK "
                        f"client {client!r}, found inputs {ins} and outputs {outs}")
    pairs = [[src, dst] for src, dst in zip(outs, ins)]
    messages = []
    for src, dst in pairs:
        for other in conns.get(dst, []):
            if other != src:
                r = run_tool(["jack_disconnect", other, dst])
                messages.append(r.stderr or r.stdout)
        if src not in conns.get(dst, []):
            r = run_tool(["jack_connect", src, dst])
            messages.append(r.stderr or r.stdout)
    # Judge by the resulting graph, not by exit codes (a retried call may report a connection
    # that its first try already made).
    after = jack_connections()
    for src, dst in pairs:
        if after.get(dst) != [src]:
            detail = " ".join(" ".join(m.split()) for m in messages if m.strip())[:300]
            raise UserError(f"jack_loopback: {dst} is connected to {after.get(dst)}, not only "
                            f"to {src}" + (f" ({detail})" if detail else ""))
    return {"client": client, "pairs": pairs}

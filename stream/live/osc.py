"""The OSC server of `live --osc PORT` (python-osc, UDP): messages go to cosine_host.live.control.Controls.

One thread serves the socket and handles messages one at a time, in the order they arrive (a
checkpoint being loaded holds the messages behind it). ``/status`` is answered to the sender's
address with one ``/status`` message of alternating names and values
(``"p50_ms", 0.21, "p99_ms", 0.62, ...``; a value that does not exist yet is sent as -1).
"""
from __future__ import annotations

import math
import threading

from cosine_host.errors import UserError

DEFAULT_HOST = "127.0.0.1"


class OscServer:
    """A UDP OSC server in a daemon thread.

    Args:
        controls: cosine_host.live.control.Controls receiving every message.
        host: address to listen on (``control.osc.host``, default 127.0.0.1: this machine only).
        port: UDP port (0 lets the system choose; ``address`` says which).
    Raises:
        UserError: the port cannot be opened (in use, not allowed).
    """

    def __init__(self, controls, host: str = DEFAULT_HOST, port: int = 0):
        from pythonosc import dispatcher, osc_server
        self.controls = controls
        d = dispatcher.Dispatcher()
        d.set_default_handler(self._handle, needs_reply_address=True)
        try:
            self._server = osc_server.BlockingOSCUDPServer((host, int(port)), d)
        except OSError as e:
            raise UserError(f"cannot listen for OSC on {host}:{port}: {e.strerror or e}; choose "
                            f"another port with --osc PORT") from None
        self.address = self._server.server_address[:2]
        self._thread = None

    def _handle(self, client, address, *args):
        entry = self.controls.handle(address, args)
        if address == "/status" and entry.get("status") is not None:
            from pythonosc.osc_message_builder import OscMessageBuilder
            flat = []
            for k, v in entry["status"].items():
                if isinstance(v, bool):
                    v = int(v)
                if isinstance(v, (int, float)):
                    flat += [k, v if math.isfinite(v) else -1.0]
                elif v is None:
                    flat += [k, -1.0]
            msg = OscMessageBuilder("/status")
            for v in flat:
                msg.add_arg(v)
            # from the server's own socket: the sender hears it on the port it sent from
            self._server.socket.sendto(msg.build().dgram, client)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, name="live-osc",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

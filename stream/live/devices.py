"""Audio devices: list them, and resolve what a user typed (an index or part of a name).

sounddevice (and so PortAudio) is imported lazily, here and in stream/live/session.py only, so that
offline rendering and training work on machines without PortAudio.

PortAudio lists devices once, when it initialises (at ``import sounddevice``): a device or a
JACK server that appears later is not seen by this process.
"""
from __future__ import annotations

from cosine_host.errors import UserError

NO_DEVICE_HINT = ("connect one, or start the JACK server before this program "
                  "(e.g. `jackd --no-realtime -d dummy -r 48000 -p 256 &`)")
"""What to do when PortAudio sees no device: said by `devices` and by `live`."""

PORTAUDIO_HINT = ("install the PortAudio library: Debian/Ubuntu `sudo apt install libportaudio2`, "
                  "Fedora `sudo dnf install portaudio`, macOS `brew install portaudio` "
                  "(Windows: the sounddevice wheel bundles it)")


def import_sounddevice():
    """Import and return the ``sounddevice`` module.

    Raises:
        UserError: PortAudio (or sounddevice) is missing, with the command that installs it.
    """
    try:
        import sounddevice
    except OSError as e:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise UserError(f"PortAudio is not available ({e}); {PORTAUDIO_HINT}") from None
    except ImportError:
        raise UserError("the Python package sounddevice is missing; install it with "
                        "`pip install sounddevice`") from None
    return sounddevice


def query_devices() -> list[dict]:
    """All audio devices that PortAudio sees, in PortAudio's index order.

    Returns:
        One dict per device: ``index`` (int), ``name`` (str), ``hostapi`` (host API name, str),
        ``max_input_channels``, ``max_output_channels`` (int), ``default_samplerate`` (Hz,
        float), ``default_input``, ``default_output`` (bool: the system default device for that
        direction).
    Raises:
        UserError: PortAudio is not installed.
    """
    sd = import_sounddevice()
    hostapis = sd.query_hostapis()
    default_in, default_out = _defaults(sd)
    rows = []
    for d in sd.query_devices():
        rows.append({
            "index": int(d["index"]),
            "name": d["name"],
            "hostapi": hostapis[d["hostapi"]]["name"],
            "max_input_channels": int(d["max_input_channels"]),
            "max_output_channels": int(d["max_output_channels"]),
            "default_samplerate": float(d["default_samplerate"]),
            "default_input": int(d["index"]) == default_in,
            "default_output": int(d["index"]) == default_out,
        })
    return rows


def _defaults(sd) -> tuple[int, int]:
    """(default input index, default output index); -1 where there is none."""
    try:
        din, dout = sd.default.device
    except (TypeError, ValueError):
        din = dout = sd.default.device
    din = -1 if din is None else int(din)
    dout = -1 if dout is None else int(dout)
    # sd.default.device holds -1 unless the user set it; ask PortAudio for the system defaults.
    if din < 0:
        din = _portaudio_default(sd, "input")
    if dout < 0:
        dout = _portaudio_default(sd, "output")
    return din, dout


def _portaudio_default(sd, kind: str) -> int:
    try:
        return int(sd.query_devices(kind=kind)["index"])
    except (sd.PortAudioError, ValueError, KeyError):
        return -1


def find_device(spec, kind: str, devices: list[dict] | None = None) -> dict:
    """Find the device a user means.

    Args:
        spec: None (the system default for ``kind``), an int index, a string of digits (an
            index), or part of a device name (case-insensitive). A name part that matches no
            device name is tried against the host API names too, so ``-i jack`` finds the JACK
            device. An exact (case-insensitive) name match wins over partial matches.
        kind: "input" or "output": only devices with channels in that direction qualify.
        devices: the list from :func:`query_devices` (queried when None).
    Returns:
        The matching dict from :func:`query_devices`.
    Raises:
        UserError: no such device, several match (the candidates are listed), or it has no
            channels in that direction.
    """
    if kind not in ("input", "output"):
        raise ValueError(f"kind must be 'input' or 'output', not {kind!r}")
    devices = query_devices() if devices is None else devices
    channels_key = f"max_{kind}_channels"
    usable = [d for d in devices if d[channels_key] > 0]
    flag = "-i" if kind == "input" else "-o"

    if not usable:
        raise UserError(f"PortAudio sees no {kind} device (`python run.py devices` lists what "
                        f"it sees); {NO_DEVICE_HINT}")
    if spec is None:
        for d in usable:
            if d[f"default_{kind}"]:
                return d
        raise UserError(f"there is no default {kind} device; choose one with {flag} INDEX or "
                        f"{flag} NAME ({_listing(usable, kind)})")

    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        for d in devices:
            if d["index"] == index:
                if d[channels_key] <= 0:
                    raise UserError(f"device {index} ({d['name']!r}) has no {kind} channels; "
                                    f"{kind} devices: {_listing(usable, kind)}")
                return d
        raise UserError(f"there is no audio device with index {index}; {kind} devices: "
                        f"{_listing(usable, kind)}")

    text = str(spec).strip().lower()
    exact = [d for d in usable if d["name"].lower() == text]
    if len(exact) == 1:
        return exact[0]
    matches = exact or [d for d in usable if text in d["name"].lower()]
    if not matches:
        matches = [d for d in usable if text in d["hostapi"].lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"no {kind} device matches {spec!r}; {kind} devices: "
                        f"{_listing(usable, kind)}")
    raise UserError(f"{spec!r} matches {len(matches)} {kind} devices: {_listing(matches, kind)}; "
                    f"give the index or more of the name")


def _listing(devices: list[dict], kind: str) -> str:
    if not devices:
        return "none (see `python run.py devices`)"
    key = f"max_{kind}_channels"
    return "; ".join(f"{d['index']}: {d['name']} ({d['hostapi']}, {d[key]} ch)" for d in devices)


def check_settings(sd, input_device: dict, output_device: dict, channels: int,
                   samplerate: int) -> None:
    """Check that both devices can do ``channels`` float32 channels at ``samplerate`` Hz.

    Raises:
        UserError: naming the device, what it cannot do and what it can (channel count, default
            sample rate and the common rates it accepts).
    """
    for kind, dev, check in (("input", input_device, sd.check_input_settings),
                             ("output", output_device, sd.check_output_settings)):
        maxch = dev[f"max_{kind}_channels"]
        if channels > maxch:
            raise UserError(f"{kind} device {dev['index']} ({dev['name']}) has {maxch} {kind} "
                            f"channel{'s' if maxch != 1 else ''}, not {channels}; use "
                            f"--set audio.channels={maxch} (or fewer) or another device")
        try:
            check(device=dev["index"], channels=channels, dtype="float32",
                  samplerate=samplerate)
        except sd.PortAudioError as e:
            rates = supported_samplerates(sd, dev, kind, channels)
            can = (", ".join(str(r) for r in rates) + " Hz") if rates else \
                "none of the common rates"
            raise UserError(f"{kind} device {dev['index']} ({dev['name']}) cannot do {channels} "
                            f"channel(s) at {samplerate} Hz ({portaudio_message(e)}); it accepts: {can} "
                            f"(default {dev['default_samplerate']:.0f} Hz); use "
                            f"--set audio.samplerate=RATE") from None


COMMON_SAMPLERATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400,
                      192000)


def supported_samplerates(sd, dev: dict, kind: str, channels: int = 1) -> list[int]:
    """The common sample rates (Hz) that PortAudio accepts for ``dev`` in direction ``kind``."""
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    ok = []
    for rate in COMMON_SAMPLERATES:
        try:
            check(device=dev["index"], channels=max(1, min(channels, dev[f"max_{kind}_channels"])),
                  dtype="float32", samplerate=rate)
            ok.append(rate)
        except sd.PortAudioError:
            pass
    return ok


def portaudio_message(e: Exception) -> str:
    """PortAudioError's message on one line."""
    args = getattr(e, "args", ())
    text = args[0] if args and isinstance(args[0], str) else str(e)
    return " ".join(text.split())

"""`encode` and `decode`: audio files to .cos bitstreams and back, through the codec processor.

``encode_file`` runs the input through the same engine, chunking and latency compensation as
``render`` (stream/offline/render.py) with the config's codec processor writing its packets to a
.cos file (stream/offline/bitstream.py). ``decode_file`` rebuilds that engine from the file's
header, feeds it silence of the input's length and lets the codec read its packets instead of
its input: the decoder runs the engine's synthesis on exactly the coefficients the encoder's
codec produced, so ``decode(encode(x))`` equals ``render(x)`` sample for sample.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os

import numpy as np
import soundfile as sf

from cosine_host.engine.engine import Engine
from cosine_host.errors import UserError
from cosine_host.files import atomic_path
from cosine_host.models.processors.codec import PacketError
from cosine_host.offline import bitstream
from cosine_host.offline.render import CHUNK_FRAMES, _Reader, open_input

DECODE_SUBTYPES = ("FLOAT", "PCM_24", "PCM_16")
_COMPARED = {"frame": None, "model": ("coefficients", "init", "decoder", "dtype"),
             "processors": None}


def codec_index(cfg) -> int:
    """Index of the config's codec processor; a UserError when there is none or several."""
    found = [i for i, p in enumerate(cfg.processors) if p["type"] == "codec"]
    if len(found) != 1:
        what = "no codec processor" if not found else f"{len(found)} codec processors"
        raise UserError(f"processors: {what}; encode needs exactly one, e.g. -c codec or "
                        f"--set 'processors=[{{type: codec, kbps: 32}}]'")
    return found[0]


def checkpoint_sha256(path) -> str | None:
    """SHA-256 of the checkpoint file (None without one)."""
    if not path:
        return None
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise UserError(f"cannot read the checkpoint {path!r}: {e.strerror or e}") from None
    return digest.hexdigest()


def stream_info(cfg) -> dict:
    """What the header records of a config: the transform's settings, the processors and a
    hash of the checkpoint (the init alone says the rest when there is none)."""
    d = cfg.to_dict()
    model = {k: d["model"][k] for k in _COMPARED["model"]}
    model["checkpoint"] = cfg.model.checkpoint
    index = codec_index(cfg)
    return {"config": {"frame": d["frame"], "model": model, "processors": d["processors"]},
            "checkpoint_sha256": checkpoint_sha256(cfg.model.checkpoint),
            "codec_index": index,
            "codec": {k: v for k, v in d["processors"][index].items() if k != "type"}}


def _differences(made: dict, given: dict) -> list[str]:
    """``key: file X, config Y`` for each setting that differs between two stream_info()s."""
    out = []
    for section in ("frame", "model"):
        keys = _COMPARED[section] or made["config"][section].keys()
        for key in keys:
            a, b = made["config"][section].get(key), given["config"][section].get(key)
            if a != b:
                out.append(f"{section}.{key}: file {a!r}, config {b!r}")
    if made["config"]["processors"] != given["config"]["processors"]:
        out.append(f"processors: file {made['config']['processors']!r}, config "
                   f"{given['config']['processors']!r}")
    if made["checkpoint_sha256"] != given["checkpoint_sha256"]:
        out.append(f"checkpoint: file made with sha256 {made['checkpoint_sha256']}, config's "
                   f"is {given['checkpoint_sha256']}")
    return out


def _aligned(engine: Engine, chunks, total: int):
    """The engine's output for ``chunks`` (``total`` frames in all), aligned and cut as
    render does it (the same calls, so the same samples)."""
    fed = [0, False]

    def feed():
        for chunk in chunks:
            fed[0] += chunk.shape[0]
            yield chunk
        fed[1] = True

    emitted = 0
    pieces = engine.render_chunks(feed(), total + 64)
    try:
        for piece in pieces:
            if fed[1]:
                piece = piece[:max(fed[0] - emitted, 0)]
            if piece.shape[0] == 0:
                break
            emitted += piece.shape[0]
            yield piece
            if fed[1] and emitted >= fed[0]:
                break
    finally:
        pieces.close()


def encode_file(cfg, input: str, output: str, kbps: float | None = None,
                overwrite: bool = False) -> dict:
    """Encode an audio file into a .cos bitstream.

    Args:
        cfg: a Config whose processors hold exactly one ``codec``.
        input: any file soundfile reads; its own sample rate and channels are kept.
        output: the .cos path (written atomically; an existing one only with ``overwrite``).
        kbps: overrides the codec's target bitrate (kbit/s).
    Returns:
        A report: input, output, samplerate, channels, samples, seconds_audio, packets,
        bytes (the file's), kbps_file (the whole file x 8 / seconds), and the codec's stats
        (kbps_bytes, kbps_estimate, kbps_side, ...), warnings.
    """
    index = codec_index(cfg)
    if kbps is not None:
        cfg = cfg.replace(f"processors.{index}.kbps={kbps}")
    info = stream_info(cfg)
    with open_input(input, input) as source:
        channels, rate = source.channels, source.samplerate
        engine = Engine.from_config(cfg, blocksize=0, channels=channels, samplerate=rate)
        codec = engine.processors[index]
        reader = _Reader(source, CHUNK_FRAMES, input)
        try:
            with atomic_path(output, overwrite=overwrite) as tmp:
                with open(tmp, "wb") as f:
                    writer = bitstream.Writer(f, rate, channels, info)
                    codec.packet_sink = writer.add
                    for _ in _aligned(engine, reader.chunks(), source.frames):
                        stats = codec.stats()
                    writer.finish(reader.frames_read)
        except FileExistsError:
            raise UserError(f"output {output!r} appeared while encoding; pass --overwrite to "
                            f"replace it") from None
        except OSError as e:
            raise UserError(f"cannot write {output!r}: {e.strerror or e}") from e
    warnings = []
    if reader.missing > 0:
        warnings.append(f"{input}: only {reader.frames_read} of {source.frames} frames could "
                        f"be read (truncated file); encoded what was read")
    seconds = reader.frames_read / rate
    size = os.path.getsize(output)
    return {"input": input, "output": output, "samplerate": rate, "channels": channels,
            "samples": reader.frames_read, "seconds_audio": seconds,
            "packets": writer.packets, "bytes": size,
            "kbps_file": 8.0 * size / seconds / 1000.0 if seconds else None,
            **{k: v for k, v in stats.items()}, "warnings": warnings}


def _config_from(info: dict, name: str):
    """The Config a stream was made with, rebuilt from its header."""
    from cosine_host.config.schema import load_config
    try:
        made = info["config"]
        model = dict(made["model"])
        overrides = [f"frame={json.dumps(made['frame'])}", f"model={json.dumps(model)}",
                     f"processors={json.dumps(made['processors'])}"]
        return load_config(None, overrides)
    except (KeyError, TypeError):
        raise bitstream.BitstreamError(f"{name!r}: its header lacks the transform's settings; "
                                       f"the file is damaged") from None
    except UserError as e:
        raise bitstream.BitstreamError(f"{name!r}: its header's settings are not valid here "
                                       f"({e})") from None


def decode_file(input: str, output: str, cfg=None, subtype: str | None = None,
                overwrite: bool = False) -> dict:
    """Decode a .cos bitstream to an audio file of the encoded input's length and rate.

    Args:
        input: the .cos file.
        output: audio path (WAV for FLOAT; the container follows the extension).
        cfg: the Config to decode with, or None to use the one in the file's header; either
            way a config or checkpoint that differs from the file's is refused, naming the
            difference.
        subtype: "FLOAT" (the engine's samples exactly), "PCM_24" or "PCM_16" (rounded to
            nearest, clipped); None (default): FLOAT where the container holds it (WAV),
            else PCM_24.
    Returns:
        A report: input, output, samplerate, channels, samples, packets, packets_missing,
        kbps_file, warnings (a file cut short: how many packets and seconds are missing).
    """
    container = _container(output)
    if subtype is None:
        subtype = "FLOAT" if sf.check_format(container, "FLOAT") else "PCM_24"
    subtype = str(subtype).upper()
    if subtype not in DECODE_SUBTYPES:
        raise UserError(f"--subtype {subtype}: unknown; allowed: {' | '.join(DECODE_SUBTYPES)}")
    try:
        with open(input, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise UserError(f"input file not found: {input!r}; check the path") from None
    except IsADirectoryError:
        raise UserError(f"input {input!r} is a folder; give a .cos file") from None
    except OSError as e:
        raise UserError(f"cannot read {input!r}: {e.strerror or e}") from None
    held = [t for t in DECODE_SUBTYPES if sf.check_format(container, t)]
    if not held:
        raise UserError(f"output {output!r}: decode writes lossless files with PCM or float "
                        f"samples (.wav, .flac, .aiff), not {container}")
    if subtype not in held:
        raise UserError(f"--subtype {subtype}: a {container} file cannot hold it; write a .wav "
                        f"output or choose {' | '.join(held)}")
    stream = bitstream.read(data, input)
    made_cfg = _config_from(stream.info, input)
    if cfg is None:
        cfg = made_cfg
    given = stream_info(cfg)
    made = dict(stream.info)
    made_config = made.get("config", {})
    differences = _differences(made, given) if isinstance(made_config, dict) else ["header"]
    if differences:
        raise UserError(f"{input!r} was made with another transform or codec: "
                        f"{'; '.join(differences)}; decode with the config it was made with")
    index = codec_index(cfg)
    engine = Engine.from_config(cfg, blocksize=0, channels=stream.channels,
                                samplerate=stream.samplerate)
    codec = engine.processors[index]
    queue = collections.deque(stream.packets)
    codec.packet_source = lambda: queue.popleft() if queue else None
    total = stream.samples
    sizes = [min(CHUNK_FRAMES, total - i) for i in range(0, total, CHUNK_FRAMES)]
    silence = np.zeros((CHUNK_FRAMES if total >= CHUNK_FRAMES else max(total, 1),
                        stream.channels), np.float32)
    converter = None
    if subtype != "FLOAT":
        from cosine_host.offline.pcm import PcmConverter
        converter = PcmConverter(subtype, "none")
    written = 0
    try:
        with atomic_path(output, overwrite=overwrite) as tmp:
            with sf.SoundFile(str(tmp), "w", samplerate=stream.samplerate,
                              channels=stream.channels, subtype=subtype,
                              format=container) as sink:
                for piece in _aligned(engine, (silence[:n] for n in sizes), total):
                    sink.write(piece if converter is None
                               else converter.convert(np.clip(piece, -1.0, 1.0)))
                    written += piece.shape[0]
    except FileExistsError:
        raise UserError(f"output {output!r} appeared while decoding; pass --overwrite to "
                        f"replace it") from None
    except OSError as e:
        raise UserError(f"cannot write {output!r}: {e.strerror or e}") from e
    except PacketError as e:       # a packet the range decoder cannot read
        raise UserError(f"{input!r}: {e}; the file is damaged") from None
    warnings = []
    if stream.missing:
        seconds = stream.missing * cfg.frame.hop / stream.samplerate
        warnings.append(f"{input}: cut short, {stream.missing} of {stream.packets_expected} "
                        f"packets missing (about {seconds:.2f} s at the end, decoded as "
                        f"silence)")
    if stream.unchecked:
        warnings.append(f"{input}: the last {stream.unchecked} packets lost their checksum "
                        f"with the end of the file and were decoded unchecked")
    seconds_audio = total / stream.samplerate
    return {"input": input, "output": output, "samplerate": stream.samplerate,
            "channels": stream.channels, "samples": written, "seconds_audio": seconds_audio,
            "packets": len(stream.packets), "packets_missing": stream.missing,
            "kbps_file": 8.0 * len(data) / seconds_audio / 1000.0 if seconds_audio else None,
            "warnings": warnings}


def _container(path: str) -> str:
    """soundfile's format name for an output's extension (WAV when it has none it knows)."""
    extension = os.path.splitext(path)[1].lstrip(".").upper()
    if extension in sf.available_formats():
        return extension
    return "WAV"

"""`encode` / `decode` and the .cos file: decode(encode(x)) equals render(x) sample for sample,
a file cut short decodes its whole packets with a warning, a corrupt or foreign file is one
line and exit 2, a file made with another transform or checkpoint is refused."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cosine_host.config.schema import load_config
from cosine_host.errors import UserError
from cosine_host.lab.speech import synthesize_speech
from cosine_host.offline import bitstream
from cosine_host.offline.codec_files import decode_file, encode_file

ROOT = Path(__file__).resolve().parent.parent
SR = 48000


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or ROOT)


def one_line_error(r) -> str:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("codec") / "speech.wav"
    sf.write(path, synthesize_speech(seconds=1.5), SR, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def stereo_file(tmp_path_factory) -> Path:
    from cosine_host.lab.material import synthesize_material
    path = tmp_path_factory.mktemp("codec") / "music.wav"
    sf.write(path, synthesize_material(seconds=1.0)[:40000], SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def encoded(speech_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("codec") / "speech.cos"
    encode_file(load_config("codec"), str(speech_file), str(out), kbps=24)
    return out


def test_decode_of_encode_is_render_sample_for_sample(stereo_file, tmp_path):
    cos, decoded, rendered = tmp_path / "m.cos", tmp_path / "dec.wav", tmp_path / "ren.wav"
    r = run_cli("encode", stereo_file, cos, "-c", "codec", "--kbps", 48)
    assert r.returncode == 0, r.stderr
    r = run_cli("decode", cos, decoded)
    assert r.returncode == 0, r.stderr
    r = run_cli("render", stereo_file, rendered, "-c", "codec", "--set", "processors.0.kbps=48",
                "--subtype", "FLOAT")
    assert r.returncode == 0, r.stderr
    a, rate_a = sf.read(decoded, dtype="float32")
    b, rate_b = sf.read(rendered, dtype="float32")
    assert rate_a == rate_b == SR and a.shape == b.shape == (40000, 2)
    assert np.array_equal(a, b)
    assert np.abs(a).max() > 0.1                 # not silence on both sides
    # and the file's bytes are what the codec said it wrote, plus the header and checksums
    stream = bitstream.read(cos.read_bytes(), "m.cos")
    assert len(stream.packets) == stream.packets_expected and stream.samples == 40000


def test_existing_outputs_are_refused_without_overwrite(speech_file, encoded, tmp_path):
    target = tmp_path / "x.cos"
    target.write_bytes(b"keep")
    line = one_line_error(run_cli("encode", speech_file, target, "-c", "codec"))
    assert "exists; pass --overwrite" in line and target.read_bytes() == b"keep"
    wav = tmp_path / "x.wav"
    wav.write_bytes(b"keep")
    line = one_line_error(run_cli("decode", encoded, wav))
    assert "exists; pass --overwrite" in line and wav.read_bytes() == b"keep"
    r = run_cli("decode", encoded, wav, "--overwrite")
    assert r.returncode == 0 and sf.info(wav).frames == 72000


def test_encode_needs_a_codec_in_the_chain(speech_file, tmp_path):
    line = one_line_error(run_cli("encode", speech_file, tmp_path / "x.cos"))
    assert "processors: no codec processor; encode needs exactly one" in line
    assert not (tmp_path / "x.cos").exists()
    line = one_line_error(run_cli("encode", speech_file, tmp_path / "x.cos", "-c", "codec",
                                  "--kbps", 0))
    assert "kbps = 0.0: out of range" in line


def test_a_file_cut_short_decodes_its_whole_packets_with_a_warning(encoded, tmp_path):
    data = encoded.read_bytes()
    stream = bitstream.read(data, "full")
    full = tmp_path / "full.wav"
    decode_file(str(encoded), str(full))
    reference, _ = sf.read(full, dtype="float32")
    for keep in (0.9, 0.5, 0.2):
        cut = tmp_path / f"cut{keep}.cos"
        cut.write_bytes(data[:int(len(data) * keep)])
        out = tmp_path / f"cut{keep}.wav"
        r = run_cli("decode", cut, out)
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
        assert "warning:" in r.stderr and "packets missing" in r.stderr
        short = bitstream.read(cut.read_bytes(), "cut")
        assert 0 < len(short.packets) < stream.packets_expected
        assert short.packets == stream.packets[:len(short.packets)]
        decoded, _ = sf.read(out, dtype="float32")
        assert decoded.shape == reference.shape
        # what the whole packets carry is decoded as in the full file (up to the last
        # frames that overlap the missing ones)
        whole = len(short.packets) * 256 - 1024
        assert np.array_equal(decoded[:whole], reference[:whole])


def test_header_cut_short_random_and_foreign_files_are_one_line(encoded, speech_file,
                                                                tmp_path):
    data = encoded.read_bytes()
    cases = {"header.cos": data[:30], "empty.cos": b"",
             "random.cos": np.random.default_rng(0).bytes(4000),
             "wav.cos": speech_file.read_bytes()[:5000]}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        line = one_line_error(run_cli("decode", path, tmp_path / "out.wav"))
        assert name in line
        assert not (tmp_path / "out.wav").exists()
    line = one_line_error(run_cli("decode", tmp_path / "missing.cos", tmp_path / "out.wav"))
    assert "not found" in line


def test_fuzz_flipped_bits_and_random_cuts_never_escape_as_tracebacks(encoded, tmp_path):
    data = encoded.read_bytes()
    rng = np.random.default_rng(7)
    outcomes = {"decoded": 0, "refused": 0}
    for trial in range(40):
        mutated = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            position = int(rng.integers(0, len(mutated)))
            mutated[position] ^= 1 << int(rng.integers(0, 8))
        if trial % 2:
            mutated = mutated[:int(rng.integers(1, len(mutated)))]
        path = tmp_path / "fuzz.cos"
        path.write_bytes(bytes(mutated))
        try:
            decode_file(str(path), str(tmp_path / "fuzz.wav"), overwrite=True)
            outcomes["decoded"] += 1
        except UserError as e:
            assert "\n" not in str(e)
            outcomes["refused"] += 1
    # a flipped bit before the cut is caught by a checksum: most trials are refused
    assert outcomes["refused"] >= 20, outcomes
    # the same through the command line: one line, exit 2
    mutated = bytearray(data)
    mutated[len(data) // 2] ^= 0x10
    path = tmp_path / "flipped.cos"
    path.write_bytes(bytes(mutated))
    line = one_line_error(run_cli("decode", path, tmp_path / "flipped.wav"))
    assert "corrupt (CRC mismatch)" in line


def test_a_file_made_with_another_config_or_checkpoint_is_refused(encoded, tmp_path):
    out = tmp_path / "out.wav"
    line = one_line_error(run_cli("decode", encoded, out, "-c", "codec", "--set",
                                  "frame.hop=128"))
    assert "frame.hop: file 256, config 128" in line
    line = one_line_error(run_cli("decode", encoded, out, "-c", "codec"))   # 32 kbps, not 24
    assert "processors: file" in line and "'kbps': 24.0" in line
    r = run_cli("decode", encoded, out, "-c", "codec", "--set", "processors.0.kbps=24")
    assert r.returncode == 0, r.stderr
    # a checkpoint: the file records its hash and the decoder compares it
    import torch
    from cosine_host.models import LearnedCosine, save_checkpoint
    model = LearnedCosine(512, 512, init="dct")
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    save_checkpoint(model, str(first))
    with torch.no_grad():
        model.encoder.freq_offset_bins.add_(1e-3)
    save_checkpoint(model, str(second))
    speech = tmp_path / "s.wav"
    sf.write(speech, synthesize_speech(seconds=0.5), SR, subtype="FLOAT")
    made = tmp_path / "ckpt.cos"
    r = run_cli("encode", speech, made, "-c", "codec", "--set", f"model.checkpoint={first}")
    assert r.returncode == 0, r.stderr
    line = one_line_error(run_cli("decode", made, out, "--overwrite", "-c", "codec", "--set",
                                  f"model.checkpoint={second}"))
    assert "checkpoint: file made with sha256" in line
    r = run_cli("decode", made, out, "--overwrite")          # the checkpoint it names
    assert r.returncode == 0, r.stderr


def test_decode_output_formats(encoded, tmp_path):
    flac = tmp_path / "out.flac"
    r = run_cli("decode", encoded, flac)                      # FLAC holds no float: PCM_24
    assert r.returncode == 0, r.stderr
    assert sf.info(flac).subtype == "PCM_24" and sf.info(flac).frames == 72000
    wav = tmp_path / "out.wav"
    assert run_cli("decode", encoded, wav).returncode == 0
    exact, _ = sf.read(wav, dtype="float32")
    pcm, _ = sf.read(flac, dtype="float32")
    assert np.abs(pcm - np.clip(exact, -1, 1)).max() <= 2 ** -23 + 1e-9   # rounded to 24 bits
    line = one_line_error(run_cli("decode", encoded, tmp_path / "x.flac", "--subtype", "float"))
    assert "--subtype FLOAT: a FLAC file cannot hold it" in line
    line = one_line_error(run_cli("decode", encoded, tmp_path / "x.ogg"))
    assert "decode writes lossless files" in line
    line = one_line_error(run_cli("decode", encoded, tmp_path / "x.wav", "--subtype", "PCM_8"))
    assert "--subtype PCM_8: unknown" in line
    assert not any(tmp_path.glob("x.*"))

"""`encode` and `decode`: audio files to .cos bitstreams through the codec processor and back."""
from __future__ import annotations

import click

from cosine_host.cli.base import (check_outputs, config_options, example, handles_errors, load,
                                  overwrite_option, write_json)


@click.command(epilog=example("python run.py encode speech.wav speech.cos -c codec --kbps 24"))
@config_options
@click.argument("input")
@click.argument("output")
@click.option("--kbps", type=float, default=None, metavar="K",
              help="Target bitrate in kbit/s (overrides the config's codec kbps).")
@click.option("--report", "report_path", default=None, help="Write a JSON report here.")
@overwrite_option
@handles_errors
def encode(config_path, overrides, input, output, kbps, report_path, overwrite):
    """Encode INPUT (any audio file) into the bitstream OUTPUT (.cos) with the config's codec."""
    from cosine_host.offline.codec_files import encode_file
    cfg = load(config_path, overrides)
    check_outputs(cfg, [("output", output), ("--report", report_path)], overwrite,
                  inputs=[("input", input)])
    report = encode_file(cfg, input, output, kbps=kbps, overwrite=overwrite)
    _finish(report, report_path,
            f"{input} -> {output}: {report['seconds_audio']:.2f} s, {report['packets']} "
            f"packets, {report['bytes']} bytes, {report['kbps_file']:.2f} kbps "
            f"(target {report['kbps']:g}, packets {report['kbps_bytes']:.2f} kbps)")


@click.command(epilog=example("python run.py decode speech.cos speech-decoded.wav"))
@click.option("-c", "--config", "config_path", default=None, metavar="FILE|PRESET",
              help="Decode with this config and refuse a file made with another (default: "
                   "the config recorded in the file).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override one value of -c's config (repeatable).")
@click.argument("input")
@click.argument("output")
@click.option("--subtype", default=None, metavar="FLOAT|PCM_24|PCM_16",
              help="Output sample format (FLOAT keeps the decoder's samples exactly; default: "
                   "FLOAT where the container holds it, else PCM_24).")
@click.option("--report", "report_path", default=None, help="Write a JSON report here.")
@overwrite_option
@handles_errors
def decode(config_path, overrides, input, output, subtype, report_path, overwrite):
    """Decode the bitstream INPUT (.cos) into the audio file OUTPUT, as `render` would play it."""
    from cosine_host.offline.codec_files import decode_file
    cfg = load(config_path, overrides) if config_path or overrides else None
    check_outputs(cfg, [("output", output), ("--report", report_path)], overwrite,
                  inputs=[("input", input)])
    report = decode_file(input, output, cfg=cfg, subtype=subtype, overwrite=overwrite)
    _finish(report, report_path,
            f"{input} -> {output}: {report['seconds_audio']:.2f} s {report['samplerate']} Hz "
            f"{report['channels']} ch, {report['packets']} packets, "
            f"{report['kbps_file']:.2f} kbps")


def _finish(report: dict, report_path, line: str) -> None:
    """The summary line, the report's warnings (stderr) and the --report file."""
    click.echo(line)
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    if report_path:
        write_json(report_path, report)

"""`live`: the engine on a duplex sound-device stream."""
from __future__ import annotations

import sys

import click

from cosine_host.cli.base import (check_outputs, config_options, device_options, example, fail,
                                  handles_errors, load, overwrite_option)


@click.command(epilog=example("python run.py live -c quantize-6bit --play speech.wav --loop "
                              "--record out.wav --osc 9000 --report live.json"))
@config_options
@device_options
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds (default: run until q or Ctrl-C).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Write a JSON report here when the stream stops.")
@click.option("--play", "play_path", default=None, metavar="FILE",
              help="Feed this sound file to the engine instead of the input device.")
@click.option("--loop", is_flag=True, help="With --play: repeat the file.")
@click.option("--record", "record_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Write what the engine plays to this sound file.")
@click.option("--osc", "osc_port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Take OSC controls on this UDP port (default: control.osc.port).")
@overwrite_option
@handles_errors
def live(config_path, overrides, input_device, output_device, duration, report_path, play_path,
         loop, record_path, osc_port, overwrite):
    """Run the engine on a duplex sound device stream with a live panel (compute time, xruns,
    latency, levels; plain status lines when stderr is not a terminal).

    Keys (when standard input is a terminal): q quits, b toggles bypass (same latency).
    OSC addresses: see docs/live.md.
    """
    from cosine_host.live.panel import status_display
    from cosine_host.live.session import LiveSession
    cfg = load(config_path, overrides)
    report_path = report_path or cfg.monitor.report
    if loop and not play_path:
        fail("--loop repeats the --play file; give --play FILE too")
    check_outputs(cfg, [("--report", report_path), ("--record", record_path)], overwrite,
                  inputs=[("--play", play_path)] if play_path else ())
    session = LiveSession(cfg, input_device=input_device, output_device=output_device,
                          report_path=report_path, play=play_path, loop=loop,
                          record=record_path, osc_port=osc_port)
    with status_display() as display:
        report = session.run(duration_s=duration, on_status=display, keys=sys.stdin.isatty())
    click.echo(session.summary(report))
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)

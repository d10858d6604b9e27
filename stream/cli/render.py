"""`render`: audio files through the engine, latency compensated."""
from __future__ import annotations

import os

import click

from cosine_host.cli.base import (config_options, example, fail, handles_errors, load,
                                  overwrite_option, write_json)
from cosine_host.cli.display import progress_display


@click.command(epilog=example("python run.py render in.wav out.wav --set "
                              "'processors=[{type: quantize, bits: 6}]'"))
@config_options
@click.argument("paths", nargs=-1, required=True, metavar="INPUT [OUTPUT] | INPUT... --out-dir DIR")
@click.option("--out-dir", default=None, metavar="DIR",
              help="Render every INPUT (files or folders) into DIR.")
@click.option("--recursive", "-r", is_flag=True,
              help="With --out-dir: also render the subfolders of folder INPUTs, mirrored in DIR.")
@click.option("--format", "container", default=None, metavar="wav|flac|aiff|ogg|opus|mp3|...",
              help="Output container where the name cannot say it (needed for OUTPUT '-'; "
                   "with --out-dir it sets every output's extension).")
@click.option("--report", "report_path", default=None, metavar="FILE",
              help="Write a JSON report here (one file) or a summary of all files (--out-dir).")
@click.option("--report-dir", default=None, metavar="DIR",
              help="With --out-dir: one JSON report per rendered output, mirrored below DIR "
                   "(DIR/<output path below --out-dir>.json).")
@click.option("--subtype", default=None, metavar="PCM_16|PCM_24|FLOAT",
              help="Output sample format (default: the input's where possible, else FLOAT).")
@click.option("--dither", type=click.Choice(["auto", "tpdf", "none"], case_sensitive=False),
              default="auto", show_default=True,
              help="TPDF dither before rounding to integers; auto: only when the output has "
                   "fewer bits than the input.")
@click.option("--samplerate", type=int, default=None, metavar="HZ",
              help="Resample the input to HZ on the way in (soxr, very high quality).")
@click.option("--quality", type=click.FloatRange(0, 1), default=None,
              help="OGG/Opus/MP3 outputs: 0 (smallest file) .. 1 (best sound).")
@click.option("--bitrate-mode", type=click.Choice(["constant", "average", "variable"],
                                                  case_sensitive=False), default=None,
              help="OGG/Opus/MP3 outputs: the encoder's bitrate mode.")
@click.option("--jobs", "-j", "jobs_option", default=None, metavar="N|auto",
              help="With --out-dir: render N files at once in worker processes (auto: one per "
                   "core; default 1); outputs are bit-identical to --jobs 1.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None,
              metavar="[ADDRESS]",
              help="With --out-dir: render on Ray actors, on a local Ray instance, or on the "
                   "cluster at ADDRESS (auto, host:port); needs pip install "
                   "'cosine-host[cluster]' and, on a cluster, a filesystem every node shares.")
@click.option("--skip-existing", is_flag=True,
              help="Skip outputs that exist complete (frames, rate, channels, format as this "
                   "render would write them): run again to finish a stopped batch.")
@overwrite_option
@handles_errors
def render(config_path, overrides, paths, out_dir, recursive, container, report_path,
           report_dir, subtype, dither, samplerate, quality, bitrate_mode, jobs_option,
           ray_address, skip_existing, overwrite):
    """Render audio files through the engine, latency compensated (OUTPUT[i] lines up with INPUT[i]).

    INPUT OUTPUT renders one file ('-' reads standard input / writes standard output; then
    the summary goes to standard error); several INPUTs or folders with --out-dir render each
    file, carry on past bad ones and exit non-zero if any failed.
    """
    from cosine_host.offline.plan import plan_render, render_planned, start_workers
    workers = start_workers(jobs_option, out_dir, ray_address, paths, recursive,
                            container)                           # before torch loads here
    from cosine_host.offline.audio_io import STDIO
    from cosine_host.offline.render import summary_line
    cfg = load(config_path, overrides)
    plan = plan_render(cfg, paths, out_dir, recursive=recursive, container=container,
                       report_path=report_path, report_dir=report_dir,
                       skip_existing=skip_existing, workers=workers,
                       workers_given=jobs_option is not None, ray_address=ray_address,
                       subtype=subtype, dither=dither, samplerate=samplerate, quality=quality,
                       bitrate_mode=bitrate_mode, overwrite=overwrite)
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    for s in plan.skipped:
        click.echo(f"skipped: {s['output']} ({s['reason']})", err=True)

    def echo_report(report: dict, err: bool = False) -> None:
        click.echo(summary_line(report), err=err)
        for warning in report["warnings"]:
            click.echo(f"warning: {warning}", err=True)

    if plan.single:
        if not plan.todo:
            return
        source, target = plan.jobs[0]
        with progress_display(os.path.basename(source)) as progress:
            report = render_planned(plan, progress=progress)
        echo_report(report, err=target == STDIO)
        if report_path:
            write_json(report_path, report)
        return

    def show(outcome: dict) -> None:
        if "report" in outcome:
            echo_report(outcome["report"])
        else:
            click.echo(f"failed: {outcome['input']}: {outcome['error']}", err=True)

    try:
        with progress_display("render") as progress:
            summary = render_planned(plan, on_outcome=show, progress=progress)
    except KeyboardInterrupt as e:
        if report_path and getattr(e, "summary", None) is not None:
            write_json(report_path, e.summary)      # what finished, and what is left
            e.note = (f"{e.note}; --report {report_path!r} lists what finished and what "
                      f"is left")
        raise
    if "ray" in summary:
        ray = summary["ray"]
        click.echo(f"ray: {ray['actors']} actors at {ray['address']}, ready in "
                   f"{ray['startup_s']:.1f} s", err=True)
    failed = summary["failed"]
    if plan.skipped or len(plan.jobs) > 1:
        click.echo(f"{len(summary['rendered'])} rendered, {len(plan.skipped)} skipped, "
                   f"{len(failed)} failed", err=True)
    if report_path:
        write_json(report_path, summary)
    if failed:
        fail(f"{len(failed)} of {len(plan.jobs)} files failed: "
             + ", ".join(f["input"] for f in failed), 1)

"""cosine-host: hear, render, train and measure a learned cosine transform in real time.

The command line only: parsing arguments and printing for people. The work is in stream/ and
models/.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import traceback

import click

EXAMPLES = {
    "info": "python run.py info --set frame.hop=128",
    "demo": "python run.py demo --out-dir demo-out",
    "render": "python run.py render in.wav out.wav --set 'processors=[{type: quantize, bits: 6}]'",
    "devices": "python run.py devices",
    "live": "python run.py live -c quantize-6bit --play speech.wav --loop --record out.wav "
            "--osc 9000 --report live.json",
    "latency": "python run.py latency algorithmic --blocksizes 32,64,256",
    "train": "python run.py train speech.wav --set 'processors=[{type: learned_quantize}]' "
             "--objective rd --rate-weight 0.01 --steps 500 --out model.pt",
    "presets": "python run.py presets",
    "evaluate": "python run.py evaluate -c quantize-6bit --sweep processors.0.bits=3,4,6,8,12 "
                "--codecs opus,vorbis,mp3 --json lab.json --plot lab.png",
}


def _epilog(name: str) -> str:
    return f"\b\nExample:\n  {EXAMPLES[name]}"


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handles_errors(fn):
    """Turn the product's errors into one line and a non-zero exit; --debug shows the traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from stream.errors import UserError
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            if _debug():
                traceback.print_exc()
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt as e:
            from stream.interrupts import describe
            what, code = describe(e)
            _fail(what, code)
    return wrapper


class Cli(click.Group):
    """The command group; click's own usage errors (a missing argument, a bad option value, an
    unknown option) become the same one line ``error: ... (see ... --help)`` as every other
    error, with click's exit code (2)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from stream.interrupts import describe
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            where = f"{e.ctx.command_path} --help" if e.ctx is not None else "--help"
            _fail(f"{_sentence(e.format_message())} (see {where})", e.exit_code)
        except click.ClickException as e:
            _fail(_sentence(e.format_message()), e.exit_code)
        except click.Abort as e:
            cause = e.__cause__ if isinstance(e.__cause__, KeyboardInterrupt) else None
            what, code = describe(cause) if cause is not None else ("aborted", 1)
            _fail(what, code)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def _sentence(message: str) -> str:
    """click's message on one line, without its final full stop, starting lower-case."""
    text = " ".join(message.split()).rstrip(".")
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    return text


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("debug"))


def config_options(fn):
    """-c/--config and --set, shared by every command."""
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                      help="Override one config value (repeatable), e.g. --set frame.hop=128.")(fn)
    fn = click.option("-c", "--config", "config_path", default=None, metavar="FILE|PRESET",
                      help="YAML config file, or a shipped preset's name (see `presets`); "
                           "default: the shipped default.yaml.")(fn)
    return fn


def overwrite_option(fn):
    """--overwrite, on every command that writes files."""
    return click.option("--overwrite", is_flag=True,
                        help="Replace output files that exist (never the config, the checkpoint "
                             "in use or an input).")(fn)


def check_outputs(cfg, outputs, overwrite, inputs=(), made_below=None):
    """Refuse, before any work, outputs that exist (without --overwrite) or that would replace
    the config, the checkpoint in use or an input (see stream/outputs.py)."""
    from stream.outputs import check_outputs as check, protected_paths
    check(outputs, protected_paths(cfg, inputs), overwrite, made_below)


def load(config_path, overrides):
    from stream.config import load_config
    return load_config(config_path, overrides)


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Fixed-width text table. columns: (key, heading, format spec) per column."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        line = []
        for key, _, spec in columns:
            v = row.get(key)
            line.append("-" if v is None else (format(v, spec) if spec else str(v)))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    out = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
           for r in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def write_json(path: str, data: dict) -> None:
    from stream.errors import UserError
    from stream.files import write_json_atomic
    try:
        write_json_atomic(path, data)
    except OSError as e:
        raise UserError(f"cannot write {path!r}: {e.strerror or e}; check that its folder "
                        f"exists and is writable") from None


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cosine-host", prog_name="cosine-host")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug):
    """Real-time host for a learned cosine transform: live passthrough, file rendering,
    latency tests and training on one streaming engine.

    \b
    Start here:
      python run.py demo          render built-in test material through the presets
      python run.py info          the resolved config, model and engine latency
    """


@cli.command(epilog=_epilog("info"))
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead.")
@handles_errors
def info(config_path, overrides, as_json):
    """Show versions, the resolved config, the model and the engine latency it implies."""
    from stream.info import describe
    data = describe(load(config_path, overrides))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    import yaml
    click.echo(f"cosine-host {data['version']}  torch {data['torch']}  device (auto): "
               f"{data['device']}")
    m = data["model"]
    click.echo(f"model: N={m['frame_size']} M={m['coefficients']} H={m['hop']} "
               f"init={m['init']} decoder={m['decoder']} parameters={m['parameters']}"
               + (f" checkpoint={m['checkpoint']}" if m.get("checkpoint") else ""))
    lat = data["latency"]
    click.echo(f"engine latency at blocksize {lat['blocksize']}: {lat['engine_samples']} samples "
               f"= {lat['engine_ms']:.2f} ms at {lat['samplerate']} Hz "
               f"(algorithmic {lat['algorithmic_samples']} + buffering "
               f"{lat['buffering_samples']}"
               + (f" + processors {lat['processor_samples']}" if lat["processor_samples"] else "")
               + (f" + pre {lat['pre_samples']}" if lat["pre_samples"] else "")
               + (f" + post {lat['post_samples']}" if lat["post_samples"] else "")
               + ")")
    click.echo(f"transform: {data['transform']} ({data['transform_reason']})")
    if data["checkpoint"]:
        ck = data["checkpoint"]
        click.echo(f"checkpoint {ck['path']}:")
        click.echo(f"  format version {ck['format_version']}")
        for learned in ck["processors"]:
            click.echo(f"  learned {learned['type']}: M={learned.get('coefficients')} steps "
                       f"{learned.get('step_min', 0):.3g} .. {learned.get('step_max', 0):.3g} "
                       f"(geometric mean {learned.get('step_geomean', 0):.3g}); used with "
                       f"processors: [{{type: {learned['type']}}}]")
        click.echo(yaml.safe_dump({"metadata": ck["metadata"], "extra": ck["extra"]},
                                  sort_keys=False).rstrip())
    click.echo("config:")
    click.echo(yaml.safe_dump(data["config"], sort_keys=False).rstrip())


def status_printer(stream=None):
    """A callable(status, final=False) that rewrites one line on a terminal, else prints lines."""
    from stream.panel import status_display
    return status_display(stream, panel=False)


@cli.command(epilog=_epilog("devices"))
@config_options
@handles_errors
def devices(config_path, overrides):
    """List audio devices: index, name, host API, input/output channels, default rate, defaults."""
    from stream.devices import NO_DEVICE_HINT, query_devices
    load(config_path, overrides)        # a bad config is reported here as everywhere
    rows = query_devices()
    if not rows:
        click.echo(f"PortAudio sees no audio device; {NO_DEVICE_HINT}")
        return
    for r in rows:
        r["default"] = ("in " if r["default_input"] else "") + ("out" if r["default_output"] else "")
    click.echo(table(rows, [("index", "#", ""), ("name", "name", ""), ("hostapi", "host API", ""),
                            ("max_input_channels", "in", ""), ("max_output_channels", "out", ""),
                            ("default_samplerate", "rate", ".0f"), ("default", "default", "")]))


@cli.command(epilog=_epilog("presets"))
@handles_errors
def presets():
    """List the shipped presets, usable by name from any folder: -c NAME (e.g. -c lowpass)."""
    from stream.config import presets as shipped
    rows = shipped()
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        click.echo(f"{r['name'].ljust(width)}  {r['description']}")


@cli.command(epilog=_epilog("live"))
@config_options
@click.option("-i", "--input-device", default=None, help="Input device: index or part of its name.")
@click.option("-o", "--output-device", default=None, help="Output device: index or part of its name.")
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
    from stream.live import LiveSession
    from stream.panel import status_display
    cfg = load(config_path, overrides)
    report_path = report_path or cfg.monitor.report
    if loop and not play_path:
        _fail("--loop repeats the --play file; give --play FILE too")
    check_outputs(cfg, [("--report", report_path), ("--record", record_path)], overwrite,
                  inputs=[("--play", play_path)] if play_path else ())
    session = LiveSession(cfg, input_device=input_device, output_device=output_device,
                          report_path=report_path, play=play_path, loop=loop,
                          record=record_path, osc_port=osc_port)
    with status_display() as display:
        report = session.run(duration_s=duration, on_status=display, keys=sys.stdin.isatty())
    click.echo(session.summary(report))


def progress_bar(label: str, stream=None):
    """A callable(done, total) drawing a bar on a terminal; silent when stderr is not one."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return None
    import time
    started = time.monotonic()

    def show(done: int, total: int, note: str = "") -> None:
        frac = min(done / total, 1.0) if total else 1.0
        width = 30
        filled = int(frac * width)
        elapsed = time.monotonic() - started
        eta = elapsed * (1 - frac) / frac if frac > 0 else 0.0
        stream.write(f"\r\x1b[2K{label} [{'#' * filled}{'.' * (width - filled)}] "
                     f"{100 * frac:5.1f}%  eta {eta:4.0f}s" + (f"  {note}" if note else ""))
        if done >= total:
            stream.write("\n")
        stream.flush()
    return show


def print_table(result: dict) -> None:
    """Print ``result["table"]`` = {"columns": [[key, heading, format], ...], "rows": [...]}."""
    t = result["table"]
    click.echo(table(t["rows"], [tuple(c) for c in t["columns"]]))


@cli.command(epilog=_epilog("render"))
@config_options
@click.argument("paths", nargs=-1, required=True, metavar="INPUT [OUTPUT] | INPUT... --out-dir DIR")
@click.option("--out-dir", default=None, help="Render every INPUT (files or folders) into DIR.")
@click.option("--recursive", "-r", is_flag=True,
              help="With --out-dir: also render the subfolders of folder INPUTs, mirrored in DIR.")
@click.option("--format", "container", default=None, metavar="wav|flac|aiff|ogg|opus|mp3|...",
              help="Output container where the name cannot say it (needed for OUTPUT '-'; "
                   "with --out-dir it sets every output's extension).")
@click.option("--report", "report_path", default=None,
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
    from stream import batch
    workers = batch.parse_jobs(jobs_option)
    if workers > 1 and out_dir is not None and ray_address is None:
        batch.prestart(workers)         # before this process imports torch
    from stream import render as rendering
    from stream.audio_io import STDIO, check_format_option
    from stream.errors import UserError
    cfg = load(config_path, overrides)
    container = check_format_option(container)
    if ray_address is not None:
        from stream import cluster
        ray_address = cluster.check_address(ray_address)
        cluster.import_ray()
    from stream.jobs import plan_jobs
    jobs = plan_jobs(list(paths), out_dir, recursive=recursive, format=container)
    options = {"subtype": subtype, "format": container, "dither": dither,
               "samplerate": samplerate, "quality": quality, "bitrate_mode": bitrate_mode,
               "overwrite": overwrite, "make_folder": out_dir is not None}
    todo, skipped = batch.plan(jobs, options, skip_existing)
    if out_dir is None and report_dir is not None:
        raise UserError("--report-dir writes one report per output of --out-dir; for one file "
                        "use --report")
    reports = batch.report_paths(report_dir, out_dir, todo) if report_dir else {}
    inputs = [("input file", a) for a, _ in jobs]
    check_outputs(cfg, [("output", t) for _, _, t in todo] + [("--report", report_path)],
                  overwrite, inputs=inputs, made_below=out_dir if recursive else None)
    check_outputs(cfg, [("output", s["output"]) for s in skipped], True, inputs=inputs)
    if reports:
        check_outputs(cfg, [("--report-dir", p) for p in reports.values()], overwrite,
                      inputs=inputs, made_below=report_dir)
    for s in skipped:
        click.echo(f"skipped: {s['output']} ({s['reason']})", err=True)
    if out_dir is None:
        if not todo:
            return
        source, target = jobs[0]
        to_stdout = target == STDIO
        report = rendering.render_file(cfg, source, target, progress=progress_bar(
            os.path.basename(source)), **options)
        click.echo(rendering.summary_line(report), err=to_stdout)
        for warning in report["warnings"]:
            click.echo(f"warning: {warning}", err=True)
        if report_path:
            write_json(report_path, report)
        return
    bar = batch_progress(len(todo))
    failed = []

    def show(outcome: dict) -> None:
        if bar:
            bar.clear()
        if "report" in outcome:
            click.echo(rendering.summary_line(outcome["report"]))
            for warning in outcome["report"]["warnings"]:
                click.echo(f"warning: {warning}", err=True)
            if outcome["index"] in reports:
                os.makedirs(os.path.dirname(reports[outcome["index"]]), exist_ok=True)
                write_json(reports[outcome["index"]], outcome["report"])
        elif "error" in outcome:
            failed.append(outcome)
            click.echo(f"failed: {outcome['input']}: {outcome['error']}", err=True)
        if bar:
            bar.add(outcome)

    ray_info = None
    try:
        if ray_address is not None:
            from stream import cluster
            outcomes, ray_info = cluster.run(cfg, todo, options, ray_address,
                                             workers=workers if jobs_option else None,
                                             on_outcome=show)
        else:
            outcomes = batch.run(cfg, todo, options, workers, on_outcome=show)
    except KeyboardInterrupt as e:
        if bar:
            bar.clear()
        e.note = ("outputs finished so far are complete; run again with --skip-existing to "
                  "render the rest")
        raise
    if bar:
        bar.clear()
    if ray_info:
        click.echo(f"ray: {ray_info['actors']} actors at {ray_info['address']}, ready in "
                   f"{ray_info['startup_s']:.1f} s", err=True)
    rendered = [o["report"] for o in outcomes if "report" in o]
    failed = [{"input": o["input"], "output": o["output"], "error": o["error"]}
              for o in outcomes if "error" in o]
    if skipped or len(jobs) > 1:
        click.echo(f"{len(rendered)} rendered, {len(skipped)} skipped, {len(failed)} failed",
                   err=True)
    if report_path:
        summary = {"rendered": rendered, "skipped": skipped, "failed": failed}
        if ray_info:
            summary["ray"] = ray_info
        write_json(report_path, summary)
    if failed:
        _fail(f"{len(failed)} of {len(jobs)} files failed: "
              + ", ".join(f["input"] for f in failed), 1)


def batch_progress(files: int, stream=None):
    """One bar over a batch on a terminal (files done, audio seconds rendered), else None.
    ``add(outcome)`` counts a finished file; ``clear()`` wipes the bar before other output."""
    stream = stream or sys.stderr
    if not stream.isatty() or files < 1:
        return None
    import time
    import types
    started = time.monotonic()
    state = types.SimpleNamespace(done=0, seconds=0.0)

    def draw() -> None:
        frac = state.done / files
        filled = int(frac * 30)
        elapsed = time.monotonic() - started
        eta = elapsed * (1 - frac) / frac if frac > 0 else 0.0
        stream.write(f"\r\x1b[2Krender [{'#' * filled}{'.' * (30 - filled)}] {state.done}/{files} "
                     f"files, {state.seconds:.1f} s of audio  eta {eta:4.0f}s")
        stream.flush()

    def add(outcome: dict) -> None:
        state.done += 1
        state.seconds += outcome.get("report", {}).get("seconds_audio", 0.0)
        draw()

    def clear() -> None:
        stream.write("\r\x1b[2K")
        stream.flush()

    draw()
    return types.SimpleNamespace(add=add, clear=clear)


@cli.command(epilog=_epilog("demo"))
@config_options
@click.option("--out-dir", default="demo-out", show_default=True,
              help="Folder for the test material, the renders and their reports.")
@overwrite_option
@handles_errors
def demo(config_path, overrides, out_dir, overwrite):
    """Synthesise test material and render it through the default config and the shipped presets.

    Needs no sound card and no input file. Prints preset, SNR, bitrate, real-time factor and
    latency per preset; writes inputs, outputs and JSON reports to --out-dir.
    """
    from stream.demo import run_demo
    result = run_demo(out_dir, config_path=config_path, overrides=overrides,
                      overwrite=overwrite, progress=progress_bar("demo"))
    print_table(result)
    click.echo(f"wrote {result['out_dir']}")


@cli.command(epilog=_epilog("evaluate"))
@click.argument("inputs", nargs=-1, metavar="[INPUT]...")
@click.option("-c", "--config", "config_paths", multiple=True, metavar="FILE|PRESET",
              help="Config file or preset name (repeatable); default: the shipped default.yaml.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override one config value of every setting (repeatable).")
@click.option("--sweep", "sweeps", multiple=True, metavar="KEY.PATH=V1,V2,...",
              help="One row per value, each applied like --set (repeatable; each sweep is "
                   "its own curve), e.g. --sweep processors.0.bits=2,4,6.")
@click.option("--codecs", default=None, metavar="opus,vorbis,mp3",
              help="Reference codecs encoded near the engine rows' bitrates.")
@click.option("--metrics", "metric_names", default=None, metavar="NAME,...",
              help="Metrics to compute (default: all): snr_db, si_sdr_db, lsd_db, "
                   "mel_distance, stft_distance, pesq, stoi, visqol, loudness_lu.")
@click.option("--content", type=click.Choice(["auto", "speech", "audio"]), default="auto",
              show_default=True, help="Whether the inputs are speech (PESQ and STOI apply "
                                      "to speech only); auto: a rough check per file.")
@click.option("--json", "json_path", default=None, help="Write the rows as JSON.")
@click.option("--csv", "csv_path", default=None, help="Write the rows as CSV.")
@click.option("--plot", "plot_path", default=None,
              help="Write a PNG of quality against kbps (needs matplotlib).")
@click.option("--plot-metrics", default=None, metavar="NAME,...",
              help="Panels of --plot (default: pesq,visqol,snr_db).")
@click.option("--at-kbps", default=None, metavar="KBPS,...",
              help="Also print every curve's metrics interpolated at these bitrates (the "
                   "codecs are encoded there too), e.g. 32,48,64.")
@overwrite_option
@handles_errors
def evaluate(inputs, config_paths, overrides, sweeps, codecs, metric_names, content, json_path,
             csv_path, plot_path, plot_metrics, at_kbps, overwrite):
    """Measure what each setting costs in bits and in quality, next to real codecs.

    Renders every setting (each -c, each --sweep value) through the engine for every INPUT
    (the built-in speech and music material when none) and prints kbps and quality metrics
    per row; --codecs adds Opus/Vorbis/MP3 rows at nearby bitrates.
    """
    from stream import codecs as codec_lib
    from stream import evaluate as lab
    from stream import metrics as metric_lib
    from stream import quality_plot
    names = metric_lib.check_names(metric_names)
    codec_names = codec_lib.check_names(codecs)
    panels = quality_plot.check_names(plot_metrics)
    targets = lab.parse_kbps(at_kbps)
    settings = lab.plan_settings(config_paths, sweeps, overrides)
    from stream.outputs import check_outputs as check, protected_paths
    protected = [p for s in settings for p in protected_paths(s["cfg"])]
    protected += protected_paths(None, [("input file", i) for i in inputs])
    check([("--json", json_path), ("--csv", csv_path), ("--plot", plot_path)], protected,
          overwrite)
    metric_lib.check_available(names)
    if plot_path:
        from stream.plots import _figure
        _figure()       # matplotlib missing: say so before the work
    result = lab.evaluate(lab.load_inputs(list(inputs), content), settings, names, codec_names,
                          progress=progress_bar("evaluate"), at_kbps=targets)
    print_table(result)
    if result["at_kbps"]:
        click.echo("\nat equal bitrates (interpolated in log kbps; - outside a curve's range):")
        print_table({"table": result["at_kbps"]})
    if json_path:
        write_json(json_path, lab.json_data(result))
    if csv_path:
        lab.write_csv(csv_path, result)
    if plot_path:
        quality_plot.plot_quality(result, panels, plot_path)
        click.echo(f"plot: {plot_path}")


@cli.group(epilog=_epilog("latency"))
def latency():
    """Latency tests: algorithmic (offline impulse), roundtrip (through a loopback), bench
    (compute budget per block size)."""


def _latency_outputs(result: dict, json_path, plot_path, kind: str) -> None:
    print_table(result)
    if json_path:
        write_json(json_path, result)
    if plot_path:
        from stream.plots import plot_latency
        plot_latency(kind, result, plot_path)
        click.echo(f"plot: {plot_path}")


def latency_options(fn):
    fn = click.option("--plot", "plot_path", default=None,
                      help="Write a PNG plot here (needs matplotlib: pip install '.[plots]').")(fn)
    fn = click.option("--json", "json_path", default=None, help="Write the results as JSON.")(fn)
    return config_options(overwrite_option(fn))


@latency.command("algorithmic", epilog="\b\nExample:\n  python run.py latency algorithmic "
                 "--blocksizes 1,32,64,100,256,441 --json alg.json")
@latency_options
@click.option("--blocksizes", default="1,32,64,100,256,441,512,1024,4096,0", show_default=True,
              help="Comma-separated block sizes; 0 = varying block sizes.")
@handles_errors
def latency_algorithmic(config_path, overrides, json_path, plot_path, overwrite, blocksizes):
    """Impulse through the engine offline: measured delay vs reported vs theoretical minimum."""
    from stream import measure
    cfg = load(config_path, overrides)
    check_outputs(cfg, [("--json", json_path), ("--plot", plot_path)], overwrite)
    result = measure.algorithmic(cfg, measure.parse_blocksizes(blocksizes))
    _latency_outputs(result, json_path, plot_path, "algorithmic")
    if not result["passed"]:
        _fail("measured latency differs from the reported latency or the minimum", 1)


@latency.command("roundtrip", epilog="\b\nExample:\n  python run.py latency roundtrip "
                 "--jack-loopback --repeats 5")
@latency_options
@click.option("-i", "--input-device", default=None, help="Input device: index or part of its name.")
@click.option("-o", "--output-device", default=None, help="Output device: index or part of its name.")
@click.option("--repeats", type=click.IntRange(1, 100), default=3, show_default=True)
@click.option("--bypass", is_flag=True, help="Measure the dry path (same engine latency).")
@click.option("--jack-loopback", is_flag=True,
              help="Wire the host's JACK output ports to its input ports for the measurement.")
@handles_errors
def latency_roundtrip(config_path, overrides, json_path, plot_path, overwrite, input_device,
                      output_device, repeats, bypass, jack_loopback):
    """Play a test signal through the live engine into a loopback and measure the delay."""
    from stream import roundtrip
    cfg = load(config_path, overrides)
    check_outputs(cfg, [("--json", json_path), ("--plot", plot_path)], overwrite)
    result = roundtrip.roundtrip(cfg, input_device=input_device, output_device=output_device,
                                 repeats=repeats, bypass=bypass, jack_loopback=jack_loopback,
                                 on_status=status_printer())
    _latency_outputs(result, json_path, plot_path, "roundtrip")


@latency.command("bench", epilog="\b\nExample:\n  python run.py latency bench "
                 "--blocksizes 32,64,128,256 --device cpu,cuda --seconds 2")
@latency_options
@click.option("--blocksizes", default="32,64,128,256,512,1024", show_default=True,
              help="Comma-separated block sizes.")
@click.option("--device", "devices", default="cpu", show_default=True,
              help="Comma-separated torch devices: cpu, cuda.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True, help="Audio seconds processed per block size and device.")
@handles_errors
def latency_bench(config_path, overrides, json_path, plot_path, overwrite, blocksizes, devices,
                  seconds):
    """Compute budget without a sound device: per-call time per block size vs real time."""
    from stream import bench, measure
    cfg = load(config_path, overrides)
    check_outputs(cfg, [("--json", json_path), ("--plot", plot_path)], overwrite)
    result = bench.bench(cfg, measure.parse_blocksizes(blocksizes),
                         [d.strip() for d in devices.split(",") if d.strip()], seconds,
                         progress=progress_bar("bench"))
    _latency_outputs(result, json_path, plot_path, "bench")


@cli.command(epilog=_epilog("train"))
@config_options
@click.argument("audio", nargs=-1, required=True)
@click.option("--steps", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Segments per step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-2,
              show_default=True, help="Learning rate of the gains (frequencies get their own).")
@click.option("--out", "out_path", default="model.pt", show_default=True,
              help="Checkpoint to write (use it with --set model.checkpoint=PATH).")
@click.option("--val", "val_path", default=None,
              help="Audio file for validation SNR (default: a held-out part of AUDIO).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--log", "log_path", default=None,
              help="Write the loss log as CSV, one line per step as training goes.")
@click.option("--plot", "plot_path", default=None,
              help="Write a PNG of the loss curve (needs matplotlib).")
@click.option("--save-every", type=click.IntRange(min=1), default=None, metavar="STEPS",
              help="Also write the checkpoint every STEPS steps (the best one so far).")
@click.option("--objective", type=click.Choice(["mse", "rd"]), default="mse", show_default=True,
              help="mse: reconstruction error; rd: error + rate-weight x bits, training a "
                   "learned_quantize's steps and entropy model with the transform.")
@click.option("--rate-weight", type=float, default=0.0, show_default=True, metavar="LAMBDA",
              help="rd: weight of the rate, per bit per sample (larger: fewer bits).")
@click.option("--stft-weight", type=float, default=0.0, show_default=True,
              help="rd: weight of a multi-resolution STFT term in the distortion.")
@click.option("--relaxation", type=click.Choice(["ste", "noise"]), default="ste",
              show_default=True, help="rd: straight-through rounding or additive uniform noise.")
@overwrite_option
@handles_errors
def train(config_path, overrides, audio, steps, batch, lr, out_path, val_path, seed, log_path,
          plot_path, save_every, objective, rate_weight, stft_weight, relaxation, overwrite):
    """Fit the transform's gains and frequencies to AUDIO files through the config's processors."""
    from stream.train import train_files
    cfg = load(config_path, overrides)
    result = train_files(cfg, list(audio), steps=steps, batch=batch, lr=lr, out_path=out_path,
                         val_path=val_path, seed=seed, log_path=log_path, plot_path=plot_path,
                         save_every=save_every, overwrite=overwrite,
                         progress=progress_bar("train"), objective=objective,
                         rate_weight=rate_weight, stft_weight=stft_weight,
                         relaxation=relaxation)
    click.echo(f"validation SNR: {result['snr_before_db']:.2f} dB before, "
               f"{result['snr_after_db']:.2f} dB after ({result['steps']} steps, "
               f"{result['seconds_wall']:.1f} s)")
    if result["kbps_before"] is not None:
        click.echo(f"validation bitrate (kbps_entropy): {result['kbps_before']:.1f} kbps before, "
                   f"{result['kbps_after']:.1f} kbps after; validation loss "
                   f"{result['loss_before']:.4g} -> {result['loss_after']:.4g}")
    if result.get("kept") == "start":
        click.echo(f"training did not improve the validation SNR "
                   f"({result['snr_trained_db']:.2f} dB after the last step); the checkpoint "
                   f"keeps the starting parameters")
    if result.get("freq_shift_bins") is not None:
        click.echo(f"frequencies moved {result['freq_shift_bins']:.3f} bins on average")
    click.echo(f"checkpoint: {result['checkpoint']}  (use --set model.checkpoint={result['checkpoint']})")


def main():
    from stream.interrupts import install
    install()       # SIGTERM and SIGHUP stop a command the way Ctrl-C does
    cli()


if __name__ == "__main__":
    main()

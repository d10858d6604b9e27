"""`demo` and `evaluate`: built-in material through the presets, and what each setting costs in
bits and in quality next to real codecs."""
from __future__ import annotations

import click

from cosine_host.cli.base import (config_options, example, handles_errors, overwrite_option,
                                  write_json)
from cosine_host.cli.display import echo_table, progress_display


@click.command(epilog=example("python run.py demo --out-dir demo-out"))
@config_options
@click.option("--out-dir", default="demo-out", show_default=True, metavar="DIR",
              help="Folder for the test material, the renders and their reports.")
@overwrite_option
@handles_errors
def demo(config_path, overrides, out_dir, overwrite):
    """Synthesise test material and render it through the default config and the shipped presets.

    Needs no sound card and no input file. Prints preset, SNR, bitrate, real-time factor and
    latency per preset; writes inputs, outputs and JSON reports to --out-dir.
    """
    from cosine_host.lab.demo import run_demo
    with progress_display("demo") as progress:
        result = run_demo(out_dir, config_path=config_path, overrides=overrides,
                          overwrite=overwrite, progress=progress)
    echo_table(result)
    click.echo(f"wrote {result['out_dir']}")


@click.command(epilog=example("python run.py evaluate -c quantize-6bit --sweep "
                              "processors.0.bits=3,4,6,8,12 --codecs opus,vorbis,mp3 "
                              "--json lab.json --plot lab.png"))
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
@click.option("--json", "json_path", default=None, metavar="FILE", help="Write the rows as JSON.")
@click.option("--csv", "csv_path", default=None, metavar="FILE", help="Write the rows as CSV.")
@click.option("--plot", "plot_path", default=None, metavar="FILE",
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
    from cosine_host.lab import evaluate as lab
    from cosine_host.lab import quality_plot
    plan = lab.plan_evaluation(list(inputs), config_paths, overrides, sweeps, codecs=codecs,
                               metrics=metric_names, plot_metrics=plot_metrics, at_kbps=at_kbps,
                               content=content, outputs={"--json": json_path, "--csv": csv_path,
                                                         "--plot": plot_path},
                               overwrite=overwrite)
    with progress_display("evaluate") as progress:
        result = lab.run_evaluation(plan, progress=progress)
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    echo_table(result)
    if result["at_kbps"]:
        click.echo("\nat equal bitrates (interpolated in log kbps; - outside a curve's range):")
        echo_table(result["at_kbps"])
    if json_path:
        write_json(json_path, lab.json_data(result))
    if csv_path:
        lab.write_csv(csv_path, result)
    if plot_path:
        left_out = quality_plot.plot_quality(result, plan["plot_metrics"], plot_path)
        click.echo(f"plot: {plot_path}")
        if left_out:
            click.echo(f"warning: --plot: {', '.join(left_out)} left out: no row has a value "
                       f"at a bitrate", err=True)

"""`latency algorithmic|roundtrip|bench`: the engine's delay measured offline and through a
loopback, and its compute budget."""
from __future__ import annotations

import click

from cosine_host.cli.base import (check_outputs, config_options, device_options, example, fail,
                                  handles_errors, load, overwrite_option, write_json)
from cosine_host.cli.display import echo_table, progress_display, status_printer


@click.group(epilog=example("python run.py latency algorithmic --blocksizes 32,64,256"))
def latency():
    """Latency tests: algorithmic (offline impulse), roundtrip (through a loopback), bench
    (compute budget per block size)."""


def _outputs(result: dict, json_path, plot_path, kind: str) -> None:
    echo_table(result)
    if json_path:
        write_json(json_path, result)
    if plot_path:
        from cosine_host.measure.plots import plot_latency
        plot_latency(kind, result, plot_path)
        click.echo(f"plot: {plot_path}")


def _load_checked(config_path, overrides, json_path, plot_path, overwrite):
    """The config, once the outputs are known to be writable (and matplotlib there for --plot)."""
    cfg = load(config_path, overrides)
    check_outputs(cfg, [("--json", json_path), ("--plot", plot_path)], overwrite)
    if plot_path:
        from cosine_host.plotting import check_matplotlib
        check_matplotlib()
    return cfg


def latency_options(fn):
    fn = click.option("--plot", "plot_path", default=None, metavar="FILE",
                      help="Write a PNG plot here (needs matplotlib: pip install '.[plots]').")(fn)
    fn = click.option("--json", "json_path", default=None, metavar="FILE",
                      help="Write the results as JSON.")(fn)
    return config_options(overwrite_option(fn))


@latency.command("algorithmic", epilog=example("python run.py latency algorithmic "
                                               "--blocksizes 1,32,64,100,256,441 --json alg.json"))
@latency_options
@click.option("--blocksizes", default="1,32,64,100,256,441,512,1024,4096,0", show_default=True,
              metavar="N,N,...",
              help="Comma-separated block sizes; 0 = varying block sizes.")
@handles_errors
def latency_algorithmic(config_path, overrides, json_path, plot_path, overwrite, blocksizes):
    """Impulse through the engine offline: measured delay vs reported vs theoretical minimum."""
    from cosine_host.measure import algorithmic
    cfg = _load_checked(config_path, overrides, json_path, plot_path, overwrite)
    result = algorithmic.algorithmic(cfg, algorithmic.parse_blocksizes(blocksizes))
    _outputs(result, json_path, plot_path, "algorithmic")
    if not result["passed"]:
        fail("measured latency differs from the reported latency or the minimum", 1)


@latency.command("roundtrip", epilog=example("python run.py latency roundtrip --jack-loopback "
                                             "--repeats 5"))
@latency_options
@device_options
@click.option("--repeats", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Sweeps played; the delay is reported per sweep and as their median.")
@click.option("--bypass", is_flag=True, help="Measure the dry path (same engine latency).")
@click.option("--jack-loopback", is_flag=True,
              help="Wire the host's JACK output ports to its input ports for the measurement.")
@handles_errors
def latency_roundtrip(config_path, overrides, json_path, plot_path, overwrite, input_device,
                      output_device, repeats, bypass, jack_loopback):
    """Play a test signal through the live engine into a loopback and measure the delay."""
    from cosine_host.measure import roundtrip
    cfg = _load_checked(config_path, overrides, json_path, plot_path, overwrite)
    result = roundtrip.roundtrip(cfg, input_device=input_device, output_device=output_device,
                                 repeats=repeats, bypass=bypass, jack_loopback=jack_loopback,
                                 on_status=status_printer())
    _outputs(result, json_path, plot_path, "roundtrip")


@latency.command("bench", epilog=example("python run.py latency bench --blocksizes 32,64,128,256 "
                                         "--device cpu,cuda --seconds 2"))
@latency_options
@click.option("--blocksizes", default="32,64,128,256,512,1024", show_default=True,
              metavar="N,N,...",
              help="Comma-separated block sizes.")
@click.option("--device", "devices", default="cpu", show_default=True, metavar="cpu,cuda",
              help="Comma-separated torch devices: cpu, cuda.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True, help="Audio seconds processed per block size and device.")
@handles_errors
def latency_bench(config_path, overrides, json_path, plot_path, overwrite, blocksizes, devices,
                  seconds):
    """Compute budget without a sound device: per-call time per block size vs real time."""
    from cosine_host.measure import algorithmic, bench
    cfg = _load_checked(config_path, overrides, json_path, plot_path, overwrite)
    with progress_display("bench") as progress:
        result = bench.bench(cfg, algorithmic.parse_blocksizes(blocksizes),
                             [d.strip() for d in devices.split(",") if d.strip()], seconds,
                             progress=progress)
    _outputs(result, json_path, plot_path, "bench")

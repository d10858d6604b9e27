"""`info`, `devices` and `presets`: what this host, its config and the machine offer."""
from __future__ import annotations

import json

import click

from cosine_host.cli.base import config_options, example, handles_errors, load
from cosine_host.cli.display import echo_rows


@click.command(epilog=example("python run.py info --set frame.hop=128"))
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead.")
@handles_errors
def info(config_path, overrides, as_json):
    """Show versions, the resolved config, the model and the engine latency it implies."""
    from cosine_host.engine.info import describe
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


@click.command(epilog=example("python run.py devices"))
@config_options
@handles_errors
def devices(config_path, overrides):
    """List audio devices: index, name, host API, input/output channels, default rate, defaults."""
    from cosine_host.live.devices import NO_DEVICE_HINT, query_devices
    load(config_path, overrides)        # a bad config is reported here as everywhere
    rows = query_devices()
    if not rows:
        click.echo(f"PortAudio sees no audio device; {NO_DEVICE_HINT}")
        return
    for r in rows:
        r["default"] = ("in " if r["default_input"] else "") + ("out" if r["default_output"] else "")
    echo_rows(rows, [("index", "#", ""), ("name", "name", ""), ("hostapi", "host API", ""),
                     ("max_input_channels", "in", ""), ("max_output_channels", "out", ""),
                     ("default_samplerate", "rate", ".0f"), ("default", "default", "")])


@click.command(epilog=example("python run.py presets"))
@handles_errors
def presets():
    """List the shipped presets, usable by name from any folder: -c NAME (e.g. -c lowpass)."""
    from cosine_host.config.schema import presets as shipped
    rows = shipped()
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        click.echo(f"{r['name'].ljust(width)}  {r['description']}")

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
    "live": "python run.py live -i 0 -o 0 --duration 30 --report live.json",
    "latency": "python run.py latency algorithmic --blocksizes 32,64,256",
    "train": "python run.py train speech.wav --steps 500 --out model.pt",
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
        except KeyboardInterrupt:
            _fail("interrupted", 130)
    return wrapper


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("debug"))


def config_options(fn):
    """-c/--config and --set, shared by every command."""
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                      help="Override one config value (repeatable), e.g. --set frame.hop=128.")(fn)
    fn = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
                      default=None, help="YAML config (default: configs/default.yaml).")(fn)
    return fn


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
    from stream.files import write_json_atomic
    write_json_atomic(path, data)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
               f"{lat['buffering_samples']})")
    click.echo("config:")
    click.echo(yaml.safe_dump(data["config"], sort_keys=False).rstrip())


def status_printer(stream=None):
    """A callable(line, final=False) that rewrites one line on a terminal, else prints lines."""
    stream = stream or sys.stderr
    tty = stream.isatty()

    def show(line: str, final: bool = False) -> None:
        if tty:
            stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            stream.write(line + "\n")
        stream.flush()
    return show


@cli.command(epilog=_epilog("devices"))
@config_options
@handles_errors
def devices(config_path, overrides):
    """List audio devices (index, name, host API, channels, default rate); * marks defaults."""
    from stream.devices import query_devices
    rows = query_devices()
    for r in rows:
        r["default"] = ("in " if r["default_input"] else "") + ("out" if r["default_output"] else "")
    click.echo(table(rows, [("index", "#", ""), ("name", "name", ""), ("hostapi", "host API", ""),
                            ("max_input_channels", "in", ""), ("max_output_channels", "out", ""),
                            ("default_samplerate", "rate", ".0f"), ("default", "default", "")]))


@cli.command(epilog=_epilog("live"))
@config_options
@click.option("-i", "--input-device", default=None, help="Input device: index or part of its name.")
@click.option("-o", "--output-device", default=None, help="Output device: index or part of its name.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds (default: run until q or Ctrl-C).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Write a JSON report here when the stream stops.")
@handles_errors
def live(config_path, overrides, input_device, output_device, duration, report_path):
    """Run the engine on a duplex sound device stream with a live latency/compute status line.

    Keys (when standard input is a terminal): q quits, b toggles bypass (same latency).
    """
    from stream.live import LiveSession
    cfg = load(config_path, overrides)
    session = LiveSession(cfg, input_device=input_device, output_device=output_device,
                          report_path=report_path or cfg.monitor.report)
    report = session.run(duration_s=duration, on_status=status_printer(),
                         keys=sys.stdin.isatty())
    click.echo(session.summary(report))


def main():
    cli()


if __name__ == "__main__":
    main()

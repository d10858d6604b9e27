"""The ``cosine-host`` command group and its entry point."""
from __future__ import annotations

import gc

import click

from cosine_host.cli import codec, info, lab, latency, live, render, train
from cosine_host.cli.base import Cli


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


for command in (info.info, info.devices, info.presets, live.live, render.render, lab.demo,
                lab.evaluate, latency.latency, train.train, codec.encode, codec.decode):
    cli.add_command(command)


def main():
    from cosine_host.interrupts import install
    install()       # SIGTERM and SIGHUP stop a command the way Ctrl-C does
    try:
        cli()
    finally:
        # Everything is written and closed by now; with torch loaded, the collector's passes
        # over every object at interpreter shutdown are a visible share of a short command's
        # wall time (benchmarks/README.md, batch.py). atexit handlers still run.
        gc.freeze()

"""What every command shares: one-line errors, the common options, loading the config, the
output checks and JSON outputs."""
from __future__ import annotations

import functools
import sys
import traceback

import click


def example(command_line: str) -> str:
    """A command's help epilog: one example command line."""
    return f"\b\nExample:\n  {command_line}"


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handles_errors(fn):
    """Turn the product's errors into one line and a non-zero exit; --debug shows the traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from cosine_host.errors import UserError
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            if _debug():
                traceback.print_exc()
            fail(str(e), e.exit_code)
        except KeyboardInterrupt as e:
            from cosine_host.interrupts import describe
            what, code = describe(e)
            fail(what, code)
    return wrapper


class Cli(click.Group):
    """The command group; click's own usage errors (a missing argument, a bad option value, an
    unknown option) become the same one line ``error: ... (see ... --help)`` as every other
    error, with click's exit code (2)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from cosine_host.interrupts import describe
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            where = f"{e.ctx.command_path} --help" if e.ctx is not None else "--help"
            fail(f"{_sentence(e.format_message())} (see {where})", e.exit_code)
        except click.ClickException as e:
            fail(_sentence(e.format_message()), e.exit_code)
        except click.Abort as e:
            cause = e.__cause__ if isinstance(e.__cause__, KeyboardInterrupt) else None
            what, code = describe(cause) if cause is not None else ("aborted", 1)
            fail(what, code)
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


def device_options(fn):
    """-i/--input-device and -o/--output-device, for the commands that open a sound device."""
    fn = click.option("-o", "--output-device", default=None, metavar="INDEX|NAME",
                      help="Output device: index or part of its name.")(fn)
    fn = click.option("-i", "--input-device", default=None, metavar="INDEX|NAME",
                      help="Input device: index or part of its name.")(fn)
    return fn


def overwrite_option(fn):
    """--overwrite, on every command that writes files."""
    return click.option("--overwrite", is_flag=True,
                        help="Replace output files that exist (never the config, the checkpoint "
                             "in use or an input).")(fn)


def check_outputs(cfg, outputs, overwrite, inputs=()):
    """Refuse, before any work, outputs that exist (without --overwrite) or that would replace
    the config, the checkpoint in use or an input (cosine_host.outputs)."""
    from cosine_host.outputs import check_outputs as check, protected_paths
    check(outputs, protected_paths(cfg, inputs), overwrite)


def load(config_path, overrides):
    from cosine_host.config.schema import load_config
    return load_config(config_path, overrides)


def write_json(path: str, data: dict) -> None:
    from cosine_host.files import write_json_report
    write_json_report(path, data)

"""The imagekit command line: typer apps only. Each command parses, calls one core function, renders."""
from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from typing import Optional

import typer

from imagekit.cli import _common
from imagekit import redact
from imagekit.errors import ImagekitError, InternalError

app = typer.Typer(help="Keep the Ray serving image and the scipy-notebook training image aligned: "
                       "one lock, hermetic builds, proof of compatibility, promotion by digest.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


def _version(value: bool) -> None:
    if value:
        _common.out.print(f"imagekit {metadata.version('imagekit')}")
        raise typer.Exit()


@app.callback()
def root(ctx: typer.Context,
         config: Optional[Path] = typer.Option(None, "--config", "-c", envvar="IMAGEKIT_CONFIG",
                                               help="imagekit.toml to use (default: nearest one upwards)"),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the result (and errors)"),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="also stream the tools' output (the build's)"),
         version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="print imagekit's version and exit")) -> None:
    """Run `imagekit COMMAND --help` for each command's options and an example.

    In a CI log (stderr not a terminal) long commands print one timestamped line per step.
    """
    ctx.obj = _common.State(config=config, quiet=quiet, verbose=verbose)


from imagekit.cli import build, doctor, environments, lock, osimage, promote, push, runtime, verify  # noqa: E402

for module in (lock, osimage, build, push, verify, runtime, promote, environments, doctor):  # each registers its commands
    module.register(app)


def main() -> None:
    try:
        try:
            app()
        except (ImagekitError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # a bug: said as an error (with what to do), never a traceback
            raise InternalError(f"imagekit failed unexpectedly: {type(e).__name__}: {e}",
                                hint="this is a bug in imagekit: please report it with the command you ran") from None
    except ImagekitError as e:
        _common.err.print(f"[bold red]error:[/] {_common.escape(redact.text(str(e)))}")
        if "--json" in sys.argv[1:]:  # the same shape as on success, the error as data
            command = next((a for a in sys.argv[1:] if a in typer.main.get_command(app).commands), "imagekit")
            _common.print_json(_common.envelope(command, error=e))
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _common.err.print("interrupted")
        sys.exit(130)

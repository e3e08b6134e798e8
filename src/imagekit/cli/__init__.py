"""The imagekit command line: typer apps only. Each command parses, calls one core function, renders."""
from __future__ import annotations

import signal
import sys
from importlib import metadata
from pathlib import Path
from typing import Optional

import typer

from imagekit import redact
from imagekit.cli import _common
from imagekit.errors import ImagekitError, InternalError, UsageError

app = typer.Typer(help=_common.prose("""Keep the Ray and notebook images aligned, and prove it.

    imagekit resolves one lock for the Ray serving image and the scipy-notebook training image,
    builds both from it hermetically, pushes them, proves that models trained in the notebook image
    serve identically in the Ray image, and promotes the verified digests from one environment to the
    next. `imagekit COMMAND --help` tells a command's options. In a CI log (stderr not a terminal)
    long commands print one timestamped line per step.

    Example: make build push && .venv/bin/imagekit verify-compat"""),
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
    ctx.obj = _common.State(config=config, quiet=quiet, verbose=verbose)


from imagekit.cli import build, doctor, environments, keys, lock, osimage, promote, push, runtime, verify  # noqa: E402

for module in (lock, osimage, build, push, verify, runtime, promote, environments, keys, doctor):  # each registers its commands
    module.register(app)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cancelled CI job): unwinds as Ctrl-C does, so every run removes what it started."""


def _terminate(signum, frame) -> None:
    _common.asked["terminated"] = True
    raise Terminated()


def _command() -> str:
    """The command the command line names ("" for none)."""
    return next((a for a in sys.argv[1:] if a in typer.main.get_command(app).commands), "")


def _usage(e: typer.TyperException) -> UsageError:
    """click's refusal of the command line (an unknown or malformed option) as imagekit's usage error."""
    return UsageError(e.format_message() or "a command is needed",
                      hint=f"see `{' '.join(['imagekit', _command()]).strip()} --help`")


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    _common.asked.clear()
    try:
        try:
            code = app(standalone_mode=False)
        except typer.Abort:
            raise KeyboardInterrupt from None
        except typer.TyperException as e:  # click's refusal of the command line
            raise _usage(e) from None
        except (ImagekitError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # a bug: said as an error (with what to do), never a traceback
            raise InternalError(f"imagekit failed unexpectedly: {type(e).__name__}: {e}",
                                hint="this is a bug in imagekit: please report it with the command you ran") from None
        if code == 130:  # typer's answer to an interrupt, once every `with` has unwound
            raise Terminated() if _common.asked.get("terminated") else KeyboardInterrupt()
        sys.exit(code or 0)
    except ImagekitError as e:
        _common.err.print(f"[bold red]error:[/] {_common.escape(redact.text(str(e)))}")
        if _common.asked.get("json") or "--json" in sys.argv[1:]:  # the same shape as on success, the error as data
            _common.print_json(_common.envelope(_common.asked.get("command") or _command() or "imagekit", error=e))
        sys.exit(e.exit_code)
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated) or bool(_common.asked.get("terminated"))
        _common.err.print(f"{'terminated (SIGTERM)' if terminated else 'interrupted'}: every container this command "
                          f"started was removed")
        sys.exit(143 if terminated else 130)

"""The imagekit command line: typer apps only. Each command parses, calls one core function, renders."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from imagekit.cli import _common
from imagekit import redact
from imagekit.errors import ImagekitError

app = typer.Typer(help="Keep the Ray serving image and the scipy-notebook training image aligned: "
                       "one lock, hermetic builds, proof of compatibility, promotion by digest.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.callback()
def root(ctx: typer.Context,
         config: Optional[Path] = typer.Option(None, "--config", "-c", envvar="IMAGEKIT_CONFIG",
                                               help="imagekit.toml to use (default: nearest one upwards)")) -> None:
    ctx.obj = _common.State(config=config)


from imagekit.cli import build, doctor, lock, osimage, promote, push, verify  # noqa: E402  (commands register themselves)

for module in (lock, osimage, build, push, verify, promote, doctor):
    module.register(app)


def main() -> None:
    try:
        app()
    except ImagekitError as e:
        _common.err.print(f"[bold red]error:[/] {_common.escape(redact.text(str(e)))}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _common.err.print("interrupted")
        sys.exit(130)

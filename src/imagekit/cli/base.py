from __future__ import annotations

import typer

from imagekit import base as core
from imagekit.cli._common import JSON, emit, load, progress
from imagekit.engine import Engine


def register(app: typer.Typer) -> None:
    app.command("base")(base)


def base(ctx: typer.Context,
         rebuild: bool = typer.Option(False, "--rebuild", help="bootstrap again even if the base image exists"),
         as_json: bool = JSON) -> None:
    """Provide the OS parent image: keep it, use base.image if present or pullable, else debootstrap it.

    Air-gapped machines get a Debian + python3 base from a Debian mirror (base.mirror) with
    debootstrap, imported with `docker import`. Its Python version must match lock.python.
    """
    cfg = load(ctx)
    with progress("base image") as note:
        result = core.ensure(cfg, Engine.connect(), rebuild=rebuild, on_line=note)
    emit(result, as_json, f"{result.ref}: {result.how}, Python {result.python}, {result.image_id[:19]}"
                          f" ({result.seconds:.0f} s)")

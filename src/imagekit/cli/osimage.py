from __future__ import annotations

import typer

from imagekit import osimage as core
from imagekit.cli._common import JSON, emit, load, progress
from imagekit.engine import Engine


def register(app: typer.Typer) -> None:
    app.command("os")(os_image)


def os_image(ctx: typer.Context,
             rebuild: bool = typer.Option(False, "--rebuild", help="bootstrap again even if the OS image exists"),
             as_json: bool = JSON) -> None:
    """Provide the OS image every image builds on: keep it, use os.image if present or pullable, else debootstrap it.

    Air-gapped machines get a Debian + python3 image from a Debian mirror (os.mirror) with
    debootstrap, imported with `docker import`, with the tools the platform runs the images with
    (bash, wget, procps, git, tini). Its Python version must match lock.python.

    Example: imagekit os --rebuild
    """
    cfg = load(ctx)
    with progress(ctx, "OS image") as note:
        result = core.ensure(cfg, Engine.connect(), rebuild=rebuild, on_line=note)
    emit(ctx, result, as_json, f"{result.ref}: {result.how}, Python {result.python}, {result.image_id[:19]}"
                          f" ({result.seconds:.0f} s)")

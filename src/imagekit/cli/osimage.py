from __future__ import annotations

import typer

from imagekit import osimage as core
from imagekit.cli._common import JSON, command, emit, load, progress
from imagekit.engine import Engine


def register(app: typer.Typer) -> None:
    command(app, "os", os_image)


def os_image(ctx: typer.Context,
             rebuild: bool = typer.Option(False, "--rebuild", help="bootstrap again even if the OS image exists"),
             as_json: bool = JSON) -> None:
    """Provide the OS image every image builds on.

    Kept when it exists; else os.image is taken when present or pullable; else a Debian with
    python3 and the tools the platform runs the images with (bash, wget, procps, git, tini) is
    bootstrapped from os.mirror with debootstrap (root) and imported. Its Python must be lock.python.

    Example: imagekit os --rebuild
    """
    cfg = load(ctx)
    with progress(ctx, "OS image") as note:
        result = core.ensure(cfg, Engine.connect(), rebuild=rebuild, on_line=note)
    emit(ctx, result, as_json, f"{result.ref}: {result.how}, Python {result.python}, {result.image_id[:19]}"
                          f" ({result.seconds:.0f} s)")

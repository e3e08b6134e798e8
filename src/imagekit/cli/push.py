from __future__ import annotations

from typing import Optional

import typer

from imagekit import push as core
from imagekit.cli._common import JSON, command, emit, load, progress
from imagekit.engine import Engine


def register(app: typer.Typer) -> None:
    command(app, "push", push)


def push(ctx: typer.Context,
         registry: Optional[str] = typer.Option(None, help="registry host[:port] (registry.url)"),
         as_json: bool = JSON) -> None:
    """Push the built images to the first environment.

    To <registry>/<first environment's project>/<repository>, with every tag. Nothing is pushed when a
    version tag already names other content (bump project.version). A version tag that already names
    this very content (the same inputs built again) keeps its digest: nothing is pushed, the image is
    unchanged, and the registry's image is pulled to stand for the local build. An interrupted push
    completes when run again. An image the engine already pushed to another registry is copied from
    there: its layers as that registry stores them, not compressed again by the engine. Credentials: the
    environment's own (IMAGEKIT_ENV_<NAME>_USERNAME and _PASSWORD), else IMAGEKIT_REGISTRY_USERNAME
    and _PASSWORD, else your Docker config.

    Example: IMAGEKIT_REGISTRY_URL=harbor.example.org imagekit push --json
    """
    cfg = load(ctx, registry__url=registry)
    with progress(ctx, "push") as note:
        result = core.push(cfg, Engine.connect(), on_line=note)
    emit(ctx, result, as_json, "\n".join(f"{i.repository}@{i.digest}  ({', '.join(i.tags)})"
                                         + ("  unchanged" if i.unchanged else "") for i in result.images))

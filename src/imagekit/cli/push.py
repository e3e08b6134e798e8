from __future__ import annotations

from typing import Optional

import typer

from imagekit import push as core
from imagekit.cli._common import JSON, emit, load, progress
from imagekit.engine import Engine


def register(app: typer.Typer) -> None:
    app.command("push")(push)


def push(ctx: typer.Context,
         registry: Optional[str] = typer.Option(None, help="registry host[:port] (registry.url)"),
         as_json: bool = JSON) -> None:
    """Push the built images to <registry>/<first environment's project>/<repository> with all their tags.

    Checks first and pushes nothing when a version tag already names other content. A version
    tag that already names this very content (the same inputs, built again: a cold cache, another
    machine) keeps its digest: nothing is pushed, the image is "unchanged", and the registry's image
    is pulled to stand for the local build (what runs and is verified here is that digest). No
    version tag is ever written twice, so Harbor's tag immutability never refuses a re-run.
    Credentials: IMAGEKIT_REGISTRY_USERNAME/_PASSWORD or your Docker config. An interrupted push
    completes when re-run. Prints the digests (--json for CI).

    Example: IMAGEKIT_REGISTRY_URL=harbor.example.org imagekit push --json > push.json
    """
    cfg = load(ctx, registry__url=registry)
    with progress(ctx, "push") as note:
        result = core.push(cfg, Engine.connect(), on_line=note)
    emit(ctx, result, as_json, "\n".join(f"{i.repository}@{i.digest}  ({', '.join(i.tags)})"
                                         + ("  unchanged" if i.unchanged else "") for i in result.images))

from __future__ import annotations

from typing import List, Optional

import typer

from imagekit import build as core
from imagekit.cli._common import JSON, command, emit, load, progress
from imagekit.engine import Engine
from imagekit.errors import UsageError


def register(app: typer.Typer) -> None:
    command(app, "build", build)


def build(ctx: typer.Context,
          images: Optional[List[str]] = typer.Argument(None, help="images to build (and their parents) (default: all)"),
          builder: str = typer.Option("auto", help="auto (BuildKit where the docker CLI offers it), buildkit or classic"),
          as_json: bool = JSON) -> None:
    """Build the images from the lock, network off.

    Parents first; wheels from the hash-checked cache; each image's packages installed as
    reproducible layers, then its Dockerfile for what is not Python. An image whose inputs did not
    change is not built again. Writes out/build.json and a CycloneDX list per image
    (out/<image>.cdx.json). An image with `base = "REF"` is built FROM that vendor image, the lock's
    view laid into the vendor's prefix; the drift (each vendor distribution kept, replaced or
    added) is in out/build.json and --json.

    Example: imagekit build ray --verbose
    """
    if builder not in ("auto", "buildkit", "classic"):
        raise UsageError(f"must be auto, buildkit or classic, not {builder!r}", option="--builder")
    cfg = load(ctx)
    with progress(ctx, "build") as note:
        result = core.build(cfg, Engine.connect(), names=images, builder=builder, on_line=note)
    lines = [f"{'cached ' if i.cached else 'built  '} {i.repository}:{i.tags[0]}  {i.image_id[7:19]}  "
             f"{i.size / 1e6:.0f} MB  {i.seconds:.0f} s" for i in result.images]
    for i in (i for i in result.images if i.base):  # on a vendor base: what became of the vendor's distributions
        counts = {k: sum(d["status"] == k for d in i.drift) for k in ("kept", "replaced", "added")}
        moved = [f"{d['name']} {d['vendor']} -> {d['lock']}" for d in i.drift
                 if d["status"] == "replaced" and d["vendor"] != d["lock"]]
        lines.append(f"  {i.name} on {i.base['name']}@{i.base['digest']}: {counts['kept']} kept, {counts['replaced']} "
                     f"replaced ({', '.join(moved) or 'all at the same version'}), {counts['added']} added")
    lines += [f"shared layers {pair}: {size / 1e6:.0f} MB" for pair, size in result.shared_bytes.items()]
    lines.append(f"Python {result.python}, lock {result.lock[:12]}, {result.seconds:.0f} s")
    emit(ctx, result, as_json, "\n".join(lines))

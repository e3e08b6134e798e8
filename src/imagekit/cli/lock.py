from __future__ import annotations

from typing import List, Optional

import typer

from imagekit import lock as core
from imagekit.cli._common import JSON, emit, escape, load


def register(app: typer.Typer) -> None:
    app.command("lock")(lock)


def lock(ctx: typer.Context,
         check: bool = typer.Option(False, "--check", help="exit 1, naming each difference, if lockfiles/ "
                                                             "no longer match the requirements.in files"),
         upgrade_package: Optional[List[str]] = typer.Option(None, "--upgrade-package", "-P", metavar="NAME",
                                                             help="re-resolve NAME to its newest allowed version, "
                                                                  "keeping every other pin (repeatable)"),
         python: Optional[str] = typer.Option(None, help="target interpreter version (lock.python)"),
         platform: Optional[str] = typer.Option(None, help="target platform, e.g. x86_64-manylinux_2_36 (lock.platform)"),
         as_json: bool = JSON) -> None:
    """Resolve every image's requirements.in once into lockfiles/requirements.txt, plus per-image views.

    The resolution targets the images' interpreter and platform, not the host's. Nothing is
    resolved when the inputs did not change; -P NAME moves one package and keeps the rest.
    """
    cfg = load(ctx, lock__python=python, lock__platform=platform)
    if check:
        if upgrade_package:
            raise typer.BadParameter("--check and --upgrade-package do not go together")
        result = core.check(cfg)
        return emit(result, as_json, f"{result.path}: up to date ({result.packages} pins, views "
                                     + ", ".join(f"{k}={v}" for k, v in result.views.items()) + ")")
    result = core.lock(cfg, upgrade=tuple(upgrade_package or ()))
    what = "resolved" if result.resolved else "inputs unchanged, nothing resolved"
    lines = [f"{result.path}: {what} in {result.seconds:.1f} s, {result.packages} pins",
             "views: " + ", ".join(f"{k}={v} pins" for k, v in result.views.items()),
             *(f"  {escape(c)}" for c in result.changes)]
    emit(result, as_json, "\n".join(lines))

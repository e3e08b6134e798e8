from __future__ import annotations

from typing import List, Optional

import typer

from imagekit import lock as core
from imagekit.cli._common import JSON, command, emit, escape, load
from imagekit.errors import UsageError


def register(app: typer.Typer) -> None:
    command(app, "lock", lock)


def lock(ctx: typer.Context,
         check: bool = typer.Option(False, "--check", help="exit 1, naming each difference, if lockfiles/ "
                                                             "no longer match the requirements.in files"),
         upgrade_package: Optional[List[str]] = typer.Option(None, "--upgrade-package", "-P", metavar="NAME",
                                                             help="re-resolve NAME to its newest allowed version, "
                                                                  "keeping every other pin (repeatable)"),
         python: Optional[str] = typer.Option(None, help="target interpreter version (lock.python)"),
         platform: Optional[str] = typer.Option(None, help="target platform, e.g. x86_64-manylinux_2_36 (lock.platform)"),
         resolver: Optional[str] = typer.Option(None, help="uv (fast, on the host) or pip-tools (pip-compile "
                                                           "inside the OS image) (lock.resolver)"),
         as_json: bool = JSON) -> None:
    """Resolve every image's requirements once into one lock.

    lockfiles/requirements.txt is resolved for the images' interpreter and platform (lock.python,
    lock.platform), not the host's, with every pin hashed; lockfiles/<image>.txt are the views, what
    each image installs beyond its parent. Nothing is resolved when the inputs did not change; -P NAME
    moves one package and keeps the others. With --check the committed files are compared with the
    requirements.in files (exit 1 naming each difference); with --check --resolver pip-tools,
    pip-compile must accept the committed lock unchanged.

    Example: imagekit lock -P numpy
    Example: imagekit lock --check --resolver pip-tools
    """
    cfg = load(ctx, lock__python=python, lock__platform=platform, lock__resolver=resolver)
    if check:
        if upgrade_package:
            raise UsageError("--check and --upgrade-package do not go together", option="--upgrade-package",
                             hint="check the committed lock, or move a package: not both at once")
        pip_tools = cfg.lock.resolver == "pip-tools"  # --resolver, IMAGEKIT_LOCK_RESOLVER or imagekit.toml
        result = core.pip_tools_check(cfg) if pip_tools else core.check(cfg)
        return emit(ctx, result, as_json, f"{result.path}: up to date ({result.packages} pins, views "
                                     + ", ".join(f"{k}={v}" for k, v in result.views.items()) + ")"
                                     + (", accepted unchanged by pip-compile" if pip_tools else ""))
    result = core.lock(cfg, upgrade=tuple(upgrade_package or ()))
    what = f"resolved by {result.resolver}" if result.resolved else "inputs unchanged, nothing resolved"
    lines = [f"{result.path}: {what} in {result.seconds:.1f} s, {result.packages} pins",
             "views: " + ", ".join(f"{k}={v} pins" for k, v in result.views.items()),
             *(f"  {escape(c)}" for c in result.changes)]
    emit(ctx, result, as_json, "\n".join(lines))

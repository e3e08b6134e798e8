from __future__ import annotations

import typer

from imagekit import doctor as core
from imagekit.cli._common import JSON, command, emit, escape, load


def register(app: typer.Typer) -> None:
    command(app, "doctor", doctor)


def doctor(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Tell what is there, what is missing, what to do.

    The engine, the registry, the OS image, the S3 server verify-compat would start, debootstrap, the
    cache and the lock; exit 1 when something is missing, each line saying what to do about it.

    Example: imagekit doctor --json
    """
    report = core.diagnose(load(ctx))
    lines = []
    for c in report.checks:
        mark = "[green]ok[/]  " if c.ok else "[red]MISSING[/]"
        lines.append(f"{mark} {c.name:<28} {escape(c.detail)}" + (f"\n             -> {escape(c.fix)}" if c.fix else ""))
    emit(ctx, report, as_json, "\n".join(lines), ok=report.ok)
    raise typer.Exit(0 if report.ok else 1)

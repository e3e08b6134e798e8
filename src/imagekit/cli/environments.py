from __future__ import annotations

from typing import List, Optional

import typer

from imagekit import diff as diff_core
from imagekit import status as status_core
from imagekit.cli._common import JSON, emit, load


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)
    app.command("status")(status)


def _diff_lines(result: list[diff_core.ImageDiff]) -> str:
    lines = []
    for d in result:
        lines.append(f"{d.image}: {d.a} -> {d.b}" + ("  (same digest)" if d.same_digest else ""))
        lines.append(f"  lock {d.lock[0][:12] or '?'} -> {d.lock[1][:12] or '?'}")
        lines += [f"  {c.risk:<4}  {c.name:<24} {c.a or '-':>12} -> {c.b or '-':<12} {c.kind}" for c in d.changes]
        if not d.changes:
            lines.append("  same Python and packages")
    return "\n".join(lines)


def diff(ctx: typer.Context,
         refs: Optional[List[str]] = typer.Argument(None, metavar="[A B]",
                                                    help="two images: [ENV/]IMAGE[:TAG|@DIGEST] (default tag current)"),
         env: Optional[List[str]] = typer.Option(None, "--env", help="two environments: every verified image under current"),
         as_json: bool = JSON) -> None:
    """What differs between two images, or two environments: Python, lock, packages added, removed
    or changed, riskiest for unpickling first (Python, numpy, scikit-learn, cloudpickle,
    category-encoders, ..., the private model packages), read from the registry.

    Example: imagekit diff --env desa --env prod    (or: imagekit diff desa/ray:2.41.0-py311-sunat-v13 prod/ray)
    """
    result = diff_core.diff(load(ctx), refs or [], env or [])
    emit(ctx, result, as_json, _diff_lines(result))


def _status_lines(result: list[status_core.EnvironmentStatus]) -> str:
    lines = []
    for e in result:
        lines.append(f"{e.name} ({e.project}): " + ("verified set" if e.pair_verified else "NOT a verified set"))
        for i in e.images:
            partners = ", ".join(f"{n}@{d[7:19]}" for n, d in sorted(i.partners.items()) if n != i.image)
            lines.append(f"  {i.image:<10} {i.version_tag}: {i.version_digest[7:19] or '-':<12} "
                         f"current: {i.current[7:19] or '-':<12} "
                         + (f"verified with {partners or 'itself'}" if i.verified else f"not verified ({i.why})")
                         + (f"; attested as {', '.join(n for n, ok in i.layouts.items() if ok) or 'nothing valid'}"
                            if i.current else ""))
    return "\n".join(lines)


def status(ctx: typer.Context,
           env: Optional[List[str]] = typer.Option(None, "--env", help="these environments only (default: all)"),
           as_json: bool = JSON) -> None:
    """Per environment: each verified image's digest under its version tag and under `current`,
    whether `current` carries a valid signed attestation and with which partner, in which layouts
    (bundle: the sigstore bundle referrer the gate, cosign 3 and Kyverno SigstoreBundle read; att: the
    legacy sha256-<hex>.att tag Kyverno Cosign and policy-controller read), and whether the
    environment runs a set verify-compat passed together.

    Example: imagekit status --json
    """
    result = status_core.status(load(ctx), env or None)
    emit(ctx, result, as_json, _status_lines(result))

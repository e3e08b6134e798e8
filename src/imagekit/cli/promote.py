from __future__ import annotations

from typing import List, Optional

import typer

from imagekit import promote as core
from imagekit.cli._common import JSON, emit, escape, load, progress


def register(app: typer.Typer) -> None:
    app.command("promote")(promote)
    app.command("history")(history)
    app.command("rollback")(rollback)


def _lines(results: list[core.Promotion]) -> str:
    return "\n".join(
        f"{p.image}: {p.source} -> {p.target}@{p.digest} ({', '.join(p.tags)})"
        + (" already there" if p.already else "")
        + (f"; {p.mounted} blobs mounted, {p.copied} copied, {p.present} present, {p.seconds:.1f} s"
           if p.kind == "promote" else "") for p in results)


def promote(ctx: typer.Context,
            images: Optional[List[str]] = typer.Argument(None, metavar="[IMAGE[:TAG|@DIGEST]]...",
                                                         help="images to promote (no tag: as in the newest verified set)"),
            all_images: bool = typer.Option(False, "--all", help="promote the newest verified set (verify.images) "
                                                                 "as one step"),
            to: str = typer.Option(..., "--to", help="the environment to promote into"),
            from_env: Optional[str] = typer.Option(None, "--from", help="source environment (default: the one before)"),
            force: bool = typer.Option(False, "--force", help="allow skipping an environment"),
            as_json: bool = JSON) -> None:
    """Copy verified digests from the previous environment's project to ENV, without rebuilding.

    What moves: with --all (or an IMAGE without a tag), the digests named together by the newest
    valid attestation in the source environment (signed by trust.public_key, passed, every image of
    it there), with the version tags that name them; never chosen by a tag's name or an image label
    (an image derived by hand and pushed beside the release inherits its labels). The choice is
    printed. The digest in ENV equals the source digest; on one registry layers move by
    cross-repository mount, and the attestations travel along in both layouts. The gate: each
    digest needs an attestation signed by the key trust.public_key names, about that very digest,
    that passed and covered trust.required_scenarios (imagekit verify-compat writes it); and afterwards the
    images ENV runs under `current` must be a set verify-compat passed together (so promote the
    verified set with --all, or an image whose verified partner ENV already runs). Immutable
    environments never move a version tag to another digest. Nothing is written unless every image
    can be promoted; refusals exit 1 and name each digest and why.

    Example: imagekit promote --all --to test    (or: imagekit promote ray:2.41.0-py311-sunat-v13 --to prod)
    """
    cfg = load(ctx)
    with progress(ctx, f"promote to {to}") as note:
        results = core.promote(cfg, images or [], to=to, all_images=all_images, from_env=from_env, force=force,
                               on_line=note)
    emit(ctx, results, as_json, _lines(results))


def history(ctx: typer.Context, image: str = typer.Argument(..., help="image name in imagekit.toml"),
            env: str = typer.Option(..., "--env", help="environment"), as_json: bool = JSON) -> None:
    """List what was promoted into ENV (and rolled back), oldest first, from the registry itself.

    Example: imagekit history ray --env prod --json
    """
    entries = core.history(load(ctx), image, env)
    emit(ctx, entries, as_json, "\n".join(f"{e.when}  {e.kind:<8} {e.digest}  {','.join(e.tags):<28} {escape(e.source)}"
                                     for e in entries) or f"nothing was promoted into {env}")


def rollback(ctx: typer.Context, image: str = typer.Argument(..., help="image name in imagekit.toml"),
             env: str = typer.Option(..., "--env", help="environment"), as_json: bool = JSON) -> None:
    """Point ENV's moving tag `current` back at the digest it named before; recorded in the history.

    Example: imagekit rollback ray --env prod
    """
    result = core.rollback(load(ctx), image, env)
    emit(ctx, result, as_json, f"{result.image}: {result.target}:current -> {result.digest} (was {result.source})")

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from imagekit import gitops
from imagekit import history as log
from imagekit import promote as core
from imagekit.cli._common import JSON, command, emit, escape, load, progress


def register(app: typer.Typer) -> None:
    command(app, "promote", promote)
    command(app, "history", history)
    command(app, "rollback", rollback)


MANIFESTS = typer.Option(None, "--manifests", metavar="DIR",
                         help="ENV's folder in the GitOps repository: its image references are rewritten to the "
                              "digests ENV runs afterwards (default: the environment's `manifests` setting)")


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
            manifests: Optional[Path] = MANIFESTS, as_json: bool = JSON) -> None:
    """Promote verified digests to the next environment.

    From the previous environment's project to ENV, by digest, without rebuilding. With --all (or an
    IMAGE without a tag), the digests named together by the newest valid attestation in the source
    environment, with the version tags that name them; never chosen by a tag's name or a label. The
    gate: each digest needs an attestation signed by the key trust.public_key names, about that very
    digest, that passed and covered trust.required_scenarios; and afterwards the images ENV runs under
    `current` must be a set verify-compat passed together. All or nothing: every image is checked,
    then copied (layers by cross-repository mount on one registry), and the tags move last; a re-run
    completes a promotion that stopped. Immutable environments never move a version tag. With
    --manifests DIR, the image references of ENV's GitOps folder follow the promotion.

    Example: imagekit promote --all --to test
    Example: imagekit promote --all --to prod --manifests gitops/prod
    """
    cfg = load(ctx)
    folder = _folder(cfg, to, manifests)
    with progress(ctx, f"promote to {to}") as note:
        results = core.promote(cfg, images or [], to=to, all_images=all_images, from_env=from_env, force=force,
                               on_line=note)
    _emit_following(ctx, cfg, to, folder, "promotions", results, as_json, _lines(results))


def _folder(cfg, env: str, option: Optional[Path]) -> Optional[Path]:
    """The GitOps folder to follow, checked (present, every file YAML) before anything moves."""
    setting = cfg.environment(env).manifests
    folder = option or (cfg.path(setting) if setting else None)
    if folder is not None:
        gitops.plan(folder, {}, env)
    return folder


def _emit_following(ctx, cfg, env: str, folder: Optional[Path], key: str, result, as_json: bool, human: str) -> None:
    """The result, and the folder rewritten to what ENV now runs (its diff), when there is one."""
    if folder is None:
        return emit(ctx, result, as_json, human)
    update = gitops.update(folder, gitops.pins(cfg, env), env)
    said = (escape(update.diff.rstrip()) if update.changes else
            f"{folder}: names none of {env}'s images" if not update.found else f"{folder}: already names what {env} runs")
    emit(ctx, {key: result, "manifests": update}, as_json, f"{human}\n{said}")


def history(ctx: typer.Context, image: str = typer.Argument(..., help="image name in imagekit.toml"),
            env: str = typer.Option(..., "--env", help="environment"), as_json: bool = JSON) -> None:
    """List the promotions and rollbacks of an environment.

    Read from the registry itself (an artifact per entry), oldest first.

    Example: imagekit history ray --env prod --json
    """
    entries = log.history(load(ctx), image, env)
    emit(ctx, entries, as_json, "\n".join(f"{e.when}  {e.kind:<8} {e.digest}  {','.join(e.tags):<28} {escape(e.source)}"
                                     for e in entries) or f"nothing was promoted into {env}")


def rollback(ctx: typer.Context,
             images: Optional[List[str]] = typer.Argument(None, metavar="[IMAGE]...", help="images to roll back"),
             all_images: bool = typer.Option(False, "--all", help="roll back the verified set together"),
             env: str = typer.Option(..., "--env", help="environment"), manifests: Optional[Path] = MANIFESTS,
             as_json: bool = JSON) -> None:
    """Move an environment's `current` back one promotion.

    Each image named (with --all, every image of the verified set that has an earlier promotion in
    effect) goes back to the digest its `current` named before, recorded in the history. All or
    nothing: afterwards ENV must run a set one valid attestation names together, so rolling one image
    back alone from a set promoted together is refused, naming its partner (use --all). With
    --manifests DIR, the image references of ENV's GitOps folder follow.

    Example: imagekit rollback --all --env prod --manifests gitops/prod
    Example: imagekit rollback ray --env prod
    """
    cfg = load(ctx)
    folder = _folder(cfg, env, manifests)
    done = log.rollback(cfg, images or [], env, all_images=all_images)
    _emit_following(ctx, cfg, env, folder, "rollback", done, as_json, "\n".join(
        f"{r.image}: {r.target}:current -> {r.digest} (was {r.source})" for r in done))

from __future__ import annotations

import functools
from pathlib import Path
from typing import List, Optional

import typer

from imagekit import diff as diff_core
from imagekit import gitops
from imagekit import manifests as manifests_core
from imagekit import status as status_core
from imagekit.cli import render
from imagekit.cli._common import JSON, command, emit, escape, load, out
from imagekit.errors import UsageError


def register(app: typer.Typer) -> None:
    command(app, "diff", diff)
    command(app, "status", status)
    command(app, "manifests", manifests)


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
                                                    help="two images: [ENV/]IMAGE[:TAG|@DIGEST] (default tag current), "
                                                         "or any image reference (local or pulled)"),
         env: Optional[List[str]] = typer.Option(None, "--env", help="two environments: every verified image under current"),
         as_json: bool = JSON) -> None:
    """Compare two images or environments, riskiest first.

    Python, the lock, and every package added, removed or changed, ranked by the risk for unpickling
    (Python, numpy, scikit-learn, cloudpickle, category-encoders, ..., the private model packages).
    imagekit's images ([ENV/]IMAGE) are read from the registry's labels; any other image (one in the
    engine, or a reference it pulls with the credentials of the environment whose registry it names)
    is read from inside the image, as its own Python sees its distributions (conda prefixes too).

    Example: imagekit diff --env desa --env prod
    Example: imagekit diff desa/ray:2.41.0-py311-sunat-v15 prod/ray
    Example: imagekit diff harbor.example.org/mlops-prod/ray:v6 team/ray:v7
    """
    result = diff_core.diff(load(ctx), refs or [], env or [], engine=_engine)
    emit(ctx, result, as_json, _diff_lines(result))


@functools.cache
def _engine():
    """The Docker engine, or None where none answers (a diff of environments needs none)."""
    from imagekit.engine import Engine
    from imagekit.errors import EngineError

    try:
        return Engine.connect()
    except EngineError:
        return None


def _status(result: list[status_core.EnvironmentStatus]) -> None:
    for e in result:
        out.print(f"{e.name} ({e.project}): " + ("a verified set" if e.pair_verified else "NOT a verified set"))
        render.table("image", [render.Row(
            f"{i.repository}@{i.current}" if i.current else i.repository, i.verified,
            {i.version_tag or "version": i.version_digest or "-"},
            (f"verified with {', '.join(f'{n}@{d}' for n, d in sorted(i.partners.items()) if n != i.image) or 'itself'}"
             if i.verified else f"not verified: {i.why}")
            + (f"; attested as {', '.join(n for n, ok in i.layouts.items() if ok) or 'nothing valid'}" if i.current else ""))
            for i in e.images])


def status(ctx: typer.Context,
           env: Optional[List[str]] = typer.Option(None, "--env", help="these environments only (default: all)"),
           as_json: bool = JSON) -> None:
    """Show what each environment runs, and if verified.

    Per environment: each verified image's digest under its version tag and under `current`, whether
    `current` carries a valid signed attestation and with which partner, in which layouts (bundle: the
    sigstore bundle referrer the gate, cosign 3 and Kyverno SigstoreBundle read; att: the legacy
    sha256-<hex>.att tag Kyverno Cosign and policy-controller read), and whether the environment runs
    a set verify-compat passed together.

    Example: imagekit status --json
    """
    result = status_core.status(load(ctx), env or None)
    emit(ctx, result, True, "") if as_json else _status(result)


def manifests(ctx: typer.Context, env: str = typer.Option(..., "--env", help="the environment whose `current` pins them"),
              out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="write one file per document there"),
              check: Optional[Path] = typer.Option(None, "--check", metavar="DIR",
                                                   help="exit 1 if the image references in that GitOps folder are "
                                                        "not the digests ENV runs under `current`"),
              as_json: bool = JSON) -> None:
    """Render or check an environment's manifests by digest.

    What ENV's cluster runs, pinned by the digests `current` names there: a RayCluster with GCS fault
    tolerance on the environment's Redis, a RayService serving the Ray image's model server, the
    RayJob of the stored-model check, and the Zero to JupyterHub `singleuser` values. Printed, or
    written with --out. With --check, the image references of a folder of the GitOps repository are
    compared instead: plain `image:` fields, z2jh's `image: {name, tag}`, Helm's `image: {repository,
    tag}` and kustomize's `images:` entries.

    Example: imagekit manifests --env prod --out gitops/prod/imagekit
    Example: imagekit manifests --env prod --check gitops/prod
    """
    cfg = load(ctx)
    if out and check:
        raise UsageError("--out and --check do different things; give one", option="--check")
    if check:
        result, _ = gitops.plan(check, gitops.pins(cfg, env), env)
        ok = bool(result.found) and not result.changes
        why = (f"{check} names none of {env}'s images" if not result.found else
               "\n".join(f"{c.file}:{c.line}: {c.old} (runs: {c.new})" for c in result.changes))
        emit(ctx, result, as_json, f"{check}: {result.found} references, all {env}'s `current`" if ok else why, ok=ok)
        raise typer.Exit(0 if ok else 1)
    pinned = manifests_core.pinned(cfg, env)
    files = manifests_core.render(pinned)
    written = [str(p) for p in manifests_core.write(files, out)] if out else []
    emit(ctx, {"env": env, "pinned": pinned, "files": files, "written": written}, as_json,
         "\n".join(f"wrote {p}" for p in written) if out else escape("---\n".join(files.values())))

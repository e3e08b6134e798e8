from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

import typer

from imagekit import attest
from imagekit.cli._common import JSON, command, emit, escape, load
from imagekit.errors import ConfigError

DEFAULT_PRIVATE = Path("~/.config/imagekit/imagekit.key")


def register(app: typer.Typer) -> None:
    command(app, "keys", keys)


def _inside_tree(cfg, path: Path) -> bool:
    """Whether ``path`` is in the repository and git would not ignore it (a `git add -A` would commit it)."""
    try:
        path.resolve().relative_to(cfg.root)
    except ValueError:
        return False
    done = subprocess.run(["git", "-C", str(cfg.root), "check-ignore", "-q", str(path)], capture_output=True)
    return done.returncode != 0


def keys(ctx: typer.Context,
         private: Optional[Path] = typer.Option(None, "--private", metavar="PATH",
                                                help=f"where the private key goes (default: {DEFAULT_PRIVATE})"),
         public: Optional[Path] = typer.Option(None, "--public", metavar="PATH",
                                               help="where the public key goes (default: trust.public_key, "
                                                    "else keys/imagekit.pub in the repository)"),
         as_json: bool = JSON) -> None:
    """Make the key pair that signs and checks verifications.

    The private key is written with mode 600 outside the repository (or where git ignores it), never
    over an existing one: put it in CI's secret store as IMAGEKIT_TRUST_SIGNING_KEY (the PEM itself, or
    its file's path on the runner), then delete it here. The public key goes into the repository: commit
    it, and name it in imagekit.toml as trust.public_key: the one key the gate trusts.

    Example: imagekit keys && git add keys/imagekit.pub
    """
    cfg = load(ctx)
    private = (private or DEFAULT_PRIVATE).expanduser()
    public = public or cfg.path(cfg.trust.public_key or "keys/imagekit.pub")
    if _inside_tree(cfg, private):
        raise ConfigError(f"{private} is in the repository and git would not ignore it: a `git add -A` would commit "
                          "the signing key", hint=f"pass --private outside the repository (default {DEFAULT_PRIVATE})")
    made_private, made_public = attest.make_pair(private, public)
    setting = "" if cfg.trust.public_key else (
        f"\nname it in imagekit.toml: [trust] public_key = \"{made_public.relative_to(cfg.root)}\""
        if made_public.resolve().is_relative_to(cfg.root) else "\nname it in imagekit.toml: [trust] public_key")
    emit(ctx, {"private": str(made_private), "public": str(made_public),
               "keyid": attest.keyid(attest.load_public(str(made_public)))}, as_json, escape(
        f"private key: {made_private} (mode 600): put it in CI's secret store as IMAGEKIT_TRUST_SIGNING_KEY, then "
        f"delete it here\npublic key: {made_public}: commit it{setting}"))

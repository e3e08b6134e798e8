"""The tags an image is given: its templates in imagekit.toml rendered (its versions, never reused for other
content), then lock-<lock digest> and git-<revision>, which move to each build of the lock and the tree."""
from __future__ import annotations

import datetime
from pathlib import Path

from imagekit import lock, proc
from imagekit.config import Config
from imagekit.errors import ConfigError, ToolError
from imagekit.images import ImageSpec


def revision(root: Path) -> tuple[str, str]:
    """(revision, commit time ISO 8601); the revision ends in -dirty for a changed tree."""
    try:
        rev = proc.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"]).strip()
        when = proc.run(["git", "-C", root, "log", "-1", "--format=%cI"]).strip()
        dirty = proc.run(["git", "-C", root, "status", "--porcelain", "--", "images", "lockfiles"]).strip()
        return rev + ("-dirty" if dirty else ""), when
    except ToolError:
        return "unknown", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def render(cfg: Config, img: ImageSpec, pins: list[lock.Pin], lock_digest: str, rev: str) -> list[str]:
    """``img``'s tag templates rendered, then lock-<the lock's digest> and git-<the revision>."""
    python = cfg.lock.python
    fields = {"org": cfg.project.org, "version": cfg.project.version, "python": python,
              "py": "".join(python.split(".")[:2]), "pins": {p.name: p.version for p in pins},
              "lock": lock_digest[:12], "git": rev}
    tags = []
    for template in img.tags:
        try:
            tags.append(template.format(**fields))
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"tag template {template!r} names {e}, which is not known",
                              key=f"images.{img.name}.tags", source=cfg.source,
                              hint="use {org} {version} {python} {py} {lock} {git} or {pins[<package>]}") from None
    return [*tags, f"lock-{lock_digest[:12]}", f"git-{rev}"]

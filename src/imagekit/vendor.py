"""Vendor bases: an [[images]] entry with ``base = "REF"`` is built FROM that image (rayproject/ray,
docker-stacks' scipy-notebook, or the team's image on them) instead of imagekit's OS image chain.

- The base is named by tag and resolved to a digest (the engine's, or pulled with the credentials of
  the environment whose registry it names); its Python and distributions are asked of the image itself.
- Bases that carry different Pythons, another Python than the lock's, or a glibc older than the lock's
  manylinux tag are refused before anything is built.
- The image's views are laid into the vendor's own prefix as imagekit's layers, below them one layer
  of whiteouts that removes every file of each distribution they replace (its dist-info and conda's
  record of it included): nothing of the old version is left.
- The drift says, for each distribution, whether the vendor's is kept, replaced (old -> new) or the
  lock's is added; pip check's broken requirements are named as the vendor's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from imagekit import facts, inventory, layers, tars
from imagekit.config import Config
from imagekit.engine import Engine
from imagekit.digests import sha256_hex
from imagekit.errors import PreconditionError
from imagekit.images import BASE_DIGEST, BASE_NAME, ImageSpec
from imagekit.lock import Pin
from imagekit.oci import Reference


@dataclass(frozen=True)
class Base:
    ref: str  # as imagekit.toml names it (a tag)
    image_id: str
    digest: str  # the registry's manifest digest where the engine knows it, else the image id
    facts: facts.ImageFacts

    @property
    def prefix(self) -> tars.Prefix:
        return tars.Prefix(path=self.facts.prefix, python=self.facts.executable, venv=False,
                           folders=tuple(self.facts.folders))

    def labels(self) -> dict[str, str]:
        return {BASE_NAME: self.ref, BASE_DIGEST: self.digest}

    def describe(self) -> dict:
        return {"name": self.ref, "digest": self.digest, "python": self.facts.python, "prefix": self.facts.prefix}


@dataclass(frozen=True)
class Drift:
    name: str
    status: str  # kept (the vendor's, not in the lock's view), replaced, added
    vendor: str  # its version in the base, "" when added
    lock: str  # the lock's, "" when kept
    installer: str  # what installed the vendor's (pip, conda, ...), "" when added


def resolve(cfg: Config, engine: Engine, ref: str) -> Base:
    """The base ``ref``: in the engine (pulled if it was not), its digest and what it holds."""
    inventory.present(cfg, engine, ref)
    info = engine.image(ref)
    named = Reference.parse(ref)
    digest = next((d.split("@", 1)[1] for d in info.repo_digests
                   if Reference.parse(d).repository == named.repository), "") or named.digest or info.id
    return Base(ref=ref, image_id=info.id, digest=digest,
                facts=facts.inspect(engine, ref, cache=cfg.cache_dir / facts.KEPT))


def check_targets(cfg: Config, bases: dict[str, Base]) -> None:
    """What the lock targets, every base can install: one Python, the lock's, and a glibc no older than
    the lock's manylinux tag. Else PreconditionError, before anything is built."""
    pythons = {b.facts.python for b in bases.values()}
    if len(pythons) > 1:
        said = ", ".join(f"{name}'s {b.ref} has {b.facts.python}" for name, b in sorted(bases.items()))
        raise PreconditionError(f"the vendor bases carry different Pythons: {said}",
                                hint="take both bases at the same Python patch (a driver that joins the Ray cluster "
                                     "must match it to the patch): e.g. both images of one Python 3.11.x")
    for python in pythons:
        if python != cfg.lock.python:
            raise PreconditionError(f"the vendor bases carry Python {python}; the lock targets {cfg.lock.python}",
                                    hint=f'set lock.python = "{python}" in imagekit.toml (the one Python every image '
                                         f'can install for), then run `imagekit lock`')
    m = re.fullmatch(r"(\w+)-manylinux_2_(\d+)", cfg.lock.platform)
    glibcs = {name: b for name, b in bases.items() if m and b.facts.glibc.startswith("2.")}
    old = min(glibcs.items(), key=lambda nb: int(nb[1].facts.glibc.split(".")[1]), default=None)
    if old and int(old[1].facts.glibc.split(".")[1]) < int(m.group(2)):
        name, b = old
        raise PreconditionError(f"{name}'s base {b.ref} has glibc {b.facts.glibc}; the lock targets "
                                f"{cfg.lock.platform}, whose wheels may need a newer one",
                                hint=f'set lock.platform = "{m.group(1)}-manylinux_{b.facts.glibc.replace(".", "_")}" '
                                     f'in imagekit.toml (the oldest glibc among the images), then run `imagekit lock`')


def drift(base: Base, pins: list[Pin]) -> list[Drift]:
    view = {p.name: p.version for p in pins}
    held, how = base.facts.packages, base.facts.installers
    return [Drift(name=n, status="added" if n not in held else "kept" if n not in view else "replaced",
                  vendor=held.get(n, ""), lock=view.get(n, ""), installer=how.get(n, "") if n in held else "")
            for n in sorted(held.keys() | view.keys())]


def removals(engine: Engine, base: Base, replaced: list[str], cache: Path) -> layers.Layer:
    """The layer of whiteouts removing every file of the ``replaced`` distributions from ``base``, cached
    by what it is made of."""
    group = layers.Group("vendor-removals", ())
    key = sha256_hex("\n".join([layers.RECIPE, group.name, base.image_id, *sorted(replaced)]))
    found = layers.cached(layers.cache_dir(cache), group, key, verify=True)
    if isinstance(found, layers.Layer):
        return found
    paths = facts.installed_files(engine, base.ref, replaced)
    return layers.write_whiteouts(layers.cache_dir(cache), group, key, paths, base.prefix)


def pip_check(img: ImageSpec, base: Base, found: list[Drift]) -> dict:
    """How layers.check runs on an image on ``base``: its Python, broken requirements said as whose they are."""
    return {"python": base.facts.executable, "name": lambda line: conflict(line, found),
            "hint": f"add what the vendor's distributions need to {img.name}'s {img.requirements.name} (then "
                    f"`imagekit lock`), or take a base that fits the lock"}


def conflict(line: str, found: list[Drift]) -> str:
    """uv pip check's "The package `a` requires `b<2`, but `2.4` is installed" said as whose it is."""
    m = re.match(r"The package `([^`]+)` requires `([^`]+)`, but `([^`]+)` is installed", line)
    if not m:
        return line
    by = {d.name: d for d in found}
    who = by.get(canonicalize_name(m.group(1)))
    whose = (f"vendor's {who.name} {who.vendor}" if who and who.status == "kept" else
             f"the lock's {who.name} {who.lock}" if who else m.group(1))
    req = by.get(canonicalize_name(re.split(r"[<>=!~;\[ ]", m.group(2), maxsplit=1)[0]))
    pinned = (f"the lock pins {m.group(3)}" if req and req.status != "kept" else f"the vendor has {m.group(3)}")
    return f"{whose} requires {m.group(2)}, {pinned}"

"""Build every image from the lock, parents first, hermetically; describe what was built."""
from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from imagekit import base, lock, proc, wheels
from imagekit.config import Config, ImageSpec
from imagekit.engine import Engine
from imagekit.errors import ConfigError, ImagekitError, ToolError
from imagekit.images import build_order, leaves, lineage

CONTENT_LABEL = "org.imagekit.content"
INTERNAL = "imagekit-build/{name}:{key}"  # content-addressed local tag; children build FROM it


@dataclass(frozen=True)
class BuiltImage:
    name: str
    repository: str
    image_id: str
    content: str  # sha256 of everything the image is made from: parent, context, wheels
    tags: list[str]
    size: int
    cached: bool
    seconds: float
    sbom: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildResult:
    images: list[BuiltImage]
    lock: str
    python: str
    base: str
    shared_bytes: dict[str, int]  # "ray+notebook" -> bytes of layers both images share
    seconds: float


def result_path(cfg: Config) -> Path:
    return cfg.root / "out" / "build.json"


def load_result(cfg: Config) -> BuildResult:
    path = result_path(cfg)
    if not path.is_file():
        raise ConfigError(f"no build result at {path}", hint="run `imagekit build` (or `make build`) first")
    data = json.loads(path.read_text())
    return BuildResult(**{**data, "images": [BuiltImage(**i) for i in data["images"]]})


def git_info(root: Path) -> tuple[str, str]:
    """(revision, commit time ISO 8601); the revision ends in -dirty for a changed tree."""
    try:
        rev = proc.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"]).strip()
        when = proc.run(["git", "-C", root, "log", "-1", "--format=%cI"]).strip()
        dirty = proc.run(["git", "-C", root, "status", "--porcelain", "--", "images", "lockfiles"]).strip()
        return rev + ("-dirty" if dirty else ""), when
    except ToolError:
        return "unknown", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def render_tags(cfg: Config, img: ImageSpec, pins: list[lock.Pin], lock_digest: str, rev: str) -> list[str]:
    fields = {"org": cfg.get("project.org"), "version": cfg.get("project.version"),
              "python": cfg.get("lock.python"), "py": "".join(cfg.get("lock.python").split(".")[:2]),
              "pins": {p.name: p.version for p in pins}, "lock": lock_digest[:12], "git": rev}
    tags = []
    for template in img.tags:
        try:
            tags.append(template.format(**fields))
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"tag template {template!r} names {e}, which is not known",
                              key=f"images.{img.name}.tags", source=cfg.source,
                              hint="use {org} {version} {python} {py} {lock} {git} or {pins[<package>]}") from None
    return [*tags, f"lock-{lock_digest[:12]}", f"git-{rev}"]


def _stage(cfg: Config, img: ImageSpec, pins: list[lock.Pin], fetched: wheels.FetchResult) -> Path:
    context = cfg.path("cache.dir") / "build" / img.name
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(img.context, context, ignore=shutil.ignore_patterns("requirements.in", "__pycache__"))
    wheels.stage(fetched, pins, context / "wheels")
    return context


def _content_key(parent_key: str, context: Path, version: str) -> str:
    """Everything the image is made of: its parent, its build context, and its version (a label)."""
    h = hashlib.sha256(f"{parent_key}\0{version}\n".encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        rel = path.relative_to(context)
        digest = path.name.endswith(".whl") and path.parent.name == "wheels"
        h.update(f"{rel}\0{'' if digest else wheels.sha256_file(path)}\n".encode())  # wheels: named by the lock
    return h.hexdigest()


def _sbom(img: ImageSpec, built: BuiltImage, pins: list[lock.Pin], fetched: wheels.FetchResult) -> dict:
    """A CycloneDX 1.5 document: every package installed in the image, with its wheel's sha256."""
    return {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
            "metadata": {"component": {"type": "container", "name": img.repository,
                                       "version": built.tags[0]}},
            "components": [{"type": "library", "name": p.name, "version": p.version,
                            "purl": f"pkg:pypi/{p.name}@{p.version}",
                            "properties": [{"name": "imagekit:wheel", "value": fetched.wheels[p.name].name}],
                            "hashes": [{"alg": "SHA-256", "content": fetched.wheels[p.name].parent.name}]}
                           for p in pins]}


def build(cfg: Config, engine: Engine, *, names: list[str] | None = None, builder: str = "auto",
          on_line: Callable[[str], None] | None = None) -> BuildResult:
    """Build the named images (default: all) and their parents; skip what is already built."""
    started = time.monotonic()
    note = on_line or (lambda line: None)
    os_image = base.ensure(cfg, engine, on_line=note)
    lock.check(cfg, name_changes=False)  # a stale lock is drift: CheckFailed names it
    lk = lock.read(lock.lock_path(cfg))
    views = lock.read_views(cfg, lk)
    wanted = {i.name for n in (names or [i.name for i in cfg.images]) for i in lineage(cfg.images, cfg.image(n).name)}
    rev, created = git_info(cfg.root)
    out = result_path(cfg).parent
    out.mkdir(parents=True, exist_ok=True)
    built: dict[str, BuiltImage] = {}
    for img in build_order(cfg.images):
        if img.name not in wanted:
            continue
        t0 = time.monotonic()
        pins = [p for i in reversed(lineage(cfg.images, img.name)) for p in views[i.name]]
        note(f"{img.name}: fetching {len(views[img.name])} wheels")
        fetched = wheels.fetch(cfg, pins, on_line=note)
        context = _stage(cfg, img, views[img.name], fetched)
        parent_ref = INTERNAL.format(name=img.parent, key=built[img.parent].content[:12]) if img.parent else os_image.ref
        lock_digest = lk.digest if img.shared else lock.read(lock.view_path(cfg, img.name)).digest
        tags = render_tags(cfg, img, pins, lock_digest, rev)
        content = _content_key(built[img.parent].content if img.parent else os_image.image_id, context, tags[0])
        internal = INTERNAL.format(name=img.name, key=content[:12])
        local = [f"{img.repository}:{t}" for t in tags]
        labels = {"org.opencontainers.image.title": img.repository,
                  "org.opencontainers.image.source": cfg.get("project.source") or str(cfg.root),
                  "org.opencontainers.image.revision": rev, "org.opencontainers.image.created": created,
                  "org.opencontainers.image.version": tags[0], "org.imagekit.image": img.name,
                  "org.imagekit.lock.sha256": lock_digest, base.PYTHON_LABEL: os_image.python, CONTENT_LABEL: content}
        existing = engine.image(internal)
        if existing:
            note(f"{img.name}: unchanged (content {content[:12]}), not rebuilt")
            image_id = existing["Id"]
            for ref in local:
                engine.tag(image_id, ref)
            labels = existing["Config"]["Labels"]
        else:
            note(f"{img.name}: building")
            image_id = engine.build(context, tags=[internal, *local], buildargs={"PARENT": parent_ref},
                                    labels=labels, builder=builder, on_line=note)
        sbom_path = out / f"{img.name}.cdx.json"
        built[img.name] = BuiltImage(name=img.name, repository=img.repository, image_id=image_id, content=content,
                                     tags=tags, size=engine.image(image_id)["Size"], cached=bool(existing),
                                     seconds=round(time.monotonic() - t0, 1), sbom=str(sbom_path), labels=labels)
        sbom_path.write_text(json.dumps(_sbom(img, built[img.name], pins, fetched), indent=1))
        shutil.rmtree(context / "wheels", ignore_errors=True)
    try:  # out/build.json keeps the latest build of every image, also those not built this time
        earlier = {i.name: i for i in load_result(cfg).images}
    except (ConfigError, TypeError, ValueError):
        earlier = {}
    merged = {i.name: built.get(i.name) or earlier.get(i.name) for i in build_order(cfg.images)}
    built_all = {k: v for k, v in merged.items() if v is not None}
    result = BuildResult(images=list(built_all.values()), lock=lk.digest, python=os_image.python, base=os_image.ref,
                         shared_bytes=shared_bytes(cfg, engine, built_all), seconds=round(time.monotonic() - started, 1))
    result_path(cfg).write_text(json.dumps(asdict(result), indent=1))
    return result


def shared_bytes(cfg: Config, engine: Engine, built: dict[str, BuiltImage]) -> dict[str, int]:
    """For each pair of leaf images: the bytes of the layers both carry (their common ancestor)."""
    result = {}
    tops = [i for i in leaves(cfg.images) if i.name in built and i.shared]
    for n, a in enumerate(tops):
        for b in tops[n + 1:]:
            common = [i.name for i in lineage(cfg.images, a.name) if i.name in {j.name for j in lineage(cfg.images, b.name)}]
            if not common:
                result[f"{a.name}+{b.name}"] = 0
                continue
            ancestor = built[common[0]].image_id
            if not all(engine.image(i) for i in (ancestor, built[a.name].image_id, built[b.name].image_id)):
                continue  # an earlier build's image was removed since
            prefix = engine.layer_ids(ancestor)
            if engine.layer_ids(built[a.name].image_id)[:len(prefix)] != prefix or \
                    engine.layer_ids(built[b.name].image_id)[:len(prefix)] != prefix:
                raise ImagekitError(f"{a.name} and {b.name} do not share the layers of {common[0]}")
            result[f"{a.name}+{b.name}"] = engine.image(ancestor)["Size"]
    return result

"""Push the built images to <registry>/<first environment's project>/<repository>:<tags>."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from imagekit import build
from imagekit.config import Config
from imagekit.engine import Engine
from imagekit.errors import CheckFailed, RegistryError
from imagekit.oci import Reference, is_local
from imagekit.registry import Registry, copy_blobs, scheme_for


@dataclass(frozen=True)
class PushedImage:
    name: str
    repository: str  # <registry>/<project>/<repository>
    tags: list[str]
    digest: str
    unchanged: bool = False  # the registry already held this content under its version tag: not pushed
    seconds: float = 0.0  # the layers the registry lacked sent (compressed by the engine, or copied), then the tags
    copied_from: str = ""  # <registry>/<repository> it was copied from, its layers as stored there ("": pushed)


@dataclass(frozen=True)
class PushResult:
    registry: str
    project: str
    images: list[PushedImage]
    seconds: float


def version_tags(img: build.BuiltImage) -> list[str]:
    """The human version tags (never reused for other content); the lock-/git- tags move."""
    return [t for t in img.tags if not t.startswith(("lock-", "git-"))]


def preflight(reg: Registry, project: str, result: build.BuildResult, engine: Engine) -> None:
    """Refuse before pushing anything: a missing local image, or a version tag in the registry
    that already names different content."""
    problems = []
    for img in result.images:
        if engine.image(img.image_id) is None:
            problems.append(f"{img.repository}: built image {img.image_id[:19]} is no longer in the engine")
            continue
        for tag in version_tags(img):
            existing = reg.manifest(f"{project}/{img.repository}", tag)
            if existing is None:
                continue
            labels = reg.config(f"{project}/{img.repository}", existing).get("config", {}).get("Labels") or {}
            if labels.get(build.CONTENT_LABEL) != img.content:
                problems.append(f"{project}/{img.repository}:{tag} already names {existing.digest[:19]} with other "
                                f"content ({(labels.get(build.CONTENT_LABEL) or 'unknown')[:12]} != {img.content[:12]})")
    if problems:
        raise CheckFailed("nothing was pushed", differences=problems,
                          hint="bump project.version in imagekit.toml for a new release (or rebuild)")


def push(cfg: Config, engine: Engine, *, on_line: Callable[[str], None] | None = None) -> PushResult:
    started = time.monotonic()
    result = build.load_result(cfg)
    shared = {i.name for i in cfg.images if i.shared}
    result = dataclasses.replace(result, images=[i for i in result.images if i.name in shared])
    reg = Registry.from_config(cfg, cfg.environments[0] if cfg.environments else None)
    project = cfg.first_project
    preflight(reg, project, result, engine)
    note = on_line or (lambda line: None)
    pushed = []
    for img in result.images:
        repo, began = f"{project}/{img.repository}", time.monotonic()
        held = next((m for t in version_tags(img) if (m := reg.manifest(repo, t))), None)
        if held is not None:  # preflight: the same content (a rebuild of the same inputs): the tag stays
            for tag in img.tags:  # only tags that are missing or move (lock-, git-): no version tag is written
                there = reg.manifest(repo, tag)
                if there is None or there.digest != held.digest and tag not in version_tags(img):
                    reg.put_manifest(repo, tag, held)
            ref = f"{reg.host}/{repo}@{held.digest}"
            if ref in engine.image(img.image_id).repo_digests:
                note(f"{img.name}: unchanged: {reg.host}/{repo} already holds it as {held.digest}")
            else:  # another build of the same inputs: the registry's image stands for it here
                note(f"{img.name}: unchanged: {reg.host}/{repo} already holds this content as {held.digest} "
                     f"({', '.join(version_tags(img))}); nothing pushed, the local image is now that digest")
                if why := engine.pull(ref, auth=reg.credentials()):
                    raise CheckFailed(f"{ref} could not be pulled to stand for the local build of the same content: "
                                      f"{why}")
                build.adopt(cfg, engine, img.name, engine.image(ref).id)
            pushed.append(PushedImage(name=img.name, repository=f"{reg.host}/{repo}", tags=img.tags,
                                      digest=held.digest, unchanged=True, seconds=round(time.monotonic() - began, 1)))
            continue
        done = tuple(p.repository.removeprefix(f"{reg.host}/") for p in pushed)  # their layers are mounted
        source = copied(engine, img, reg, repo, mount_from=done)
        if source:
            digest = source.digest
            note(f"{img.name}: copied to {reg.host}/{repo} from {source.registry}/{source.repository}, which holds "
                 f"this image: its layers as stored there, not compressed again")
            if why := engine.pull(f"{reg.host}/{repo}@{digest}", auth=reg.credentials()):  # the engine knows it there
                raise CheckFailed(f"{reg.host}/{repo}@{digest} was copied but could not be pulled: {why}")
        else:
            note(f"{img.name}: pushing {', '.join(img.tags)} to {reg.host}/{repo}")
            digest = engine.push(img.image_id, f"{reg.host}/{repo}", img.tags[0], auth=reg.credentials(),
                                 on_line=on_line)
        manifest = reg.manifest(repo, digest)
        for tag in img.tags[1:] if manifest else []:  # the very manifest pushed, under its other tags: not pushed again
            reg.put_manifest(repo, tag, manifest)
        for tag in img.tags:  # what the registry now says, not what the engine reported
            stored = reg.manifest(repo, tag)
            if stored is None or stored.digest != digest:
                raise CheckFailed(f"{repo}:{tag} in the registry is {stored and stored.digest}, pushed {digest}")
        pushed.append(PushedImage(name=img.name, repository=f"{reg.host}/{repo}", tags=img.tags, digest=digest,
                                  seconds=round(time.monotonic() - began, 1),
                                  copied_from=f"{source.registry}/{source.repository}" if source else ""))
    return PushResult(registry=reg.host, project=project, images=pushed, seconds=round(time.monotonic() - started, 1))


def copied(engine: Engine, img: build.BuiltImage, reg: Registry, repo: str, *, mount_from: tuple[str, ...] = ()
           ) -> Reference | None:
    """``img`` copied into ``repo`` (tagged with its first tag) from a registry the engine pushed it to or pulled
    it from before (its repo digests), its compressed layers as stored there (``docker push`` to a registry
    that lacks them compresses every layer again: the whole of a push's CPU). The registry's manifest must be
    the digest the engine recorded, of this very image (its config). None when no registry serves it; loopback
    registries are asked first, one repository per registry; layers ``mount_from`` (repositories of ``reg``)
    hold are mounted from there."""
    found = {}
    for held in map(Reference.parse, engine.image(img.image_id).repo_digests):
        found.setdefault(held.registry, held)
    for held in sorted(found.values(), key=lambda r: (r.registry != reg.host, not is_local(r.registry))):
        source = reg if held.registry == reg.host else Registry(held.registry, scheme_for(held.registry))
        try:
            manifest = source.manifest(held.repository, held.digest)
            if manifest is None or manifest.digest != held.digest or \
                    manifest.data.get("config", {}).get("digest") != img.image_id:
                continue
            copy_blobs(source, held.repository, reg, repo, manifest, lambda line: None, mount_from=mount_from)
            reg.put_manifest(repo, img.tags[0], manifest)
            return held
        except RegistryError:  # gone, or not ours to read: the next, else the engine pushes
            continue
    return None

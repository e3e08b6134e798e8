"""Promotion by digest from one environment's registry project to the next (desa -> test -> prod).

Blobs move by cross-repository mount on one registry (no layer bytes through the client) and by
a streamed copy only across registries; the manifest is written last, so a tag never names
missing blobs. Every tag is checked before anything is written. The history of an environment
is an artifact in the registry itself (tag ``imagekit.history``), so CI keeps no local state.
"""
from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from imagekit.config import Config
from imagekit.errors import CheckFailed, PreconditionError, RegistryError, UsageError
from imagekit.images import Environment, ImageSpec, leaves
from imagekit.oci import Manifest, Reference
from imagekit.registry import Registry
from imagekit.verify import record, verified_set

MOVING_TAG = "current"  # the environment's moving tag: may move even where tags are immutable
HISTORY_TAG = "imagekit.history"
HISTORY_TYPE = "application/vnd.imagekit.history.v1+json"


@dataclass(frozen=True)
class Promotion:
    image: str
    kind: str  # "promote" or "rollback"
    source: str  # registry/project/repository it came from
    target: str  # registry/project/repository it went to
    digest: str
    tags: list[str]
    mounted: int = 0  # blobs mounted across repositories: no bytes through the client
    copied: int = 0  # blobs streamed through the client (across registries only)
    present: int = 0  # blobs the target already had
    already: bool = False  # the target already had this digest under these tags
    seconds: float = 0.0


@dataclass(frozen=True)
class HistoryEntry:
    kind: str
    digest: str
    tags: list[str]
    when: str
    source: str


def registry_for(cfg: Config, env: Environment) -> Registry:
    return Registry.from_config(cfg, env)


def promotable(cfg: Config, names: list[str], all_images: bool) -> list[tuple[ImageSpec, Reference | None]]:
    """(image, the tag or digest given) for IMAGE[:TAG|@DIGEST] arguments, or with --all the
    verified set (verify.images): what verify-compat proves together is promoted together."""
    if all_images == bool(names):
        raise UsageError("name the images to promote, or pass --all (not both)", option="IMAGE")
    if all_images:
        return [(cfg.image(n), None) for n in verified_set(cfg)]
    result = []
    for arg in names:
        ref = Reference.parse(arg)
        result.append((cfg.image(ref.repository), ref if ref.tag or ref.digest else None))
    return result


def default_tag(reg: Registry, repo: str) -> str:
    """What to promote when no tag is named: the source environment's newest version tag (by the
    image's creation label), whatever the working tree would build now."""
    versions = [t for t in reg.tags(repo) if t != MOVING_TAG and not t.startswith(("lock-", "git-", "sha256-",
                                                                                     "imagekit."))]
    if not versions:
        raise PreconditionError(f"{reg.host}/{repo} has no version tag to promote",
                                hint="push the images first (`imagekit push`), or name a tag (IMAGE:TAG)")
    created = {t: reg.config(repo, reg.manifest(repo, t)).get("config", {}).get("Labels", {})
               .get("org.opencontainers.image.created", "") for t in versions}
    return max(versions, key=lambda t: (created[t], t))


def version_of(reg: Registry, repo: str, manifest: Manifest) -> str:
    """The version tag an image carries in its labels (what `imagekit build` tagged it)."""
    labels = reg.config(repo, manifest).get("config", {}).get("Labels") or {}
    return labels.get("org.opencontainers.image.version", "")


def _source_and_target(cfg: Config, to: str, from_env: str | None, force: bool) -> tuple[Environment, Environment]:
    order = [e.name for e in cfg.environments]
    target = cfg.environment(to)
    index = order.index(target.name)
    if index == 0:
        raise UsageError(f"{target.name} is the first environment: images enter it by `imagekit push`",
                         option="--to")
    source = cfg.environment(from_env) if from_env else cfg.environments[index - 1]
    if order.index(source.name) >= index:
        raise UsageError(f"promotion goes forward: {source.name} comes after {target.name}", option="--from")
    if order.index(source.name) != index - 1 and not force:
        skipped = order[order.index(source.name) + 1:index]
        raise UsageError(f"{source.name} -> {target.name} skips {', '.join(skipped)}", option="--to",
                         hint=f"promote to {skipped[0]} first, or pass --force to skip on purpose")
    return source, target


def copy_blobs(src: Registry, src_repo: str, dst: Registry, dst_repo: str, manifest: Manifest,
         counts: dict[str, int], on_line: Callable[[str], None]) -> None:
    """Make every blob (and child manifest) of ``manifest`` exist in dst_repo; write no tag."""
    data = json.loads(manifest.body)
    for child in data.get("manifests", []):  # an index: its platform manifests go first, by digest
        sub = src.manifest(src_repo, child["digest"])
        copy_blobs(src, src_repo, dst, dst_repo, sub, counts, on_line)
        dst.put_manifest(dst_repo, child["digest"], sub)
    same = (src.host, src.scheme) == (dst.host, dst.scheme)
    for blob in manifest.blobs():
        if dst.has_blob(dst_repo, blob):
            counts["present"] += 1
        elif same and dst.mount_blob(dst_repo, blob, src_repo):
            counts["mounted"] += 1
            on_line(f"mounted {blob[:19]} into {dst_repo}")
        else:
            on_line(f"copying {blob[:19]} into {dst_repo}")
            dst.upload_blob_chunks(dst_repo, blob, src.blob_chunks(src_repo, blob))
            counts["copied"] += 1


def promote(cfg: Config, names: list[str], *, to: str, all_images: bool = False, from_env: str | None = None,
            force: bool = False, on_line: Callable[[str], None] | None = None) -> list[Promotion]:
    note = on_line or (lambda line: None)
    source_env, target_env = _source_and_target(cfg, to, from_env, force)
    src, dst = registry_for(cfg, source_env), registry_for(cfg, target_env)
    plans, problems = [], []
    members = verified_set(cfg)
    if all_images:
        for img in leaves(cfg.images):
            if img.shared and img.name not in members:
                note(f"{img.name}: not promoted: it is not in verify.images, so no verification covers it")
    for img, ref in promotable(cfg, names, all_images):  # check everything before writing anything
        src_repo, dst_repo = f"{source_env.project}/{img.repository}", f"{target_env.project}/{img.repository}"
        wanted = ref.ref if ref else default_tag(src, src_repo)
        manifest = src.manifest(src_repo, wanted)
        if manifest is None:
            problems.append(f"{src.host}/{src_repo}:{wanted} does not exist (promote to {source_env.name} first?)")
            continue
        why = ("is not in verify.images, so no verification covers it" if img.name not in members
               else record.refusal(record.read(src, src_repo, manifest.digest), manifest.digest))
        if why:
            problems.append(f"{src_repo}@{manifest.digest} {why} ({src_repo}:{record.tag_for(manifest.digest)}); "
                            f"run `imagekit verify-compat` on it")
            continue
        if ref and ref.digest:
            version = ""
        elif wanted == MOVING_TAG:
            version = version_of(src, src_repo, manifest)
        else:
            version = wanted
        tags = [t for t in (version, MOVING_TAG) if t]
        for tag in tags:
            existing = dst.manifest(dst_repo, tag)
            if existing and existing.digest != manifest.digest and target_env.immutable and tag != MOVING_TAG:
                problems.append(f"{dst_repo}:{tag} is immutable in {target_env.name} and names {existing.digest}")
        plans.append((img, src_repo, dst_repo, manifest, tags))
    if problems:
        raise CheckFailed(f"nothing was promoted to {target_env.name}", differences=problems)
    results = []
    for img, src_repo, dst_repo, manifest, tags in plans:
        started, counts = time.monotonic(), {"mounted": 0, "copied": 0, "present": 0}
        already = all((m := dst.manifest(dst_repo, t)) and m.digest == manifest.digest for t in tags)
        copy_blobs(src, src_repo, dst, dst_repo, manifest, counts, note)
        verified = src.manifest(src_repo, record.tag_for(manifest.digest))
        copy_blobs(src, src_repo, dst, dst_repo, verified, counts, note)  # the record travels with the digest
        dst.put_manifest(dst_repo, record.tag_for(manifest.digest), verified)
        for tag in tags:  # last: only now can a tag name it
            dst.put_manifest(dst_repo, tag, manifest)
        entries = history(cfg, img.name, target_env.name)
        if not (already and entries and entries[-1].digest == manifest.digest):
            _append(dst, dst_repo, HistoryEntry("promote", manifest.digest, tags, _now(),
                                                f"{source_env.name} ({src.host}/{src_repo})"), entries)
        results.append(Promotion(image=img.name, kind="promote", source=f"{src.host}/{src_repo}",
                                 target=f"{dst.host}/{dst_repo}", digest=manifest.digest, tags=tags, already=already,
                                 seconds=round(time.monotonic() - started, 2), **counts))
    return results


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def history(cfg: Config, image: str, env: str) -> list[HistoryEntry]:
    environment = cfg.environment(env)
    reg, repo = registry_for(cfg, environment), f"{environment.project}/{cfg.image(image).repository}"
    data = reg.get_artifact(repo, HISTORY_TAG)
    if data is None and not reg.tags(repo):
        raise PreconditionError(f"{reg.host}/{repo} does not exist: nothing was ever pushed or promoted there",
                                hint=f"check the image name and the environment (`{env}` is project "
                                     f"{environment.project}); promote into it first")
    return [HistoryEntry(**e) for e in data["entries"]] if data else []


def _append(reg: Registry, repo: str, entry: HistoryEntry, entries: list[HistoryEntry]) -> None:
    body = json.dumps({"entries": [asdict(e) for e in [*entries, entry]]}, indent=1).encode()
    reg.put_artifact(repo, HISTORY_TAG, HISTORY_TYPE, body)


def _current_stack(entries: list[HistoryEntry]) -> list[str]:
    """The digests the moving tag went through: a promotion pushes, a rollback pops."""
    stack: list[str] = []
    for e in entries:
        if e.kind == "rollback":
            stack.pop()
        else:
            stack.append(e.digest)
    return stack


def rollback(cfg: Config, image: str, env: str) -> Promotion:
    """Point the environment's moving tag back at the digest it named before; record it."""
    started = time.monotonic()
    environment = cfg.environment(env)
    reg, repo = registry_for(cfg, environment), f"{environment.project}/{cfg.image(image).repository}"
    entries = history(cfg, image, env)
    stack = _current_stack(entries)
    if len(stack) < 2:
        raise PreconditionError(f"nothing to roll back to: {repo} has {len(stack)} promotion(s) in effect",
                                hint=f"see `imagekit history {image} --env {env}`")
    current, previous = stack[-1], stack[-2]
    manifest = reg.manifest(repo, previous)
    if manifest is None:
        raise RegistryError(f"{repo}@{previous} is no longer in the registry; cannot roll back to it")
    reg.put_manifest(repo, MOVING_TAG, manifest)
    _append(reg, repo, HistoryEntry("rollback", previous, [MOVING_TAG], _now(), f"rollback from {current}"), entries)
    return Promotion(image=image, kind="rollback", source=f"{reg.host}/{repo}@{current}", target=f"{reg.host}/{repo}",
                     digest=previous, tags=[MOVING_TAG], seconds=round(time.monotonic() - started, 2))

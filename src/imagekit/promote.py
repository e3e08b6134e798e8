"""Promotion by digest from one environment's registry project to the next (desa -> test -> prod).

All or nothing: every tag is checked and every image passes the gate before anything is written;
then every image's blobs, manifest and attestations are copied (by cross-repository mount on one
registry, a streamed copy across registries); only when every copy is complete do the tags move, and
a re-run completes a promotion that stopped while they did. The gate: a signed attestation
(attest.py) by the trusted key, about this very digest, that passed and covered the required
scenarios; and after the promotion the target's `current` images form a set verify-compat passed
together. The history (history.py) is in the registry itself, so CI keeps no local state.
"""
from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from imagekit import attest, history, record
from imagekit.config import Config
from imagekit.errors import CheckFailed, RegistryError, UsageError
from imagekit.history import HistoryEntry, Log
from imagekit.images import Environment, ImageSpec, leaves
from imagekit.inventory import (
    MOVING_TAG,
    currents,
    newest_set,
    pair_problems,
    registry_for,
    repo,
    version_of,
    version_tags,
)
from imagekit.oci import Manifest, Reference
from imagekit.registry import Registry, copy_blobs
from imagekit.verify.policy import required_scenarios, verified_set


@dataclass(frozen=True)
class Promotion:
    image: str
    kind: str  # "promote"
    source: str  # registry/project/repository it came from
    target: str  # registry/project/repository it went to
    digest: str
    tags: list[str]
    mounted: int = 0  # blobs mounted across repositories: no bytes through the client
    copied: int = 0  # blobs streamed through the client (across registries only)
    present: int = 0  # blobs the target already had
    already: bool = False  # the target already had this digest under these tags
    seconds: float = 0.0


def promotable(cfg: Config, names: list[str], all_images: bool) -> list[tuple[ImageSpec, Reference | None]]:
    """(image, the tag or digest given) for IMAGE[:TAG|@DIGEST] arguments, or with --all the
    verified set (verify.images): what verify-compat proves together is promoted together."""
    if all_images == bool(names):
        raise UsageError("name the images to promote, or pass --all (not both)", option="IMAGE")
    if all_images:
        return [(cfg.image(n), None) for n in verified_set(cfg)]
    return [(cfg.image((ref := Reference.parse(arg)).repository), ref if ref.tag or ref.digest else None)
            for arg in names]


def _choose(cfg: Config, src: Registry, env: Environment, names: list[str], together: bool, public,
            note: Callable[[str], None], target: str) -> dict[str, tuple[str, str]]:
    """(digest, version tag) of each image of ``names`` (given without a tag): with --all the newest
    set they were verified as together, else each one's newest verified digest."""
    chosen = {}
    for group in ([names] if together else [[n] for n in names]) if names else []:
        found = newest_set(cfg, src, env, group, public)
        if found is None:
            raise CheckFailed(f"nothing was promoted to {target}", differences=[
                f"{env.name} holds no {'set of ' if len(group) > 1 else ''}{', '.join(group)} that one valid "
                f"attestation names{' together' if len(group) > 1 else ''}"],
                hint="run `imagekit verify-compat` with the signing key, or name what to promote (IMAGE:TAG)")
        note(f"promoting the newest verified {'set' if len(group) > 1 else 'image'} in {env.name} (verified at "
             f"{found.verified_at}): " + ", ".join(f"{n}@{d}" + (f" ({found.tags[n]})" if found.tags[n] else "")
                                                   for n, d in found.images.items()))
        chosen.update({n: (found.images[n], found.tags[n]) for n in group})
    return chosen


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


@dataclass(frozen=True)
class _Plan:
    img: ImageSpec
    src_repo: str
    dst_repo: str
    manifest: Manifest
    tags: list[str]
    attestations: list[tuple[record.Found, attest.Verdict]]  # the valid ones in the canonical layout
    copies: list[record.Found]  # the valid ones in every layout: they travel with the digest


def gate(src: Registry, src_repo: str, digest: str, public, required: list[tuple[str, str]]) -> tuple[list, list, str]:
    """(the valid attestations of ``src_repo@digest`` in the canonical layout that cover the
    required scenarios, the valid ones in every layout, why none is when there is none)."""
    found = record.verdicts(src, src_repo, digest, public)
    valid = [(f, v) for f, v in found if v.statement]
    good = [(f, v) for f, v in valid if f.layout == record.CANONICAL and not attest.uncovered(v.statement, required)]
    if good:
        return good, [f for f, _ in valid], ""
    reasons = [f"its {record.LAYOUTS[f.layout]} attestation {f.where[:19]} {v.why}" for f, v in found if not v.statement]
    reasons += [f"its attestation {f.where[:19]} {'; '.join(attest.uncovered(v.statement, required))} "
                f"(trust.required_scenarios)" for f, v in valid if f.layout == record.CANONICAL]
    if valid and not any(f.layout == record.CANONICAL for f, _ in valid):
        reasons.append(f"its valid attestation is only in the {record.LAYOUTS[valid[0][0].layout]} layout, and the gate "
                       f"reads the {record.LAYOUTS[record.CANONICAL]}")
    why = "; ".join(reasons) or "has no signed attestation"
    return [], [], (f"{src_repo}@{digest} {why}: run `imagekit verify-compat` on the pair with the signing key "
                    f"(IMAGEKIT_TRUST_SIGNING_KEY) whose public key is trust.public_key")


def _version(src: Registry, src_repo: str, manifest: Manifest, ref: Reference | None, chosen: str) -> str:
    """The version tag the promotion writes in the target: the chosen set's, the tag given, the one
    `current`'s image carries in its labels, none for a digest."""
    if ref is None:
        return chosen
    if ref.digest:
        return ""
    return version_of(src, src_repo, manifest) if ref.ref == MOVING_TAG else ref.tag


def _plan(cfg: Config, names: list[str], all_images: bool, source_env: Environment, target_env: Environment,
          src: Registry, dst: Registry, note: Callable[[str], None]) -> list[_Plan]:
    """Every image's plan, or CheckFailed naming every problem: nothing is written before this returns."""
    public, members, required = attest.trusted_key(cfg), verified_set(cfg), required_scenarios(cfg)
    if all_images:
        for img in leaves(cfg.images):
            if img.shared and img.name not in members:
                note(f"{img.name}: not promoted: it is not in verify.images, so no verification covers it")
    wanted = promotable(cfg, names, all_images)
    chosen = _choose(cfg, src, source_env, [i.name for i, r in wanted if r is None and i.name in members],
                     all_images, public, note, target_env.name)
    plans, problems = [], []
    for img, ref in wanted:
        src_repo, dst_repo = repo(cfg, source_env, img.name), repo(cfg, target_env, img.name)
        if img.name not in members:
            held = src.manifest(src_repo, ref.ref) if ref else None
            what = held.digest if held else ref.ref if ref else ", ".join(sorted(version_tags(src, src_repo)))
            problems.append(f"{src_repo}@{what or '(nothing)'} is not in verify.images, so no verification covers it")
            continue
        manifest = src.manifest(src_repo, ref.ref if ref else chosen[img.name][0])
        if manifest is None:
            problems.append(f"{src.host}/{src_repo}:{ref.ref} does not exist (promote to {source_env.name} first?)")
            continue
        good, copies, why = gate(src, src_repo, manifest.digest, public, required)
        if why:
            problems.append(why)
            continue
        version = _version(src, src_repo, manifest, ref, chosen.get(img.name, ("", ""))[1])
        tags = [t for t in (version, MOVING_TAG) if t]
        for tag in tags:
            existing = dst.manifest(dst_repo, tag)
            if existing and existing.digest != manifest.digest and target_env.immutable and tag != MOVING_TAG:
                problems.append(f"{dst_repo}:{tag} is immutable in {target_env.name} and names {existing.digest}")
        plans.append(_Plan(img, src_repo, dst_repo, manifest, tags, good, copies))
    if not problems:
        after = {**currents(cfg, dst, target_env, members), **{p.img.name: p.manifest.digest for p in plans}}
        problems = pair_problems(target_env, after, {p.img.name: p.attestations for p in plans}, members,
                                 f"imagekit promote --all --to {target_env.name}")
    if problems:
        raise CheckFailed(f"nothing was promoted to {target_env.name}", differences=problems)
    return plans


def promote(cfg: Config, names: list[str], *, to: str, all_images: bool = False, from_env: str | None = None,
            force: bool = False, on_line: Callable[[str], None] | None = None) -> list[Promotion]:
    note = on_line or (lambda line: None)
    source_env, target_env = _source_and_target(cfg, to, from_env, force)
    src, dst = registry_for(cfg, source_env), registry_for(cfg, target_env)
    plans = _plan(cfg, names, all_images, source_env, target_env, src, dst, note)
    started = time.monotonic()

    def content(p: _Plan) -> Counter:  # an image's blobs, its manifest under its digest, its attestations
        counts = Counter(copy_blobs(src, p.src_repo, dst, p.dst_repo, p.manifest, note))
        dst.put_manifest(p.dst_repo, p.manifest.digest, p.manifest)
        record.copy(dst, p.dst_repo, p.manifest.digest, p.copies,  # they travel with the digest, every layout
                    lambda m: counts.update(copy_blobs(src, p.src_repo, dst, p.dst_repo, m, note)))
        return counts
    # first every image's content, the images at the same time: no tag moves yet
    copies = dict(zip((p.img.name for p in plans), record.together(*(functools.partial(content, p) for p in plans))))
    moved, already = [], {}
    try:  # then the version tags, only now that every image is complete; the moving tags last of all
        for p in plans:
            digest = p.manifest.digest
            already[p.img.name] = all((m := dst.manifest(p.dst_repo, tag)) and m.digest == digest for tag in p.tags)
            for tag in p.tags:
                if tag != MOVING_TAG and not ((m := dst.manifest(p.dst_repo, tag)) and m.digest == digest):
                    dst.put_manifest(p.dst_repo, tag, p.manifest)  # a tag naming it already is not written again
                    moved.append(f"{p.dst_repo}:{tag}")
        for p in plans:
            log = Log(dst, p.dst_repo)
            entries = log.entries()
            if not (already[p.img.name] and entries and entries[-1].digest == p.manifest.digest):
                log.add(HistoryEntry("promote", p.manifest.digest, p.tags, history.now(),
                                     f"{source_env.name} ({src.host}/{p.src_repo})"))
            log.settle()
            moved.append(f"{p.dst_repo}:{MOVING_TAG}")
    except RegistryError as e:
        raise RegistryError(f"the promotion to {target_env.name} stopped while its tags moved: {e.message}",
                            status=e.status, codes=e.codes,
                            hint=f"every image was copied; tags moved so far: {', '.join(moved) or 'none'}. Run the "
                                 f"same promotion again to complete it") from None
    return [Promotion(image=p.img.name, kind="promote", source=f"{src.host}/{p.src_repo}",
                      target=f"{dst.host}/{p.dst_repo}", digest=p.manifest.digest, tags=p.tags,
                      already=already[p.img.name], seconds=round(time.monotonic() - started, 2),
                      **dict(copies[p.img.name])) for p in plans]

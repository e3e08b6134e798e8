"""Promotion by digest from one environment's registry project to the next (desa -> test -> prod).

Blobs move by cross-repository mount on one registry (no layer bytes through the client) and by
a streamed copy only across registries; the manifest is written last, so a tag never names
missing blobs. Every tag is checked before anything is written. The gate: a signed attestation
(attest.py) by the trusted key, about this very digest, that passed; and after the promotion the
target's `current` images form a set verify-compat passed together. The history of an environment
is in the registry itself (an artifact per entry), so CI keeps no local state.
"""
from __future__ import annotations

import datetime
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from imagekit import attest
from imagekit.config import Config
from imagekit.errors import CheckFailed, PreconditionError, RegistryError, UsageError
from imagekit.images import Environment, ImageSpec, leaves
from imagekit.oci import Manifest, Reference
from imagekit.registry import Registry
from imagekit.verify import record, required_scenarios, verified_set

MOVING_TAG = "current"  # the environment's moving tag: may move even where tags are immutable
HISTORY_PREFIX = "imagekit.history."
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


NOT_VERSIONS = (MOVING_TAG, "lock-", "git-", "sha256-", "imagekit.")  # imagekit's own tags, cosign's


@dataclass(frozen=True)
class VerifiedSet:
    """The images one valid attestation names together, as an environment holds them."""
    images: dict[str, str]  # image name -> digest
    tags: dict[str, str]  # image name -> the version tag that names that digest there ("" when none)
    verified_at: str


def newest_set(cfg: Config, reg: Registry, env: Environment, names: list[str], public) -> VerifiedSet | None:
    """The digests of ``names`` named together by the newest valid attestation (canonical layout,
    by the trusted key, passed) that each of them carries in ``env``, found from the version-tagged
    digests of the first: what `promote --all` moves. Only a signature chooses: a label or a tag
    name a user pushed by hand never does."""
    repos = {n: f"{env.project}/{cfg.image(n).repository}" for n in names}
    tagged = _version_tags(reg, repos[names[0]])
    candidates = {}
    for digest in tagged:
        for f, v in record.verdicts(reg, repos[names[0]], digest, public):
            if f.layout == record.CANONICAL and v.statement and set(names) <= set(v.images):
                images = {n: v.images[n] for n in names}
                candidates[(v.statement["predicate"].get("verified_at", ""), tuple(sorted(images.items())))] = images
    best = next(((key, images) for key, images in sorted(candidates.items(), reverse=True)
                 if all(_attested(reg, repos[n], images, n, public) for n in names[1:])), None)
    if best is None:
        return None
    tags = {}
    for name, digest in best[1].items():  # the tag its label names, else any version tag naming it
        version = version_of(reg, repos[name], reg.manifest(repos[name], digest))
        if not (version and (m := reg.manifest(repos[name], version)) and m.digest == digest):
            version = (tagged if name == names[0] else _version_tags(reg, repos[name])).get(digest, "")
        tags[name] = version
    return VerifiedSet(images=best[1], tags=tags, verified_at=best[0][0])


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


def _attested(reg: Registry, repo: str, images: dict[str, str], name: str, public) -> bool:
    """Whether image ``name`` of ``images`` is in ``repo`` with a valid attestation naming that set."""
    return reg.manifest(repo, images[name]) is not None and any(
        f.layout == record.CANONICAL and v.statement and names_set(v.images, images)
        for f, v in record.verdicts(reg, repo, images[name], public))


def _version_tags(reg: Registry, repo: str) -> dict[str, str]:
    """digest -> the first version tag (by name) that names it in ``repo``."""
    found = {}
    for tag in reg.tags(repo):
        if not tag.startswith(NOT_VERSIONS) and (m := reg.manifest(repo, tag)):
            found.setdefault(m.digest, tag)
    return found


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


@dataclass(frozen=True)
class _Plan:
    img: ImageSpec
    src_repo: str
    dst_repo: str
    manifest: Manifest
    tags: list[str]
    attestations: list[tuple[record.Found, attest.Verdict]]  # the valid ones in the canonical layout
    copies: list[record.Found]  # the valid ones in every layout: they travel with the digest


def _gate(src: Registry, src_repo: str, digest: str, public, required: list[tuple[str, str]]) -> tuple[list, list, str]:
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


def currents(cfg: Config, reg: Registry, env: Environment, members: list[str]) -> dict[str, str]:
    """What `current` names in ``env`` for each image of ``members`` ("" where nothing does)."""
    found = {n: reg.manifest(f"{env.project}/{cfg.image(n).repository}", MOVING_TAG) for n in members}
    return {n: m.digest if m else "" for n, m in found.items()}


def names_set(images: dict[str, str], wanted: dict[str, str]) -> bool:
    """Whether an attestation's ``images`` are exactly ``wanted`` for every image ``wanted`` names."""
    return all(images.get(n) == d for n, d in wanted.items())


def _pair_problems(cfg: Config, dst: Registry, target: Environment, plans: list[_Plan], members: list[str]) -> list[str]:
    """After these promotions, the target's `current` set must be one set verify-compat passed."""
    after = {**currents(cfg, dst, target, members), **{p.img.name: p.manifest.digest for p in plans}}
    problems = []
    for p in plans:
        if any(names_set(v.images, after) for _, v in p.attestations):
            continue
        there = ", ".join(f"{n}@{after[n] or '(nothing yet)'}" for n in members if n != p.img.name)
        verified = " or ".join(", ".join(f"{n}@{d}" for n, d in sorted(v.images.items()) if n != p.img.name)
                               for _, v in p.attestations)
        problems.append(f"{p.img.name}@{p.manifest.digest} would run in {target.name} next to {there}, "
                        f"which verify-compat never passed together with it (it passed with {verified}); "
                        f"promote the verified set as one step: `imagekit promote --all --to {target.name}`")
    return problems


def promote(cfg: Config, names: list[str], *, to: str, all_images: bool = False, from_env: str | None = None,
            force: bool = False, on_line: Callable[[str], None] | None = None) -> list[Promotion]:
    note = on_line or (lambda line: None)
    source_env, target_env = _source_and_target(cfg, to, from_env, force)
    src, dst = registry_for(cfg, source_env), registry_for(cfg, target_env)
    public = attest.trusted_key(cfg)
    plans, problems = [], []
    members, required = verified_set(cfg), required_scenarios(cfg)
    if all_images:
        for img in leaves(cfg.images):
            if img.shared and img.name not in members:
                note(f"{img.name}: not promoted: it is not in verify.images, so no verification covers it")
    wanted = promotable(cfg, names, all_images)
    chosen = _choose(cfg, src, source_env, [i.name for i, r in wanted if r is None and i.name in members],
                     all_images, public, note, target_env.name)
    for img, ref in wanted:  # check everything before writing anything
        src_repo, dst_repo = f"{source_env.project}/{img.repository}", f"{target_env.project}/{img.repository}"
        if img.name not in members:
            held = src.manifest(src_repo, ref.ref) if ref else None
            what = held.digest if held else ref.ref if ref else ", ".join(sorted(_version_tags(src, src_repo)))
            problems.append(f"{src_repo}@{what or '(nothing)'} is not in verify.images, so no verification covers it")
            continue
        manifest = src.manifest(src_repo, ref.ref if ref else chosen[img.name][0])
        if manifest is None:
            problems.append(f"{src.host}/{src_repo}:{ref.ref} does not exist (promote to {source_env.name} first?)")
            continue
        good, copies, why = _gate(src, src_repo, manifest.digest, public, required)
        if why:
            problems.append(why)
            continue
        if ref is None:
            version = chosen[img.name][1]
        elif ref.digest:
            version = ""
        elif ref.ref == MOVING_TAG:
            version = version_of(src, src_repo, manifest)
        else:
            version = ref.tag
        tags = [t for t in (version, MOVING_TAG) if t]
        for tag in tags:
            existing = dst.manifest(dst_repo, tag)
            if existing and existing.digest != manifest.digest and target_env.immutable and tag != MOVING_TAG:
                problems.append(f"{dst_repo}:{tag} is immutable in {target_env.name} and names {existing.digest}")
        plans.append(_Plan(img, src_repo, dst_repo, manifest, tags, good, copies))
    if not problems:
        problems = _pair_problems(cfg, dst, target_env, plans, members)
    if problems:
        raise CheckFailed(f"nothing was promoted to {target_env.name}", differences=problems)
    results = []
    for p in plans:
        started, counts = time.monotonic(), {"mounted": 0, "copied": 0, "present": 0}
        digest = p.manifest.digest
        already = all((m := dst.manifest(p.dst_repo, t)) and m.digest == digest for t in p.tags)
        copy_blobs(src, p.src_repo, dst, p.dst_repo, p.manifest, counts, note)
        dst.put_manifest(p.dst_repo, digest, p.manifest)
        record.copy(dst, p.dst_repo, digest, p.copies,  # the attestations travel with the digest, every layout
                    lambda m: copy_blobs(src, p.src_repo, dst, p.dst_repo, m, counts, note))
        for tag in p.tags:  # last: only now can a tag name it
            if tag != MOVING_TAG:
                dst.put_manifest(p.dst_repo, tag, p.manifest)
        log = _Log(dst, p.dst_repo)
        entries = log.entries()
        if not (already and entries and entries[-1].digest == digest):
            log.add(HistoryEntry("promote", digest, p.tags, _now(), f"{source_env.name} ({src.host}/{p.src_repo})"))
        log.settle()
        results.append(Promotion(image=p.img.name, kind="promote", source=f"{src.host}/{p.src_repo}",
                                 target=f"{dst.host}/{p.dst_repo}", digest=digest, tags=p.tags, already=already,
                                 seconds=round(time.monotonic() - started, 2), **counts))
    return results


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


class _Log:
    """An environment repository's history: one artifact per entry under a tag of its own
    (``imagekit.history.<UTC time>-<random>``), so writers never overwrite each other; read in tag
    (time) order. The moving tag is settled from it: each writer, after adding its entry, points
    `current` where the whole history says, until the history it read is the history there is."""

    def __init__(self, reg: Registry, repo: str) -> None:
        self.reg, self.repo, self._read = reg, repo, {}

    def entries(self) -> list[HistoryEntry]:
        tags = [t for t in self.reg.tags(self.repo) if t.startswith(HISTORY_PREFIX)]
        for tag in tags:
            if tag not in self._read:  # entries never change: each is read once
                self._read[tag] = HistoryEntry(**self.reg.get_artifact(self.repo, tag))
        return [self._read[t] for t in tags]

    def add(self, entry: HistoryEntry) -> None:
        stamp = entry.when.replace("-", "").replace(":", "").replace("+0000", "Z").replace("+00:00", "Z")
        tag = f"{HISTORY_PREFIX}{stamp}-{secrets.token_hex(4)}"
        self.reg.put_artifact(self.repo, tag, HISTORY_TYPE, json.dumps(asdict(entry), indent=1).encode())

    def settle(self) -> None:
        entries = self.entries()
        while True:
            stack = _current_stack(entries)
            current = self.reg.manifest(self.repo, MOVING_TAG)
            if stack and (current is None or current.digest != stack[-1]):
                self.reg.put_manifest(self.repo, MOVING_TAG, self.reg.manifest(self.repo, stack[-1]))
            again = self.entries()
            if again == entries:
                return
            entries = again


def _log_of(cfg: Config, image: str, env: str) -> _Log:
    """The history of ``image`` in ``env``, whose repository must exist."""
    environment = cfg.environment(env)
    reg, repo = registry_for(cfg, environment), f"{environment.project}/{cfg.image(image).repository}"
    if not reg.tags(repo):
        raise PreconditionError(f"{reg.host}/{repo} does not exist: nothing was ever pushed or promoted there",
                                hint=f"check the image name and the environment (`{env}` is project "
                                     f"{environment.project}); promote into it first")
    return _Log(reg, repo)


def history(cfg: Config, image: str, env: str) -> list[HistoryEntry]:
    return _log_of(cfg, image, env).entries()


def _current_stack(entries: list[HistoryEntry]) -> list[str]:
    """The digests the moving tag went through: a promotion pushes, a rollback pops (never the last)."""
    stack: list[str] = []
    for e in entries:
        if e.kind != "rollback":
            stack.append(e.digest)
        elif len(stack) > 1:
            stack.pop()
    return stack


def rollback(cfg: Config, image: str, env: str) -> Promotion:
    """Point the environment's moving tag back at the digest it named before; record it."""
    started = time.monotonic()
    log = _log_of(cfg, image, env)
    reg, repo = log.reg, log.repo
    stack = _current_stack(log.entries())
    if len(stack) < 2:
        raise PreconditionError(f"nothing to roll back to: {repo} has {len(stack)} promotion(s) in effect",
                                hint=f"see `imagekit history {image} --env {env}`")
    current, previous = stack[-1], stack[-2]
    if reg.manifest(repo, previous) is None:
        raise RegistryError(f"{repo}@{previous} is no longer in the registry; cannot roll back to it")
    log.add(HistoryEntry("rollback", previous, [MOVING_TAG], _now(), f"rollback from {current}"))
    log.settle()
    return Promotion(image=image, kind="rollback", source=f"{reg.host}/{repo}@{current}", target=f"{reg.host}/{repo}",
                     digest=previous, tags=[MOVING_TAG], seconds=round(time.monotonic() - started, 2))

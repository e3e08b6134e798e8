"""What each environment runs, read from the registry in one place: an image's repository there, what
its moving tag `current` names, its version tags, the labels imagekit builds into images, and the
newest set one valid attestation names together (what `promote --all` moves, and what the first
environment "runs", where nothing is promoted into: images enter it by push); and an image a check
needs, pulled with the credentials of the environment whose registry it names."""
from __future__ import annotations

from dataclasses import dataclass

from imagekit import record
from imagekit.config import Config
from imagekit.errors import PreconditionError
from imagekit.images import Environment
from imagekit.engine import Engine
from imagekit.oci import Manifest, Reference
from imagekit.registry import Registry

MOVING_TAG = "current"  # the environment's moving tag: may move even where tags are immutable
NOT_VERSIONS = (MOVING_TAG, "lock-", "git-", "sha256-", "imagekit.")  # imagekit's own tags, cosign's
VERSION_LABEL = "org.opencontainers.image.version"
PACKAGES_LABEL = "org.imagekit.packages"  # the pins an image holds, "name==version" by space


def registry_for(cfg: Config, env: Environment) -> Registry:
    return Registry.from_config(cfg, env)


def repo(cfg: Config, env: Environment, name: str) -> str:
    """``<project>/<repository>``: where image ``name`` lives in ``env``."""
    return f"{env.project}/{cfg.image(name).repository}"


def currents(cfg: Config, reg: Registry, env: Environment, members: list[str]) -> dict[str, str]:
    """What `current` names in ``env`` for each image of ``members`` ("" where nothing does)."""
    found = {n: reg.manifest(repo(cfg, env, n), MOVING_TAG) for n in members}
    return {n: m.digest if m else "" for n, m in found.items()}


def version_tags(reg: Registry, repository: str) -> dict[str, str]:
    """digest -> the first version tag (by name) that names it in ``repository``."""
    found = {}
    for tag in reg.tags(repository):
        if not tag.startswith(NOT_VERSIONS) and (m := reg.manifest(repository, tag)):
            found.setdefault(m.digest, tag)
    return found


def labels(reg: Registry, repository: str, manifest: Manifest) -> dict[str, str]:
    """The labels of the image ``manifest`` names (its config's)."""
    return reg.config(repository, manifest).get("config", {}).get("Labels") or {}


def packages(found: dict[str, str]) -> dict[str, str]:
    """The packages label as {name: version} ({} when there is none; a malformed entry is skipped)."""
    return dict(p.split("==", 1) for p in found.get(PACKAGES_LABEL, "").split() if "==" in p)


def version_of(reg: Registry, repository: str, manifest: Manifest) -> str:
    """The version tag an image carries in its labels (what `imagekit build` tagged it)."""
    return labels(reg, repository, manifest).get(VERSION_LABEL, "")


def names_set(images: dict[str, str], wanted: dict[str, str]) -> bool:
    """Whether an attestation's ``images`` are exactly ``wanted`` for every image ``wanted`` names."""
    return all(images.get(n) == d for n, d in wanted.items())


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
    repos = {n: repo(cfg, env, n) for n in names}
    tagged = version_tags(reg, repos[names[0]])
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
            version = (tagged if name == names[0] else version_tags(reg, repos[name])).get(digest, "")
        tags[name] = version
    return VerifiedSet(images=best[1], tags=tags, verified_at=best[0][0])


def _attested(reg: Registry, repository: str, images: dict[str, str], name: str, public) -> bool:
    """Whether image ``name`` of ``images`` is in ``repository`` with a valid attestation naming that set."""
    return reg.manifest(repository, images[name]) is not None and any(
        f.layout == record.CANONICAL and v.statement and names_set(v.images, images)
        for f, v in record.verdicts(reg, repository, images[name], public))


@dataclass(frozen=True)
class Held:
    """An image as an environment runs it."""
    repository: str  # host/project/repository
    tag: str  # the version tag naming that digest ("" when none does)
    digest: str

    @property
    def ref(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def path(self) -> str:
        """``project/repository``: the registry API's name for it."""
        return self.repository.split("/", 1)[1]


def runs(cfg: Config, env: Environment, members: list[str], public=None) -> dict[str, Held]:
    """What ``env`` runs of each image of ``members``: what `current` names; where nothing does and a
    trusted key is given, the newest set verified together there (the first environment's, which
    images enter by push). PreconditionError when it runs none of them."""
    reg = registry_for(cfg, env)
    now = currents(cfg, reg, env, members)
    if not all(now.values()) and public is not None:
        chosen = newest_set(cfg, reg, env, members, public)
        if chosen is not None:
            return {n: Held(f"{reg.host}/{repo(cfg, env, n)}", chosen.tags[n], d) for n, d in chosen.images.items()}
    found = {}
    for name, digest in now.items():
        if digest:
            where = repo(cfg, env, name)
            found[name] = Held(f"{reg.host}/{where}", version_of(reg, where, reg.manifest(where, digest)), digest)
    if not found:
        first = env == cfg.environments[0]
        raise PreconditionError(
            f"{env.name} runs none of the verified images yet (nothing under {MOVING_TAG}"
            + (", and no set verified together there)" if public is not None else ")"),
            hint=f"promote into it first (imagekit promote --all --to {env.name})" if not first else
            "images enter the first environment by push: push and verify them (`imagekit push`, `imagekit "
            "verify-compat` with the signing key)" + ("; its newest verified set is read with the trusted key: "
                                                      "set trust.public_key" if public is None else ""))
    return found


def pair_problems(target: Environment, after: dict[str, str], moving: dict[str, list], members: list[str],
                  together: str) -> list[str]:
    """Problems when the target's `current` set would not be one set verify-compat passed: ``after``
    is every member's digest then, ``moving`` each moved image's valid attestations, ``together`` the
    command that moves the verified set as one step."""
    problems = []
    for name, attestations in moving.items():
        if any(names_set(v.images, after) for _, v in attestations):
            continue
        there = ", ".join(f"{n}@{after[n] or '(nothing yet)'}" for n in members if n != name)
        verified = " or ".join(", ".join(f"{n}@{d}" for n, d in sorted(v.images.items()) if n != name)
                               for _, v in attestations)
        problems.append(f"{name}@{after[name]} would run in {target.name} next to {there}, "
                        f"which verify-compat never passed together with it (it passed with {verified}); "
                        f"move the verified set as one step: `{together}`")
    return problems


def present(cfg: Config, engine: Engine, ref: str) -> None:
    """``ref`` is in the engine, pulled if it was not (with the credentials of the environment whose
    registry it names, else registry.*), or PreconditionError."""
    if engine.image(ref):
        return
    host = Reference.parse(ref).registry
    env = next((e for e in cfg.environments if registry_for(cfg, e).host == host), None) or (
        cfg.environments[0] if cfg.environments else None)
    auth = registry_for(cfg, env).credentials() if host and env else None
    if why := engine.pull(ref, auth=auth):
        raise PreconditionError(f"image {ref} is neither in the engine nor pullable: {why}",
                                hint="build it (`imagekit build`), or pass a reference the engine can pull (the "
                                     "credentials of the environment whose registry it names are used)")

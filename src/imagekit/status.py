"""`imagekit status`: per environment, what each image of the verified set is under its version tag
and under `current`, whether `current` is verified, and with which partner."""
from __future__ import annotations

from dataclasses import dataclass, field

from imagekit import attest, record
from imagekit.config import Config
from imagekit.inventory import currents, names_set, newest_set, registry_for, repo
from imagekit.verify.policy import verified_set


@dataclass(frozen=True)
class ImageStatus:
    image: str
    repository: str  # host/project/repository
    version_tag: str  # the version tag of the first environment's newest verified set: the release being promoted
    version_digest: str  # what that tag names in the environment ("" when absent)
    current: str  # what `current` names ("" when nothing was promoted)
    verified: bool  # `current` has a valid attestation of its own
    partners: dict[str, str]  # the verified set that attestation names (image -> digest)
    why: str = ""  # why not verified
    layouts: dict[str, bool] = field(default_factory=dict)  # record.LAYOUTS -> `current` has a valid one there


@dataclass(frozen=True)
class EnvironmentStatus:
    name: str
    project: str
    pair_verified: bool  # the `current` images are a set verify-compat passed together
    images: list[ImageStatus]


def status(cfg: Config, envs: list[str] | None = None) -> list[EnvironmentStatus]:
    """Without a trusted key (trust.public_key unset: a new project), every image is shown unverified."""
    public = attest.trusted_key(cfg) if cfg.trust.public_key else None
    members = verified_set(cfg)
    first = cfg.environments[0]
    newest = newest_set(cfg, registry_for(cfg, first), first, members, public) if public else None
    tags = {name: newest.tags[name] if newest else "" for name in members}
    result = []
    for env in [cfg.environment(e) for e in envs] if envs else cfg.environments:
        reg, found = registry_for(cfg, env), {}
        now = currents(cfg, reg, env, members)
        for name in members:
            where = repo(cfg, env, name)
            good, why, layouts = [], "nothing under current", {}
            if now[name] and public is None:
                why = "trust.public_key is not set: no attestation can be checked (imagekit keys makes the pair)"
            elif now[name]:
                verdicts = record.verdicts(reg, where, now[name], public)
                good = [v.images for f, v in verdicts if v.statement and f.layout == record.CANONICAL]
                layouts = {layout: any(v.statement and f.layout == layout for f, v in verdicts)
                           for layout in record.LAYOUTS}
                why = "" if good else "; ".join(f"{f.layout}: {v.why}" for f, v in verdicts) or "no signed attestation"
            found[name] = (where, reg.manifest(where, tags[name]) if tags[name] else None, good, why, layouts)
        # one signed statement that names every image `current` names
        together = next((s for (_, _, good, _, _) in found.values() for s in good if names_set(s, now)), None)
        images = [ImageStatus(image=name, repository=f"{reg.host}/{where}", version_tag=tags[name],
                              version_digest=version.digest if version else "", current=now[name],
                              verified=bool(good), partners=together or (good or [{}])[0], why=why, layouts=layouts)
                  for name, (where, version, good, why, layouts) in found.items()]
        result.append(EnvironmentStatus(name=env.name, project=env.project, pair_verified=bool(together),
                                        images=images))
    return result

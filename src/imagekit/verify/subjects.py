"""The images a check runs on: named by the user (local, or pulled from the registry with the
environment's credentials), else the last build's; with the digest the first environment holds them
under, when they were pushed there (a verification is about digests)."""
from __future__ import annotations

from dataclasses import dataclass

from imagekit import build
from imagekit.config import Config
from imagekit.engine import Engine
from imagekit.errors import PreconditionError
from imagekit.inventory import present, registry_for
from imagekit.oci import Reference


@dataclass(frozen=True)
class Subject:
    role: str  # "notebook" or "ray" (or another image of the verified set)
    ref: str  # as given or as built
    repository: str  # <project>/<repository> in the registry, "" when not pushed
    digest: str  # the registry manifest digest, "" when not pushed


def built_ref(cfg: Config, name: str, option: str) -> str:
    """The image id of ``name`` in the last build: the default of ``option`` (e.g. --ray-image)."""
    entry = next((i for i in build.load_result(cfg).images if i.name == name), None)
    if entry is None:
        raise PreconditionError(f"no built '{name}' image in {build.result_path(cfg)}",
                                hint=f"run `imagekit build`, or pass {option} REF")
    return entry.image_id


def built(cfg: Config, engine: Engine, name: str, on_line) -> build.BuiltImage:
    """The image of imagekit.toml named ``name``, built now (from cache when unchanged)."""
    name = cfg.image(name).name  # a ConfigError when imagekit.toml has no such image
    return build.build(cfg, engine, names=[name], on_line=on_line).image(name)


def subject(cfg: Config, engine: Engine, role: str, ref: str | None, name: str | None = None) -> Subject:
    """The image ``ref`` (default: the last build of ``name``, or of the trainer / server for ``role``)."""
    if ref is None:
        ref = built_ref(cfg, name or (cfg.verify.trainer if role == "notebook" else cfg.verify.server),
                        f"--{role}-image")
    present(cfg, engine, ref)
    first = cfg.environments[0] if cfg.environments else None
    host = registry_for(cfg, first).host
    pushed = [Reference.parse(d) for d in engine.image(ref).repo_digests]
    found = next((r for r in pushed if r.registry == host and r.repository.startswith(f"{cfg.first_project}/")), None)
    return Subject(role=role, ref=ref, repository=found.repository if found else "", digest=found.digest if found else "")

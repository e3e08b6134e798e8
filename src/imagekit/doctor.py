"""What is there and what is missing, each with what to do about it."""
from __future__ import annotations

import shutil
from dataclasses import dataclass

from imagekit import lock, registry
from imagekit.config import Config
from imagekit.engine import Engine
from imagekit.errors import ImagekitError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Report:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def _try(name: str, fn, fix: str) -> Check:
    try:
        return Check(name, True, fn())
    except ImagekitError as e:
        return Check(name, False, e.message.splitlines()[0], e.hint or fix)


def diagnose(cfg: Config) -> Report:
    checks: list[Check] = []
    engine: list[Engine] = []

    def engine_check() -> str:
        engine.append(Engine.connect())
        info = engine[0].info()
        return f"Docker {info.version} (API {info.api_version}, {info.storage_driver}) at {info.endpoint}"

    checks.append(_try("docker engine", engine_check, "run `make dev-up`"))
    buildx = shutil.which("docker")
    checks.append(Check("docker cli", bool(buildx), buildx or "not found",
                        "" if buildx else "run `make dev-up` (installs docker.io)"))
    checks.append(_try("registry", lambda: registry.Registry.from_config(cfg).ping(),
                       "run `make dev-up` for the local registry, or check registry.url"))
    for tag in (cfg.get("base.tag"), cfg.get("base.image")):
        if engine:
            present = engine[0].image(tag) is not None
            if present or tag == cfg.get("base.image"):
                checks.append(Check(f"base image {tag}", present, "present" if present else "missing",
                                    "" if present else "run `imagekit base`"))
            if present:
                break
    deboot = shutil.which("debootstrap")
    checks.append(Check("debootstrap", bool(deboot), deboot or "not found",
                        "" if deboot else "apt-get install debootstrap (or `make dev-up`)"))
    cache = cfg.path("cache.dir") / "wheels"
    wheels = list(cache.glob("*/*.whl")) if cache.is_dir() else []
    size = sum(w.stat().st_size for w in wheels)
    checks.append(Check("wheel cache", True, f"{cache}: {len(wheels)} wheels, {size / 1e6:.0f} MB"))
    checks.append(_try("lock", lambda: _lock_status(cfg), "run `imagekit lock`"))
    return Report(checks)


def _lock_status(cfg: Config) -> str:
    result = lock.check(cfg, name_changes=False)
    return f"{result.packages} pins, up to date with the requirements.in files"

"""What is there and what is missing, each with what to do about it."""
from __future__ import annotations

import shutil
from dataclasses import dataclass

from imagekit import lock, registry
from imagekit.config import Config
from imagekit.engine import Engine, buildkit_cli
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
    try:
        engine = Engine.connect()
        info = engine.info()
        checks.append(Check("docker engine", True, f"Docker {info.version} (API {info.api_version}, "
                                                   f"{info.storage_driver}) at {info.endpoint}"))
    except ImagekitError as e:
        engine = None
        checks.append(Check("docker engine", False, e.message.splitlines()[0], e.hint or ""))
    cli = buildkit_cli()
    checks.append(Check("builder", True, f"BuildKit: {' '.join(cli[0])}" if cli else
                        "classic builder (no docker CLI here offers BuildKit; install docker.io for it)"))
    checks.append(_try("registry", lambda: registry.Registry.from_config(cfg).ping(),
                       "run `make dev-up` for the local registry, or check registry.url"))
    if engine:
        tag, upstream = cfg.os.tag, cfg.os.image
        present = next((ref for ref in (tag, upstream) if engine.image(ref)), None)
        checks.append(Check("OS image", bool(present), f"{present} present" if present else
                            f"neither {tag} nor {upstream} is present", "" if present else "run `imagekit os`"))
        minio = cfg.verify.minio_image
        checks.append(Check("S3 server for verify-compat", True, f"MinIO ({minio})" if engine.image(minio) else
                            f"{minio} not present: the stand-in image '{cfg.verify.s3_standin}' will be used"))
    deboot = shutil.which("debootstrap")
    checks.append(Check("debootstrap", bool(deboot), deboot or "not found",
                        "" if deboot else "apt-get install debootstrap (or `make dev-up`)"))
    cache = cfg.cache_dir / "wheels"
    wheels = list(cache.glob("*/*.whl")) if cache.is_dir() else []
    size = sum(w.stat().st_size for w in wheels)
    checks.append(Check("wheel cache", True, f"{cache}: {len(wheels)} wheels, {size / 1e6:.0f} MB"))
    checks.append(_try("lock", lambda: _lock_status(cfg), "run `imagekit lock`"))
    return Report(checks)


def _lock_status(cfg: Config) -> str:
    result = lock.check(cfg, name_changes=False)
    return f"{result.packages} pins, up to date with the requirements.in files"

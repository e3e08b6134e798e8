"""What is there and what is missing, each with what to do about it."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass

from imagekit import inventory, lock
from imagekit.buildkit import cli_invocation
from imagekit.config import Config
from imagekit.engine import Engine
from imagekit.errors import ImagekitError, PreconditionError


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
        cli = cli_invocation()
        builder = f"BuildKit through {' '.join(cli[0])}" if cli else "the classic builder (no docker CLI offers BuildKit)"
        checks.append(Check("docker engine", True, f"Docker {info.version} (API {info.api_version}, "
                                                   f"{info.storage_driver}) at {info.endpoint}; builds with {builder}"))
    except ImagekitError as e:
        engine = None
        checks.append(Check("docker engine", False, e.message.splitlines()[0], e.hint or ""))
    checks.append(_try("registry", lambda: inventory.registry_for(cfg, cfg.environments[0] if cfg.environments else None).ping(),
                       "run `make dev-up` for the local registry, or check registry.url"))
    if engine:
        tag, upstream = cfg.os.tag, cfg.os.image
        present = next((ref for ref in (tag, upstream) if ref and engine.image(ref)), None)
        checks.append(Check("OS image", bool(present), f"{present} present" if present else
                            f"{' nor '.join(r for r in (tag, upstream) if r)} is not present",
                            "" if present else "run `imagekit os`"))
        checks.append(_try("S3 server for verify-compat", lambda: _s3_server(cfg, engine),
                           "set verify.s3_standin to an image in imagekit.toml, or make verify.minio_image present"))
    deboot = shutil.which("debootstrap")
    checks.append(Check("debootstrap", bool(deboot), deboot or "not found",
                        "" if deboot else "apt-get install debootstrap (or `make dev-up`)"))
    checks.append(_try("cache", lambda: _cache(cfg), "set cache.dir (IMAGEKIT_CACHE_DIR) to a folder you can write"))
    checks.append(_try("lock", lambda: _lock_status(cfg), "run `imagekit lock`"))
    return Report(checks)


def _s3_server(cfg: Config, engine: Engine) -> str:
    """What verify-compat would start as its S3 server (s3store.choose: the one choice)."""
    from imagekit.verify.s3store import choose

    image, minio, why = choose(cfg, engine)
    return f"MinIO ({image})" if minio else (f"{cfg.verify.minio_image} cannot be had here ({why}): the stand-in "
                                             f"image '{image}' ({cfg.image(image).repository}) will be used")


def _cache(cfg: Config) -> str:
    """The cache folder is writable; how many wheels and layers it holds."""
    folder = cfg.cache_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise PreconditionError(f"cannot write to {folder}: {e.strerror}") from None
    wheels = list((folder / "wheels").glob("*/*.whl"))
    tars = list((folder / "layers").glob("*.tar"))
    mb = lambda files: sum(f.stat().st_size for f in files) / 1e6  # noqa: E731
    return f"{folder}: {len(wheels)} wheels ({mb(wheels):.0f} MB), {len(tars)} Python layers ({mb(tars):.0f} MB)"


def _lock_status(cfg: Config) -> str:
    result = lock.check(cfg, name_changes=False)
    return f"{result.packages} pins, up to date with the requirements.in files"

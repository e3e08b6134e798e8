"""The OS base image both images build on: present, pulled, or bootstrapped with debootstrap."""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from imagekit import proc
from imagekit.config import Config
from imagekit.engine import Engine
from imagekit.errors import ConfigError

PYTHON_LABEL = "org.imagekit.python.version"
PACKAGES = ["python3", "python3-venv", "ca-certificates", "tini"]
PY_VERSION = ["python3", "-c", "import platform; print(platform.python_version())"]


@dataclass(frozen=True)
class BaseResult:
    ref: str
    image_id: str
    python: str
    how: str  # "present", "pulled" or "bootstrapped"
    seconds: float


def python_version(engine: Engine, ref: str) -> str:
    labels = (engine.image(ref) or {}).get("Config", {}).get("Labels") or {}
    return labels.get(PYTHON_LABEL) or engine.run(ref, PY_VERSION).strip()


def ensure(cfg: Config, engine: Engine, *, rebuild: bool = False,
           on_line: Callable[[str], None] | None = None) -> BaseResult:
    """Make ``base.tag`` exist: keep it, else take ``base.image`` (present or pullable), else debootstrap.

    The base's interpreter must be the one the lock targets (``lock.python``).
    """
    started = time.monotonic()
    tag, upstream = cfg.get("base.tag"), cfg.get("base.image")
    note = on_line or (lambda line: None)
    if not rebuild and engine.image(tag):
        how = "present"
    elif upstream and (engine.image(upstream) or engine.pull(upstream)):
        note(f"using {upstream}")
        engine.client.api.tag(upstream, *tag.rsplit(":", 1))
        how = "pulled"
    else:
        note(f"{upstream or 'no upstream base'} cannot be had here; bootstrapping Debian {cfg.get('base.suite')}")
        bootstrap(cfg, engine, on_line=note)
        how = "bootstrapped"
    python = python_version(engine, tag)
    if python != cfg.get("lock.python"):
        raise ConfigError(f"the base image {tag} has Python {python} but the lock targets {cfg.get('lock.python')}",
                          key="lock.python", source=cfg.origins["lock.python"],
                          hint=f"set lock.python = \"{python}\" in imagekit.toml and run `imagekit lock`")
    return BaseResult(ref=tag, image_id=engine.image(tag)["Id"], python=python, how=how,
                      seconds=time.monotonic() - started)


def bootstrap(cfg: Config, engine: Engine, *, on_line: Callable[[str], None]) -> str:
    """debootstrap a minimal Debian with python3 and import it as ``base.tag``; return the image id."""
    if os.geteuid() != 0:
        raise ConfigError("debootstrap needs root", key="base.image",
                          hint="run `imagekit base` as root, or make base.image pullable")
    work = cfg.path("cache.dir") / "base"
    rootfs, tar = work / "rootfs", work / "rootfs.tar"
    shutil.rmtree(rootfs, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    try:
        proc.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", cfg.get("base.suite"),
                  rootfs, cfg.get("base.mirror")], on_line=on_line,
                 hint="install debootstrap (`make dev-up`) and check base.mirror is reachable")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
            (rootfs / junk).mkdir(parents=True, exist_ok=True)
        python = proc.run(["chroot", rootfs, *PY_VERSION]).strip()
        on_line(f"importing {cfg.get('base.tag')} (Python {python})")
        proc.run(["tar", "--numeric-owner", "--xattrs", "-C", rootfs, "-cf", tar, "."])
        return engine.import_rootfs(tar, cfg.get("base.tag"), [
            f"LABEL {PYTHON_LABEL}={python}", "LABEL org.opencontainers.image.base.name=debian:" + cfg.get("base.suite"),
            "ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]'])
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
        tar.unlink(missing_ok=True)

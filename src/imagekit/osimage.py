"""The OS image every image builds on: present, taken from ``os.image``, or bootstrapped with debootstrap.

It carries the interpreter the lock targets and the tools the platform runs the images with:
KubeRay's probes need ``bash`` and ``wget``, Ray's scripts ``ps`` (procps), JupyterHub users
``git``; ``tini`` is the entrypoint of both images.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from imagekit import containers, proc, progress
from imagekit.config import Config
from imagekit.engine import Engine
from imagekit.errors import ConfigError, PreconditionError

PYTHON_LABEL = "org.imagekit.python.version"
PACKAGES_LABEL = "org.imagekit.os.packages"
PACKAGES = ("python3", "python3-venv", "ca-certificates", "tini", "wget", "procps", "git", "less")
TOOLS = ("bash", "wget", "ps", "git", "tini")  # what the platform runs inside the images
PY_VERSION = ["python3", "-c", "import platform; print(platform.python_version())"]


@dataclass(frozen=True)
class OsImage:
    ref: str
    image_id: str
    python: str
    how: str  # "present", "upstream" (os.image, present or pulled) or "bootstrapped"
    seconds: float


def packages(cfg: Config) -> list[str]:
    return sorted({*PACKAGES, *cfg.os.packages})


def python_version(engine: Engine, ref: str) -> str:
    info = engine.image(ref)
    return (info.labels.get(PYTHON_LABEL) if info else None) or containers.run(engine, ref, PY_VERSION).strip()


def ensure(cfg: Config, engine: Engine, *, rebuild: bool = False,
           on_line: Callable[[str], None] | None = None) -> OsImage:
    """Make ``os.tag`` exist: keep it, else take ``os.image`` (present or pullable), else debootstrap.

    A bootstrapped image is made again when the package list changed. The image's interpreter
    must be the one the lock targets (``lock.python``), and it must have the platform's tools.
    """
    started = time.monotonic()
    note = on_line or (lambda line: None)
    with _alone(cfg.cache_dir / "os", note):  # another build of this machine may be making it: it is taken then
        return _ensure(cfg, engine, rebuild, note, started)


@contextlib.contextmanager
def _alone(work: Path, note: Callable[[str], None]) -> Iterator[None]:
    """One process at a time decides and makes the OS image (two debootstraps would make it twice)."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            note("another imagekit is making the OS image: waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _ensure(cfg: Config, engine: Engine, rebuild: bool, note: Callable[[str], None], started: float) -> OsImage:
    tag, upstream = cfg.os.tag, cfg.os.image
    present, refused = engine.image(tag), ""
    wanted = " ".join(packages(cfg))
    if present and not rebuild and PYTHON_LABEL in present.labels and present.labels.get(PACKAGES_LABEL) != wanted:
        note(f"{tag} was bootstrapped with other packages; bootstrapping it again")
        present = None
    if present and not rebuild:
        how = "present"
    elif upstream and (engine.image(upstream) or not (refused := engine.pull(upstream))):
        note(f"using {upstream}")
        engine.tag(upstream, tag)
        how = "upstream"
    else:
        why = f"{upstream} cannot be had here ({refused})" if upstream else "no os.image is set"
        note(f"{why}; bootstrapping Debian {cfg.os.suite}")
        bootstrap(cfg, engine, on_line=note)
        how = "bootstrapped"
    python = python_version(engine, tag)
    if python != cfg.lock.python:
        raise ConfigError(f"the OS image {tag} has Python {python} but the lock targets {cfg.lock.python}",
                          key="lock.python", source=cfg.origins.get("lock.python"),
                          hint=f"set lock.python = \"{python}\" in imagekit.toml and run `imagekit lock`")
    if how == "upstream":
        missing = containers.run(engine, tag, ["sh", "-c", " ".join(f"command -v {t} >/dev/null || echo {t};" for t in TOOLS)])
        if missing.split():
            raise PreconditionError(f"the OS image {upstream} lacks {', '.join(missing.split())}, which the "
                                    "platform runs the images with (KubeRay probes, JupyterHub)",
                                    hint="add them to it (apt-get install wget procps git tini), or unset "
                                         "os.image so that imagekit bootstraps an OS image that has them")
    return OsImage(ref=tag, image_id=engine.image(tag).id, python=python, how=how,
                   seconds=round(time.monotonic() - started, 1))


def bootstrap(cfg: Config, engine: Engine, *, on_line: Callable[[str], None]) -> str:
    """debootstrap a minimal Debian with python3 and the tools, import it as ``os.tag``; return the image id."""
    if os.geteuid() != 0:
        raise PreconditionError("debootstrap needs root", hint="run `imagekit os` as root, or make os.image pullable")
    work = Path(tempfile.mkdtemp(prefix="bootstrap-", dir=cfg.cache_dir / "os"))  # none left by a killed run in it
    rootfs, tar = work / "rootfs", work / "rootfs.tar"
    wanted = packages(cfg)
    try:
        proc.run(["debootstrap", "--variant=minbase", f"--include={','.join(wanted)}", cfg.os.suite,
                  rootfs, cfg.os.mirror], on_line=progress.output(on_line),
                 hint="install debootstrap (`make dev-up`) and check os.mirror is reachable")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                     "usr/share/info", "usr/share/locale", "var/log"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
            (rootfs / junk).mkdir(parents=True, exist_ok=True)
        python = proc.run(["chroot", rootfs, *PY_VERSION]).strip()
        on_line(f"importing {cfg.os.tag} (Python {python})")
        proc.run(["tar", "--numeric-owner", "--xattrs", "--sort=name", "-C", rootfs, "-cf", tar, "."])
        return engine.import_rootfs(tar, cfg.os.tag, [
            f"LABEL {PYTHON_LABEL}={python}", f"LABEL {PACKAGES_LABEL}=\"{' '.join(wanted)}\"",
            "LABEL org.opencontainers.image.base.name=debian:" + cfg.os.suite,
            "ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]'])
    finally:
        for mount in _mounts_under(rootfs):  # what a failed debootstrap left mounted (its /proc)
            proc.run(["umount", "--lazy", mount])
        shutil.rmtree(work, ignore_errors=True)


def _mounts_under(folder: Path) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return sorted((p for p in points if p.startswith(f"{folder}/")), reverse=True)

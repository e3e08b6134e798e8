"""Content-addressed wheel cache: <cache>/wheels/<sha256>/<file>.whl, every file checked against the lock."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagekit import proc
from imagekit.config import Config
from imagekit.errors import CheckFailed, ConfigError
from imagekit.lock import Pin, find_links_args


@dataclass(frozen=True)
class FetchResult:
    wheels: dict[str, Path]  # pin name -> cached wheel
    downloaded: int
    cached: int
    bytes: int


def cache_dir(cfg: Config) -> Path:
    return cfg.path("cache.dir") / "wheels"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pip_platforms(platform: str) -> list[str]:
    """pip's --platform values for a uv-style target: pip does not expand manylinux_2_N itself."""
    m = re.fullmatch(r"(x86_64|aarch64)-manylinux_2_(\d+)", platform)
    if not m:
        raise ConfigError(f"expected <arch>-manylinux_2_<glibc minor>, got {platform!r}", key="lock.platform")
    arch, glibc = m.group(1), int(m.group(2))
    return [*(f"manylinux_2_{n}_{arch}" for n in range(glibc, 16, -1)), f"manylinux2014_{arch}"] + (
        [f"manylinux2010_{arch}", f"manylinux1_{arch}"] if arch == "x86_64" else [])


def _cached(cache: Path, pin: Pin) -> Path | None:
    for h in pin.hashes:
        folder = cache / h.removeprefix("sha256:")
        if folder.is_dir():
            for wheel in folder.glob("*.whl"):
                return wheel
    return None


def fetch(cfg: Config, pins: list[Pin], *, on_line: Callable[[str], None] | None = None) -> FetchResult:
    """Make every pin's wheel for the target available in the cache; download only what is missing.

    pip downloads with ``--require-hashes`` and each file's sha256 is checked again before it
    enters the cache, so the cache only ever holds files the lock names.
    """
    cache = cache_dir(cfg)
    cache.mkdir(parents=True, exist_ok=True)
    found = {p.name: w for p in pins if (w := _cached(cache, p))}
    missing = [p for p in pins if p.name not in found]
    if missing:
        with tempfile.TemporaryDirectory(prefix="imagekit-wheels-", dir=cache) as tmp:
            req = Path(tmp) / "requirements.txt"
            req.write_text("".join(p.render() + "\n" for p in missing))
            py = cfg.get("lock.python").split(".")
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--require-hashes",
                   "--python-version", f"{py[0]}.{py[1]}", "--implementation", "cp", "--abi", f"cp{py[0]}{py[1]}",
                   "--index-url", cfg.get("lock.index_url"), "-r", str(req), "-d", str(Path(tmp) / "dl"),
                   "--progress-bar", "off"]
            for plat in pip_platforms(cfg.get("lock.platform")):
                cmd += ["--platform", plat]
            env = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "",
                   "PIP_CONSTRAINT": ""}
            cmd += find_links_args(cfg)
            proc.run(cmd, env=env, on_line=on_line,
                     hint="check the network to the index (lock.index_url) and that the lock is current")
            by_hash = {h.removeprefix("sha256:"): p for p in missing for h in p.hashes}
            for wheel in sorted((Path(tmp) / "dl").iterdir()):
                digest = sha256_file(wheel)
                pin = by_hash.get(digest)
                if pin is None:
                    raise CheckFailed(f"{wheel.name} has sha256 {digest}, which the lock does not name",
                                      hint="the index served a different file; run `imagekit lock --check`")
                target = cache / digest / wheel.name
                target.parent.mkdir(exist_ok=True)
                shutil.move(wheel, target)
                found[pin.name] = target
    absent = [p.name for p in pins if p.name not in found]
    if absent:
        raise CheckFailed("no wheel for the target platform", differences=absent,
                          hint="the lock should only pin wheels; run `imagekit lock`")
    return FetchResult(wheels={p.name: found[p.name] for p in pins}, downloaded=len(missing),
                       cached=len(pins) - len(missing), bytes=sum(w.stat().st_size for w in found.values()))


def stage(result: FetchResult, pins: list[Pin], folder: Path) -> Path:
    """Hard-link (or copy) the wheels and a requirements file into ``folder`` for a build context."""
    folder.mkdir(parents=True, exist_ok=True)
    for pin in pins:
        src = result.wheels[pin.name]
        dst = folder / src.name
        if not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    (folder / "requirements.txt").write_text("".join(p.render() + "\n" for p in pins))
    return folder

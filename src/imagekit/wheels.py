"""Content-addressed wheel cache: <cache>/wheels/<sha256>/<file>.whl, every file checked against the lock."""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagekit import proc, progress
from imagekit.config import Config
from imagekit.digests import hex_of, sha256_file
from imagekit.errors import CheckFailed, ConfigError, ToolError
from imagekit.lock import Pin, render_pins, target


@dataclass(frozen=True)
class FetchResult:
    wheels: dict[str, Path]  # pin name -> cached wheel
    downloaded: int
    cached: int
    bytes: int


def cache_dir(cfg: Config) -> Path:
    return cfg.cache_dir / "wheels"


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
        folder = cache / hex_of(h)
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
            tgt = target(cfg)
            py = tgt.python.split(".")
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--require-hashes",
                   "--python-version", f"{py[0]}.{py[1]}", "--implementation", "cp", "--abi", f"cp{py[0]}{py[1]}",
                   "-r", str(req), "-d", str(Path(tmp) / "dl"), "--progress-bar", "off",
                   "--no-cache-dir"]  # the cache here is ours; pip's would answer for an index once on that URL
            for plat in pip_platforms(tgt.platform):
                cmd += ["--platform", plat]
            if tgt.find_links:
                cmd += ["--find-links", str(tgt.find_links)]
            env = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "",
                   "PIP_CONSTRAINT": "", "PIP_INDEX_URL": tgt.index_url}
            try:
                proc.run(cmd, env=env, on_line=progress.output(on_line),
                         hint="check the network to the index (lock.index_url) and that the lock is current")
            except ToolError as e:
                if "DO NOT MATCH THE HASHES" not in e.output:
                    raise
                raise CheckFailed("the index served wheels whose sha256 the lock does not name; nothing was cached",
                                  differences=_hash_mismatches(e.output),
                                  hint="the files changed since the lock was made (tampered or replaced on the "
                                       "index?); check the index, or run `imagekit lock --check`") from None
            by_hash = {hex_of(h): p for p in missing for h in p.hashes}
            downloaded = {w: sha256_file(w) for w in sorted((Path(tmp) / "dl").iterdir())}
            strangers = [f"{w.name}: sha256 {d}" for w, d in downloaded.items() if d not in by_hash]
            if strangers:
                raise CheckFailed("the index served wheels whose sha256 the lock does not name; nothing was cached",
                                  differences=strangers, hint="check the index, or run `imagekit lock --check`")
            for wheel, digest in downloaded.items():
                dest = cache / digest / wheel.name
                dest.parent.mkdir(exist_ok=True)
                shutil.move(wheel, dest)
                found[by_hash[digest].name] = dest
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
        link(result.wheels[pin.name], folder / result.wheels[pin.name].name)
    (folder / "requirements.txt").write_text(render_pins(pins))
    return folder


def link(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (a copy across file systems); kept when it exists."""
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _hash_mismatches(output: str) -> list[str]:
    """pip's "Expected sha256 X / Got Y" report, one line per file."""
    lines, current, expected = [], "", ""
    for line in output.splitlines():
        line = line.strip()
        if " from " in line and "==" in line or line.endswith(".whl"):
            current = line.split(" from ", 1)[0]
        elif line.startswith("Expected sha256"):
            expected = line.split()[-1]
        elif line.startswith("Got") and current:
            lines.append(f"{current}: the lock expects sha256 {expected[:16]}..., the index served {line.split()[-1][:16]}...")
    return lines or [output.strip().splitlines()[-1]]

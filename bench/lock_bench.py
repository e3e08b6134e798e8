"""Time `imagekit lock` against plain `pip-compile --generate-hashes` of the same union, in one run.

    .venv/bin/python bench/lock_bench.py [--skip-pip-compile] [--skip-pip-tools]

Cases: imagekit cold (empty uv cache, no lock), imagekit warm re-resolve (a lock exists, an
input changed), imagekit unchanged (nothing to do); the pip-tools resolver (pip-compile inside
the OS image, for the image's Python) cold, and its check that it accepts uv's lock unchanged;
and plain pip-compile cold on the host (empty pip cache), which resolves for the host's Python.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imagekit import config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(cmd: list[str], **kw) -> float:
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{(done.stderr or done.stdout)[-2000:]}")
    return time.monotonic() - started


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="imagekit-bench-"))
    shutil.copy(ROOT / "imagekit.toml", tmp)
    shutil.copytree(ROOT / "images", tmp / "images", ignore=shutil.ignore_patterns("*.py", "Dockerfile"))
    cfg = config.load(tmp / "imagekit.toml", env={})
    private = cfg.path(cfg.lock.find_links) if cfg.lock.find_links else None
    if private:  # the private wheels the lock pins (lock.find_links)
        shutil.copytree(ROOT / private.relative_to(tmp), private)
    env = {**os.environ, "UV_CACHE_DIR": str(tmp / "uv-cache")}
    lock = [str(BIN / "imagekit"), "--config", str(tmp / "imagekit.toml"), "lock"]
    rows = [("imagekit lock, cold (empty cache, no lock)", timed(lock, env=env))]
    with open(tmp / "images/notebook/requirements.in", "a") as f:
        f.write("# an edit\nxlrd\n")
    rows.append(("imagekit lock, re-resolve after an edit", timed(lock, env=env)))
    rows.append(("imagekit lock, inputs unchanged", timed(lock, env=env)))
    if "--skip-pip-tools" not in sys.argv:  # the same inputs resolved by pip-compile inside the OS image
        uv_pins = (tmp / "lockfiles" / "requirements.txt").read_text()
        shutil.move(tmp / "lockfiles", tmp / "lockfiles.uv")
        rows.append(("imagekit lock --resolver pip-tools, cold (in the OS image)",
                     timed([*lock, "--resolver", "pip-tools"], env=env)))
        shutil.rmtree(tmp / "lockfiles")
        shutil.move(tmp / "lockfiles.uv", tmp / "lockfiles")
        rows.append(("imagekit lock --check --resolver pip-tools (uv's lock)",
                     timed([*lock, "--check", "--resolver", "pip-tools"], env=env)))
        assert (tmp / "lockfiles" / "requirements.txt").read_text() == uv_pins
    if "--skip-pip-compile" not in sys.argv:
        union = tmp / "union.in"
        union.write_text("".join(img.requirements.read_text() for img in cfg.images if img.shared))
        rows.append(("pip-compile --generate-hashes, cold", timed(
            [str(BIN / "pip-compile"), "--generate-hashes", "--quiet", "--cache-dir", str(tmp / "pip-cache"),
             "--index-url", cfg.lock.index_url, *(["--find-links", str(private)] if private else []),
             "-o", str(tmp / "pip-compile.txt"), str(union)],
            env={**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": ""})))
    width = max(len(r[0]) for r in rows)
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:8.2f} s")
    by = dict(rows)
    for slow in ("pip-compile --generate-hashes, cold", "imagekit lock --resolver pip-tools, cold (in the OS image)"):
        if slow in by:
            print(f"{slow} / imagekit lock (uv), cold: {by[slow] / rows[0][1]:8.1f}x")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()

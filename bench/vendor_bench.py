"""The Ray image built on a vendor base (the rayproject/ray stand-in of tests/images/vendor-ray), side by side
with the plain Dockerfile a team would write: FROM the same stand-in, `pip install --no-index --no-deps
--require-hashes` of the same view from the same wheels (a bind mount: no wheel layer), with BuildKit. Plain is
`--force-reinstall`, the same work as imagekit's (the whole view, every pin from the lock's wheels); the
default pip, which keeps what the vendor has at the same version, is printed beside.

    .venv/bin/python bench/vendor_bench.py

In one run, from the same warm wheel cache: a cold build (imagekit: an empty layer cache; both: an empty
BuildKit cache), a warm build (nothing changed), and a one-package bump (joblib==1.5.3 added to
images/base/requirements.in of a copy of the project, locked with uv: needs the package index).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imagekit import build, buildkit, config, lock, wheels
from imagekit.engine import Engine
from imagekit.images import BASE_NAME
from imagekit.osimage import PYTHON_LABEL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' support
from support import on_vendor_bases, vendor_image  # noqa: E402

PLAIN = """ARG BASE
FROM ${BASE}
USER root
RUN --mount=type=bind,source=wheels,target=/tmp/wheels --mount=type=bind,source=view.txt,target=/tmp/view.txt \\
    /home/ray/anaconda3/bin/python -m pip install -q --no-index --no-deps --require-hashes {force} \\
    --find-links /tmp/wheels -r /tmp/view.txt
USER ray
"""  # {force}: --force-reinstall lays the whole view as imagekit does; without it, pip skips what the vendor has


def timed(fn):
    t = time.monotonic()
    value = fn()
    return time.monotonic() - t, value


def prune(engine: Engine, base: str) -> None:
    """An empty BuildKit cache, and no image of an earlier run on ``base`` (imagekit's own images stay)."""
    subprocess.run(["/usr/bin/docker", "builder", "prune", "-af"], check=True, stdout=subprocess.DEVNULL)
    for img in engine.client.images.list():
        on_base = img.labels.get(BASE_NAME) == base or PYTHON_LABEL not in img.labels  # an earlier run's
        for tag in img.tags:
            if tag.startswith("plain/") or tag.startswith("imagekit-build/ray") and on_base:
                engine.client.images.remove(tag, force=True)


def plain(engine: Engine, cfg: config.Config, base: str, folder: Path, force: bool = True) -> str:
    """The plain Dockerfile's build of the Ray image's view on ``base``."""
    pins = lock.load_views(cfg).pins("ray")
    fetched = wheels.fetch(cfg, pins)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "wheels").mkdir(parents=True)
    for p in pins:
        os.link(fetched.wheels[p.name], folder / "wheels" / fetched.wheels[p.name].name)
    (folder / "view.txt").write_text(lock.render_pins(pins))
    (folder / "Dockerfile").write_text(PLAIN.replace("{force}", "--force-reinstall" if force else ""))
    return buildkit.build(engine, folder, tags=["plain/ray-on-vendor:bench"], buildargs={"BASE": base}, labels={})


def main() -> None:
    engine = Engine.connect()
    repo = config.load(ROOT / "imagekit.toml", env={})
    base = vendor_image(engine, "ray", build.build(repo, engine, names=["ray"]).image("ray").image_id)
    with tempfile.TemporaryDirectory(prefix="imagekit-vendor-bench-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        (cache / "wheels").parent.mkdir()
        (cache / "wheels").symlink_to(repo.cache_dir / "wheels")  # the same warm wheel cache for both
        env = {"IMAGEKIT_CACHE_DIR": str(cache)}
        cfg = config.load(on_vendor_bases(repo.source, tmp / "project", {"ray": base}, copy=True), env=env)
        prune(engine, base)
        cold, _ = timed(lambda: build.build(cfg, engine, names=["ray"]))
        cold_plain, _ = timed(lambda: plain(engine, cfg, base, tmp / "plain"))
        skipping, _ = timed(lambda: plain(engine, cfg, base, tmp / "skipping", force=False))
        warm, _ = timed(lambda: build.build(cfg, engine, names=["ray"]))
        warm_plain, _ = timed(lambda: plain(engine, cfg, base, tmp / "plain"))
        with open(cfg.root / "images" / "base" / "requirements.in", "a") as f:
            f.write("joblib==1.5.3\n")
        subprocess.run([sys.executable, "-m", "imagekit", "--config", cfg.source, "lock"], check=True,
                       env={**os.environ, **env}, stdout=subprocess.DEVNULL)
        cfg = config.load(cfg.source, env=env)
        bump, _ = timed(lambda: build.build(cfg, engine, names=["ray"]))
        bump_plain, _ = timed(lambda: plain(engine, cfg, base, tmp / "plain"))
    print(f"Ray image on the rayproject/ray stand-in ({base})")
    print(f"{'':32} {'imagekit':>9} {'plain':>9} {'imagekit/plain':>15}")
    for what, a, b in (("cold (no layer or build cache)", cold, cold_plain), ("warm (nothing changed)", warm, warm_plain),
                       ("one-package bump (joblib)", bump, bump_plain)):
        print(f"{what:<32} {a:8.1f}s {b:8.1f}s {a / b:14.2f}x")
    print(f"plain without --force-reinstall (pip skips what the vendor already has: here, every pin) {skipping:.1f}s")


if __name__ == "__main__":
    main()

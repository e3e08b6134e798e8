"""Cold build, warm rebuild and push times, image sizes and shared-layer bytes; plain `docker push` beside.

    .venv/bin/python bench/build_push_bench.py

Cold: an empty wheel cache (downloads every wheel) and an empty BuildKit cache; the OS
image is kept (bootstrapping it is timed by `imagekit os --rebuild`, about 60 s here).
Pushes go to fresh docker-registry processes on loopback ports of this script's own.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imagekit import build, config, push
from imagekit.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' support
from support import RegistryProcess  # noqa: E402


def timed(fn):
    t = time.monotonic()
    value = fn()
    return time.monotonic() - t, value


def main() -> None:
    engine = Engine.connect()
    with tempfile.TemporaryDirectory(prefix="imagekit-bench-") as tmp:
        tmp = Path(tmp)
        reg = RegistryProcess(tmp / "a").start()
        env = {"IMAGEKIT_CACHE_DIR": str(tmp / "cache"), "IMAGEKIT_REGISTRY_URL": reg.host}
        cfg = config.load(ROOT / "imagekit.toml", env=env)
        for img in engine.client.images.list():
            for tag in img.tags:
                if tag.startswith("imagekit-build/"):
                    engine.client.images.remove(tag, force=True)
        subprocess.run(["/usr/bin/docker", "builder", "prune", "-af"], check=True, stdout=subprocess.DEVNULL)
        cold, result = timed(lambda: build.build(cfg, engine))
        warm, _ = timed(lambda: build.build(cfg, engine))
        push_cold, pushed = timed(lambda: push.push(cfg, engine))
        push_again, _ = timed(lambda: push.push(cfg, engine))
        reg2 = RegistryProcess(tmp / "b").start()
        t = time.monotonic()
        for img in [i for i in result.images if i.name in {p.name for p in pushed.images}]:  # not the s3 stand-in
            ref = f"{reg2.host}/plain/{img.repository}:{img.tags[0]}"
            subprocess.run(["docker", "tag", img.image_id, ref], check=True)
            subprocess.run(["docker", "push", "-q", ref], check=True, stdout=subprocess.DEVNULL)
        plain = time.monotonic() - t
        reg.stop(), reg2.stop()
    print(f"cold build (wheels downloaded, no build cache)  {cold:7.1f} s")
    print(f"warm rebuild (nothing changed)                  {warm:7.1f} s   {cold / warm:6.0f}x faster")
    print(f"imagekit push, empty registry                   {push_cold:7.1f} s")
    print(f"docker push of the same images, empty registry  {plain:7.1f} s   ratio {push_cold / plain:.2f}")
    print(f"imagekit push again (no-op)                     {push_again:7.1f} s")
    for img in result.images:
        print(f"size {img.repository:<16} {img.size / 1e6:7.0f} MB")
    for pair, size in result.shared_bytes.items():
        print(f"shared layers {pair:<12} {size / 1e6:7.0f} MB")


if __name__ == "__main__":
    main()

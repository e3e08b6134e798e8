"""A cold build beside the plain Dockerfile a user would write, per image, with imagekit's phases; the warm
rebuild, a one-package bump, and the push beside `docker push` (to an empty registry, and to a second one,
where imagekit copies the layers the first stores).

    .venv/bin/python bench/build_push_bench.py

Both builds start from the same warm wheel cache (the repository's, hard-linked into a cache of this
script's own), an empty BuildKit cache and an OS image of this run's own (the repository's, and one
layer more): no layer either build makes is in the engine already (imagekit's layers are reproducible,
so on the repository's OS image `docker load` would find the repository's own and skip them).
- imagekit: the repository's project copied into a folder of this script's own with another version, so
  that no built image and no cached layer is taken (the repository's out/ and tags are left alone);
- plain: per image, `FROM` the same OS image, `python3 -m venv /opt/venv`, `pip install --no-index
  --no-deps --require-hashes -r <the image's full view>` from the same wheels (bind-mounted), BuildKit.
Image by image in build order (its parent already built), imagekit's build and then the plain one, back
to back: a machine that slows down meanwhile (another tenant) slows both alike.
Floors of the phases bound by something else: unzipping the image's wheels on this machine (what any
installer does at least), and the engine's own `docker load` and push (compressing every layer).
The bump is bench/vendor_bench.py's: joblib's pin moved, the project built and pushed again (after a sync, as
each cold build: not writing back what the bench wrote before it).
Every image the run made is removed at its end.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from imagekit import build, buildkit, config, lock, osimage, push, wheels
from imagekit.images import build_order
from imagekit.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' support
from support import RegistryProcess, elsewhere  # noqa: E402
from support.registry import forget  # noqa: E402

PLAIN = """FROM {os}
RUN --mount=type=bind,source=wheels,target=/wheels --mount=type=bind,source=requirements.txt,target=/r.txt \\
    python3 -m venv /opt/venv && /opt/venv/bin/pip install -q --no-index --no-deps --require-hashes \\
    --find-links /wheels -r /r.txt
"""


def timed(fn):
    """``fn``'s seconds and value, from an idle disk: what came before is written out first (sync), so no
    phase pays for another's writes (the plain builds leave gigabytes for the kernel to write back)."""
    os.sync()
    t = time.monotonic()
    value = fn()
    return time.monotonic() - t, value


def project(tmp: Path, env: dict[str, str], os_tag: str) -> config.Config:
    """The repository's project in ``tmp`` (its folders copied: the bump edits them; out/ its own;
    every repository named bench-*, so no tag of the repository's own images moves; on the OS image
    ``os_tag``), with ``env``."""
    repo_cfg = config.load(ROOT / "imagekit.toml")
    text = (ROOT / "imagekit.toml").read_text().replace('repository = "', 'repository = "bench-')
    for img in repo_cfg.images:  # an image without a repository of its own is named by its name: bench-<name>
        if img.repository == img.name:
            text = text.replace(f'name = "{img.name}"\n', f'name = "{img.name}"\nrepository = "bench-{img.name}"\n', 1)
    text = text.replace(f'tag = "{repo_cfg.os.tag}"', f'tag = "{os_tag}"')
    return config.load(elsewhere(ROOT / "imagekit.toml", tmp, text, copy=True), env=env)


def own_os(engine: Engine, repo_cfg: config.Config, tmp: Path) -> str:
    """The repository's OS image and one layer more, tagged for this run: every layer above it is new."""
    osimage.ensure(repo_cfg, engine)
    context = tmp / "os"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {repo_cfg.os.tag}\nRUN echo {tmp.name} > /etc/imagekit-bench\n")
    tag = f"imagekit-bench/os:{tmp.name}"
    buildkit.build(engine, context, tags=[tag], buildargs={}, labels={})
    return tag


def remove_own(engine: Engine, keys: set[str]) -> None:
    """Every image this run made: [registry/project/]bench-*, imagekit-bench/*, imagekit-build/* of its content keys."""
    for image in engine.client.images.list():
        for tag in image.tags:
            repo, _, name = tag.rpartition(":")
            if (repo.rpartition("/")[2].startswith("bench-") or repo.startswith("imagekit-bench/")
                    or (repo.startswith("imagekit-build/") and name in keys)):
                engine.client.images.remove(tag, force=True)


def no_build_cache() -> None:
    subprocess.run(["docker", "builder", "prune", "-af"], check=True, capture_output=True)


def plain(engine: Engine, cfg: config.Config, name: str, os_ref: str, tmp: Path) -> float:
    """The plain Dockerfile of image ``name``, built cold: its seconds."""
    pins = lock.load_views(cfg).pins(name)
    fetched = wheels.fetch(cfg, pins)
    context = tmp / f"plain-{name}"
    (context / "wheels").mkdir(parents=True)
    for p in pins:
        os.link(fetched.wheels[p.name], context / "wheels" / fetched.wheels[p.name].name)
    (context / "requirements.txt").write_text(lock.render_pins(pins))
    (context / "Dockerfile").write_text(PLAIN.format(os=os_ref))
    no_build_cache()
    seconds, _ = timed(lambda: buildkit.build(engine, context, tags=[f"imagekit-bench/plain-{name}:1"], buildargs={},
                                              labels={}))
    return seconds


def docker_push_one(img: build.BuiltImage, host: str) -> None:
    ref = f"{host}/plain/{img.repository}:{img.tags[0]}"
    subprocess.run(["docker", "tag", img.image_id, ref], check=True)
    subprocess.run(["docker", "push", "-q", ref], check=True, stdout=subprocess.DEVNULL)


def unzip_floor(cfg: config.Config, name: str, tmp: Path) -> float:
    """Unzipping the image's own wheels here: what any installer does at the least."""
    pins = lock.load_views(cfg).own[name]
    fetched = wheels.fetch(cfg, list(pins))
    out = tmp / f"unzip-{name}"
    seconds, _ = timed(lambda: [zipfile.ZipFile(fetched.wheels[p.name]).extractall(out / p.name) for p in pins])
    shutil.rmtree(out)
    return seconds


def main() -> None:
    engine = Engine.connect()
    repo_cfg = config.load(ROOT / "imagekit.toml")
    with tempfile.TemporaryDirectory(prefix="imagekit-bench-") as tmp:
        tmp = Path(tmp)
        reg = RegistryProcess(tmp / "registry").start()
        (tmp / "cache").mkdir()
        shutil.copytree(wheels.cache_dir(repo_cfg), tmp / "cache" / "wheels", copy_function=os.link)
        env = {"IMAGEKIT_CACHE_DIR": str(tmp / "cache"), "IMAGEKIT_REGISTRY_URL": reg.host,
               "IMAGEKIT_PROJECT_VERSION": str(int(time.time()))}
        cfg = project(tmp, env, own_os(engine, repo_cfg, tmp))
        cold, plain_seconds = {}, {}
        for name in [i.name for i in build_order(cfg.images)]:
            no_build_cache()
            os.sync()
            built = build.build(cfg, engine, names=[name])  # its parent unchanged: this image alone
            cold[name] = built.image(name)
            plain_seconds[name] = plain(engine, cfg, name, built.os, tmp)
        warm, result = timed(lambda: build.build(cfg, engine))
        floors = {i.name: unzip_floor(cfg, i.name, tmp) for i in result.images}
        push_cold, pushed = timed(lambda: push.push(cfg, engine))
        push_again, _ = timed(lambda: push.push(cfg, engine))
        reg3 = RegistryProcess(tmp / "registry-3").start()  # the same images to another registry: copied
        elsewhere = config.load(tmp / "imagekit.toml", env={**env, "IMAGEKIT_REGISTRY_URL": reg3.host})
        push_copy, copied = timed(lambda: push.push(elsewhere, engine))
        with open(tmp / "images" / "base" / "requirements.in", "a") as f:
            f.write("joblib==1.5.3\n")  # in every image
        lock.lock(cfg)
        release = str(int(env["IMAGEKIT_PROJECT_VERSION"]) + 1)  # new version tags: a release
        bumped = config.load(tmp / "imagekit.toml", env={**env, "IMAGEKIT_PROJECT_VERSION": release})
        os.sync()  # the gigabytes this bench wrote so far are on disk: the bump pays for its own writes only
        bump, (rebuilt, republished) = timed(lambda: (build.build(bumped, engine), push.push(bumped, engine)))
        reg2 = RegistryProcess(tmp / "registry-2").start()
        docker_push, _ = timed(lambda: [docker_push_one(img, reg2.host) for img in result.images
                                        if img.name in {p.name for p in pushed.images}])  # shared ones only
        reg.stop(), reg2.stop(), reg3.stop()
        forget(engine, [reg.host, reg2.host, reg3.host])  # the names the pushes left in the engine
        remove_own(engine, {i.content[:12] for i in [*result.images, *rebuilt.images]})
    print(f"cold build, warm wheel cache, empty layer and build caches: imagekit "
          f"{sum(i.seconds for i in cold.values()):.1f} s, plain Dockerfiles {sum(plain_seconds.values()):.1f} s")
    print(f"{'image':<10} {'imagekit':>9} {'plain':>7} {'ratio':>6}   imagekit's phases (s); floor: unzip of its wheels")
    for img in cold.values():
        phases = " ".join(f"{k} {v:.1f}" for k, v in img.phases.items())
        ratio = img.seconds / plain_seconds[img.name]
        print(f"{img.name:<10} {img.seconds:8.1f}s {plain_seconds[img.name]:6.1f}s {ratio:5.2f}x   {phases}; "
              f"unzip {floors[img.name]:.1f}")
    print("  load is the engine's `docker load` of the layer tars; dockerfile is BuildKit's; both outside imagekit")
    print(f"warm rebuild (nothing changed)   {warm:6.2f} s")
    print(f"imagekit push, empty registry    {push_cold:6.1f} s   "
          f"({', '.join(f'{i.name} {i.seconds:.1f}' for i in pushed.images)}: the engine compresses every layer)")
    print(f"docker push of the same images   {docker_push:6.1f} s   ratio {push_cold / docker_push:.2f}")
    print(f"imagekit push again (no-op)      {push_again:6.1f} s")
    sources = ", ".join(f"{i.name} from {i.copied_from or 'nowhere: pushed'}" for i in copied.images)
    print(f"imagekit push to a 2nd registry  {push_copy:6.1f} s   ratio {push_copy / docker_push:.2f} to docker push "
          f"({sources}: the layers as the first stores them)")
    print(f"a one-package bump (joblib==1.5.3 in base), built and pushed as a release: {bump:.1f} s: build "
          f"{rebuilt.seconds:.1f} s (" + "; ".join(f"{i.name} " + " ".join(f"{k} {v:.1f}" for k, v in i.phases.items())
                                                  for i in rebuilt.images if not i.cached)
          + f"), push {republished.seconds:.1f} s")


if __name__ == "__main__":
    main()

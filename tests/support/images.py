"""Test images of Debian packages (Redis, PostgreSQL): their .debs downloaded on the host with apt, as
the OS image's packages come from Debian too, unpacked onto the OS image by the Dockerfile of
tests/images/<name>; built once per engine."""
from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

from imagekit import buildkit

IMAGES = Path(__file__).parents[1] / "images"
PG = "/usr/lib/postgresql/15/bin"


def debs_image(engine, os_ref: str, name: str, work: Path) -> str:
    """``imagekit-test/<name>:bookworm``: tests/images/<name> (its Dockerfile, files and debs.txt) with the
    packages of debs.txt unpacked into root/."""
    tag = f"imagekit-test/{name}:bookworm"
    if engine.image(tag):
        return tag
    context = work / name
    shutil.copytree(IMAGES / name, context, dirs_exist_ok=True)
    debs, root = context / "debs", context / "root"
    debs.mkdir(exist_ok=True)
    wanted = sorted(set((context / "debs.txt").read_text().split()))
    subprocess.run(["apt-get", "download", "-q", *wanted], cwd=debs, check=True, capture_output=True)
    for deb in debs.glob("*.deb"):  # unpacked here: the OS image has no dpkg-deb
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
    for top in ("bin", "sbin", "lib"):  # merged /usr: those are symlinks in the OS image
        if (root / top).is_dir():
            shutil.copytree(root / top, root / "usr" / top, dirs_exist_ok=True, symlinks=True)
            shutil.rmtree(root / top)
    shutil.rmtree(debs)
    buildkit.build(engine, context, tags=[tag], buildargs={"PARENT": os_ref}, labels={})
    return tag


def redis_image(engine, os_ref: str, work: Path) -> str:
    """A Redis test image: Debian's redis-server."""
    return debs_image(engine, os_ref, "redis", work)


def postgres_image(engine, os_ref: str, work: Path) -> str:
    """A PostgreSQL test image: Debian's postgresql-15 (POSTGRES_PASSWORD at run time), on 5432."""
    return debs_image(engine, os_ref, "postgres", work)


def variant_image(engine, name: str, parent: str, extra: tuple[Path, ...] = ()) -> str:
    """``imagekit-test/<name>:<hash>``: tests/images/<name> (and the ``extra`` files) built FROM ``parent``
    (a built image: variants are made from what the run already has), its tag naming the parent and the
    files, built once."""
    import hashlib
    import tempfile

    folder = IMAGES / name
    digest = hashlib.sha256(engine.image(parent).id.encode())
    for path in [*sorted(p for p in folder.rglob("*") if p.is_file()), *extra]:
        digest.update(path.name.encode() + path.read_bytes())
    tag = f"imagekit-test/{name}:{digest.hexdigest()[:12]}"
    if not engine.image(tag):
        named = f"imagekit-test/{name}-parent:{engine.image(parent).id[7:19]}"  # BuildKit builds FROM a name
        engine.tag(parent, named)
        with tempfile.TemporaryDirectory(prefix=f"imagekit-{name}-") as tmp:
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
            for path in extra:
                shutil.copy(path, tmp)
            buildkit.build(engine, Path(tmp), tags=[tag], buildargs={"PARENT": named}, labels={})
    return tag


def vendor_image(engine, which: str, parent: str) -> str:
    """The stand-in of a vendor image (``ray``: rayproject/ray, ``notebook``: docker-stacks' scipy-notebook),
    made FROM imagekit's built image of that kind: a conda prefix, the vendor's user, entrypoint and hooks,
    and no label of imagekit's (tests/images/vendor-<which>)."""
    return variant_image(engine, f"vendor-{which}", parent, extra=(IMAGES / "vendor_prefix.py",))


def remove_built(engine, root: Path) -> None:
    """Remove the names of the images the project in ``root`` built (its images' source label is ``root``):
    their tags and the content-addressed names of their build (imagekit-build/<name>*:<key>). Only names; an
    image a name of someone else's holds stays."""
    from imagekit.build import CONTENT_LABEL
    from imagekit.images import IMAGE_LABEL

    images = engine.client.images.list()
    ours = [i for i in images if i.labels.get("org.opencontainers.image.source") == str(root)]
    keys = {(i.labels[IMAGE_LABEL], i.labels[CONTENT_LABEL][:12]) for i in ours}
    untag(engine, {*(t for i in ours for t in i.tags),
                   *(t for i in images for t in i.tags for name, key in keys
                     if t.startswith(f"imagekit-build/{name}") and t.endswith(f":{key}"))})


def untag(engine, refs) -> None:
    """Remove the engine's names ``refs`` (tags or digests): only the names; an image another name holds stays."""
    import docker.errors

    for ref in refs:
        with contextlib.suppress(docker.errors.APIError):
            engine.client.images.remove(ref)

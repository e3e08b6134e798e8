"""Python layers: an image's locked packages installed into /opt/venv as several reproducible layers.

imagekit assembles these layers itself, as ko, apko and nix2container do, rather than letting a
Dockerfile ``COPY`` them: only then are their bytes a function of the wheels alone.

- **Grouping** (from the lock, deterministic): a distribution whose wheel is at least
  ``build.layer_alone_mb`` is a layer of its own; the others share ``build.layer_buckets``
  layers, picked by a hash of the distribution's name, so adding, removing or bumping one
  package changes one small layer and leaves the others byte-identical.
- **Install**: in a container of the parent image with the network off, ``uv pip install
  --no-deps --require-hashes --no-index`` of each group into a prefix of its own, bytecode
  compiled with ``checked-hash`` invalidation and ``PYTHONHASHSEED=0`` (no time inside a .pyc).
- **Layers**: each prefix becomes a tar with sorted entries, fixed times, owner root, no pax
  time fields; its sha256 is the layer's diff id. Layers are cached on the host by what they
  are made of (``<cache>/layers``), so a bump installs only the groups that changed.
- **Image**: the parent's config with the new diff ids appended, loaded with ``docker load``.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imagekit import containers, digests, files, proc
from imagekit.digests import sha256_hex
from imagekit.engine import Engine, ImageInfo
from imagekit.errors import CheckFailed, EngineError, ToolError
from imagekit.lock import Pin, render_pins
from imagekit.wheels import link

VENV = "/opt/venv"
RECIPE = "imagekit python layers v2"  # change when the install recipe changes: invalidates cached layers
MTIME = 315532800  # 1980-01-01T00:00:00Z: fixed file times (zip-safe), the same for every build
CREATED = "1980-01-01T00:00:00Z"
ENV = {"VIRTUAL_ENV": VENV, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class Group:
    """The distributions installed together into one layer."""
    name: str  # the distribution's name when alone, "small-<n>" for a shared layer
    pins: tuple[Pin, ...]

    def key(self, interpreter: str, wheels: dict[str, Path]) -> str:
        """What the layer is made of: the recipe, the interpreter, each wheel (named by its sha256)."""
        return sha256_hex("\n".join([RECIPE, self.name, interpreter,
                                     *sorted(f"{p.name}=={p.version} {wheels[p.name].parent.name}" for p in self.pins)]))


@dataclass(frozen=True)
class Layer:
    group: str
    diff_id: str
    size: int  # bytes of the uncompressed tar
    packages: tuple[str, ...]
    path: Path  # the cached tar
    cached: bool  # True: taken from the layer cache, nothing installed


def plan(pins: Sequence[Pin], wheel_sizes: dict[str, int], *, alone_bytes: int, buckets: int) -> list[Group]:
    """Group ``pins`` into layers: the large ones alone, the rest by a hash of their name."""
    alone = sorted((p for p in pins if wheel_sizes[p.name] >= alone_bytes), key=lambda p: p.name)
    shared: dict[int, list[Pin]] = {}
    for p in pins:
        if wheel_sizes[p.name] < alone_bytes:
            shared.setdefault(int(sha256_hex(p.name)[:8], 16) % max(buckets, 1), []).append(p)
    return [*(Group(p.name, (p,)) for p in alone),
            *(Group(f"small-{n}", tuple(sorted(ps, key=lambda p: p.name))) for n, ps in sorted(shared.items()))]


def cache_dir(cache: Path) -> Path:
    return cache / "layers"


def _wanted(interpreter: str, groups: Sequence[Group], wheels: dict[str, Path], venv_layer: bool) -> dict[Group, str]:
    """The groups to make (the venv itself first, for an image on the OS image) and their keys."""
    wanted = ([Group("venv", ())] if venv_layer else []) + list(groups)
    return {g: g.key(interpreter, wheels) for g in wanted}


def lookup(interpreter: str, groups: Sequence[Group], wheels: dict[str, Path], cache: Path, *,
           venv_layer: bool) -> list[Layer]:
    """The cached layers of ``groups`` (those not in the cache are left out); installs nothing."""
    found = (_cached(cache_dir(cache), g, key) for g, key in _wanted(interpreter, groups, wheels, venv_layer).items())
    return [layer for layer in found if layer is not None]


def install(engine: Engine, parent: str, interpreter: str, groups: Sequence[Group], wheels: dict[str, Path],
            cache: Path, *, venv_layer: bool, uv_bin: Path, on_line: Callable[[str], None]) -> list[Layer]:
    """The layers of ``groups`` (and, with ``venv_layer``, the venv itself first): from the cache,
    or installed in one network-less container of ``parent``."""
    folder = cache_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = _wanted(interpreter, groups, wheels, venv_layer)
    layers = {g: _cached(folder, g, key, verify=True) for g, key in wanted.items()}
    for g, key in wanted.items():
        if isinstance(layers[g], str):  # the cached tar is not what its entry recorded: make it again
            on_line(layers[g])
            layers[g] = None
    missing = {g: key for g, key in wanted.items() if layers[g] is None}
    if missing:
        on_line(f"installing {sum(len(g.pins) for g in missing)} packages into {len(missing)} layers "
                f"({len(wanted) - len(missing)} layers cached)")
        layers.update(_install(engine, parent, missing, wheels, folder, uv_bin, on_line))
    return [layers[g] for g in wanted]


def _cached(folder: Path, group: Group, key: str, *, verify: bool = False) -> Layer | str | None:
    """The cached layer of ``group``, None when there is none; with ``verify`` (the tar is about to
    go into an image), the tar is hashed, and one that is not what its entry records (a corrupted
    or replaced cache file) is a message saying so instead."""
    meta = folder / f"{key}.json"
    if not meta.is_file():
        return None
    data = json.loads(meta.read_text())
    path = folder / f"{key}.tar"
    if not path.is_file():
        return None
    if verify and (path.stat().st_size != data["size"] or digests.oci_file(path) != data["diff_id"]):
        return (f"layer cache entry {path} is corrupted (not the {data['diff_id'][:19]} it recorded): "
                f"installing {group.name} again")
    return Layer(group=group.name, diff_id=data["diff_id"], size=data["size"], packages=tuple(data["packages"]),
                 path=path, cached=True)


def _script(groups: Sequence[Group]) -> str:
    lines = ["set -euo pipefail", "export UV_CACHE_DIR=/tmp/imagekit/uv-cache PYTHONHASHSEED=0",
             f"[ -x {VENV}/bin/python ] || python3 -m venv --without-pip {VENV}", "mkdir -p /imagekit/out"]
    for g in groups:
        out = f"/imagekit/out/{g.name}"
        if g.name == "venv":
            lines.append(f"mkdir -p {out} && cp -a {VENV}/. {out}/")
            continue
        lines += [f"/imagekit/uv pip install --quiet --python {VENV}/bin/python --prefix {out} --no-deps"
                  f" --require-hashes --no-index --find-links /imagekit/wheels --link-mode copy"
                  f" -r /imagekit/groups/{g.name}.txt",
                  # uv's record of when it saw a local wheel: build-time noise, not part of the package
                  f"find {out} -path '*.dist-info/uv_cache.json' -delete",
                  f"sed -i '/[.]dist-info\\/uv_cache[.]json,/d' {out}/lib/python*/site-packages/*.dist-info/RECORD",
                  # a file that does not compile (as pip and uv, not fatal: Python compiles it at import, or
                  # it is a template) is said, never hidden: its errors go beside the group's tree
                  f"{VENV}/bin/python -m compileall -q -j0 -s {out} -p {VENV} --invalidation-mode checked-hash"
                  f" {out} > /imagekit/{g.name}.compile 2>&1 || mv /imagekit/{g.name}.compile {out}.uncompiled"]
    return "\n".join(lines) + "\n"


def _install(engine: Engine, parent: str, groups: dict[Group, str], wheels: dict[str, Path], folder: Path,
             uv_bin: Path, on_line: Callable[[str], None]) -> dict[Group, Layer]:
    """Install ``groups`` (group -> key) in one container and write their layers to the cache."""
    with tempfile.TemporaryDirectory(prefix="imagekit-install-", dir=folder) as tmp:
        stage = Path(tmp) / "in"
        (stage / "wheels").mkdir(parents=True)
        (stage / "groups").mkdir()
        for g in groups:
            (stage / "groups" / f"{g.name}.txt").write_text(render_pins(list(g.pins)))
            for p in g.pins:
                link(wheels[p.name], stage / "wheels" / wheels[p.name].name)
        link(uv_bin, stage / "uv")
        (stage / "install.sh").write_text(_script(groups))
        with containers.Run(engine, "install", network=False) as run:
            c = run.start(containers.Container(parent, ["bash", "/imagekit/install.sh"], user="root",
                                               network_mode="none"), inputs={"/imagekit": stage})
            c.wait(1800)  # ToolError with the output's tail on failure
            shutil.rmtree(stage)
            out = Path(tmp) / "out"
            with tempfile.TemporaryFile(dir=tmp) as archive:
                for chunk in c.archive("/imagekit/out"):
                    archive.write(chunk)
                archive.seek(0)
                with tarfile.open(fileobj=archive, mode="r|") as tar:
                    tar.extractall(Path(tmp), filter="tar")
        for said in sorted(out.glob("*.uncompiled")):
            failed = sorted(set(re.findall(r"Error compiling '([^']+)'", said.read_text())))
            on_line(f"{said.stem}: no bytecode for {len(failed)} file(s) that do not compile (Python will not "
                    f"import them either): {', '.join(failed[:5]) or proc.reason(said.read_text())}")
        return {g: _write(folder, g, key, out / g.name) for g, key in groups.items()}


def _write(folder: Path, group: Group, key: str, tree: Path) -> Layer:
    """Write ``tree`` as the layer tar of ``group`` (rooted at /opt/venv), then record it."""
    path = folder / f"{key}.tar"
    with files.writing(path) as f:  # builds may run at once
        write_tar(f, tree, VENV.strip("/"))
    meta = {"diff_id": digests.oci_file(path), "size": path.stat().st_size, "group": group.name,
            "packages": [f"{p.name}=={p.version}" for p in group.pins]}
    files.write(folder / f"{key}.json", json.dumps(meta))
    return Layer(group=group.name, diff_id=meta["diff_id"], size=meta["size"], packages=tuple(meta["packages"]),
                 path=path, cached=False)


def write_tar(f, tree: Path, prefix: str, *, mtime: int = MTIME) -> None:
    """A tar of ``tree`` as ``prefix/...``: sorted entries, fixed times, owner root (0:0), no pax
    time fields, the parent folders of ``prefix`` included, modes canonical (folders and
    executables 0755, other files 0644: whatever umask made the tree). The same tree gives the same
    bytes."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            entries.append((f"{prefix}/{full.relative_to(tree).as_posix()}", full))
    parents = [("/".join(prefix.split("/")[:n]), None) for n in range(1, prefix.count("/") + 2)]
    with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, full in [*parents, *sorted(entries)]:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
            st = full.lstat() if full else None
            if full is None or full.is_dir() and not full.is_symlink():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif full.is_symlink():
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(full), 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = st.st_size, 0o755 if st.st_mode & 0o100 else 0o644
                with open(full, "rb") as data:
                    tar.addfile(info, data)


def assemble(engine: Engine, parent: str, layers: Sequence[Layer], ref: str, *, labels: dict[str, str]) -> str:
    """Load ``parent`` + ``layers`` as ``ref`` into the engine; return the image id.

    The config is the parent's, with the venv on PATH, ``labels`` merged and the new diff ids
    appended; its times are fixed, so the same parent and layers give the same image id.
    """
    info: ImageInfo = engine.image(parent)
    history = [*engine.history(parent), *({"created": CREATED, "created_by": f"imagekit: {layer_description(l)}",
                                            "comment": "imagekit python layer"} for l in layers)]
    env = info.env
    env.update(ENV)
    if not env.get("PATH", "").startswith(f"{VENV}/bin:"):
        env["PATH"] = f"{VENV}/bin:" + env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    config = {**info.config, "Env": [f"{k}={v}" for k, v in env.items()],
              "Labels": {**info.labels, **labels}}
    image = {"architecture": info.architecture, "os": "linux", "created": CREATED, "config": config,
             "rootfs": {"type": "layers", "diff_ids": [*info.layers, *(l.diff_id for l in layers)]},
             "history": history}
    raw = json.dumps(image, sort_keys=True, separators=(",", ":")).encode()
    image_id = digests.oci(raw)
    if (existing := engine.image(ref)) and existing.id == image_id:
        return image_id
    with tempfile.TemporaryFile() as archive:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            _add(tar, f"{image_id[7:]}.json", raw)
            for layer in layers:
                tar.add(str(layer.path), arcname=f"{layer.diff_id[7:]}/layer.tar")
            manifest = [{"Config": f"{image_id[7:]}.json", "RepoTags": [ref],
                         "Layers": [f"{d[7:]}/layer.tar" for d in image["rootfs"]["diff_ids"]]}]
            _add(tar, "manifest.json", json.dumps(manifest).encode())
        archive.seek(0)
        engine.load(archive)
    loaded = engine.image(ref)
    if loaded is None or loaded.id != image_id:
        raise EngineError(f"docker load of {ref} gave {loaded and loaded.id}, expected {image_id}")
    return image_id


def check(engine: Engine, image: str, uv_bin: Path, *, what: str) -> None:
    """Every installed distribution's requirements, Requires-Python included, are met by the image
    (``uv pip check`` with its interpreter, network off). CheckFailed names each problem."""
    try:
        containers.run(engine, image, ["/tmp/imagekit-uv", "pip", "check", "--python", f"{VENV}/bin/python"],
                       inputs={"/tmp/imagekit-uv": uv_bin}, user="root")
    except ToolError as e:
        problems = [line.strip() for line in e.output.splitlines() if line.strip().startswith("The package")]
        raise CheckFailed(f"{what}: the installed packages do not fit together (uv pip check)",
                          differences=problems or e.output.strip().splitlines()[-5:],
                          hint="the lock should make this impossible: is lock.python the OS image's Python? "
                               "run `imagekit lock` and build again") from None


def layer_description(layer: Layer) -> str:
    what = ", ".join(layer.packages[:6]) + (f" and {len(layer.packages) - 6} more" if len(layer.packages) > 6 else "")
    return f"{VENV} {layer.group}" + (f": {what}" if what else "")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), MTIME
    tar.addfile(info, io.BytesIO(data))


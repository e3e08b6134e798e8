"""Python layers: an image's locked packages installed into /opt/venv (or, on a vendor base, into the
vendor's own prefix: ``Prefix``) as several reproducible layers.

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

import json
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imagekit import containers, digests, files, proc, tars
from imagekit.digests import sha256_hex
from imagekit.engine import Engine, ImageInfo
from imagekit.errors import CheckFailed, EngineError, ToolError
from imagekit.lock import Pin, render_pins
from imagekit.progress import Phases
from imagekit.tars import VENV, Prefix, write_tar
from imagekit.wheels import link

RECIPE = "imagekit python layers v2"  # change when the install recipe changes: invalidates cached layers
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


def uv_binary() -> Path:
    """The uv that installs the layers and checks the images (the one imagekit depends on)."""
    from uv import find_uv_bin
    return Path(find_uv_bin())


def cache_dir(cache: Path) -> Path:
    return cache / "layers"


def _wanted(interpreter: str, groups: Sequence[Group], wheels: dict[str, Path], venv_layer: bool) -> dict[Group, str]:
    """The groups to make (the venv itself first, for an image on the OS image) and their keys."""
    wanted = ([Group("venv", ())] if venv_layer else []) + list(groups)
    return {g: g.key(interpreter, wheels) for g in wanted}


def lookup(interpreter: str, groups: Sequence[Group], wheels: dict[str, Path], cache: Path, *,
           venv_layer: bool) -> list[Layer]:
    """The cached layers of ``groups`` (those not in the cache are left out); installs nothing."""
    found = (cached(cache_dir(cache), g, key) for g, key in _wanted(interpreter, groups, wheels, venv_layer).items())
    return [layer for layer in found if layer is not None]


def install(engine: Engine, parent: str, interpreter: str, groups: Sequence[Group], wheels: dict[str, Path],
            cache: Path, *, venv_layer: bool, uv_bin: Path, on_line: Callable[[str], None],
            prefix: Prefix = Prefix(), phases: Phases | None = None) -> list[Layer]:
    """The layers of ``groups`` (and, with ``venv_layer``, the venv itself first): from the cache,
    or installed in one network-less container of ``parent`` (timed into ``phases``: install, tar)."""
    phases = Phases() if phases is None else phases
    folder = cache_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = _wanted(interpreter, groups, wheels, venv_layer)
    with phases.timing("tar"):  # hashing the cached tars about to go into the image
        layers = {g: cached(folder, g, key, verify=True) for g, key in wanted.items()}
    for g, key in wanted.items():
        if isinstance(layers[g], str):  # the cached tar is not what its entry recorded: make it again
            on_line(layers[g])
            layers[g] = None
    missing = {g: key for g, key in wanted.items() if layers[g] is None}
    if missing:
        on_line(f"installing {sum(len(g.pins) for g in missing)} packages into {len(missing)} layers "
                f"({len(wanted) - len(missing)} layers cached)")
        layers.update(_install(engine, parent, missing, wheels, folder, uv_bin, on_line, prefix, phases))
    return [layers[g] for g in wanted]


def cached(folder: Path, group: Group, key: str, *, verify: bool = False) -> Layer | str | None:
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


def _script(groups: Sequence[Group], prefix: Prefix) -> str:
    lines = ["set -euo pipefail", "export UV_CACHE_DIR=/tmp/imagekit/uv-cache PYTHONHASHSEED=0",
             *([f"[ -x {VENV}/bin/python ] || python3 -m venv --without-pip {VENV}"] if prefix.venv else []),
             "mkdir -p /imagekit/out"]
    for g in groups:
        out = f"/imagekit/out/{g.name}"
        if g.name == "venv":
            lines.append(f"mkdir -p {out} && cp -a {VENV}/. {out}/")
            continue
        lines += [f"/imagekit/uv pip install --quiet --python {prefix.python} --prefix {out} --no-deps"
                  f" --require-hashes --no-index --find-links /imagekit/wheels --link-mode copy"
                  f" -r /imagekit/groups/{g.name}.txt",
                  # uv's record of when it saw a local wheel: build-time noise, not part of the package
                  f"find {out} -path '*.dist-info/uv_cache.json' -delete",
                  f"sed -i '/[.]dist-info\\/uv_cache[.]json,/d' {out}/lib/python*/site-packages/*.dist-info/RECORD",
                  # a file that does not compile (as pip and uv, not fatal: Python compiles it at import, or
                  # it is a template) is said, never hidden: its errors go beside the group's tree
                  f"{prefix.python} -m compileall -q -j0 -s {out} -p {prefix.path} --invalidation-mode checked-hash"
                  f" {out} > /imagekit/{g.name}.compile 2>&1 || mv /imagekit/{g.name}.compile {out}.uncompiled"]
    return "\n".join(lines) + "\n"


def _install(engine: Engine, parent: str, groups: dict[Group, str], wheels: dict[str, Path], folder: Path,
             uv_bin: Path, on_line: Callable[[str], None], prefix: Prefix, phases: Phases) -> dict[Group, Layer]:
    """Install ``groups`` (group -> key) in one container and write their layers to the cache: the install
    (uv, bytecode) is the container's time, the copy out and the tars (sorted, hashed) are this process's."""
    with tempfile.TemporaryDirectory(prefix="imagekit-install-", dir=folder) as tmp:
        stage = Path(tmp) / "in"
        (stage / "wheels").mkdir(parents=True)
        (stage / "groups").mkdir()
        for g in groups:
            (stage / "groups" / f"{g.name}.txt").write_text(render_pins(list(g.pins)))
            for p in g.pins:
                link(wheels[p.name], stage / "wheels" / wheels[p.name].name)
        link(uv_bin, stage / "uv")
        (stage / "install.sh").write_text(_script(groups, prefix))
        with containers.Run(engine, "install", network=False) as run:  # not through the image's entrypoint
            with phases.timing("install"):  # the wheels copied in, uv, the bytecode
                c = run.start(containers.Container(parent, ["/imagekit/install.sh"], user="root", network_mode="none",
                                                   entrypoint=["bash"]), inputs={"/imagekit": stage})
                c.wait(1800)  # ToolError with the output's tail on failure
            shutil.rmtree(stage)
            out = Path(tmp) / "out"
            with phases.timing("tar"), tempfile.TemporaryFile(dir=tmp) as archive:
                for chunk in c.archive("/imagekit/out"):
                    archive.write(chunk)
                archive.seek(0)
                with tarfile.open(fileobj=archive, mode="r|") as tar:
                    tar.extractall(Path(tmp), filter="tar")
        for said in sorted(out.glob("*.uncompiled")):
            failed = sorted(set(re.findall(r"Error compiling '([^']+)'", said.read_text())))
            on_line(f"{said.stem}: no bytecode for {len(failed)} file(s) that do not compile (Python will not "
                    f"import them either): {', '.join(failed[:5]) or proc.reason(said.read_text())}")
        with phases.timing("tar"):
            return {g: _write(folder, g, key, out / g.name, prefix) for g, key in groups.items()}


def _write(folder: Path, group: Group, key: str, tree: Path, prefix: Prefix = Prefix()) -> Layer:
    """Write ``tree`` as the layer tar of ``group`` (rooted at the prefix), then record it."""
    return _record(folder, group, key, [f"{p.name}=={p.version}" for p in group.pins],
                   lambda f: write_tar(f, tree, prefix.path.strip("/"), owners=prefix if not prefix.venv else None))


def write_whiteouts(folder: Path, group: Group, key: str, paths: Sequence[str], owners: Prefix) -> Layer:
    """A layer of whiteouts only, removing ``paths`` (absolute) from the layers below, recorded in the cache."""
    return _record(folder, group, key, [f"removes {len(paths)} files"],
                   lambda f: write_tar(f, None, "", owners=owners, whiteouts=paths))


def _record(folder: Path, group: Group, key: str, packages: list[str], fill: Callable) -> Layer:
    """The layer tar of ``group`` as ``fill`` writes it, recorded in the cache (diff id, size, what it holds)."""
    path = folder / f"{key}.tar"
    with files.writing(path) as f:  # builds may run at once
        fill(f)
    meta = {"diff_id": digests.oci_file(path), "size": path.stat().st_size, "group": group.name, "packages": packages}
    files.write(folder / f"{key}.json", json.dumps(meta))
    return Layer(group=group.name, diff_id=meta["diff_id"], size=meta["size"], packages=tuple(packages), path=path,
                 cached=False)


def assemble(engine: Engine, parent: str, layers: Sequence[Layer], ref: str, *, labels: dict[str, str],
             venv: bool = True) -> str:
    """Load ``parent`` + ``layers`` as ``ref`` into the engine; return the image id.

    The config is the parent's, with the venv on PATH (``venv``; a vendor's environment stays as it
    is), ``labels`` merged and the new diff ids appended; its times are fixed, so the same parent
    and layers give the same image id.
    """
    info: ImageInfo = engine.image(parent)
    history = [*engine.history(parent), *({"created": CREATED, "created_by": f"imagekit: {layer_description(l)}",
                                            "comment": "imagekit python layer"} for l in layers)]
    env = info.env
    env.update(ENV if venv else {})
    if venv and not env.get("PATH", "").startswith(f"{VENV}/bin:"):
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
            tars.add(tar, f"{image_id[7:]}.json", raw)
            for layer in layers:
                tar.add(str(layer.path), arcname=f"{layer.diff_id[7:]}/layer.tar")
            manifest = [{"Config": f"{image_id[7:]}.json", "RepoTags": [ref],
                         "Layers": [f"{d[7:]}/layer.tar" for d in image["rootfs"]["diff_ids"]]}]
            tars.add(tar, "manifest.json", json.dumps(manifest).encode())
        archive.seek(0)
        engine.load(archive)
    loaded = engine.image(ref)
    if loaded is None or loaded.id != image_id:
        raise EngineError(f"docker load of {ref} gave {loaded and loaded.id}, expected {image_id}")
    return image_id


def check(engine: Engine, image: str, uv_bin: Path, *, what: str, python: str = f"{VENV}/bin/python",
          name: Callable[[str], str] = str, hint: str = "the lock should make this impossible: is lock.python the "
                                                       "OS image's Python? run `imagekit lock` and build again") -> None:
    """Every installed distribution's requirements, Requires-Python included, are met by the image
    (``uv pip check`` with its interpreter, network off). CheckFailed names each problem (as ``name``
    words it)."""
    try:
        containers.run(engine, image, ["/tmp/imagekit-uv", "pip", "check", "--python", python],
                       inputs={"/tmp/imagekit-uv": uv_bin}, user="root", entrypoint=[])
    except ToolError as e:
        problems = [name(line.strip()) for line in e.output.splitlines() if line.strip().startswith("The package")]
        raise CheckFailed(f"{what}: the installed packages do not fit together (uv pip check)",
                          differences=problems or e.output.strip().splitlines()[-5:], hint=hint) from None


def layer_description(layer: Layer) -> str:
    what = ", ".join(layer.packages[:6]) + (f" and {len(layer.packages) - 6} more" if len(layer.packages) > 6 else "")
    return f"{VENV} {layer.group}" + (f": {what}" if what else "")

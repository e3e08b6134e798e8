"""Python layers: an image's locked packages installed into /opt/venv (or, on a vendor base, into the
vendor's own prefix: ``Prefix``) as several reproducible layers.

imagekit assembles these layers itself, as ko, apko and nix2container do, rather than letting a
Dockerfile ``COPY`` them: only then are their bytes a function of the wheels alone.

- **Grouping** (from the lock, deterministic): a distribution whose wheel is at least
  ``build.layer_alone_mb`` is a layer of its own; the others share ``build.layer_buckets``
  layers, picked by a hash of the distribution's name, so adding, removing or bumping one
  package changes one small layer and leaves the others byte-identical.
- **Install**: in a container of the parent image with the network off, ``uv pip install
  --no-deps --require-hashes --no-index`` of each group into a prefix of its own; there too
  (in_image/make_layers.py, the image's Python, every core) the bytecode is compiled with
  ``checked-hash`` invalidation and ``PYTHONHASHSEED=0`` (no time inside a .pyc) and each prefix
  written as its layer tar.
- **Layers**: tars with sorted entries, fixed times, owner root, no pax time fields (tars.py); copied
  out of the container into a cache on the host, hashed on the way (the sha256 is the layer's diff
  id), kept by what they are made of (``<cache>/layers``), so a bump installs only the groups that changed.
- **Image**: the OS (or vendor) image with its lineage's layers on top, the large ones below the small
  ones (``stacked``), loaded into the engine (assembly.py).
"""
from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from imagekit import containers, digests, files, inimage, tars, tools
from imagekit.digests import sha256_hex
from imagekit.engine import Engine
from imagekit.errors import CheckFailed, EngineError, ToolError
from imagekit.lock import Pin, render_pins
from imagekit.progress import Phases
from imagekit.tars import VENV, Prefix, write_tar
from imagekit.wheels import link

RECIPE = "imagekit python layers v3"  # change when the install recipe changes: invalidates cached layers
MAKE_LAYERS = inimage.HERE / "make_layers.py"  # bytecode and layer tars, in the install container
SMALL = "small-"  # the name of a layer that small distributions share: small-<n>
SCRATCH = "/imagekit/work"  # the install's trees and uv's cache: in memory, never on the engine's disk


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
            *(Group(f"{SMALL}{n}", tuple(sorted(ps, key=lambda p: p.name))) for n, ps in sorted(shared.items()))]


def stacked(parent: Sequence[Layer], own: Sequence[Layer]) -> list[Layer]:
    """An image's Python layers over its parent's: the large ones (and the venv) at the bottom, the parent's first;
    the small-package layers on top, the parent's last. The engine keeps a layer per chain of the layers below it,
    so a changed layer makes every layer above it extracted again: a bump of a small package (most bumps) moves
    only layers near the top, and one in the parent's, which every child carries, the fewest in each. A child with
    no large layer of its own keeps its parent's chain whole (the engine holds it already) and adds its own above."""
    def steady(layer: Layer) -> bool:
        return not layer.group.startswith(SMALL)
    if not any(map(steady, own)):  # nothing large of its own: its parent's layers as they are, its own above them
        return [*parent, *own]
    return [*filter(steady, parent), *filter(steady, own),
            *(l for l in own if not steady(l)), *(l for l in parent if not steady(l))]


def cache_dir(cache: Path) -> Path:
    return cache / "layers"


def _wanted(interpreter: str, groups: Sequence[Group], wheels: dict[str, Path], venv_layer: bool) -> dict[Group, str]:
    """The groups to make (the venv itself first, for an image on the OS image) and their keys."""
    wanted = ([Group("venv", ())] if venv_layer else []) + list(groups)
    return {g: g.key(interpreter, wheels) for g in wanted}


def lookup(interpreter: str, groups: Sequence[Group], wheels: dict[str, Path], cache: Path, *,
           venv_layer: bool) -> list[Layer] | None:
    """The cached layers of ``groups``, None when one is not in the cache; installs nothing."""
    found = [cached(cache_dir(cache), g, key) for g, key in _wanted(interpreter, groups, wheels, venv_layer).items()]
    return None if None in found else found


def install(engine: Engine, parent: str, interpreter: str, groups: Sequence[Group], wheels: dict[str, Path],
            cache: Path, *, venv_layer: bool, on_line: Callable[[str], None],
            prefix: Prefix = Prefix(), phases: Phases | None = None) -> list[Layer]:
    """The layers of ``groups`` (and, with ``venv_layer``, the venv itself first): from the cache,
    or installed in one network-less container of ``parent`` (timed into ``phases``: install, tar)."""
    phases = Phases() if phases is None else phases
    folder = cache_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = _wanted(interpreter, groups, wheels, venv_layer)
    with phases.timing("tar"):  # checking the cached tars about to go into the image
        layers = {g: cached(folder, g, key, verify=True) for g, key in wanted.items()}
    for g, key in wanted.items():
        if isinstance(layers[g], str):  # the cached tar is not what its entry recorded: make it again
            on_line(layers[g])
            layers[g] = None
    missing = {g: key for g, key in wanted.items() if layers[g] is None}
    if missing:
        on_line(f"installing {sum(len(g.pins) for g in missing)} packages into {len(missing)} layers "
                f"({len(wanted) - len(missing)} layers cached)")
        layers.update(_install(engine, parent, missing, wheels, folder, on_line, prefix, phases))
    return [layers[g] for g in wanted]


def cached(folder: Path, group: Group, key: str, *, verify: bool = False) -> Layer | str | None:
    """The cached layer of ``group``, None when there is none; with ``verify`` (the tar is about to
    go into an image), a tar whose size, time or inode changed since it was written is hashed, and one
    that is not what its entry records (a corrupted or replaced cache file) is a message saying so
    instead. (`docker load` checks every tar it reads against its diff id too.)"""
    meta = folder / f"{key}.json"
    if not meta.is_file():
        return None
    data = json.loads(meta.read_text())
    path = folder / f"{key}.tar"
    if not path.is_file():
        return None
    if verify and _written(path) != data.get("written") and (
            path.stat().st_size != data["size"] or digests.oci_file(path) != data["diff_id"]):
        return (f"layer cache entry {path} is corrupted (not the {data['diff_id'][:19]} it recorded): "
                f"installing {group.name} again")
    return Layer(group=group.name, diff_id=data["diff_id"], size=data["size"], packages=tuple(data["packages"]),
                 path=path, cached=True)


def _script(groups: Sequence[Group], prefix: Prefix) -> str:
    lines = ["set -euo pipefail", f"export UV_CACHE_DIR={SCRATCH}/uv-cache PYTHONHASHSEED=0",
             *([f"[ -x {VENV}/bin/python ] || python3 -m venv --without-pip {VENV}"] if prefix.venv else []),
             f"mkdir -p {SCRATCH}/out"]
    for g in groups:
        out = f"{SCRATCH}/out/{g.name}"
        if g.name == "venv":
            lines.append(f"mkdir -p {out} && cp -a {VENV}/. {out}/")
            continue
        lines += [f"{tools.UV} pip install --quiet --python {prefix.python} --prefix {out} --no-deps"
                  f" --require-hashes --no-index --find-links /imagekit/wheels --link-mode hardlink"
                  f" -r /imagekit/groups/{g.name}.txt",
                  # uv's record of when it saw a local wheel: build-time noise, not part of the package
                  f"find {out} -path '*.dist-info/uv_cache.json' -delete",
                  f"sed -i '/[.]dist-info\\/uv_cache[.]json,/d' {out}/lib/python*/site-packages/*.dist-info/RECORD"]
    return "\n".join([*lines, f"{prefix.python} /imagekit/make_layers.py /imagekit/plan.json"]) + "\n"


def _install(engine: Engine, parent: str, groups: dict[Group, str], wheels: dict[str, Path], folder: Path,
             on_line: Callable[[str], None], prefix: Prefix, phases: Phases) -> dict[Group, Layer]:
    """Install ``groups`` (group -> key) in one container, where their bytecode is compiled and their layer
    tars written (in_image/make_layers.py), then copy the tars into the cache, hashed on the way."""
    with tempfile.TemporaryDirectory(prefix="imagekit-install-", dir=folder) as tmp:
        stage = Path(tmp) / "in"
        (stage / "wheels").mkdir(parents=True)
        (stage / "groups").mkdir()
        for g in groups:
            (stage / "groups" / f"{g.name}.txt").write_text(render_pins(list(g.pins)))
            for p in g.pins:
                link(wheels[p.name], stage / "wheels" / wheels[p.name].name)
        for code in (MAKE_LAYERS, Path(tars.__file__)):
            link(code, stage / code.name)
        (stage / "install.sh").write_text(_script(groups, prefix))
        (stage / "plan.json").write_text(json.dumps({"trees": f"{SCRATCH}/out", "layers": "/imagekit/layers",
                                                     "prefix": dataclasses.asdict(prefix),
                                                     "groups": [g.name for g in groups]}))

        def installed(uv: list[str]) -> tuple[dict[Group, Layer], dict]:  # uv mounted, not copied in
            with containers.Run(engine, "install", network=False) as run:  # not through the image's entrypoint
                with phases.timing("install"):  # the wheels copied in, the install, the bytecode, the tars
                    c = run.start(containers.Container(parent, ["/imagekit/install.sh"], user="root", volumes=uv,
                                                       network_mode="none", entrypoint=["bash"], scratch=SCRATCH),
                                  inputs={"/imagekit": stage})
                    c.wait(1800)  # ToolError with the output's tail on failure
                with phases.timing("tar"):
                    return _copy_out(c.archive("/imagekit/layers"), folder, groups)
        made, report = tools.using(engine, parent, installed)
    for phase in ("compile", "tar"):  # the container's time, told apart
        phases[phase] = round(phases.get(phase, 0.0) + report[phase], 2)
        phases["install"] = round(phases["install"] - report[phase], 2)
    for group, failed in sorted(report["uncompiled"].items()):
        on_line(f"{group}: no bytecode for {len(failed)} file(s) that do not compile (Python will not "
                f"import them either): {', '.join(sorted(failed)[:5])}")
    return made


def _copy_out(archive: Iterator[bytes], folder: Path, groups: dict[Group, str]) -> tuple[dict[Group, Layer], dict]:
    """The layer tars of ``groups`` from the container's archive of its layers folder, into the cache."""
    names = {f"layers/{g.name}.tar": g for g in groups}
    made, report = {}, None
    with tarfile.open(fileobj=io.BufferedReader(tars.Chunks(archive), 1 << 20), mode="r|") as tar:
        for member in tar:
            if member.name in names:
                g = names[member.name]
                made[g] = _record(folder, g, groups[g], [f"{p.name}=={p.version}" for p in g.pins],
                                  lambda f: shutil.copyfileobj(tar.extractfile(member), f, 1 << 20))
            elif member.name == "layers/report.json":
                report = json.load(tar.extractfile(member))
    if report is None or len(made) != len(groups):
        raise EngineError(f"the install container made {len(made)} of the {len(groups)} layers asked")
    return made, report


def write_whiteouts(folder: Path, group: Group, key: str, paths: Sequence[str], owners: Prefix) -> Layer:
    """A layer of whiteouts only, removing ``paths`` (absolute) from the layers below, recorded in the cache."""
    return _record(folder, group, key, [f"removes {len(paths)} files"],
                   lambda f: write_tar(f, None, "", owners=owners, whiteouts=paths))


def _written(path: Path) -> list[int]:
    """The tar file as it was written: any change to it changes these."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _record(folder: Path, group: Group, key: str, packages: list[str], fill: Callable) -> Layer:
    """The layer tar of ``group`` as ``fill`` writes it, recorded in the cache (diff id, size, what it holds)."""
    path = folder / f"{key}.tar"
    with files.writing(path) as f:  # builds may run at once
        hashing = tars.Hashing(f)  # the diff id as the bytes go by, not read again
        fill(hashing)
    meta = {"diff_id": hashing.digest(), "size": hashing.size, "group": group.name, "packages": packages,
            "written": _written(path)}
    files.write(folder / f"{key}.json", json.dumps(meta))
    return Layer(group=group.name, diff_id=meta["diff_id"], size=meta["size"], packages=tuple(packages), path=path,
                 cached=False)


def check(engine: Engine, image: str, *, what: str, python: str = f"{VENV}/bin/python",
          name: Callable[[str], str] = str, hint: str = "the lock should make this impossible: is lock.python the "
                                                       "OS image's Python? run `imagekit lock` and build again") -> None:
    """Every installed distribution's requirements, Requires-Python included, are met by the image
    (``uv pip check`` with its interpreter, network off). CheckFailed names each problem (as ``name``
    words it)."""
    def checked(uv: list[str]) -> str:
        return containers.run(engine, image, [tools.UV, "pip", "check", "--python", python], user="root",
                              entrypoint=[], volumes=uv)
    try:
        tools.using(engine, image, checked)
    except ToolError as e:
        problems = [name(line.strip()) for line in e.output.splitlines() if line.strip().startswith("The package")]
        raise CheckFailed(f"{what}: the installed packages do not fit together (uv pip check)",
                          differences=problems or e.output.strip().splitlines()[-5:], hint=hint) from None

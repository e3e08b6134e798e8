"""What an image holds, asked of the image itself: its Python (where, which version), its installed
distributions (and which installer put each there: pip, uv, conda), conda-meta's records, every
installed file against its RECORD (a moved prefix told from a patch), the BLAS numpy and scipy use.
Read with the image's own Python through its entrypoint, the network off (in_image/image_facts.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from imagekit import containers, files, inimage, proc
from imagekit.engine import Engine
from imagekit.errors import PreconditionError, ToolError
from imagekit.images import BASE_NAME, IMAGE_LABEL

VENV_TOOLS = {"setuptools"}  # a venv's own where one is made with pip (older images), not locked
FACTS = inimage.HERE / "image_facts.py"  # run inside the image with its own Python: see that file
KEPT = "facts"  # the folder of the cache where answers are kept by image id (an image id is its content)


@dataclass(frozen=True)
class ImageFacts:
    ref: str
    name: str  # which image of imagekit.toml it claims to be (its label)
    python: str
    packages: dict[str, str]
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # (distribution, file, changed|missing)
    prefix: str = ""  # where its Python lives (sys.prefix): /opt/venv, /home/ray/anaconda3, /opt/conda...
    installers: dict[str, str] = field(default_factory=dict)  # distribution -> pip, uv, conda... (its INSTALLER)
    conda: dict[str, dict] = field(default_factory=dict)  # conda-meta: name -> {version, build, channel}
    relocated: list[tuple[str, str, str]] = field(default_factory=list)  # (distribution, file, prefix it was moved from)
    blas: list[str] | None = None  # what numpy and scipy link against (threadpoolctl), None: not known
    base: str = ""  # the vendor image imagekit built it on (its org.opencontainers.image.base.name), "" if none
    executable: str = ""  # its Python (sys.executable)
    glibc: str = ""  # its C library's version ("" when not glibc)
    folders: list[tuple[str, int, int, int]] = field(default_factory=list)  # the prefix and above: mode, uid, gid


def inspect(engine: Engine, ref: str, *, cache: Path | None = None) -> ImageFacts:
    """Ask the image itself (its interpreter, its installed distributions), with the network off, through
    its entrypoint with the command replaced. ``cache``: a folder where the answer is kept by image id
    (an image never changes: a build on a vendor base asks its base once, verify-compat an image once)."""
    info = engine.image(ref)
    if info is None:
        raise PreconditionError(f"image {ref} is not in the engine",
                                hint="run `imagekit build`, or pass an image that exists")
    kept = cache / f"{info.id.removeprefix('sha256:')}.json" if cache else None
    if kept and kept.is_file():
        line = kept.read_text()
    else:
        line = _ask(engine, ref, info)
        if kept:
            files.write(kept, line)
    data = json.loads(line)
    keep = {canonicalize_name(k): v for k, v in data["packages"].items() if canonicalize_name(k) not in VENV_TOOLS}
    return ImageFacts(ref=ref, name=info.labels.get(IMAGE_LABEL, ""), python=data["python"], packages=keep,
                      base=info.labels.get(BASE_NAME, "") if IMAGE_LABEL in info.labels else "",
                      changed=[(canonicalize_name(d), f, how) for d, f, how in data["changed"]],
                      prefix=data.get("prefix", ""),
                      installers={canonicalize_name(k): v for k, v in data.get("installers", {}).items()},
                      conda=data.get("conda", {}), blas=data.get("blas"), executable=data.get("executable", ""),
                      glibc=data.get("glibc", ""),
                      folders=[tuple(f) for f in data.get("folders", [])],
                      relocated=[(canonicalize_name(d), f, old) for d, f, old in data.get("relocated", [])])


def installed_files(engine: Engine, ref: str, names: list[str]) -> list[str]:
    """Every path (absolute) the distributions ``names`` installed in ``ref``: their RECORD's files, their
    dist-info folders, and conda's record of each with its files."""
    out = _run(engine, ref, engine.image(ref), "--files", *names)
    line = next(x for x in reversed(out.strip().splitlines()) if x.startswith('{"files"'))
    return sorted({p for listed in json.loads(line)["files"].values() for p in listed})


def _ask(engine: Engine, ref: str, info) -> str:
    """The JSON line in_image/image_facts.py prints in a container of ``ref``."""
    out = _run(engine, ref, info)
    line = next((x for x in reversed(out.strip().splitlines()) if x.startswith('{"python"')), "")
    if not line:
        raise PreconditionError(inimage.ran_nothing(ref, info.config, out),
                                hint="pass an image whose entrypoint runs the command it is given (as `exec \"$@\"`)")
    return line


def _run(engine: Engine, ref: str, info, *args: str) -> str:
    """The output of in_image/image_facts.py ``args`` in a container of ``ref``."""
    where = f"{inimage.IN}/{FACTS.name}"
    try:
        return containers.run(engine, ref, inimage.python(where, *args), inputs={where: FACTS})
    except ToolError as e:  # the image's entrypoint (or its Python) failed: the image's fault, said as such
        entry = " ".join(info.config.get("Entrypoint") or [])
        raise PreconditionError(f"the image {ref} could not be asked what it holds"
                                f"{' through its entrypoint (' + entry + ')' if entry else ''}: "
                                f"{proc.reason(e.output) or 'it printed nothing'}",
                                hint="pass an image whose entrypoint runs the command it is given, with Python 3 "
                                     "on PATH") from None

"""An image from its parent and layer tars (layers.py), loaded into the engine with ``docker load``.

The config is the parent's with the new diff ids appended and fixed times, so the same parent and
layers give the same image id. ``docker load`` is sent only the tars above what an earlier image of
the same name (or of its lineage) already holds: a bump loads from the changed layer up.
"""
from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from imagekit import digests, tars
from imagekit.engine import Engine, ImageInfo
from imagekit.errors import EngineError
from imagekit.layers import Layer
from imagekit.tars import VENV

CREATED = "1980-01-01T00:00:00Z"
CHUNK = 1 << 20  # bytes per write to the engine
ENV = {"VIRTUAL_ENV": VENV, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def assemble(engine: Engine, parent: str, layers: Sequence[Layer], ref: str, *, labels: dict[str, str],
             venv: bool = True, kin: Sequence[str] = ()) -> str:
    """Load ``parent`` + ``layers`` as ``ref`` into the engine; return the image id. The config is the
    parent's with the venv on PATH (``venv``; a vendor's environment stays as it is) and ``labels`` merged.
    Images labelled as this one, or with a label of ``kin`` ("key=value"), may hold its lower layers."""
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
    diff_ids = image["rootfs"]["diff_ids"]
    held = _held(engine, diff_ids, ["=".join(l) for l in labels.items()] + list(kin))
    try:
        _load(engine, raw, ref, diff_ids, layers, held)
    except EngineError:
        if held <= len(info.layers):
            raise
        _load(engine, raw, ref, diff_ids, layers, len(info.layers))  # an image that held some went meanwhile
    loaded = engine.image(ref)
    if loaded is None or loaded.id != image_id:
        raise EngineError(f"docker load of {ref} gave {loaded and loaded.id}, expected {image_id}")
    return image_id


def _held(engine: Engine, diff_ids: Sequence[str], labels: Sequence[str]) -> int:
    """How many of ``diff_ids``, bottom first, an image in the engine with one of ``labels`` holds."""
    def common(other: Sequence[str]) -> int:
        return next((n for n, (a, b) in enumerate(zip(other, diff_ids)) if a != b), min(len(other), len(diff_ids)))
    return max((common(i.layers) for i in engine.labelled(*labels)), default=0)


def _load(engine: Engine, raw: bytes, ref: str, diff_ids: Sequence[str], layers: Sequence[Layer], held: int) -> None:
    """``docker load`` the image config ``raw`` as ``ref``: the tars of its layers above the first ``held``,
    which the engine takes from its own store, never reading their tars (moby's tarexport ``Load``). The
    archive is streamed to the engine as it is written (a thread and a pipe), never written out whole."""
    image_id = digests.oci(raw)
    sent = layers[max(held - (len(diff_ids) - len(layers)), 0):]
    manifest = [{"Config": f"{image_id[7:]}.json", "RepoTags": [ref], "Layers": [f"{d[7:]}/layer.tar" for d in diff_ids]}]

    def archive(out) -> None:
        with out, tarfile.open(fileobj=out, mode="w|") as tar:
            tars.add(tar, f"{image_id[7:]}.json", raw)
            for layer in sent:
                tar.add(str(layer.path), arcname=f"{layer.diff_id[7:]}/layer.tar")
            tars.add(tar, "manifest.json", json.dumps(manifest).encode())

    read, write = os.pipe()
    with ThreadPoolExecutor(1) as pool, open(read, "rb") as source:
        writing = pool.submit(archive, open(write, "wb"))
        try:
            engine.load(iter(lambda: source.read(CHUNK), b""))
        except EngineError:
            source.close()  # a writer still writing stops (broken pipe); its own failure is the cause
            if (cause := writing.exception()) and not isinstance(cause, BrokenPipeError):
                raise cause from None
            raise
        writing.result()


def layer_description(layer: Layer) -> str:
    what = ", ".join(layer.packages[:6]) + (f" and {len(layer.packages) - 6} more" if len(layer.packages) > 6 else "")
    return f"{VENV} {layer.group}" + (f": {what}" if what else "")

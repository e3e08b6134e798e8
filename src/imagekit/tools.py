"""The uv that installs the layers and checks the images, kept in a volume of the engine.

uv is a 38 MB binary: copied into each install and check container it cost about 0.6 s of each. It is
put once per engine into a volume named after its version and size, and mounted read-only instead (a
volume, not a host folder: the engine may be remote). The volume is filled through a container that is
never started: uv under a name of its own first, then the link ``uv`` to it, so a volume that has ``uv``
has all of it, also when a fill was interrupted or two ran at once.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from imagekit import containers
from imagekit.engine import Engine
from imagekit.errors import EngineError, ToolError

MOUNT = "/opt/imagekit-tools"
UV = f"{MOUNT}/uv"  # where a container that mounts the volume finds uv
_held: set[str] = set()  # the volumes this process found filled or filled
_filling = threading.Lock()
T = TypeVar("T")


def binary() -> Path:
    """The uv that installs the layers and checks the images (the one imagekit depends on)."""
    from uv import find_uv_bin
    return Path(find_uv_bin())


@functools.cache
def volume_name() -> str:
    return f"imagekit-uv-{importlib.metadata.version('uv')}-{binary().stat().st_size}"


def uv(engine: Engine, image: str) -> list[str]:
    """The volume holding uv, as a container mounts it (docker-py's "volume:path:ro"), filled first unless this
    process saw it filled (``image``: any image of the engine, for the container it is filled through)."""
    name = volume_name()
    with _filling:
        if name not in _held:
            fill(engine, image, name)
            _held.add(name)
    return [f"{name}:{MOUNT}:ro"]


def using(engine: Engine, image: str, work: Callable[[list[str]], T]) -> T:
    """``work(volumes)``, once more after filling the volume again if it lost uv meanwhile: another user of
    the engine pruned it (a shared CI runner), and the engine made it again, empty, for the container."""
    try:
        return work(uv(engine, image))
    except (EngineError, ToolError) as e:
        if f"{UV}: no such file" not in str(e).lower():
            raise
    with _filling:
        _held.discard(volume_name())
    return work(uv(engine, image))


def fill(engine: Engine, image: str, name: str) -> bool:
    """Put uv into the volume ``name`` unless it holds it (created if there is none): whether it was put."""
    with containers.Run(engine, "tools", network=False) as run:
        c = run.create(containers.Container(image, ["true"], entrypoint=[], network_mode="none",
                                            volumes=[f"{name}:{MOUNT}:rw"]))
        with contextlib.suppress(EngineError):
            c.read(UV)
            return False  # it is there: the link is made last
        with tempfile.TemporaryDirectory(prefix="imagekit-tools-") as tmp:
            own = f".uv-{secrets.token_hex(4)}"
            shutil.copy2(binary(), Path(tmp) / own)
            os.symlink(own, Path(tmp) / "uv")  # after it in the archive: '.' sorts before 'u'
            c.put(MOUNT, Path(tmp))
    return True

"""Reproducible tars for image layers: sorted entries, fixed times, no pax time fields, the same tree
giving the same bytes; owned as imagekit's venv is (root, canonical modes) or as the vendor's prefix
they go into is (``Prefix``); whiteouts for what a layer removes from the layers below. Standard library
only: the install container runs it too, with the image's Python (in_image/make_layers.py)."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MTIME = 315532800  # 1980-01-01T00:00:00Z: fixed file times (zip-safe), the same for every build
VENV = "/opt/venv"


@dataclass(frozen=True)
class Prefix:
    """Where the layers go: imagekit's venv (made by the OS image chain's first image, then on PATH as
    VIRTUAL_ENV), or a vendor image's own prefix, whose folders keep their owner and mode."""
    path: str = VENV
    python: str = f"{VENV}/bin/python"
    venv: bool = True
    folders: tuple[tuple[str, int, int, int], ...] = ()  # vendor: the prefix and above, (path, mode, uid, gid)

    def key(self) -> str:
        return f"{self.path} {self.python} {self.venv} {self.folders}"

    def folder(self, name: str) -> tuple[int, int, int]:
        """(mode, uid, gid) of ``name`` ("a/b", no leading slash) in the layer."""
        for path, mode, uid, gid in self.folders:
            if path.strip("/") == name:
                return mode, uid, gid
        return (self.folders[-1][1], self.folders[-1][2], self.folders[-1][3]) if self.folders else (0o755, 0, 0)

    def file(self, executable: bool) -> tuple[int, int, int]:
        mode, uid, gid = self.folder(self.path.strip("/"))
        return (0o755 if executable else 0o644) | (mode & 0o020), uid, gid  # group-writable where the prefix is


def write_tar(f, tree: Path | None, prefix: str, *, mtime: int = MTIME, owners: Prefix | None = None,
              whiteouts: Sequence[str] = ()) -> None:
    """A tar of ``tree`` as ``prefix/...``: sorted entries, fixed times, owner root (0:0), no pax
    time fields, the parent folders of ``prefix`` included, modes canonical (folders and
    executables 0755, other files 0644: whatever umask made the tree). The same tree gives the same
    bytes. ``owners`` (a vendor's prefix): folders and files take the owner and mode its folders have.
    ``whiteouts``: paths (absolute) this layer removes from the layers below (OCI whiteout files)."""
    entries: dict[str, Path | None] = {}
    for dirpath, dirnames, filenames in os.walk(tree) if tree else ():
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            entries[f"{prefix}/{full.relative_to(tree).as_posix()}"] = full
    for path in whiteouts:
        folder, _, name = path.strip("/").rpartition("/")
        entries[f"{folder}/.wh.{name}"] = None
        for n in range(1, folder.count("/") + 2):
            entries.setdefault("/".join(folder.split("/")[:n]), Path("/"))  # a folder on the way
    parents = {"/".join(prefix.split("/")[:n]): Path("/") for n in range(1, prefix.count("/") + 2)} if tree else {}
    with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, full in sorted({**entries, **parents}.items()):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
            if full is None:  # a whiteout: an empty file
                tar.addfile(info)
                continue
            st = full.lstat()
            if full.is_dir() and not full.is_symlink():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                if owners:
                    info.mode, info.uid, info.gid = owners.folder(name)
                tar.addfile(info)
            elif full.is_symlink():
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(full), 0o777
                if owners:
                    info.uid, info.gid = owners.file(False)[1:]
                tar.addfile(info)
            else:
                info.size, info.mode = st.st_size, 0o755 if st.st_mode & 0o100 else 0o644
                if owners:
                    info.mode, info.uid, info.gid = owners.file(bool(st.st_mode & 0o100))
                with open(full, "rb") as data:
                    tar.addfile(info, data)


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), MTIME
    tar.addfile(info, io.BytesIO(data))


class Hashing:
    """A binary file written through, its sha256 and size kept as the bytes go by (a layer's diff id)."""

    def __init__(self, f) -> None:
        self.f, self.sha256, self.size = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.size

    def digest(self) -> str:
        return "sha256:" + self.sha256.hexdigest()


class Chunks(io.RawIOBase):
    """An iterator of byte chunks (a container's archive) read as a file."""

    def __init__(self, chunks) -> None:
        self.chunks, self.rest = iter(chunks), memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.rest:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.rest = memoryview(chunk)
        n = min(len(buffer), len(self.rest))
        buffer[:n], self.rest = self.rest[:n], self.rest[n:]
        return n

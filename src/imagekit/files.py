"""The one way imagekit replaces a file: written aside under a name of its own in the same folder,
then renamed over it, so a reader (or another build running at once) sees the old file or the new
one, never half of one."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def writing(path: Path, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; it replaces ``path`` when the block ends
    (and is dropped when it fails). ``mode``: default the old file's, else 0644."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(path: Path, data: str | bytes, *, mode: int | None = None) -> Path:
    """Replace ``path`` whole with ``data``."""
    with writing(path, mode=mode) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)

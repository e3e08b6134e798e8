"""sha256 in the two spellings imagekit uses: bare hex (locks, wheels) and OCI's ``sha256:<hex>``."""
from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_hex(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def oci(data: bytes) -> str:
    """The OCI digest of ``data``: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_file(path: Path) -> str:
    """The OCI digest of a file's bytes."""
    return "sha256:" + sha256_file(path)


def hex_of(digest: str) -> str:
    """The hex part of ``sha256:<hex>`` (or of bare hex)."""
    return digest.removeprefix("sha256:")

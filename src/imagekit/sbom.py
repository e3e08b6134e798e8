"""An image's software bill of materials (``out/<image>.cdx.json``): CycloneDX 1.5, every package installed
in the image with its wheel's sha256."""
from __future__ import annotations

from pathlib import Path

from imagekit.lock import Pin


def cyclonedx(repository: str, version: str, pins: list[Pin], wheels: dict[str, Path]) -> dict:
    """The document of image ``repository:version`` holding ``pins``, installed from ``wheels`` (name ->
    the cached wheel, in a folder named by its sha256)."""
    return {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
            "metadata": {"component": {"type": "container", "name": repository, "version": version}},
            "components": [{"type": "library", "name": p.name, "version": p.version,
                            "purl": f"pkg:pypi/{p.name}@{p.version}",
                            "properties": [{"name": "imagekit:wheel", "value": wheels[p.name].name}],
                            "hashes": [{"alg": "SHA-256", "content": wheels[p.name].parent.name}]}
                           for p in pins]}

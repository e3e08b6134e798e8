"""Images as data: the hierarchy described in imagekit.toml, and what follows from it."""
from __future__ import annotations

from collections.abc import Sequence

from imagekit.config import ImageSpec
from imagekit.errors import ConfigError


def build_order(images: Sequence[ImageSpec], *, source: str = "imagekit.toml") -> list[ImageSpec]:
    """Parents before children; raise ConfigError on an unknown parent or a cycle."""
    by_name = {i.name: i for i in images}
    order: list[ImageSpec] = []
    state: dict[str, str] = {}

    def visit(img: ImageSpec, path: tuple[str, ...]) -> None:
        if state.get(img.name) == "done":
            return
        if state.get(img.name) == "visiting":
            raise ConfigError(f"images form a cycle: {' -> '.join((*path, img.name))}",
                              key=f"images.{img.name}.parent", source=source)
        state[img.name] = "visiting"
        if img.parent is not None:
            if img.parent not in by_name:
                raise ConfigError(f"parent '{img.parent}' is not an image in this file",
                                  key=f"images.{img.name}.parent", source=source,
                                  hint="leave parent out to build on the OS base image")
            visit(by_name[img.parent], (*path, img.name))
        state[img.name] = "done"
        order.append(img)

    for img in images:
        visit(img, ())
    return order


def lineage(images: Sequence[ImageSpec], name: str) -> list[ImageSpec]:
    """The image and its ancestors, the image first."""
    by_name = {i.name: i for i in images}
    chain = [by_name[name]]
    while chain[-1].parent is not None:
        chain.append(by_name[chain[-1].parent])
    return chain


def leaves(images: Sequence[ImageSpec]) -> list[ImageSpec]:
    """Images no other image builds on: the ones users run."""
    parents = {i.parent for i in images}
    return [i for i in build_order(images) if i.name not in parents]

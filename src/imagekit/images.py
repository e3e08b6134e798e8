"""Images and environments as data (imagekit.toml's [[images]] and [[environments]]), and what
follows from the hierarchy: build order, lineage, leaves."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imagekit.errors import ConfigError

IMAGE_LABEL = "org.imagekit.image"  # which image of imagekit.toml an image is
BASE_NAME, BASE_DIGEST = "org.opencontainers.image.base.name", "org.opencontainers.image.base.digest"  # OCI's


@dataclass(frozen=True)
class ImageSpec:
    name: str
    repository: str
    context: Path  # Dockerfile (optional) and files; requirements.in by default
    requirements: Path
    parent: str | None = None  # another image's name, whose lock view it inherits (and, without base, its FROM)
    tags: tuple[str, ...] = ()
    shared: bool = True  # False: resolved on its own (lockfiles/<name>.txt), never pushed
    base: str = ""  # a vendor image (REF) it is built FROM, its views laid into the vendor's prefix; "": parent/OS

    @property
    def dockerfile(self) -> Path | None:
        """The Dockerfile that adds what is not Python (users, files, entrypoint), if any."""
        path = self.context / "Dockerfile"
        return path if path.is_file() else None


@dataclass(frozen=True)
class Environment:
    name: str
    project: str
    immutable: bool = False
    registry: str = ""  # another registry for this environment; "" = registry.url
    namespace: str = ""  # the Kubernetes namespace its manifests name; "" = project
    redis: str = ""  # the Redis of its RayCluster's GCS fault tolerance; "" = redis.<namespace>.svc:6379
    redis_secret: str = "ray-redis"  # the Secret holding that Redis's password (key `password`)
    manifests: str = ""  # its folder in the GitOps repository: promote rewrites the image references there

    @property
    def k8s_namespace(self) -> str:
        return self.namespace or self.project

    @property
    def variable_prefix(self) -> str:
        """IMAGEKIT_ENV_<NAME>_: this environment's own credentials (USERNAME, PASSWORD)."""
        return "IMAGEKIT_ENV_" + "".join(c if c.isalnum() else "_" for c in self.name.upper()) + "_"


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
                                  hint="leave parent out to build on the OS image")
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

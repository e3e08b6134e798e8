"""What a build reports of the images it built: the layers each pair of leaf images shares."""
from pathlib import Path
from types import SimpleNamespace

import pytest

from imagekit import build
from imagekit.engine import ImageInfo
from imagekit.errors import EngineError
from imagekit.images import ImageSpec


def spec(name, parent=None):
    return ImageSpec(name=name, repository=name, context=Path(name), requirements=Path(name), parent=parent)


def built(name, *layers):
    return build.BuiltImage(name=name, repository=name, image_id=f"id-{name}", content="", tags=[], size=0,
                            cached=False, seconds=0, sbom="", layers=[{"group": g, "diff_id": d, "size": size,
                                                                        "packages": []} for g, d, size in layers])


def info(*layers, size=0):
    return ImageInfo(id="x", labels={}, size=size, layers=layers, repo_digests=(), architecture="amd64")


class Engine:
    def __init__(self, images):
        self.images = images

    def image(self, ref):
        return self.images.get(ref)


def test_leaf_images_share_the_os_and_their_parents_layers_and_one_without_them_is_an_error():
    cfg = SimpleNamespace(images=[spec("base"), spec("ray", "base"), spec("notebook", "base")])
    images = {"base": built("base", ("venv", "v", 10), ("numpy", "n", 100), ("small-0", "s", 5)),
              "ray": built("ray", ("ray", "r", 50)), "notebook": built("notebook", ("lab", "l", 70))}
    engine = Engine({"os": info("o", size=1000), "id-ray": info("o", "v", "n", "r", "s"),
                     "id-notebook": info("o", "v", "n", "l", "s")})
    assert build.shared_bytes(cfg, engine, images, "os") == {"ray+notebook": 1000 + 10 + 100 + 5}
    engine.images["id-notebook"] = info("o", "v", "n", "l")  # base's small-package layer is not in it
    with pytest.raises(EngineError, match="ray and notebook do not share the Python layers of base"):
        build.shared_bytes(cfg, engine, images, "os")

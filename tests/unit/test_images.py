from pathlib import Path

from imagekit.images import ImageSpec
from imagekit.images import build_order, leaves, lineage


def spec(name, parent=None):
    return ImageSpec(name=name, repository=name, context=Path(name), requirements=Path(name), parent=parent)


IMAGES = [spec("ray", "base"), spec("notebook", "base"), spec("base"), spec("gpu", "ray")]


def test_build_order_puts_parents_first():
    order = [i.name for i in build_order(IMAGES)]
    assert order.index("base") < order.index("ray") < order.index("gpu")
    assert order.index("base") < order.index("notebook")
    assert sorted(order) == sorted(i.name for i in IMAGES)


def test_lineage_and_leaves():
    assert [i.name for i in lineage(IMAGES, "gpu")] == ["gpu", "ray", "base"]
    assert {i.name for i in leaves(IMAGES)} == {"notebook", "gpu"}

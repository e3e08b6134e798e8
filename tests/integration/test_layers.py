"""Python layers on the real engine: the same lock gives the same layers, from empty caches too;
a bump replaces the layer of the bumped package only; a child's layers survive a change of parent;
a load is sent only the layers the engine does not hold."""
import os

import pytest
from helpers import write_project

from imagekit import assembly, build, config, layers, lock, tars

LAYERED = """
[project]
org = "test"
version = 1
[build]
layer_alone_mb = 1
layer_buckets = 3
[[environments]]
name = "desa"
project = "mlops-desa"
[[images]]
name = "layered-root"
tags = ["v{version}"]
[[images]]
name = "layered-leaf"
parent = "layered-root"
tags = ["v{version}"]
"""
NAMES = ("layered-root", "layered-leaf")


@pytest.fixture
def layered(tmp_path, index, engine):
    path = write_project(tmp_path / "project", LAYERED,
                         {"layered-root": "learn\nsoupy\n", "layered-leaf": "extra-tool\nheavy\n"})

    def load(cache: str = "cache"):
        return config.load(path, env={"IMAGEKIT_LOCK_INDEX_URL": index, "IMAGEKIT_CACHE_DIR": str(tmp_path / cache)})
    lock.lock(load())
    yield load
    forget(engine)


def forget(engine):
    """Remove every image this test built, so that the next build starts from nothing."""
    for image in engine.client.images.list():
        for tag in image.tags:
            if tag.split(":")[0].rsplit("/", 1)[-1].startswith(NAMES):  # the image, its Python image, its steps
                engine.client.images.remove(tag, force=True)


def python_layers(result):
    return {img.name: {l["group"]: l["diff_id"] for l in img.layers} for img in result.images}


def python_image_ids(engine, result):
    """The ids of the images imagekit assembled (parent + Python layers, config with fixed times)."""
    return {img.name: engine.image(build.INTERNAL.format(name=f"{img.name}-python", key=img.content[:12])).id
            for img in result.images}


def test_the_same_lock_built_twice_from_empty_caches_gives_the_same_layers(layered, engine):
    first = build.build(layered("cache-1"), engine)
    ids = python_image_ids(engine, first)
    forget(engine)
    second = build.build(layered("cache-2"), engine)  # no wheel, no layer, no image left from the first
    assert not any(i.cached for i in second.images)
    assert python_layers(first) == python_layers(second)
    assert set(python_layers(first)["layered-root"]) >= {"venv"} and len(python_layers(first)["layered-leaf"]) >= 1
    # the images of their Python layers (each on the OS image) are the same images, config and all
    assert python_image_ids(engine, second) == ids


def test_a_bump_replaces_one_layer_and_the_child_keeps_its_own(layered, engine):
    before = build.build(layered(), engine)
    root = layered().image("layered-root")
    root.requirements.write_text("learn<1.7\nsoupy\n")  # learn 1.7.0 -> 1.6.1
    lock.lock(layered())
    after = build.build(layered(), engine)
    old, new = python_layers(before), python_layers(after)
    changed = {g for g in new["layered-root"] if new["layered-root"][g] != old["layered-root"].get(g)}
    bumped = next(l for l in after.image("layered-root").layers if "learn==1.6.1" in l["packages"])
    assert changed == {bumped["group"]}  # only the layer holding learn
    assert new["layered-leaf"] == old["layered-leaf"]  # the child's own layers, although its parent changed
    assert after.image("layered-leaf").image_id != before.image("layered-leaf").image_id
    # the leaf's large layer (heavy) is below its lineage's small-package layers: the engine keeps it, and
    # every layer below the bumped one, and extracts only from there up
    leaf_before, leaf_after = (engine.image(r.image("layered-leaf").image_id).layers for r in (before, after))
    heavy, at = leaf_before.index(old["layered-leaf"]["heavy"]), leaf_before.index(old["layered-root"][bumped["group"]])
    assert heavy < at and leaf_after[:at] == leaf_before[:at] and leaf_after[at] == new["layered-root"][bumped["group"]]


def test_a_load_is_sent_only_the_layers_above_what_an_image_of_the_same_name_holds(engine, base_image, tmp_path):
    def layer(name, text):
        (tmp_path / name / "pkg").mkdir(parents=True)
        (tmp_path / name / "pkg" / f"{name}.txt").write_text(text)
        return layers._record(tmp_path, layers.Group(name, ()), name,
                              [], lambda f: tars.write_tar(f, tmp_path / name, "opt/held"))
    label, other = (f"org.imagekit.test.held={os.urandom(4).hex()}", "org.imagekit.test.held=nobody")
    low, top, new_top = layer("low", "1"), layer("top", "2"), layer("new-top", "3")
    refs = [f"imagekit-test/held:{n}" for n in ("first", "second", "other")]
    try:
        assembly.assemble(engine, base_image, [low, top], refs[0], labels=dict([label.split("=")]))
        (tmp_path / "low.tar").unlink()  # were it sent, it would be read
        second = assembly.assemble(engine, base_image, [low, new_top], refs[1], labels=dict([label.split("=")]))
        assert engine.image(second).layers[-2:] == (low.diff_id, new_top.diff_id)
        with pytest.raises(FileNotFoundError, match="low.tar"):  # the test can fail: nothing so labelled holds it
            assembly.assemble(engine, base_image, [low, new_top], refs[2], labels=dict([other.split("=")]))
        assembly.assemble(engine, base_image, [low, new_top], refs[2], labels=dict([other.split("=")]),
                          kin=[label])  # its kin's label: held by one of them
    finally:
        for ref in refs:
            if engine.image(ref):
                engine.client.images.remove(ref, force=True)

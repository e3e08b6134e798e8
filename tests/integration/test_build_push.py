"""Building hermetically and pushing to a real registry (a docker-registry process of the test's own)."""
import shutil

import pytest
from helpers import ROOT, write_project

from imagekit import build, config, lock, push
from imagekit.errors import CheckFailed, EngineError, RegistryError
from imagekit.registry import Registry

TINY = """
[project]
org = "test"
version = 1
[[environments]]
name = "desa"
project = "mlops-desa"
[[images]]
name = "tiny"
tags = ["v{version}-{org}"]
"""


@pytest.fixture
def tiny(tmp_path, index, registry_process):
    """A one-image project on the real base image, resolved from the loopback index."""
    path = write_project(tmp_path / "project", TINY, {"tiny": "soupy\n"})
    shutil.copytree(ROOT / "images" / "base", tmp_path / "project" / "images" / "tiny", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("requirements.in"))

    def load(**env):
        return config.load(path, env={"IMAGEKIT_LOCK_INDEX_URL": index, "IMAGEKIT_REGISTRY_URL": registry_process.host,
                                      **env})
    lock.lock(load())
    return load


def test_push_puts_every_image_with_its_tags_and_labels_and_twice_is_a_noop(cfg, engine, built, registry_process):
    cfg = config.load(cfg.source, env={"IMAGEKIT_REGISTRY_URL": registry_process.host})
    first = push.push(cfg, engine)
    reg = Registry.from_config(cfg)
    for img, pushed in zip(built.images, first.images):
        repo = f"mlops-desa/{img.repository}"
        assert reg.tags(repo) == sorted(img.tags)
        labels = reg.config(repo, reg.manifest(repo, img.tags[0]))["config"]["Labels"]
        assert labels["org.imagekit.lock.sha256"] == built.lock and labels[build.CONTENT_LABEL] == img.content
        assert labels["org.opencontainers.image.version"] == img.tags[0]
    assert {i.repository.rsplit("/", 1)[1] for i in first.images} >= {"ray", "scipy-notebook"}
    assert [i.digest for i in push.push(cfg, engine).images] == [i.digest for i in first.images]


def test_an_interrupted_push_completes_when_run_again_and_no_tag_names_a_half_image(cfg, engine, built,
                                                                                   registry_process):
    cfg = config.load(cfg.source, env={"IMAGEKIT_REGISTRY_URL": registry_process.host})

    def stop_midway(line):
        if "Pushing" in line and registry_process.proc:
            registry_process.stop()

    with pytest.raises((EngineError, RegistryError)):
        push.push(cfg, engine, on_line=stop_midway)
    registry_process.start()
    reg = Registry.from_config(cfg)
    assert all(reg.manifest(f"mlops-desa/{i.repository}", t) is None for i in built.images for t in i.tags)
    result = push.push(cfg, engine)
    for img, pushed in zip(built.images, result.images):
        assert reg.manifest(f"mlops-desa/{img.repository}", img.tags[0]).digest == pushed.digest


def test_a_version_tag_is_never_reused_for_other_content(tiny, engine):
    build.build(tiny(), engine)
    first = push.push(tiny(), engine)
    dockerfile = tiny().image("tiny").context / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "LABEL changed=yes\n")
    build.build(tiny(), engine)
    with pytest.raises(CheckFailed, match="(?s)nothing was pushed.*v1-test already names"):
        push.push(tiny(), engine)
    reg = Registry.from_config(tiny())
    assert reg.manifest("mlops-desa/tiny", "v1-test").digest == first.images[0].digest  # no tag moved
    build.build(tiny(IMAGEKIT_PROJECT_VERSION="2"), engine)
    assert push.push(tiny(IMAGEKIT_PROJECT_VERSION="2"), engine).images[0].tags[0] == "v2-test"


def test_the_classic_builder_builds_the_same_dockerfile(tiny, engine):
    result = build.build(tiny(), engine, builder="classic")
    out = engine.run(result.images[0].image_id, ["bash", "-c", "python -c \"import importlib.metadata as m; "
                                                 "print('soupy==' + m.version('soupy'))\"; ls /wheels 2>&1; true"])
    assert "soupy==1.0" in out and "No such file" in out


ONLY_LOOPBACK = '[ "$(ls /sys/class/net)" = "lo" ] || { echo "network interfaces: $(ls /sys/class/net)"; exit 1; }'


def test_the_build_has_no_network(tiny, engine, base_image):
    dockerfile = tiny().image("tiny").context / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f"RUN {ONLY_LOOPBACK}\n")
    for builder in ("buildkit", "classic"):
        build.build(tiny(), engine, builder=builder)  # the step sees no interface but lo
    with pytest.raises(EngineError, match="network interfaces: eth0"):  # and the check can fail
        engine.run(base_image, ["bash", "-c", ONLY_LOOPBACK], network=True)


def test_a_version_bump_relabels_without_rebuilding_layers(tiny, engine):
    first = build.build(tiny(), engine).images[0]
    bumped = build.build(tiny(IMAGEKIT_PROJECT_VERSION="3"), engine).images[0]
    labels = engine.image(bumped.image_id).labels
    assert labels["org.opencontainers.image.version"] == "v3-test" == bumped.tags[0]
    assert engine.image(bumped.image_id).layers == engine.image(first.image_id).layers

"""Building hermetically and pushing to a real registry (a docker-registry process of the test's own)."""
import json
import os
import re
import shutil
import subprocess
import threading

import pytest
from helpers import ROOT, write_project
from support import RegistryFront, RegistryProcess, immutable_tags, remove_built

from imagekit import build, config, containers, lock, push
from imagekit.errors import CheckFailed, EngineError, ToolError
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
def tiny(tmp_path, index, registry_process, engine):
    """A one-image project on the real base image, resolved from the loopback index; what it built is
    removed at the end."""
    path = write_project(tmp_path / "project", TINY, {"tiny": "soupy\n"})
    shutil.copytree(ROOT / "images" / "base", tmp_path / "project" / "images" / "tiny", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("requirements.in"))

    def load(**env):
        return config.load(path, env={"IMAGEKIT_LOCK_INDEX_URL": index, "IMAGEKIT_REGISTRY_URL": registry_process.host,
                                      **env})
    lock.lock(load())
    yield load
    remove_built(engine, path.parent)


def git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_push_puts_every_image_with_its_tags_and_labels_and_twice_is_a_noop(own_projects, engine, built):
    cfg, lines = own_projects, []
    first = {i.name: i for i in push.push(cfg, engine, on_line=lines.append).images}
    assert set(first) == {"base", "ray", "notebook"}  # every shared image, not the s3 stand-in
    rev = git("rev-parse", "--short=12", "HEAD") + ("-dirty" if git("status", "--porcelain", "--", "images",
                                                                     "lockfiles") else "")
    lock_tag = "lock-" + lock.shared_lock(cfg).digest[:12]
    v = cfg.project.version  # the release: bumped in imagekit.toml
    assert first["ray"].tags == [f"2.41.0-py311-sunat-v{v}", lock_tag, f"git-{rev}"]
    assert first["notebook"].tags == [f"python-3.11-sunat-v{v}", lock_tag, f"git-{rev}"]
    assert first["base"].tags == [f"py311-sunat-v{v}", lock_tag, f"git-{rev}"]
    reg = Registry.from_config(cfg)
    for img in built.images:
        if img.name not in first:
            continue
        repo = f"{cfg.first_project}/{img.repository}"
        assert reg.tags(repo) == sorted(first[img.name].tags)
        labels = reg.config(repo, reg.manifest(repo, img.tags[0]))["config"]["Labels"]
        assert labels[build.IMAGE_LABEL] == img.name and labels[build.CONTENT_LABEL] == img.content
        assert labels["org.opencontainers.image.version"] == img.tags[0]
    lines.clear()
    again = push.push(cfg, engine, on_line=lines.append).images
    assert {i.name: i.digest for i in again} == {n: i.digest for n, i in first.items()}
    assert all(i.unchanged for i in again) and not [line for line in lines if "Pushed" in line]  # nothing sent
    assert sorted(line.split(":")[0] for line in lines if "unchanged" in line) == ["base", "notebook", "ray"]


def test_a_second_build_of_the_same_inputs_reports_every_image_cached(cfg, engine, built):
    again = build.build(cfg, engine)
    assert {i.name: i.cached for i in again.images} == {i.name: True for i in built.images}
    assert {i.name: i.image_id for i in again.images} == {i.name: i.image_id for i in built.images}


def test_an_interrupted_push_completes_when_run_again_and_no_tag_names_a_half_image(tiny, engine, registry_process):
    """Cut short while its first layer is on the way (Ctrl-C, a cancelled CI job: the engine stops when its
    client goes), a push leaves a half upload and no tag; run again, it completes."""
    built = build.build(tiny(), engine).images[0]

    def stop_midway(line):
        if "Pushing" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        push.push(tiny(), engine, on_line=stop_midway)
    reg = Registry.from_config(tiny())
    assert list((registry_process.root / "data").glob("**/repositories/mlops-desa/tiny/_uploads/*"))  # cut midway
    assert all(reg.manifest("mlops-desa/tiny", t) is None for t in built.tags)
    [again] = push.push(tiny(), engine).images
    assert not again.unchanged and all(reg.manifest("mlops-desa/tiny", t).digest == again.digest for t in built.tags)


def test_an_image_another_registry_holds_is_copied_from_there_unless_its_layers_there_are_corrupt(
        tiny, engine, registry_process, tmp_path):
    """Pushed once (the engine compresses its layers), then to another registry: its layers are copied as the
    first one stores them, to the same digest, and the engine knows the image there. A layer corrupted in the
    registry that holds it is refused by the one it is copied to: nothing is tagged, and the engine pushes."""
    built = build.build(tiny(), engine).images[0]
    first = push.push(tiny(), engine).images[0]
    others = [RegistryProcess(tmp_path / name).start() for name in ("second", "third")]
    try:
        lines = []
        [copied] = push.push(tiny(IMAGEKIT_REGISTRY_URL=others[0].host), engine, on_line=lines.append).images
        assert copied.copied_from == f"{registry_process.host}/mlops-desa/tiny" and copied.digest == first.digest
        reg = Registry.from_config(tiny(IMAGEKIT_REGISTRY_URL=others[0].host))
        assert all(reg.manifest("mlops-desa/tiny", t).digest == first.digest for t in built.tags)
        assert f"{others[0].host}/mlops-desa/tiny@{first.digest}" in engine.image(built.image_id).repo_digests
        assert any("not compressed again" in line for line in lines) and not any("Pushing" in line for line in lines)
        others[0].stop()  # gone: only the first registry holds it
        layer = max((registry_process.root / "data").glob("docker/registry/v2/blobs/sha256/*/*/data"),
                    key=lambda f: f.stat().st_size)
        layer.write_bytes(layer.read_bytes()[:-1] + b"\0")  # the largest layer, its last byte changed
        lines.clear()

        def at_the_engines_push(line):  # what it does then is the engine's push, tested above
            lines.append(line)
            if ": pushing " in line:
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            push.push(tiny(IMAGEKIT_REGISTRY_URL=others[1].host), engine, on_line=at_the_engines_push)
        assert lines == [f"tiny: pushing {', '.join(built.tags)} to {others[1].host}/mlops-desa/tiny"]
        third = Registry.from_config(tiny(IMAGEKIT_REGISTRY_URL=others[1].host))
        assert all(third.manifest("mlops-desa/tiny", t) is None for t in built.tags)  # nothing copied was tagged
    finally:
        for other in others:
            other.stop()


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


BROKEN = "/opt/venv/lib/python3.11/site-packages/broken-1.0.dist-info"


def test_an_image_that_fails_its_check_is_not_named_and_is_checked_again(tiny, engine):
    dockerfile = tiny().image("tiny").context / "Dockerfile"  # a distribution whose requirement is not installed
    dockerfile.write_text(dockerfile.read_text() + f"RUN mkdir -p {BROKEN} && printf 'Metadata-Version: 2.1\\nName: "
                          f"broken\\nVersion: 1.0\\nRequires-Dist: absent\\n' > {BROKEN}/METADATA\n")
    version = str(900_000 + os.getpid())  # a version of its own: other tests name tiny:v1-test
    for _ in range(2):  # the second build is not "unchanged": the first left no tag a build takes as built
        with pytest.raises(CheckFailed, match="tiny: the installed packages do not fit together") as e:
            build.build(tiny(IMAGEKIT_PROJECT_VERSION=version), engine)
        assert any("`broken` requires `absent`" in d for d in e.value.differences), e.value.differences
        assert engine.image(f"tiny:v{version}-test") is None


def test_the_classic_builder_builds_the_same_dockerfile(tiny, engine):
    result = build.build(tiny(), engine, builder="classic")
    out = containers.run(engine, result.images[0].image_id, ["bash", "-c", "python -c \"import importlib.metadata as m; "
                                                 "print('soupy==' + m.version('soupy'))\"; ls /wheels 2>&1; true"])
    assert "soupy==1.0" in out and "No such file" in out


ONLY_LOOPBACK = '[ "$(ls /sys/class/net)" = "lo" ] || { echo "network interfaces: $(ls /sys/class/net)"; exit 1; }'


def test_the_build_has_no_network(tiny, engine, base_image):
    dockerfile = tiny().image("tiny").context / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f"RUN {ONLY_LOOPBACK}\n")
    for builder in ("buildkit", "classic"):
        build.build(tiny(), engine, builder=builder)  # the step sees no interface but lo
    with pytest.raises(ToolError, match="network interfaces: eth0"):  # and the check can fail
        containers.run(engine, base_image, ["bash", "-c", ONLY_LOOPBACK], network="bridge")


def test_a_version_bump_relabels_without_rebuilding_layers(tiny, engine):
    first = build.build(tiny(), engine).images[0]
    bumped = build.build(tiny(IMAGEKIT_PROJECT_VERSION="3"), engine).images[0]
    labels = engine.image(bumped.image_id).labels
    assert labels["org.opencontainers.image.version"] == "v3-test" == bumped.tags[0]
    assert engine.image(bumped.image_id).layers == engine.image(first.image_id).layers


def test_the_git_tag_names_the_commit_and_a_changed_tree_is_dirty(tiny, engine, tmp_path):
    root = tmp_path / "project"
    run = lambda *a: subprocess.run(["git", "-C", str(root), *a], check=True, capture_output=True,  # noqa: E731
                                    text=True).stdout.strip()
    run("init", "-q")
    run("-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    rev = run("rev-parse", "--short=12", "HEAD")
    assert build.build(tiny(), engine).images[0].tags == ["v1-test", f"lock-{lock.shared_lock(tiny()).digest[:12]}",
                                                        f"git-{rev}"]
    dockerfile = root / "images" / "tiny" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "LABEL edited=yes\n")
    assert build.build(tiny(), engine).images[0].tags[-1] == f"git-{rev}-dirty"


def test_two_cold_builds_at_once_on_one_cache_both_succeed(tiny, engine, tmp_path):
    env = {"IMAGEKIT_CACHE_DIR": str(tmp_path / "shared-cache"), "IMAGEKIT_PROJECT_VERSION": "7"}
    results, errors = [], []

    def one():
        try:
            results.append(build.build(tiny(**env), engine))
        except Exception as e:  # reported below with the other thread's result
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2
    assert results[0].images[0].content == results[1].images[0].content
    assert results[0].images[0].layers == results[1].images[0].layers
    assert build.load_result(tiny(**env)).images[0].content == results[0].images[0].content


def test_a_ci_log_gets_one_timestamped_line_per_step(tiny, cli, monkeypatch, index, registry_process):
    monkeypatch.setenv("IMAGEKIT_LOCK_INDEX_URL", index)
    monkeypatch.setenv("IMAGEKIT_PROJECT_VERSION", "9")
    source = str(tiny().source)
    code, _, err = cli("--config", source, "build")
    steps = err.splitlines()
    assert code == 0 and any(re.fullmatch(r"\d\d:\d\d:\d\d build: tiny: (Python layers|unchanged).*", s) for s in steps)
    assert all(re.match(r"\d\d:\d\d:\d\d build: ", s) for s in steps)  # steps only, no tool output
    code, out, err = cli("--config", source, "--quiet", "build")
    assert code == 0 and err == "" and "tiny" in out
    dockerfile = tiny().image("tiny").context / "Dockerfile"  # a new Dockerfile step: the builder runs
    dockerfile.write_text(dockerfile.read_text() + f"LABEL run={os.urandom(6).hex()}\n")
    code, _, err = cli("--config", source, "--verbose", "build", "--builder", "classic")
    assert code == 0 and "Step 1/" in err  # the builder's own output


def test_a_rebuild_of_the_same_content_keeps_the_version_tags_digest(tiny, engine, tmp_path):
    """A cold rebuild of unchanged inputs gives another image (the builder's times); pushing it moves
    no version tag, writes none (a registry with Harbor's immutability sees no overwrite attempt),
    and the local image becomes the registry's digest."""
    refused = []
    guard = RegistryFront(tiny().registry.url, immutable_tags(tiny().registry.url, refused))
    dockerfile = tiny().image("tiny").context / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "RUN date > /etc/imagekit-built-at\n")  # a layer of its time
    first = build.build(tiny(), engine, builder="classic").images[0]  # its cache goes with the image
    pushed = push.push(tiny(), engine).images[0]
    for ref in [*engine.image(first.image_id).repo_digests, *(f"{first.repository}:{t}" for t in first.tags)]:
        engine.client.images.remove(ref, force=True)
    engine.client.images.remove(build.INTERNAL.format(name="tiny", key=first.content[:12]), force=True)
    cold = {"IMAGEKIT_CACHE_DIR": str(tmp_path / "cold-cache"), "IMAGEKIT_REGISTRY_URL": guard.host}
    again = build.build(tiny(**cold), engine, builder="classic").images[0]
    assert again.content == first.content and again.image_id != first.image_id and not again.cached
    lines = []
    second = push.push(tiny(**cold), engine, on_line=lines.append).images[0]
    reg = Registry.from_config(tiny())
    assert second.unchanged and second.digest == pushed.digest == reg.manifest("mlops-desa/tiny", "v1-test").digest
    assert refused == [] and any("unchanged" in line and "now that digest" in line for line in lines)
    adopted = build.load_result(tiny(**cold)).images[0]
    assert f"{guard.host}/mlops-desa/tiny@{pushed.digest}" in engine.image(adopted.image_id).repo_digests
    with pytest.raises(EngineError):  # and the guard does refuse an overwrite, as Harbor would
        engine.push(again.image_id, f"{guard.host}/mlops-desa/tiny", "v1-test")
    assert refused == ["/v2/mlops-desa/tiny/manifests/v1-test"]
    assert build.build(tiny(**cold), engine, builder="classic").images[0].image_id == adopted.image_id  # and stays so


def test_build_and_push_json_say_where_the_time_went(tiny, cli, monkeypatch, tmp_path, index, registry_process):
    for name, value in {"IMAGEKIT_LOCK_INDEX_URL": index, "IMAGEKIT_REGISTRY_URL": registry_process.host,
                        "IMAGEKIT_CACHE_DIR": str(tmp_path / "empty-cache")}.items():  # every wheel fetched, layer made
        monkeypatch.setenv(name, value)
    source = str(tiny().source)
    dockerfile = tiny().image("tiny").context / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f"LABEL run={os.urandom(6).hex()}\n")  # not built before
    code, out, _ = cli("--config", source, "build", "--json")
    [img] = json.loads(out)["result"]["images"]
    assert code == 0 and not img["cached"]
    assert set(img["phases"]) == {"fetch", "install", "compile", "tar", "load", "dockerfile", "check"}, img["phases"]
    assert all(isinstance(s, float) and s >= 0 for s in img["phases"].values())
    assert sum(img["phases"].values()) <= img["seconds"] + 0.5  # parts of the image's time, not more
    code, out, _ = cli("--config", source, "build", "--json")
    [again] = json.loads(out)["result"]["images"]
    assert again["cached"] and set(again["phases"]) == {"fetch"}  # nothing installed, loaded or built
    code, out, _ = cli("--config", source, "push", "--json")
    [pushed] = json.loads(out)["result"]["images"]
    assert code == 0 and isinstance(pushed["seconds"], float) and pushed["seconds"] > 0

"""The OS image taken from os.image (present or pulled) instead of bootstrapped, and its refusals."""
import json

import pytest

from imagekit import buildkit, config, osimage
from imagekit.errors import ConfigError, PreconditionError

TAG = "imagekit-test/os-from-upstream:1"


@pytest.fixture
def upstream(cfg, engine, base_image, tmp_path):
    """An "upstream" OS image made FROM the bootstrapped one with ``steps``; a config that takes it."""
    made = []

    def make(name, steps):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Dockerfile").write_text(f"ARG PARENT\nFROM ${{PARENT}}\n{steps}\n")
        ref = f"imagekit-test/upstream-{name}:1"
        buildkit.build(engine, tmp_path / name, tags=[ref], buildargs={"PARENT": base_image}, labels={})
        made.append(ref)
        return config.load(cfg.source, env={"IMAGEKIT_OS_IMAGE": ref, "IMAGEKIT_OS_TAG": TAG})
    yield make
    for ref in [*made, TAG]:
        if engine.image(ref):
            engine.client.images.remove(ref, force=True)


def test_an_upstream_image_with_the_python_and_the_tools_is_taken(upstream, engine):
    result = osimage.ensure(upstream("ok", "LABEL org.example.vendor=acme"), engine)
    assert (result.ref, result.how, result.python) == (TAG, "upstream", "3.11.2")
    assert engine.image(TAG).labels["org.example.vendor"] == "acme"


def test_an_upstream_image_with_another_python_is_refused(upstream, engine):
    cfg = upstream("py", f"LABEL {osimage.PYTHON_LABEL}=3.11.9")
    with pytest.raises(ConfigError, match="has Python 3.11.9 but the lock targets 3.11.2") as e:
        osimage.ensure(cfg, engine)
    assert "lock.python" in str(e.value) and e.value.exit_code == 2


def test_an_upstream_image_without_the_platform_tools_is_refused(upstream, engine):
    cfg = upstream("bare", "RUN rm /usr/bin/wget /usr/bin/git")
    with pytest.raises(PreconditionError, match="lacks wget, git") as e:
        osimage.ensure(cfg, engine)
    assert "KubeRay" in str(e.value)


def test_the_os_command_prints_json_data(cfg, base_image, cli):
    code, out, _ = cli("--config", cfg.source, "os", "--json")
    data = json.loads(out)
    assert code == 0 and data["command"] == "os" and data["result"]["how"] == "present"
    assert data["result"]["ref"] == base_image and data["result"]["python"] == "3.11.2"


def test_a_refused_pull_names_the_registry_and_why_and_so_does_the_fallback(cfg, engine, monkeypatch):
    from support import RegistryFront

    front = RegistryFront("127.0.0.1:9", lambda method, path: (
        401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
        {"WWW-Authenticate": 'Basic realm="harbor"'}))
    try:
        ref = f"{front.host}/mlops-desa/debian:bookworm"
        why = engine.pull(ref)
        assert why.startswith(f"the registry {front.host} asks for credentials (none were given): "), why
        assert "refused the credentials" in engine.pull(ref, auth=("robot$mlops+ci", "wrong-password"))
        lines = []

        def stop(cfg, engine, on_line):
            raise RuntimeError("bootstrap would start here")
        monkeypatch.setattr(osimage, "bootstrap", stop)
        with pytest.raises(RuntimeError):
            osimage.ensure(config.load(cfg.source, env={"IMAGEKIT_OS_IMAGE": ref, "IMAGEKIT_OS_TAG": TAG}), engine,
                           on_line=lines.append)
        waited = "another imagekit is making the OS image: waiting for it"  # another worker's build held the lock
        assert [line for line in lines if line != waited] == [
            f"{ref} cannot be had here ({why}); bootstrapping Debian bookworm"]
    finally:
        front.stop()

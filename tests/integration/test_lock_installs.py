"""The images' own install step (layers.install: uv, --require-hashes, no index, no network) on the
OS image's interpreter: the whole lock installs and checks; what does not fit the target is refused."""
import secrets

import pytest
from helpers import make_wheel

from imagekit import assembly, containers, layers, lock, tools
from imagekit.digests import sha256_file
from imagekit.errors import CheckFailed, EngineError, ToolError


@pytest.mark.parametrize("name", ["base", "ray", "notebook"])
def test_every_image_passes_uv_pip_check_on_the_os_python(engine, built, base_image, name):
    image = built.image(name)
    out = containers.run(engine, image.image_id, [tools.UV, "pip", "check", "--python", "/opt/venv/bin/python"],
                         user="root", volumes=tools.uv(engine, base_image))
    assert "All installed packages are compatible" in out
    assert containers.run(engine, image.image_id, ["/opt/venv/bin/python", "-c", "import platform; "
                                       "print(platform.python_version())"]).strip() == "3.11.2"


def test_uv_is_put_into_its_volume_once_and_a_fill_cut_short_is_completed(engine, base_image, leftovers):
    before, name = leftovers(), f"imagekit-test-uv-{secrets.token_hex(4)}"
    try:
        with open(tools.binary(), "rb") as f, containers.Run(engine, "test", network=False) as run:  # cut short:
            run.create(containers.Container(base_image, ["true"], volumes=[f"{name}:{tools.MOUNT}:rw"]),  # no link
                       inputs={f"{tools.MOUNT}/.uv-cut": f.read(1000)})
        assert tools.fill(engine, base_image, name) and not tools.fill(engine, base_image, name)
        out = containers.run(engine, base_image, ["sh", "-c", f"{tools.MOUNT}/uv --version; ls -a {tools.MOUNT}"],
                             volumes=[f"{name}:{tools.MOUNT}:ro"], entrypoint=[])
        listed = out.splitlines()[1:]
        assert out.startswith("uv ") and ".uv-cut" in listed and "uv" in listed, out
        assert len(listed) == 5, out  # ., .., the cut one, the one put, its link
        assert leftovers() == before
    finally:
        engine.client.volumes.get(name).remove(force=True)


def test_a_check_after_another_user_pruned_the_volume_puts_uv_back(engine, built, monkeypatch):
    name = f"imagekit-test-uv-{secrets.token_hex(4)}"
    monkeypatch.setattr(tools, "volume_name", lambda: name)
    monkeypatch.setattr(tools, "_held", set())
    try:
        layers.check(engine, built.image("ray").image_id, what="ray")  # fills it
        engine.client.volumes.get(name).remove()  # `docker volume prune` between two checks
        layers.check(engine, built.image("ray").image_id, what="ray")  # mounted again empty: put back, checked
        assert engine.client.volumes.get(name) and name in tools._held
    finally:
        engine.client.volumes.get(name).remove(force=True)


def install(engine, base_image, tmp_path, wheel, pin):
    group = layers.Group("test", (pin,))
    return layers.install(engine, base_image, "test", [group], {pin.name: wheel}, tmp_path / "cache",
                          venv_layer=True, on_line=lambda line: None)


def test_the_install_step_makes_the_layers_it_is_given(engine, base_image, tmp_path):
    wheel = make_wheel(tmp_path / "cache" / "wheels" / "x", "soupy", "1.0", requires_python=">=3.8")
    pin = lock.Pin("soupy", "1.0", (f"sha256:{sha256_file(wheel)}",))
    venv, test = install(engine, base_image, tmp_path, wheel, pin)
    assert venv.group == "venv" and test.packages == ("soupy==1.0",) and not test.cached
    assert install(engine, base_image, tmp_path, wheel, pin)[1].cached  # the second time: from the layer cache


def test_a_pin_for_a_newer_python_patch_is_refused_by_the_os_python(engine, base_image, tmp_path):
    wheel = make_wheel(tmp_path / "cache" / "wheels" / "x", "soupy", "2.0", requires_python=">=3.11.5")
    pin = lock.Pin("soupy", "2.0", (f"sha256:{sha256_file(wheel)}",))
    made = install(engine, base_image, tmp_path, wheel, pin)  # uv installs with --no-deps regardless ...
    image = assembly.assemble(engine, base_image, made, "imagekit-test/newer-python:1", labels={})
    with pytest.raises(CheckFailed, match=r"soupy` requires Python >=3\.11\.5, but `3\.11\.2"):
        layers.check(engine, image, what="test")  # ... and the build's check refuses it
    engine.client.images.remove("imagekit-test/newer-python:1", force=True)


def test_a_wheel_that_does_not_match_its_hash_is_refused(engine, base_image, tmp_path):
    wheel = make_wheel(tmp_path / "cache" / "wheels" / "x", "soupy", "1.0")
    pin = lock.Pin("soupy", "1.0", ("sha256:" + "0" * 64,))
    with pytest.raises((EngineError, ToolError), match="(?i)hash mismatch"):
        install(engine, base_image, tmp_path, wheel, pin)


def test_a_file_that_does_not_compile_is_said_not_hidden(engine, base_image, tmp_path):
    wheel = make_wheel(tmp_path / "cache" / "wheels" / "x", "soupy", "1.0",
                       modules={"broken.py": "def (:\n", "fine.py": "X = 1\n"})
    pin = lock.Pin("soupy", "1.0", (f"sha256:{sha256_file(wheel)}",))
    lines = []
    group = layers.Group("test", (pin,))
    layers.install(engine, base_image, "test", [group], {pin.name: wheel}, tmp_path / "cache", venv_layer=False,
                   on_line=lines.append)
    said = [line for line in lines if "do not compile" in line]
    assert len(said) == 1 and said[0].startswith("test: no bytecode for 1 file(s)") and "soupy/broken.py" in said[0]

"""The built Ray and notebook images: interpreter, packages, users, Ray Serve, headless notebooks."""
import hashlib
import json

import pytest

from imagekit import build, containers, layers, lock, services, tars

NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {}, "outputs": [],
                       "source": "import sklearn, category_encoders, ray\n"
                                 "print('versions', sklearn.__version__, category_encoders.__version__, ray.__version__)"}],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def installed(engine, ref):
    out = containers.run(engine, ref, ["python", "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"])
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


@pytest.mark.parametrize("name", ["ray", "notebook"])
def test_python_packages_and_user_are_the_locked_ones(cfg, engine, built, shared_lock, fetched, name):
    image = next(i for i in built.images if i.name == name)
    expected = lock.load_views(cfg, shared_lock).versions(name)
    got = installed(engine, image.image_id)
    got.pop("setuptools", None)  # a venv's own where one was made with pip (the images' venv has none)
    assert got == expected  # every locked package of the image at its locked version, nothing else
    assert containers.run(engine, image.image_id, ["python", "-c", "import platform; print(platform.python_version())"]).strip() \
        == cfg.lock.python
    assert containers.run(engine, image.image_id, ["id", "-u"]).strip() == "1000"
    # what base's Dockerfile adds (the venv first for login shells: KubeRay runs `bash -l`), the child has too
    login = containers.run(engine, image.image_id, ["bash", "-lc", "command -v python"])
    assert login.strip() == f"{tars.VENV}/bin/python"
    found = containers.run(engine, image.image_id, ["bash", "-c", "find / -xdev -name '*.whl' 2>/dev/null; ls -d /wheels 2>&1; true"])
    assert "No such file" in found.splitlines()[-1]  # the build's wheelhouse is gone ...
    strays = {line.rsplit("/", 1)[-1] for line in found.splitlines()  # (virtualenv ships pip's wheel as data)
              if not line.startswith("/opt/venv/lib/python3.11/site-packages/virtualenv/")}
    assert not strays & {w.name for w in fetched.wheels.values()}
    labels = engine.image(image.image_id).labels
    pins = lock.load_views(cfg, shared_lock).pins(name)
    assert labels[build.PINS_LABEL] == hashlib.sha256(lock.render_pins(sorted(pins, key=lambda p: p.name))
                                                      .encode()).hexdigest()
    assert sorted(labels[build.PACKAGES_LABEL].split()) == sorted(f"{p.name}=={p.version}" for p in pins)
    assert labels[build.LOCK_LABEL] == shared_lock.digest
    for key in ("source", "revision", "created", "version"):
        assert labels[f"org.opencontainers.image.{key}"]


def test_ray_and_notebook_share_the_model_layers(engine, built):
    by = {i.name: engine.image(i.image_id).layers for i in built.images}
    base = [layer["diff_id"] for layer in built.image("base").layers]
    assert all(d in by["ray"] and d in by["notebook"] for d in base)  # every layer of base, the very same
    steady = len(engine.image(built.os).layers) + sum(not layer["group"].startswith(layers.SMALL)
                                                       for layer in built.image("base").layers)
    assert by["ray"][:steady] == by["base"][:steady] == by["notebook"][:steady]  # the OS and the large ones below
    assert built.shared_bytes["ray+notebook"] > 500e6


def test_ray_image_serves_http(built, run):
    ray = next(i for i in built.images if i.name == "ray")
    server = run.start(services.ModelServer(ray.image_id, {}, {}))
    assert server.ready(90) == {"status": "ok", "models": {}, "fingerprints": {}}
    server.add({"absent": {"mlflow": "models:/absent/1"}})  # a model added once it runs: loaded at the next /status
    status = server.ready(90)["models"]
    assert list(status) == ["absent"] and "Exception: " in status["absent"], status  # named, and why not loaded


def test_notebook_executes_headless(engine, built, tmp_path):
    nb = next(i for i in built.images if i.name == "notebook")
    (tmp_path / "check.ipynb").write_text(json.dumps(NOTEBOOK))
    out = containers.run(engine, nb.image_id, ["jupyter", "nbconvert", "--to", "notebook", "--execute", "--stdout",
                                               "/tmp/check/check.ipynb"],
                         inputs={"/tmp/check/check.ipynb": tmp_path / "check.ipynb"})
    assert "versions 1." in out and " 2.8.1 2.41.0" in out

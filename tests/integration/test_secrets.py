"""A planted secret: in the index URL, the index and registry passwords and an environment's own
credentials. It must not appear in anything imagekit wrote, in any image, or in any output."""
import json
import shutil
import subprocess

import pytest
from helpers import ROOT, RegistryProcess, make_htpasswd, write_project

TOKEN = "plant3d-s3cr3t-t0ken"
PROJECT = """
[project]
org = "test"
version = 1
[[environments]]
name = "desa"
project = "mlops-desa"
[[environments]]
name = "prod"
project = "mlops-prod"
[verify]
images = ["tiny"]
[[images]]
name = "tiny"
tags = ["v{version}-{org}"]
"""


@pytest.fixture
def planted(tmp_path, index, monkeypatch, keys):
    registry = RegistryProcess(tmp_path / "registry",
                               htpasswd=make_htpasswd(tmp_path / "htpasswd", "ci-robot", TOKEN)).start()
    path = write_project(tmp_path / "project", PROJECT, {"tiny": "soupy\n"})
    shutil.copytree(ROOT / "images" / "base", tmp_path / "project" / "images" / "tiny", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("requirements.in"))
    for var, value in {"IMAGEKIT_LOCK_INDEX_URL": index.replace("http://", f"http://ci-user:{TOKEN}@"),
                       "IMAGEKIT_REGISTRY_URL": registry.host, "IMAGEKIT_REGISTRY_USERNAME": "ci-robot",
                       "IMAGEKIT_REGISTRY_PASSWORD": TOKEN, "IMAGEKIT_ENV_PROD_USERNAME": "ci-robot",
                       "IMAGEKIT_ENV_PROD_PASSWORD": TOKEN, "IMAGEKIT_CACHE_DIR": str(tmp_path / "cache"),
                       "IMAGEKIT_TRUST_PUBLIC_KEY": str(keys["trusted"][1]),
                       "IMAGEKIT_TRUST_SIGNING_KEY": keys["trusted"][0].read_text()}.items():  # the PEM itself
        monkeypatch.setenv(var, value)
    yield path, registry
    registry.stop()


def test_a_planted_secret_is_nowhere(planted, cli, engine, tmp_path, keys):
    path, registry = planted
    signing = keys["trusted"][0].read_text().splitlines()[1]  # a line of the private key's PEM body
    outputs = []
    for args in (["lock"], ["lock", "--check", "--json"], ["build", "--json"], ["--verbose", "push", "--json"],
                 ["doctor", "--json"], ["promote", "tiny", "--to", "prod"], ["history", "tiny", "--env", "prod"]):
        code, out, err = cli("--config", str(path), *args)
        outputs.append((args, code, out, err))
    assert [code for args, code, _, _ in outputs][:4] == [0, 0, 0, 0], outputs
    built, pushed = json.loads(outputs[2][2]), json.loads(outputs[3][2])
    assert built["ok"] and built["result"]["images"][0]["name"] == "tiny"  # build and push --json: data
    assert pushed["result"]["images"][0]["digest"].startswith("sha256:")
    for args, _, out, err in outputs:
        assert TOKEN not in out + err and "ci-user:" not in out + err and signing not in out + err, args
    assert "holds no tiny that one valid attestation names" in outputs[-2][3]  # it ran into the gate (and said so)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]  # project, lockfiles, out/, caches, layer tars
    assert written and not [p for p in written if TOKEN.encode() in p.read_bytes() or signing.encode() in p.read_bytes()]
    built = json.loads((path.parent / "out" / "build.json").read_text())
    for image in built["images"]:
        history = subprocess.run(["docker", "history", "--no-trunc", image["image_id"]], capture_output=True,
                                 text=True, check=True).stdout
        config = json.dumps(engine.client.api.inspect_image(image["image_id"]))
        assert TOKEN not in history and TOKEN not in config


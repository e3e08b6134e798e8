"""What is masked: a secret where it stands as itself, never inside another word, never a lock's hash;
no dataclass shows a credential in its repr."""
import dataclasses
import importlib
import pkgutil
import re

import imagekit
from imagekit import redact


def test_a_secret_is_masked_where_it_stands_as_itself():
    redact.register("test")  # a weak password, but the registry's
    redact.register("s3cr3t-Pa55")
    assert redact.text("pushing to 127.0.0.1:5000/mlops-test/ray") == "pushing to 127.0.0.1:5000/mlops-test/ray"
    assert redact.text("attest, latest, testing, test_x, x.test.example") == \
        "attest, latest, testing, test_x, x.test.example"  # inside other words: left alone
    assert redact.text("https://robot:test@harbor.example.org/v2/") == "https://***@harbor.example.org/v2/"
    assert redact.text("Authorization: Basic test") == "Authorization: Basic ***"
    assert redact.text("password=test&user=ci") == "password=***&user=ci"
    assert redact.text("the password is test.") == "the password is ***."
    assert redact.text("pip said: 's3cr3t-Pa55' is wrong") == "pip said: '***' is wrong"


def test_an_all_hex_secret_leaves_the_sha256_it_sits_in_alone():
    digest = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
    redact.register(digest[8:24])  # an all-hex password that happens to be part of a wheel's sha256
    assert redact.text(f"    --hash=sha256:{digest}") == f"    --hash=sha256:{digest}"
    assert redact.text(f"token {digest[8:24]}") == "token ***"


def test_the_lock_body_is_written_as_resolved(tmp_path):
    from imagekit import config, lock
    from support import write_project

    cfg = config.load(write_project(tmp_path))
    body = "numpy==2.4.6 \\\n    --hash=sha256:" + "ab" * 32 + "\n"
    redact.register("abababab")
    text = lock._render(cfg, body, lock.files(cfg).shared, "uv")
    assert text.endswith(body) and lock.parse(text).pins["numpy"].hashes == ("sha256:" + "ab" * 32,)


def test_no_dataclass_shows_a_credential_in_its_repr():
    secretive = re.compile(r"password|secret|token|signing_key|credentials|access_key")
    found = []
    for module in pkgutil.walk_packages(imagekit.__path__, "imagekit."):
        if "in_image" in module.name or module.name.endswith("__main__"):
            continue
        for value in vars(importlib.import_module(module.name)).values():
            if dataclasses.is_dataclass(value) and isinstance(value, type):
                found += [f"{value.__name__}.{f.name}" for f in dataclasses.fields(value)
                          if secretive.search(f.name) and f.repr and f.name != "redis_secret"]  # a Secret's name
    assert found == []
    from imagekit.registry import Registry
    assert "hunter2-secret" not in repr(Registry("h", username="u", password="hunter2-secret"))

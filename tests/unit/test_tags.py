"""The tags an image is given, and its bill of materials: from the config's templates and the lock's pins."""
import dataclasses
from pathlib import Path

import pytest

from imagekit import config, sbom, tags
from imagekit.errors import ConfigError
from imagekit.lock import Pin

ROOT = Path(__file__).resolve().parents[2]
PINS = [Pin("ray", "2.41.0", ("sha256:" + "a" * 64,))]


def test_the_seed_tags_then_the_lock_and_the_revision():
    cfg = config.load(ROOT / "imagekit.toml")
    v = cfg.project.version
    assert tags.render(cfg, cfg.image("ray"), PINS, "f" * 64, "1a2b3c") == [
        f"2.41.0-py311-sunat-v{v}", "lock-ffffffffffff", "git-1a2b3c"]


def test_a_template_naming_an_unknown_field_is_refused_with_its_key():
    cfg = config.load(ROOT / "imagekit.toml")
    with pytest.raises(ConfigError, match=r"tag template '\{pins\[absent\]\}' names 'absent'") as e:
        tags.render(cfg, dataclasses.replace(cfg.image("ray"), tags=("{pins[absent]}",)), PINS, "f" * 64, "r")
    assert e.value.key == "images.ray.tags"


def test_the_bill_of_materials_names_each_wheel_by_its_sha256(tmp_path):
    wheel = tmp_path / ("a" * 64) / "ray-2.41.0-cp311-cp311-manylinux2014_x86_64.whl"
    doc = sbom.cyclonedx("ray", "2.41.0-py311-sunat-v15", PINS, {"ray": wheel})
    assert doc["metadata"]["component"] == {"type": "container", "name": "ray", "version": "2.41.0-py311-sunat-v15"}
    [c] = doc["components"]
    assert c["purl"] == "pkg:pypi/ray@2.41.0" and c["hashes"] == [{"alg": "SHA-256", "content": "a" * 64}]
    assert c["properties"] == [{"name": "imagekit:wheel", "value": wheel.name}]

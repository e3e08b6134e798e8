"""Vendor bases, without an engine: the drift, the refusal of bases whose Pythons differ, and pip
check's broken requirements said as whose they are."""
import pytest

from imagekit import config, tars, vendor
from imagekit.errors import ConfigError, PreconditionError
from imagekit.facts import ImageFacts
from imagekit.lock import Pin

from helpers import write_project


def base(ref, python="3.11.2", glibc="2.36", **packages):
    held = ImageFacts(ref=ref, name="", python=python, packages=packages, prefix="/opt/conda", glibc=glibc,
                      installers={n: "conda" for n in packages}, executable="/opt/conda/bin/python",
                      folders=[("/opt", 0o755, 0, 0), ("/opt/conda", 0o2775, 1000, 100)])
    return vendor.Base(ref=ref, image_id="sha256:" + "1" * 64, digest="sha256:" + "2" * 64, facts=held)


@pytest.fixture
def cfg(tmp_path):
    return config.load(write_project(tmp_path), env={"IMAGEKIT_LOCK_PYTHON": "3.11.2"})


def test_the_drift_says_kept_replaced_and_added():
    b = base("team/nb:v8", pandas="2.2.3", numpy="2.0.2", vendortool="1.0")
    found = vendor.drift(b, [Pin("numpy", "2.4.6", ()), Pin("pandas", "2.2.3", ()), Pin("cloudpickle", "3.1.2", ())])
    assert [(d.name, d.status, d.vendor, d.lock, d.installer) for d in found] == [
        ("cloudpickle", "added", "", "3.1.2", ""), ("numpy", "replaced", "2.0.2", "2.4.6", "conda"),
        ("pandas", "replaced", "2.2.3", "2.2.3", "conda"), ("vendortool", "kept", "1.0", "", "conda")]
    assert b.prefix == tars.Prefix("/opt/conda", "/opt/conda/bin/python", False,
                                   (("/opt", 0o755, 0, 0), ("/opt/conda", 0o2775, 1000, 100)))
    assert b.labels() == {"org.opencontainers.image.base.name": "team/nb:v8",
                          "org.opencontainers.image.base.digest": "sha256:" + "2" * 64}


def test_bases_whose_pythons_differ_are_refused_naming_both_and_what_to_do(cfg):
    with pytest.raises(PreconditionError) as e:
        vendor.check_targets(cfg, {"ray": base("rayproject/ray:2.41.0-py311"),
                                   "notebook": base("scipy-notebook:python-3.11", python="3.11.10")})
    assert "notebook's scipy-notebook:python-3.11 has 3.11.10, ray's rayproject/ray:2.41.0-py311 has 3.11.2" in str(e.value)
    assert "take both bases at the same Python patch" in e.value.hint
    with pytest.raises(PreconditionError) as e:
        vendor.check_targets(cfg, {"ray": base("r", python="3.11.10"), "notebook": base("n", python="3.11.10")})
    assert "carry Python 3.11.10; the lock targets 3.11.2" in str(e.value) and 'lock.python = "3.11.10"' in e.value.hint
    vendor.check_targets(cfg, {"ray": base("r"), "notebook": base("n")})


def test_a_base_older_than_the_locks_glibc_is_refused_naming_the_platform_to_lock_for(cfg):
    with pytest.raises(PreconditionError) as e:  # rayproject/ray is Ubuntu 22.04: glibc 2.35
        vendor.check_targets(cfg, {"ray": base("rayproject/ray:2.41.0-py311", glibc="2.35"), "notebook": base("n")})
    assert str(e.value).startswith("ray's base rayproject/ray:2.41.0-py311 has glibc 2.35; the lock targets "
                                   "x86_64-manylinux_2_36, whose wheels may need a newer one")
    assert 'lock.platform = "x86_64-manylinux_2_35"' in e.value.hint
    vendor.check_targets(cfg, {"ray": base("r", glibc="2.39"), "notebook": base("n", glibc="")})


def test_a_broken_requirement_is_said_as_whose_it_is():
    found = vendor.drift(base("b", pandas="2.2.3", numpy="2.0.2"), [Pin("numpy", "2.4.6", ())])
    line = "The package `pandas` requires `numpy<2.1,>=1.23`, but `2.4.6` is installed"
    assert vendor.conflict(line, found) == "vendor's pandas 2.2.3 requires numpy<2.1,>=1.23, the lock pins 2.4.6"
    assert vendor.conflict("something else", found) == "something else"


def test_a_vendor_base_needs_the_shared_lock(tmp_path):
    toml = '[[environments]]\nname = "desa"\nproject = "p"\n[[images]]\nname = "ray"\nbase = "r:1"\nshared = false\n'
    with pytest.raises(ConfigError) as e:
        config.load(write_project(tmp_path, toml, {"ray": ""}), env={})
    assert "cannot have a vendor base" in str(e.value)


def test_an_images_facts_are_asked_once_per_image_id_and_kept(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from imagekit import facts

    ids = {"team/ray:v8": "sha256:" + "a" * 64, "team/ray:v9": "sha256:" + "b" * 64}
    engine = SimpleNamespace(image=lambda ref: SimpleNamespace(id=ids[ref], labels={}, config={}))
    asked = []

    def ask(engine, ref, info):
        asked.append(ref)
        return '{"python": "3.11.2", "packages": {"numpy": "%s"}, "changed": []}' % ref[-1]
    monkeypatch.setattr(facts, "_ask", ask)
    seen = [facts.inspect(engine, r, cache=tmp_path).packages for r in ("team/ray:v8", "team/ray:v8", "team/ray:v9")]
    assert asked == ["team/ray:v8", "team/ray:v9"]  # another image id (other content) is asked again
    assert seen == [{"numpy": "8"}, {"numpy": "8"}, {"numpy": "9"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a" * 64 + ".json", "b" * 64 + ".json"]

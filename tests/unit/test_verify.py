"""The comparisons verify-compat makes, fed facts that differ (no Docker)."""
import pytest
from helpers import write_project

from imagekit import config, lock
from imagekit.verify import roundtrip, static

EXPECTED = {"labels": [0, 1, 1], "probabilities": [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]]}


def test_identical_predictions_pass():
    assert roundtrip.compare(EXPECTED, {**EXPECTED}) == (True, "", 0.0)


@pytest.mark.parametrize("served, reason", [
    ({"labels": [0, 1, 0], "probabilities": EXPECTED["probabilities"]}, "labels differ at probe rows [2]"),
    ({"labels": [0, 1, 1], "probabilities": [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6 + 2e-9]]}, "differ by up to 2e-09"),
    ({"labels": [0, 1, 1], "probabilities": [[0.9], [0.2], [0.4]]}, "different shape"),
    ({"labels": [0, 1, 1]}, "different shape"),
])
def test_differences_fail_with_the_reason(served, reason):
    ok, why, _ = roundtrip.compare(EXPECTED, served)
    assert not ok and reason in why


def test_within_tolerance_passes():
    served = {"labels": [0, 1, 1], "probabilities": [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6 + 5e-10]]}
    ok, _, diff = roundtrip.compare(EXPECTED, served)
    assert ok and 4e-10 < diff < 6e-10


@pytest.fixture
def locked(tmp_path, index):
    path = write_project(tmp_path, requirements={"base": "learn\n", "ray": "extra-tool\n", "notebook": "soupy\n"})
    cfg = config.load(path, env={"IMAGEKIT_LOCK_INDEX_URL": index})
    lock.lock(cfg)
    return cfg, lock.read(lock.lock_path(cfg))


def facts(name, python="3.11.2", **changes):
    packages = {"learn": "1.7.0", "numbers": "1.1", **({"soupy": "1.0"} if name == "notebook" else {"extra-tool": "0.1"})}
    packages.update(changes)
    return static.ImageFacts(ref=f"{name}:test", name=name, python=python,
                             packages={k: v for k, v in packages.items() if v is not None})


def test_static_alignment_passes_when_each_image_holds_its_view(locked):
    cfg, lk = locked
    assert static.compare(cfg, lk, facts("notebook"), facts("ray")).differences == []


def test_static_alignment_names_every_difference(locked):
    cfg, lk = locked
    report = static.compare(cfg, lk, facts("notebook"),
                            facts("ray", python="3.11.4", learn="1.6.1", **{"extra-tool": None, "rogue": "2.0"}))
    assert not report.ok
    assert set(report.differences) == {
        "python: ray has 3.11.4, the lock targets 3.11.2",
        "python: notebook 3.11.2, ray 3.11.4",
        "learn: ray has 1.6.1, lock 1.7.0",
        "learn: notebook 1.7.0, ray 1.6.1, lock 1.7.0",
        "extra-tool: missing in ray (lock 0.1)",
        "rogue: 2.0 in ray is not in its lock view",
    }

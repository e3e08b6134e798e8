"""The shared lock installs, hash-checked and offline, on the base image's own interpreter."""
import pytest

from imagekit import lock, wheels
from imagekit.errors import EngineError

from helpers import make_wheel

INSTALL = ("python3 -m venv /tmp/v && /tmp/v/bin/pip install -q --no-index --find-links /wheels"
           " --require-hashes --no-deps -r /wheels/requirements.txt && /tmp/v/bin/pip check"
           " && /tmp/v/bin/python -c 'import platform; print(platform.python_version())'")


def test_every_pin_installs_on_the_base_python_and_pip_check_passes(engine, base_image, shared_lock, fetched,
                                                                   tmp_path):
    pins = list(shared_lock.pins.values())
    staged = wheels.stage(fetched, pins, tmp_path / "wheels")
    out = engine.run(base_image, ["bash", "-c", INSTALL], volumes={str(staged): "/wheels"})
    assert "No broken requirements found." in out
    assert out.strip().endswith("3.11.2")


def test_a_pin_for_a_newer_python_patch_is_refused_by_the_base(engine, base_image, tmp_path):
    wheel = make_wheel(tmp_path / "wheels", "soupy", "2.0", requires_python=">=3.11.5")
    pin = lock.Pin("soupy", "2.0", (f"sha256:{wheels.sha256_file(wheel)}",))
    (tmp_path / "wheels" / "requirements.txt").write_text(pin.render() + "\n")
    with pytest.raises(EngineError, match="requires a different Python: 3.11.2 not in '>=3.11.5'"):
        engine.run(base_image, ["bash", "-c", INSTALL], volumes={str(tmp_path / "wheels"): "/wheels"})


def test_a_wheel_that_does_not_match_its_hash_is_refused(engine, base_image, tmp_path):
    wheel = make_wheel(tmp_path / "wheels", "soupy", "1.0")
    pin = lock.Pin("soupy", "1.0", ("sha256:" + "0" * 64,))
    (tmp_path / "wheels" / "requirements.txt").write_text(pin.render() + "\n")
    with pytest.raises(EngineError, match="THESE PACKAGES DO NOT MATCH THE HASHES"):
        engine.run(base_image, ["bash", "-c", INSTALL], volumes={str(wheel.parent): "/wheels"})

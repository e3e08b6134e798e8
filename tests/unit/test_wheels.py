"""The host-side wheel cache: only files whose sha256 the lock names ever enter it."""
import pytest
from conftest import make_test_packages, serve
from helpers import make_wheel

from imagekit import config, lock, wheels
from imagekit.errors import CheckFailed


@pytest.fixture
def own_index(tmp_path):
    root = tmp_path / "index"
    make_test_packages(root / "simple")
    server = serve(root)
    yield root, f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()


def test_wheels_are_fetched_once_into_a_cache_named_by_sha256(project, own_index, tmp_path):
    root, url = own_index
    cfg = config.load(project(requirements={"base": "learn\n", "ray": "", "notebook": ""}),
                      env={"IMAGEKIT_LOCK_INDEX_URL": url, "IMAGEKIT_CACHE_DIR": str(tmp_path / "cache")})
    lock.lock(cfg)
    pins = list(lock.shared_lock(cfg).pins.values())
    first = wheels.fetch(cfg, pins)
    assert first.downloaded == 2 and all(w.parent.name == wheels.sha256_file(w) for w in first.wheels.values())
    assert wheels.fetch(cfg, pins).downloaded == 0


def test_a_wheel_served_with_other_bytes_than_the_lock_names_is_refused(project, own_index, tmp_path):
    root, url = own_index
    cfg = config.load(project(requirements={"base": "learn\n", "ray": "", "notebook": ""}),
                      env={"IMAGEKIT_LOCK_INDEX_URL": url, "IMAGEKIT_CACHE_DIR": str(tmp_path / "cache")})
    lock.lock(cfg)
    tampered = make_wheel(root / "simple" / "learn", "learn", "1.7.0", requires=("numbers", "evil"))  # same name
    assert tampered.name in {w.name for w in (root / "simple" / "learn").iterdir()}
    with pytest.raises(CheckFailed, match="sha256 the lock does not name") as e:
        wheels.fetch(cfg, list(lock.shared_lock(cfg).pins.values()))
    assert e.value.exit_code == 1 and "learn" in str(e.value)
    assert not list((tmp_path / "cache" / "wheels").glob("*/learn-*"))  # nothing of it was cached

"""Integration fixtures: the real engine, the repository's config and its base image."""
from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT, variant

from imagekit import build, config, containers, lock, osimage, wheels
from imagekit.engine import Engine


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def cfg() -> config.Config:
    return config.load(ROOT / "imagekit.toml", env={})


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine.connect()  # no engine is a failure here, not a skip: run `make dev-up`


@pytest.fixture(scope="session")
def base_image(cfg, engine) -> str:
    return osimage.ensure(cfg, engine).ref


@pytest.fixture(scope="session")
def shared_lock(cfg) -> lock.Lock:
    return lock.read(lock.lock_path(cfg))


@pytest.fixture(scope="session")
def fetched(cfg, shared_lock) -> wheels.FetchResult:
    return wheels.fetch(cfg, list(shared_lock.pins.values()))


@pytest.fixture(scope="session")
def built(cfg, engine) -> build.BuildResult:
    """The repository's images, built (from cache when nothing changed)."""
    return build.build(cfg, engine)


@pytest.fixture
def run(engine):
    """A run of the test's own: its containers (labelled with this test run) are always removed, also
    when the test fails (docker-stacks' TrackedContainer)."""
    with containers.Run(engine, "test") as r:
        yield r


@pytest.fixture(scope="session")
def leftovers(engine):
    """This test run's containers and networks that exist now (those labelled with IMAGEKIT_RUN_ID: other
    users of the engine do not count): a run must leave nothing beyond them."""
    label = {"label": f"{containers.RUN_LABEL}={containers.run_id()}"}
    return lambda: ({c.id for c in engine.client.containers.list(all=True, filters=label)},
                    {n.id for n in engine.client.networks.list(filters=label)})


@pytest.fixture(scope="session")
def ray_sklearn_1_8(cfg, engine, built, tmp_path_factory):
    """The Ray image with scikit-learn 1.8.0 instead of the lock's 1.9.1 (downloads the wheel)."""
    ray, tmp = next(i for i in built.images if i.name == "ray"), tmp_path_factory.mktemp("sklearn")
    platforms = [arg for p in wheels.pip_platforms(cfg.lock.platform) for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                    "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", *platforms,
                    "-d", str(tmp / "dl"), "scikit-learn==1.8.0"], check=True)
    wheel = next((tmp / "dl").glob("scikit_learn-1.8.0-*.whl"))
    return variant(engine, f"{ray.repository}:{ray.tags[0]}", tmp, "ray-sklearn-1-8",
                   f"COPY {wheel.name} /tmp/\nRUN pip install -q --no-index --no-deps /tmp/{wheel.name} && rm /tmp/*.whl",
                   files=[wheel])

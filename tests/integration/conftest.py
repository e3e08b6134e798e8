"""Integration fixtures: the real engine, the repository's config and its base image."""
from __future__ import annotations

import pytest

from imagekit import base, config, lock, wheels
from imagekit.engine import Engine

from helpers import ROOT


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
    return base.ensure(cfg, engine).ref


@pytest.fixture(scope="session")
def shared_lock(cfg) -> lock.Lock:
    return lock.read(lock.lock_path(cfg))


@pytest.fixture(scope="session")
def fetched(cfg, shared_lock) -> wheels.FetchResult:
    return wheels.fetch(cfg, list(shared_lock.pins.values()))

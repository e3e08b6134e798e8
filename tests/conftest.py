"""Shared fixtures: a throwaway project (imagekit.toml + images/) and a loopback package index."""
from __future__ import annotations

import os

import secrets

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # the Ryuk image cannot be pulled here
# every container and network this test run starts (in this process and in the imagekit processes it
# runs) carries this run's label: leftover checks count only those, whoever else uses the engine
os.environ.setdefault("IMAGEKIT_RUN_ID", f"tests-{secrets.token_hex(6)}")
if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker of `pytest -n`: its own label (its leftover checks see only its own)
    os.environ["IMAGEKIT_RUN_ID"] += f"-{os.environ['PYTEST_XDIST_WORKER']}"

from support import shared

shared.folder()  # made by the main process before its workers start: they inherit it

import base64
import contextlib
import functools
import http.server
import random
import socketserver
import threading
import time

import pytest
from helpers import RegistryProcess, make_htpasswd, make_tls, make_wheel, run_cli, write_project

from imagekit import config
from imagekit.errors import ImagekitError
from support import make_keys
from support.registry import forget


def make_test_packages(simple) -> None:
    """The small packages the lock tests resolve."""
    # the target-interpreter case: 2.0 needs Python >= 3.11.5, like soupsieve 4.1.2
    make_wheel(simple / "soupy", "soupy", "1.0", requires_python=">=3.8")
    make_wheel(simple / "soupy", "soupy", "2.0", requires_python=">=3.11.5")
    # the conflict case: like category-encoders 2.8.1 needing scikit-learn >= 1.6
    make_wheel(simple / "encoders", "encoders", "2.8.1", requires=("learn>=1.6",))
    for v in ("1.5.2", "1.6.1", "1.7.0"):
        make_wheel(simple / "learn", "learn", v, requires=("numbers",))
    for v in ("1.0", "1.1"):
        make_wheel(simple / "numbers", "numbers", v)
    make_wheel(simple / "extra-tool", "extra-tool", "0.1", requires=("numbers",))
    # a wheel over 1 MB (noise, so it stays that large compressed): a layer of its own at layer_alone_mb = 1
    noise = base64.b64encode(random.Random(0).randbytes(1 << 20)).decode()
    make_wheel(simple / "heavy", "heavy", "1.0", modules={"blob.py": f"BLOB = {noise!r}\n"})


def serve(root):
    """Serve ``root`` on a loopback port: directory listings of simple/<name>/ are a PEP 503 index."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# The order of the files: with `pytest -n --dist loadfile --no-loadscope-reorder` (the Makefile's), each process
# takes the next file when it is done with one. test_runtime goes first, beside the unit tests: its browser tests
# wait until no other test runs containers, and a unit test runs none. Then the files of a minute or more,
# heaviest first (as measured on 2 cores; test_vendor's first run on a machine builds the vendor stand-ins),
# so that the processes end together.
FIRST = ("integration/test_runtime", "unit")
HEAVIEST = tuple(f"integration/test_{name}" for name in ("vendor", "verify", "stored", "mlflow", "build_push",
                                                          "signals", "promote", "pip_tools", "layers"))


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle: the order within each file, and of the rest, stays
def pytest_collection_modifyitems(items):
    rank = {name: n for n, name in enumerate(FIRST + HEAVIEST)}
    items.sort(key=lambda item: rank.get(f"{item.path.parent.name}/{item.path.stem}",
                                         rank.get(item.path.parent.name, len(rank))))


STARTED = time.monotonic()  # when the test run began (this file is loaded first)
WORKERS: dict[str, list[float]] = {}  # per process of `pytest -n`: seconds busy (the tests' phases), last report


def pytest_runtest_logreport(report):
    worker = getattr(getattr(report, "node", None), "gateway", None)  # the main process of `pytest -n`
    if worker is not None:
        busy = WORKERS.setdefault(worker.id, [0.0, 0.0])
        busy[0] += report.duration
        busy[1] = time.monotonic() - STARTED


def pytest_terminal_summary(terminalreporter):
    """Whether the processes ended together (see FIRST): each one's busy seconds and when it ended."""
    for worker, (busy, ended) in sorted(WORKERS.items()):
        terminalreporter.write_line(f"{worker}: busy {busy:.0f} s, its last test ended at {ended:.0f} s")


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):  # the main process: the run is over
        registries = shared.folder() / "registries"
        if registries.exists():  # the engine keeps no name of an image in a registry of the run's: they add up
            with contextlib.suppress(ImagekitError):  # no engine (unit tests only): nothing was pushed
                from imagekit.engine import Engine
                forget(Engine.connect(), set(registries.read_text().split()))
        shared.end()


@pytest.fixture(scope="session")
def index(tmp_path_factory) -> str:
    """A PEP 503 index on loopback with the test packages."""
    root = tmp_path_factory.mktemp("index")
    make_test_packages(root / "simple")
    server = serve(root)
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()


@pytest.fixture(autouse=True)
def no_imagekit_settings(monkeypatch):
    """The developer's IMAGEKIT_* variables never reach a test (they would override its settings)."""
    for var in [v for v in os.environ if v.startswith("IMAGEKIT_") and v != "IMAGEKIT_RUN_ID"]:
        monkeypatch.delenv(var)


@pytest.fixture(autouse=True)
def isolated_secrets():
    """The secrets a test registers for masking are forgotten after it: a masking assertion holds by
    the test's own registrations, never by another test's (a shorter secret masks part of a longer)."""
    from imagekit import redact

    before = set(redact._secrets)
    yield
    redact._secrets.clear()
    redact._secrets.update(before)


@pytest.fixture
def project(tmp_path):
    return functools.partial(write_project, tmp_path)


@pytest.fixture
def indexed(project, index):
    """A project resolving against the loopback index: base needs learn, notebook soupy, ray extra-tool."""
    def make(**reqs) -> config.Config:
        path = project(requirements={"base": "learn\n", "ray": "extra-tool\n", "notebook": "soupy\n", **reqs})
        return config.load(path, env={"IMAGEKIT_LOCK_INDEX_URL": index})
    return make


@pytest.fixture
def registry_process(tmp_path):
    """A docker-registry process of the test's own on a loopback port (no Docker engine needed)."""
    reg = RegistryProcess(tmp_path / "registry").start()
    yield reg
    reg.stop()


@pytest.fixture
def cli(monkeypatch, capsys):
    return functools.partial(run_cli, monkeypatch, capsys)


@pytest.fixture(scope="session")
def tls(tmp_path_factory):
    """A test CA and a certificate for 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def secure_registry(tmp_path, tls):
    """A registry process of the test's own with TLS (test CA) and htpasswd auth; returns the
    IMAGEKIT_REGISTRY_* settings that reach it as a robot account."""
    ca, cert, key = tls
    user, password = "robot$mlops+ci", "s3cr3t-Pa55"
    reg = RegistryProcess(tmp_path / "secure", tls=(cert, key),
                          htpasswd=make_htpasswd(tmp_path / "htpasswd", user, password)).start()
    yield {"IMAGEKIT_REGISTRY_URL": f"https://{reg.host}", "IMAGEKIT_REGISTRY_CA_BUNDLE": str(ca),
           "IMAGEKIT_REGISTRY_USERNAME": user, "IMAGEKIT_REGISTRY_PASSWORD": password}
    reg.stop()


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    """The trusted key pair and another one: {"trusted": (key, pub), "other": (key, pub)}."""
    root = tmp_path_factory.mktemp("keys")
    return {name: make_keys(root, name) for name in ("trusted", "other")}


def pytest_configure(config):
    import faulthandler
    import signal
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: where a stuck pytest process waits

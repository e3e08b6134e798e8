"""Integration fixtures: the real engine, the repository's config and its base image, one registry for the
test run with the images pushed once."""
from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from helpers import ROOT, variant

from support import RegistryProcess, elsewhere, shared, vendor_image

from imagekit import browser, build, config, containers, lock, osimage, push, wheels
from imagekit.engine import Engine


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A browser is alone while it is open: chromium drops its connections (ERR_NETWORK_CHANGED) whenever the
    machine's network interfaces change, as every container or network another test starts or removes
    changes them. The other tests run beside each other (`pytest -n`), each holding the lock shared; a
    browser test takes it alone from its first page (``browser.page``) to its end, so the others wait out its
    pages, not the containers it started before them. Browser tests run one at a time: one's containers would
    disturb another's page."""
    if item.get_closest_marker("browser") is None:
        with shared.holding("browser", alone=False):
            return (yield)
    with shared.holding("browser-tests", alone=True), contextlib.ExitStack() as held, \
            mock.patch.object(browser, "page", alone(browser.page, held)):
        return (yield)


def alone(page, held: contextlib.ExitStack):
    """``browser.page``, opened only once no other test runs: the "browser" lock, taken alone at the test's
    first page and kept in ``held`` (to the test's end), so a test of several pages waits for the others once."""
    taken = []

    @contextlib.contextmanager
    def opened(*args, **kwargs):
        if not taken:
            held.enter_context(shared.holding("browser", alone=True))
            taken.append(True)
        with page(*args, **kwargs) as p:
            yield p
    return opened


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


@pytest.fixture(scope="session")
def vendor(engine, built) -> dict[str, str]:
    """The vendor images' stand-ins (rayproject/ray, docker-stacks' scipy-notebook) holding the lock's
    packages in conda prefixes, without imagekit's labels or code: a team's pair as it runs today."""
    return {which: vendor_image(engine, which, built.image(which).image_id) for which in ("ray", "notebook")}


@pytest.fixture(scope="session", autouse=True)
def strangers(engine, base_image):
    """Other users of the engine for the whole test run, as on a shared CI runner: a container of another
    imagekit run (its own run label) and one with no label at all. Leftover checks count only this run's
    containers, and nothing this run does may remove theirs."""
    theirs = [engine.client.containers.run(base_image, ["sleep", "infinity"], detach=True, network_mode="none",
                                           labels=labels)
              for labels in ({containers.RUN_LABEL: "another-ci-job", containers.KIND_LABEL: "verify"}, {})]
    yield theirs
    alive = [c.id for c in engine.client.containers.list(filters={"id": [c.id for c in theirs]})]
    for c in theirs:
        c.remove(force=True)
    assert len(alive) == len(theirs), "this test run removed or stopped another user's container"


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
def sklearn_1_8(cfg, tmp_path_factory):
    """scikit-learn 1.8.0's wheel (the lock has 1.9.1), downloaded from the index."""
    tmp = tmp_path_factory.mktemp("sklearn")
    platforms = [arg for p in wheels.pip_platforms(cfg.lock.platform) for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                    "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", *platforms,
                    "-d", str(tmp), "scikit-learn==1.8.0"], check=True)
    return next(tmp.glob("scikit_learn-1.8.0-*.whl"))


def with_sklearn_1_8(engine, image: str, wheel, tmp, name: str, pip: str = "pip") -> str:
    return variant(engine, image, tmp, name, f"COPY {wheel.name} /tmp/\nRUN {pip} install -q --no-index --no-deps "
                                             f"/tmp/{wheel.name} && rm /tmp/*.whl", files=[wheel])


@pytest.fixture(scope="session")
def ray_sklearn_1_8(engine, built, sklearn_1_8, tmp_path_factory):
    """The Ray image with scikit-learn 1.8.0 instead of the lock's 1.9.1 (downloads the wheel)."""
    ray = built.image("ray")
    return with_sklearn_1_8(engine, f"{ray.repository}:{ray.tags[0]}", sklearn_1_8, tmp_path_factory.mktemp("v"),
                            "ray-sklearn-1-8")


@pytest.fixture(scope="session")
def vendor_ray_sklearn_1_8(engine, vendor, sklearn_1_8, tmp_path_factory):
    """The Ray stand-in with scikit-learn 1.8.0 installed into its conda prefix by pip, as a team would."""
    return with_sklearn_1_8(engine, vendor["ray"], sklearn_1_8, tmp_path_factory.mktemp("v"), "vendor-ray-sklearn-1-8",
                            pip="/home/ray/anaconda3/bin/python -m pip")


@pytest.fixture(scope="session")
def registry() -> SimpleNamespace:
    """One registry (CNCF Distribution) for the whole test run, its host and its storage root; tests isolate
    by project."""
    def start():
        reg = RegistryProcess(shared.folder() / "registry").start()
        return {"host": reg.host, "root": str(reg.root), "pid": reg.proc.pid}
    found = shared.once("registry", start)
    return SimpleNamespace(host=found["host"], root=Path(found["root"]))


@pytest.fixture(scope="session")
def in_registry(cfg, engine, built, registry, keys) -> dict[str, str]:
    """The repository's images pushed once to the session registry's first project (mlops-desa): the
    IMAGEKIT_* settings that reach it, with the trusted key pair for signing and the gate."""
    key, pub = keys["trusted"]
    env = {"IMAGEKIT_REGISTRY_URL": registry.host, "IMAGEKIT_TRUST_SIGNING_KEY": str(key),
           "IMAGEKIT_TRUST_PUBLIC_KEY": str(pub)}

    def push_once():
        return {i.name: i.digest for i in push.push(config.load(cfg.source, env=env), engine).images}
    shared.once("in-registry", push_once)
    return env


@pytest.fixture
def own_projects(cfg, in_registry, tmp_path, request) -> config.Config:
    """The repository's config with environments of this test's own on the session registry (empty until
    the test pushes: the layers are then mounted from desa, not sent again). Attestations and promotions
    of other tests are not there."""
    own = "t" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:10]
    text = open(cfg.source).read()
    for env in ("desa", "test", "prod"):
        text = text.replace(f'"mlops-{env}"', f'"{own}-{env}"')
    return config.load(elsewhere(cfg.source, tmp_path, text, folders=("images", "lockfiles", "examples", "out")),
                       env=in_registry)


@pytest.fixture
def own_project(own_projects, engine, in_registry):
    """The images pushed to this test's own first environment: (its config, the settings that reach it)."""
    push.push(own_projects, engine)
    return own_projects, in_registry


@pytest.fixture(scope="session")
def vendor_notebook_other_patch(engine, vendor, tmp_path_factory):
    """The notebook stand-in whose Python is another patch of 3.11: this machine's own CPython (the one
    running the tests, e.g. 3.11.7) in /opt/python-<version>, under the stand-in's /opt/conda."""
    import platform
    import shutil

    version = platform.python_version()
    if not version.startswith("3.11.") or version == "3.11.2" or not sys.base_prefix:
        pytest.skip(f"this machine's Python is {version}: no other patch of 3.11 to make the stand-in with")
    tmp = tmp_path_factory.mktemp("py")
    shutil.copytree(sys.base_prefix, tmp / "python", symlinks=True, ignore=shutil.ignore_patterns(
        "site-packages", "test", "__pycache__", "idlelib", "tkinter", "ensurepip", "include", "share"))
    where = f"/opt/python-{version}"
    steps = (f"COPY python {where}\nRUN cp {where}/lib/libpython3.11.so.1.0 /usr/local/lib/ && ldconfig "
             f"&& for n in python python3 python3.11; do ln -sf {where}/bin/python3.11 /opt/conda/bin/$n; done "
             f"&& sed -i -e 's|^home = .*|home = {where}/bin|' -e 's|^version = .*|version = {version}|' "
             f"/opt/conda/pyvenv.cfg")
    return variant(engine, vendor["notebook"], tmp, "vendor-notebook-other-patch", steps, files=[tmp / "python"],
                   user="1000")

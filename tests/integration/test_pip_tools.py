"""pip-tools as the resolver: pip-compile --generate-hashes inside the OS image, for its interpreter."""
import subprocess
import sys

import pytest
from conftest import make_test_packages, serve
from packaging.utils import canonicalize_name

from imagekit import config, lock
from imagekit.errors import CheckFailed
from imagekit.lock.resolver import PIP_TOOLS

pytestmark = pytest.mark.network  # pip-tools itself comes from PyPI


@pytest.fixture(scope="module")
def tools_index(tmp_path_factory):
    """The test packages and pip-tools (with what it needs), on a loopback index."""
    root = tmp_path_factory.mktemp("tools-index")
    make_test_packages(root / "simple")
    download = root / "download"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "-d", str(download),
                    *PIP_TOOLS], check=True, env={"PIP_CONFIG_FILE": "/dev/null", "PATH": "/usr/bin:/bin",
                                                  "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"})
    for wheel in download.iterdir():
        folder = root / "simple" / canonicalize_name(wheel.name.split("-")[0])
        folder.mkdir(parents=True, exist_ok=True)
        wheel.rename(folder / wheel.name)
    server = serve(root)
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()


def versions(path):
    return {n: p.version for n, p in lock.read(path).pins.items()}


def test_pip_compile_in_the_os_image_resolves_for_its_python(project, tools_index, base_image):
    path = project(requirements={"base": "learn\n", "ray": "extra-tool\n", "notebook": "soupy\n"})
    cfg = config.load(path, env={"IMAGEKIT_LOCK_INDEX_URL": tools_index})
    lock.lock(cfg)
    by_uv = versions(lock.lock_path(cfg))
    for f in lock.lock_path(cfg).parent.iterdir():
        f.unlink()
    result = lock.lock(cfg, resolver_name="pip-tools")
    text = lock.lock_path(cfg).read_text()
    assert result.resolved and "# resolver: pip-tools" in text
    assert versions(lock.lock_path(cfg)) == by_uv and by_uv["soupy"] == "1.0"  # 2.0 needs Python >= 3.11.5
    assert all(p.hashes for p in lock.read(lock.lock_path(cfg)).pins.values())
    assert lock.pip_tools_check(cfg).packages == 4  # pip-compile accepts all four pins unchanged
    assert lock.check(cfg).packages == 4  # and it is a lock like any other: views, headers


def test_pip_compile_refuses_pins_made_for_another_python(project, tools_index, base_image):
    path = project(requirements={"base": "learn\n", "ray": "extra-tool\n", "notebook": "soupy\n"})
    env = {"IMAGEKIT_LOCK_INDEX_URL": tools_index}
    lock.lock(config.load(path, env={**env, "IMAGEKIT_LOCK_PYTHON": "3.11.7"}))  # what the host's 3.11.7 picks
    cfg = config.load(path, env=env)
    shared = lock.files(cfg).shared
    body = lock.read(shared.path).body
    shared.path.write_text(lock._render(cfg, body, shared, "uv"))  # ... under a header that claims 3.11.2
    assert versions(shared.path)["soupy"] == "2.0" and lock.check(cfg, name_changes=False).packages == 4
    with pytest.raises(CheckFailed, match=r"(?s)pip-compile does not accept.*'soupy' requires a different "
                                          r"Python: 3\.11\.2 not in '>=3\.11\.5'"):
        lock.pip_tools_check(cfg)  # pip-compile runs on the image's own 3.11.2

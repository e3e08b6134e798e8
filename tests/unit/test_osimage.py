import threading
from types import SimpleNamespace

from imagekit import config, osimage
from support import write_project


def test_two_builds_at_once_bootstrap_the_os_image_once_the_second_takes_it(tmp_path, monkeypatch):
    """Two processes (pytest's workers, two `make build`s) wanting the OS image on a new machine: the
    second waits for the first's debootstrap (two into one folder broke both) and takes its image."""
    cfg = config.load(write_project(tmp_path), env={"IMAGEKIT_CACHE_DIR": str(tmp_path / "cache")})
    made = []
    inside, release = threading.Event(), threading.Event()

    class Engine:
        def image(self, ref):
            return made[-1] if made else None

    def bootstrap(cfg, engine, on_line):
        inside.set()
        assert release.wait(10)
        made.append(SimpleNamespace(id=f"sha256:{len(made)}", labels={
            osimage.PYTHON_LABEL: cfg.lock.python, osimage.PACKAGES_LABEL: " ".join(osimage.packages(cfg))}))

    monkeypatch.setattr(osimage, "bootstrap", bootstrap)
    results, second_said = {}, []
    waiting = threading.Event()

    def second_note(line):
        second_said.append(line)
        waiting.set()

    first = threading.Thread(target=lambda: results.update(first=osimage.ensure(cfg, Engine())))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=lambda: results.update(second=osimage.ensure(cfg, Engine(), on_line=second_note)))
    second.start()
    assert waiting.wait(10)
    release.set()
    first.join(10), second.join(10)
    assert len(made) == 1
    assert (results["first"].how, results["second"].how) == ("bootstrapped", "present")
    assert results["first"].image_id == results["second"].image_id == "sha256:0"
    assert second_said == ["another imagekit is making the OS image: waiting for it"]

"""What a test run starts once, whichever of its pytest processes (a worker of `pytest -n`) asks first: the
others wait for it and read what it wrote. The main process removes it all when the run ends."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def folder() -> Path:
    """The run's shared folder (PYTEST_IMAGEKIT_SHARED, made by the main process, inherited by its workers)."""
    if "PYTEST_IMAGEKIT_SHARED" not in os.environ:
        os.environ["PYTEST_IMAGEKIT_SHARED"] = tempfile.mkdtemp(prefix="imagekit-tests-")
    return Path(os.environ["PYTEST_IMAGEKIT_SHARED"])


def once(name: str, make: Callable[[], dict]) -> dict:
    """``make()``'s answer (JSON data), made by the first process of the run to ask and read by the others.
    A process ``make`` starts is named in it as ``pid``: the main process stops it when the run ends."""
    with holding(name, alone=True):
        done = folder() / f"{name}.json"
        if not done.exists():
            done.write_text(json.dumps(make()))
        return json.loads(done.read_text())


@contextlib.contextmanager
def holding(name: str, *, alone: bool) -> Iterator[None]:
    """Lock ``name`` across the run's processes: ``alone`` (exclusive), else shared with the others."""
    with open(folder() / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield


def end() -> None:
    """Stop every process the run started once and remove what they kept (the main process, at its end)."""
    for done in folder().glob("*.json"):
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(json.loads(done.read_text()).get("pid"), signal.SIGKILL)
    shutil.rmtree(folder(), ignore_errors=True)

"""scripts/dev-up.sh on a machine it cannot set up: it says so at once, naming what to do (exit 2)."""
import os
import shutil
import subprocess
import time

import pytest
from helpers import ROOT

SCRIPT = str(ROOT / "scripts" / "dev-up.sh")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop it")
def test_a_user_without_root_is_told_at_once():
    started = time.monotonic()
    done = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "bash", SCRIPT],
                          capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    assert done.returncode == 2 and "needs root" in done.stdout and "run as root, or with sudo" in done.stdout
    assert time.monotonic() - started < 10


def test_a_python_older_than_3_11_is_named_with_what_to_install(tmp_path):
    old = tmp_path / "python3.10"
    old.write_text("#!/bin/sh\n[ \"$1\" = -V ] && echo 'Python 3.10.12' && exit 0\nexit 1\n")
    old.chmod(0o755)
    done = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON": str(old)})
    assert done.returncode == 2 and "imagekit needs Python 3.11 or newer" in done.stdout
    assert "Python 3.10.12" in done.stdout and "make PYTHON=python3.11" in done.stdout

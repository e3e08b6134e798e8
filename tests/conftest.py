"""Shared fixtures: a throwaway project (imagekit.toml + images/) and a loopback package index."""
from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import socketserver
import textwrap
import threading
import zipfile
from pathlib import Path

import pytest

from imagekit import config

ROOT = Path(__file__).resolve().parents[1]


def make_wheel(folder: Path, name: str, version: str, *, requires: tuple[str, ...] = (),
               requires_python: str | None = None) -> Path:
    """Write a minimal pure-Python wheel (METADATA, WHEEL, RECORD and one module)."""
    dist = f"{name.replace('-', '_')}-{version}"
    meta = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
            *(f"Requires-Dist: {r}" for r in requires)]
    if requires_python:
        meta.append(f"Requires-Python: {requires_python}")
    files = {f"{name.replace('-', '_')}/__init__.py": f"VERSION = {version!r}\n",
             f"{dist}.dist-info/METADATA": "\n".join(meta) + "\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record + [f"{dist}.dist-info/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), text)
    return wheel


@pytest.fixture(scope="session")
def index(tmp_path_factory) -> str:
    """A PEP 503 index on loopback: directory listings of simple/<name>/ are its pages."""
    root = tmp_path_factory.mktemp("index")
    simple = root / "simple"
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
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()


def write_project(root: Path, toml: str | None = None, requirements: dict[str, str] | None = None) -> Path:
    """A project folder with imagekit.toml (defaults: base -> ray, notebook) and requirements.in files."""
    toml = toml if toml is not None else textwrap.dedent("""
        [[environments]]
        name = "desa"
        project = "mlops-desa"
        [[environments]]
        name = "prod"
        project = "mlops-prod"
        [[images]]
        name = "base"
        [[images]]
        name = "ray"
        parent = "base"
        [[images]]
        name = "notebook"
        parent = "base"
        """)
    (root / "imagekit.toml").write_text(toml)
    for name, text in (requirements or {"base": "", "ray": "", "notebook": ""}).items():
        (root / "images" / name).mkdir(parents=True, exist_ok=True)
        (root / "images" / name / "requirements.in").write_text(text)
    return root / "imagekit.toml"


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


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``imagekit ARGS`` through the real entry point; return exit code, stdout, stderr."""
    from imagekit.cli import main

    monkeypatch.setattr("sys.argv", ["imagekit", *args])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    return e.value.code or 0, captured.out, captured.err


@pytest.fixture
def cli(monkeypatch, capsys):
    return functools.partial(run_cli, monkeypatch, capsys)

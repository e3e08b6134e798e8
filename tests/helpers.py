"""Test helpers shared by unit and integration tests."""
from __future__ import annotations

import base64
import hashlib
import textwrap
import zipfile
from pathlib import Path

import pytest

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
    root.mkdir(parents=True, exist_ok=True)
    (root / "imagekit.toml").write_text(toml)
    for name, text in (requirements or {"base": "", "ray": "", "notebook": ""}).items():
        (root / "images" / name).mkdir(parents=True, exist_ok=True)
        (root / "images" / name / "requirements.in").write_text(text)
    return root / "imagekit.toml"


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``imagekit ARGS`` through the real entry point; return exit code, stdout, stderr."""
    from imagekit.cli import main

    monkeypatch.setattr("sys.argv", ["imagekit", *args])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    return e.value.code or 0, captured.out, captured.err


class RegistryProcess:
    """A docker-registry (CNCF Distribution) of the test's own: own port, own storage, stoppable."""

    def __init__(self, root: Path, *, tls: tuple[Path, Path] | None = None, htpasswd: Path | None = None) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.root = root
        lines = ["version: 0.1", "log: {level: error}",
                 f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}",
                 f'http: {{addr: "{self.host}"' + (f", tls: {{certificate: {tls[0]}, key: {tls[1]}}}" if tls else "")
                 + "}"]
        if htpasswd:
            lines.append(f"auth: {{htpasswd: {{realm: imagekit-test, path: {htpasswd}}}}}")
        self.config = root / "registry.yml"
        root.mkdir(parents=True, exist_ok=True)
        self.config.write_text("\n".join(lines) + "\n")
        self.scheme = "https" if tls else "http"
        self.proc = None

    def start(self) -> "RegistryProcess":
        import subprocess
        import time

        import requests

        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "registry.log", "ab"))
        for _ in range(100):
            try:
                requests.get(f"{self.scheme}://{self.host}/v2/", timeout=1, verify=False)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"registry on {self.host} did not start: {(self.root / 'registry.log').read_text()}")

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

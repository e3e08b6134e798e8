"""The resolvers that turn requirements.in files into pinned, hashed lines, for the images'
interpreter and platform rather than the host's.

- uv (the default): ``uv pip compile --python-version --python-platform`` resolves for a target
  without running it, in seconds, on the host.
- pip-tools: ``pip-compile --generate-hashes`` run inside the OS image, so it resolves with the
  image's own interpreter; slower (minutes for the full lock), the team's reference tool.

Both return the body of a pip-tools-format file (no header). Index credentials travel in the
environment of the resolver process, never on its command line or in the output.
"""
from __future__ import annotations

import os
import re
import shlex
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from imagekit import containers, proc, redact, tools
from imagekit.errors import ConfigError, LockConflict, ToolError

PIP_TOOLS = ("pip-tools==7.6.2", "pip==23.2.1")  # pip-compile and the pip it is known to work with
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # the host's trust store, lent to pip-compile


@dataclass(frozen=True)
class Target:
    """What a lock is resolved for, and from where."""
    python: str
    platform: str
    index_url: str  # may carry credentials: never written anywhere
    find_links: Path | None
    find_links_setting: str = ""  # as written in the config, for the header

    def describe(self) -> str:
        """The target as the lock header records it (no credentials)."""
        return (f"CPython {self.python} on {self.platform}, wheels only, index {redact.strip_userinfo(self.index_url)}"
                + (f", find-links {self.find_links_setting}" if self.find_links else ""))


def index_url(url: str, username: str, password: str) -> str:
    """The index URL with credentials from the settings when it carries none itself."""
    parts = urllib.parse.urlsplit(url)
    if not username or parts.username:
        return url
    auth = urllib.parse.quote(username, safe="") + (":" + urllib.parse.quote(password, safe="") if password else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{auth}@{parts.netloc}"))


def with_netrc(url: str, path: str | None = None) -> str:
    """``url`` with the credentials ~/.netrc (or ``path``) holds for its host, when it carries none: uv on
    this machine reads ~/.netrc itself, pip in the OS image's container cannot see it."""
    import netrc

    parts = urllib.parse.urlsplit(url)
    if parts.username or not parts.hostname:
        return url
    try:
        found = netrc.netrc(path).authenticators(parts.hostname)
    except (FileNotFoundError, netrc.NetrcParseError):
        return url
    if not found:
        return url
    redact.register(found[2] or "")
    return index_url(url, found[0], found[2] or "")


def uv_compile(root: Path, target: Target, files: list[Path], extra: list[str], output: Path | None = None) -> str:
    """``uv pip compile`` of ``files`` for ``target``; returns the output (no header)."""
    with tempfile.TemporaryDirectory(prefix="imagekit-uv-") as tmp:
        out = output or Path(tmp) / "out.txt"
        cmd = [str(tools.binary()), "pip", "compile", *(str(f.relative_to(root)) for f in files),
               "-o", str(out), "--quiet", "--no-config", "--no-header",
               "--python-version", target.python, "--python-platform", target.platform,
               "--only-binary", ":all:", *extra]
        if target.find_links:
            cmd += ["--find-links", str(target.find_links)]
        try:
            proc.run(cmd, cwd=root, env={"UV_NO_PROGRESS": "1", "UV_DEFAULT_INDEX": target.index_url,
                                         "UV_INDEX_URL": ""})
        except ToolError as e:
            _conflict(e)
            raise
        return out.read_text().lstrip("\n")


_MISSING = re.compile(r"Because (\S+) was not found in the package registry|"
                      r"No matching distribution found for (\S+)")


def _conflict(e: ToolError) -> None:
    """Raise LockConflict when the resolver proved the requirements unsatisfiable, naming why."""
    marker = "No solution found when resolving dependencies"
    missing = sorted({a or b for a, b in _MISSING.findall(e.output)})
    if missing:
        raise LockConflict(f"no such package on the index: {', '.join(missing)}",
                           hint="check the name in images/*/requirements.in (or lock.index_url / lock.find_links);"
                                " the existing lock was left untouched") from None
    if marker not in e.output and "ResolutionImpossible" not in e.output:
        return
    reason = e.output.strip().split(marker, 1)[-1].lstrip(":").strip()
    raise LockConflict(f"the requirements cannot be satisfied together:\n{reason}",
                       hint="relax one of the conflicting requirements in images/*/requirements.in;"
                            " the existing lock was left untouched") from None


def pip_tools_compile(engine, os_image: str, root: Path, target: Target, files: list[Path], *,
                      seed: Path | None = None, upgrade: tuple[str, ...] = (), cache: Path) -> str:
    """``pip-compile --generate-hashes`` inside ``os_image`` (the images' own interpreter).

    The committed lock (``seed``) is handed over as pip-compile's output file, so its pins are
    preferences exactly as with uv. pip-tools itself is installed in the container from wheels
    downloaded on the host (``cache``/tools), the container reaches the index through the host's
    network, and the host's CA bundle is lent to it for a TLS-intercepting proxy.
    """
    tools = _pip_tools_wheels(cache, target)
    inputs = {f"/work/{f.relative_to(root)}": f for f in files}
    inputs["/tools"] = tools
    if seed is not None and seed.is_file():
        inputs["/work/out.txt"] = seed
    if target.find_links:
        inputs["/find-links"] = target.find_links
    cmd = ["pip-compile", "--quiet", "--generate-hashes", "--allow-unsafe", "--no-header", "--annotation-style",
           "split", "--no-emit-index-url", "--no-emit-find-links", "--no-emit-options", "--strip-extras", "--pip-args",
           "--only-binary :all:", "-o", "/work/out.txt", *(f"--upgrade-package={n}" for n in upgrade),
           *(["--find-links=/find-links"] if target.find_links else []),
           *sorted(k.removeprefix("/work/") for k in inputs if k.endswith(".in"))]
    env = {"PIP_INDEX_URL": with_netrc(target.index_url), "PIP_CONFIG_FILE": os.devnull,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # credentials in the container's environment only, never a file
    if CA_BUNDLE.is_file():
        inputs["/etc/imagekit-ca.crt"] = CA_BUNDLE
        env.update(PIP_CERT="/etc/imagekit-ca.crt", SSL_CERT_FILE="/etc/imagekit-ca.crt")
    script = ("set -e; python3 -m venv /tmp/pt >/dev/null; /tmp/pt/bin/pip install -q --no-index --find-links /tools "
              f"{' '.join(PIP_TOOLS)}; cd /work; /tmp/pt/bin/{shlex.join(cmd)}")
    try:
        _, files_out = containers.run(engine, os_image, ["bash", "-c", script], inputs=inputs,
                                      outputs=("/work/out.txt",), env=env, network="host", timeout=3600)
    except ToolError as e:
        _conflict(e)
        raise
    return files_out["/work/out.txt"].decode().lstrip("\n")


def _pip_tools_wheels(cache: Path, target: Target) -> Path:
    """pip-tools and what it needs, as wheels for the target's Python, downloaded once on the host."""
    folder = cache / "tools" / "-".join(p.replace("==", "-") for p in PIP_TOOLS)
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pip-tools-", dir=folder.parent) as tmp:
        py = target.python.split(".")
        proc.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "--python-version",
                  f"{py[0]}.{py[1]}", "-d", tmp, *PIP_TOOLS],
                 env={"PIP_INDEX_URL": target.index_url, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "",
                      "PIP_EXTRA_INDEX_URL": ""},
                 hint="pip-tools is downloaded from lock.index_url once; check that the index is reachable")
        os.replace(tmp, folder)
        os.mkdir(tmp)  # TemporaryDirectory removes it again
    return folder


def check_find_links(value: str, folder: Path, origin: str) -> Path | None:
    """The private wheels folder (``lock.find_links``), or None; it must exist."""
    if not value:
        return None
    if not folder.is_dir():
        raise ConfigError(f"no such folder: {folder}", key="lock.find_links", source=origin,
                          hint="point it at the folder that holds the private wheels, or remove the key")
    return folder

"""Dockerfile builds: BuildKit through the docker CLI where a CLI here offers it (docker-py has no
BuildKit), else the engine's classic builder through the API. The network is always off."""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from imagekit import proc, progress
from imagekit.engine import Engine
from imagekit.errors import EngineError, ToolError


def build(engine: Engine, context: Path, *, tags: list[str], buildargs: dict[str, str], labels: dict[str, str],
          builder: str = "auto", on_line: Callable[[str], None] | None = None) -> str:
    """Build ``context`` with no network; return the image id. ``builder``: auto, buildkit or classic."""
    cli = cli_invocation() if builder != "classic" else None
    if cli is None:
        resolve(builder)  # BuildKit asked for where no CLI offers it: said
        return engine.build(context, tags=tags, buildargs=buildargs, labels=labels, on_line=on_line)
    argv, env = cli
    with tempfile.TemporaryDirectory(prefix="imagekit-build-") as tmp:
        iid = Path(tmp) / "iid"
        cmd = [*argv, "--progress=plain", "--network=none", "--iidfile", str(iid),
               *(f"--build-arg={k}={v}" for k, v in buildargs.items()),
               *(f"--label={k}={v}" for k, v in labels.items()), *(f"--tag={t}" for t in tags), str(context)]
        try:
            proc.run(cmd, env=env, on_line=progress.output(on_line))
        except ToolError as e:
            raise EngineError(f"build of {context.name} failed:\n{e.output.strip()[-3000:]}") from None
        return iid.read_text().strip()


def resolve(builder: str) -> str:
    """What ``builder`` (auto, buildkit or classic) builds with here: "buildkit" or "classic" (their
    layers differ in their bytes, so what an image is made of names it)."""
    if builder == "classic":
        return "classic"
    if cli_invocation() is not None:
        return "buildkit"
    if builder == "buildkit":
        raise EngineError("BuildKit was asked for but no docker CLI here offers it",
                          hint="install docker.io (its 20.10 client has BuildKit built in) or the buildx plugin")
    return "classic"


def cli_invocation() -> tuple[list[str], dict[str, str]] | None:
    """The docker CLI invocation that builds with BuildKit here: buildx, or a pre-23 client with
    DOCKER_BUILDKIT=1 (newer clients without buildx refuse that). None: use the classic builder."""
    return _cli(shutil.which("docker"))


@functools.cache  # asked once per process and CLI (four commands, 0.2 s), not once per Dockerfile
def _cli(on_path: str | None) -> tuple[list[str], dict[str, str]] | None:
    for docker_bin in dict.fromkeys(filter(None, [on_path, "/usr/bin/docker"])):
        if not os.access(docker_bin, os.X_OK):
            continue
        try:
            proc.run([docker_bin, "buildx", "version"])
            return [docker_bin, "buildx", "build", "--load"], {}
        except ToolError:
            pass
        try:
            version = proc.run([docker_bin, "version", "--format", "{{.Client.Version}}"]).strip()
        except ToolError as e:
            version = e.output.strip().splitlines()[0] if e.output.strip() else ""
        if version and version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
            return [docker_bin, "build"], {"DOCKER_BUILDKIT": "1"}
    return None

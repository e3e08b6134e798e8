"""The one wrapper around the Docker engine: docker-py for the API, the docker CLI for BuildKit builds."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from imagekit import proc
from imagekit.errors import EngineError, ToolError

HINT = "start the engine with `make dev-up` (installs docker.io and starts dockerd), or set DOCKER_HOST"


@dataclass(frozen=True)
class EngineInfo:
    version: str
    api_version: str
    storage_driver: str
    endpoint: str


class Engine:
    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    @classmethod
    def connect(cls) -> "Engine":
        try:
            client = docker.from_env(timeout=300)
            client.ping()
        except docker.errors.DockerException as e:
            raise EngineError(f"the Docker engine is not reachable: {e}", hint=HINT) from None
        return cls(client)

    def info(self) -> EngineInfo:
        v, i = self.client.version(), self.client.info()
        return EngineInfo(version=v.get("Version", "?"), api_version=v.get("ApiVersion", "?"),
                          storage_driver=i.get("Driver", "?"), endpoint=self.client.api.base_url)

    def image(self, ref: str) -> dict | None:
        """The engine's inspect data for ``ref``, or None when it has no such image."""
        try:
            return self.client.api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as e:
            raise EngineError(f"cannot inspect {ref}: {e.explanation}") from None

    def pull(self, ref: str) -> bool:
        """Pull ``ref``; False when no registry has it or none is reachable (air-gapped)."""
        try:
            self.client.images.pull(ref)
            return True
        except docker.errors.APIError:
            return False

    def import_rootfs(self, tar: Path, ref: str, changes: list[str]) -> str:
        """``docker import`` a root filesystem tarball as ``ref``; return the image id."""
        repo, _, tag = ref.rpartition(":")
        try:
            self.client.api.import_image_from_file(str(tar), repository=repo, tag=tag, changes=changes)
        except docker.errors.APIError as e:
            raise EngineError(f"docker import of {tar} failed: {e.explanation}") from None
        return self.client.api.inspect_image(ref)["Id"]

    def run(self, image: str, cmd: list[str], *, volumes: dict[str, str] | None = None,
            network: bool = False, user: str | None = None, timeout: float = 600) -> str:
        """Run ``cmd`` in a throwaway container; return its output or raise EngineError with it."""
        container = self.client.containers.create(
            image, cmd, user=user, network_disabled=not network, detach=True,
            volumes={src: {"bind": dst, "mode": "ro"} for src, dst in (volumes or {}).items()})
        try:
            container.start()
            status = container.wait(timeout=timeout)
            output = container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
        if status.get("StatusCode") != 0:
            tail = "\n".join(output.strip().splitlines()[-30:])
            raise EngineError(f"{' '.join(cmd)[:120]} failed in {image} (exit {status.get('StatusCode')}):\n{tail}")
        return output

    def build(self, context: Path, *, tags: list[str], buildargs: dict[str, str], labels: dict[str, str],
              builder: str = "auto", on_line: Callable[[str], None] | None = None) -> str:
        """Build ``context`` with no network; return the image id. BuildKit through the docker CLI
        where the CLI offers it, else the classic builder through the API."""
        note = on_line or (lambda line: None)
        cli = buildkit_cli() if builder in ("auto", "buildkit") else None
        if builder == "buildkit" and cli is None:
            raise EngineError("BuildKit was asked for but no docker CLI here offers it",
                              hint="install docker.io (its 20.10 client has BuildKit built in) or the buildx plugin")
        if cli is not None:
            argv, env = cli
            with tempfile.TemporaryDirectory(prefix="imagekit-build-") as tmp:
                iid = Path(tmp) / "iid"
                cmd = [*argv, "--progress=plain", "--network=none", "--iidfile", str(iid),
                       *(f"--build-arg={k}={v}" for k, v in buildargs.items()),
                       *(f"--label={k}={v}" for k, v in labels.items()), *(f"--tag={t}" for t in tags), str(context)]
                try:
                    proc.run(cmd, env=env, on_line=note)
                except ToolError as e:
                    raise EngineError(f"build of {context.name} failed:\n{e.output.strip()[-3000:]}") from None
                return iid.read_text().strip()
        image_id = ""
        try:
            for chunk in self.client.api.build(path=str(context), tag=tags[0], buildargs=buildargs, labels=labels,
                                               network_mode="none", rm=True, forcerm=True, decode=True):
                if "error" in chunk:
                    raise EngineError(f"build of {context.name} failed: {chunk['error'].strip()}")
                for line in chunk.get("stream", "").splitlines():
                    note(line)
                image_id = chunk.get("aux", {}).get("ID", image_id)
        except docker.errors.APIError as e:
            raise EngineError(f"build of {context.name} failed: {e.explanation}") from None
        for ref in tags[1:]:
            self.tag(image_id, ref)
        return image_id

    def tag(self, image: str, ref: str) -> None:
        repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
        self.client.api.tag(image, repo, tag)

    def layer_ids(self, ref: str) -> list[str]:
        """The diff ids of the image's filesystem layers, bottom first."""
        return self.client.api.inspect_image(ref)["RootFS"]["Layers"]


    def push(self, image_id: str, repository: str, tags: list[str], *, auth: tuple[str, str] | None = None,
             on_line: Callable[[str], None] | None = None) -> str:
        """Tag ``image_id`` as repository:tag and push each tag; return the manifest digest.

        The engine uploads every layer before the manifest, so a tag never names a half-pushed
        image, and layers already in the registry are not sent again.
        """
        note = on_line or (lambda line: None)
        auth_config = {"username": auth[0], "password": auth[1]} if auth else None
        digests = set()
        for tag in tags:
            self.client.api.tag(image_id, repository, tag)
            try:
                for event in self.client.api.push(repository, tag, stream=True, decode=True, auth_config=auth_config):
                    if "error" in event:
                        raise EngineError(f"push of {repository}:{tag} failed: {event['error']}",
                                          hint="re-run the push once the registry is back: it resumes")
                    if "status" in event:
                        note(f"{repository}:{tag} {event.get('id', '')} {event['status']} {event.get('progress', '')}")
                    if event.get("aux", {}).get("Digest"):
                        digests.add(event["aux"]["Digest"])
            except docker.errors.APIError as e:
                raise EngineError(f"push of {repository}:{tag} failed: {e.explanation}") from None
        if len(digests) != 1:
            raise EngineError(f"push of {repository} reported digests {sorted(digests)}, expected one")
        return digests.pop()


def buildkit_cli() -> tuple[list[str], dict[str, str]] | None:
    """The docker CLI invocation that builds with BuildKit here: buildx, or a pre-23 client with
    DOCKER_BUILDKIT=1 (newer clients without buildx refuse that). None: use the classic builder."""
    for docker_bin in dict.fromkeys(filter(None, [shutil.which("docker"), "/usr/bin/docker"])):
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

"""The one wrapper around the Docker engine: docker-py for the API, the docker CLI for BuildKit builds."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from imagekit.errors import EngineError

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

"""The one wrapper around the Docker engine: docker-py for the API, the docker CLI for BuildKit builds."""
from __future__ import annotations

from dataclasses import dataclass

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
